"""A retrieval benchmark result (the JSON `bench retrieval` writes) as markdown tables and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from csrv2_vdb.benchmarks.reports import pyplot, table

# Published speed-ups the run is compared with (CSRv2 paper, 1M database; CSR paper at matched quality).
PAPER = {"dense-16 / sparse-k2": 7.8, "dense-384 / sparse-k2": 306.0}
# RSS growth below this is within allocator noise (released pages reused, lazy frees): shown as "–".
MEMORY_NOISE_BYTES = 8 * 2**20


def _spread(stat: dict[str, float], fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}–{fmt.format(stat['max'])})"


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def config_table(name: str, target: dict[str, Any]) -> list[str]:
    """One row per config; memory is RSS growth for engines (blank under the noise), exact bytes for numpy."""
    header = ["config", "index", "rows", "build s", "disk B/vec", "memory B/vec", "p50 ms (min–max)", "p99 ms",
              "batch q/s (min–max)", "recall@10 vs exact"]  # fmt: skip
    rows = []
    for config, c in target["configs"].items():
        memory = c.get("memory_bytes_per_vector")
        if not name.startswith("numpy") and memory is not None and memory * c["rows"] < MEMORY_NOISE_BYTES:
            memory = None
        rows.append([
            config, c["index"], f"{c['rows']:,}", _num(c.get("build_s"), "{:.1f}"),
            _num(c.get("disk_bytes_per_vector")), _num(memory), _spread(c["p50_ms"]), f"{c['p99_ms']['median']:.3g}",
            _spread(c["qps"], "{:,.0f}"), _num(c.get("recall_at_10"), "{:.3f}"),
        ])  # fmt: skip
    return table(header, rows)


def ratio_table(target: dict[str, Any], sparse_ks: list[int]) -> list[str]:
    """Rows: comparators; columns: sparse k; cells: p50 latency ratio, median (min–max) over rounds."""
    ratios = target["ratios"]
    comparators = sorted({key.split(" / ")[0] for key in ratios if key.startswith("dense-")}, key=lambda n: (len(n), n))
    rows = [
        [comp, *(_spread(ratios[f"{comp} / sparse-k{k}"]["p50_latency"]) for k in sparse_ks)] for comp in comparators
    ]
    return table(["p50 latency of … / sparse", *(f"k={k}" for k in sparse_ks)], rows)


def rerank_table(target: dict[str, Any]) -> list[str]:
    """Rerank configs: recall@10 against exact full-dense search, and how much slower each dense config is."""
    configs = target["configs"]
    reranks = [name for name in configs if name.startswith("rerank-")]
    dense = sorted({key.split(" / ")[0] for key in target["ratios"] if key.split(" / ")[0].startswith("dense-384")})
    rows = [
        [name, _num(configs[name].get("recall_at_10"), "{:.3f}"), _spread(configs[name]["p50_ms"]),
         *(_spread(target["ratios"][f"{d} / {name}"]["p50_latency"]) for d in dense)]
        for name in reranks
    ]  # fmt: skip
    header = ["rerank (top 50 rescored)", "recall@10 vs exact dense-384", "p50 ms"]
    header += [f"{d} p50 / rerank" for d in dense]
    return table(header, rows) if rows else []


def longer_query_table(report: dict[str, Any]) -> list[str]:
    """Each k's collection searched with queries at default_query_k(k) (what search does by default), beside
    queries at k: p50 of both and their ratio within each round."""
    rows = []
    for name, target in report["targets"].items():
        for key, r in target["ratios"].items():
            longer, base = key.split(" / ")
            if "-q" in longer and longer.startswith(base):
                configs = target["configs"]
                rows.append([name, base, longer.rsplit("-q", 1)[1], _spread(configs[base]["p50_ms"]),
                             _spread(configs[longer]["p50_ms"]), _spread(r["p50_latency"])])  # fmt: skip
    header = ["target", "documents", "query k", "p50 ms, query at k", "p50 ms, longer query", "ratio (min–max)"]
    return table(header, rows) if rows else []


def headline_table(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, target in report["targets"].items():
        extra = ["dense-384-hnsw / sparse-k2", "dense-384-ivf_flat / sparse-k2", "dense-16 / sparse-k2-even"]
        extra += [key for key in target["ratios"] if key.endswith("-cmp")]  # the head over the --compare-head
        for key in [*PAPER, *extra]:
            if key in target["ratios"]:
                r = target["ratios"][key]
                paper = f"{PAPER[key]:g}x" if key in PAPER else "–"
                rows.append([name, key, paper, _spread(r["p50_latency"]), _spread(r["throughput"])])
    header = ["target", "ratio", "paper", "p50 latency ratio (min–max)", "batch throughput ratio (min–max)"]
    return table(header, rows)


def floor_table(report: dict[str, Any]) -> list[str]:
    """Per-query engine overhead: p50 on the tiny floor collections next to the full-size ones."""
    settings = report["settings"]
    small = f"-n{settings['floor_rows']}"
    rows = []
    for name, target in report["targets"].items():
        for floor, c in target["configs"].items():
            if not floor.endswith(small):
                continue
            full = target["configs"][floor.removesuffix(small)]
            share = c["p50_ms"]["median"] / full["p50_ms"]["median"]
            rows.append([name, floor.removesuffix(small), f"{full['p50_ms']['median']:.3g}",
                         f"{c['p50_ms']['median']:.3g}", f"{share:.0%}"])  # fmt: skip
    header = ["target", "collection", "p50 ms, full size", f"p50 ms, {settings['floor_rows']:,} rows",
              "share that is floor"]  # fmt: skip
    return table(header, rows)


def usage_table(report: dict[str, Any]) -> list[str]:
    rows = [
        [
            k[1:],
            side,
            f"{u['dead_latents']:.1%}",
            f"{u['top1pct_postings_share']:.1%}",
            f"{u['postings_per_query']:,.0f}",
            f"{u['skew']:.2f}",
        ]
        for k, sides in report["workload"]["latent_usage"].items()
        for side, u in sides.items()
    ]
    header = ["k", "corpus", "dead latents", "postings in top 1% latents", "postings touched per query",
              "skew vs even use"]  # fmt: skip
    return table(header, rows)


def _source(work: dict[str, Any]) -> str:
    """Where the documents came from: the user's corpus, or the Gaussian mixture."""
    if "corpus" in work:
        return f"Documents: {work['n']:,} rows of {work['corpus']}; queries: {work['queries_from']}"
    return (f"{work['components']}-component Gaussian mixture fitted to {work['fit_rows']:,} real MiniLM chunk "
            "embeddings")  # fmt: skip


def _end_to_end(report: dict[str, Any]) -> list[str]:
    """Encode + search per sparse config, when the run timed the encoding of query texts."""
    encode = report["workload"].get("query_encode_p50_ms")
    if encode is None:
        return []
    searches = [(f"{target} {name}", c["p50_ms"]["median"]) for target, t in report["targets"].items()
                for name, c in t["configs"].items() if name.startswith("sparse-") and "-n" not in name]  # fmt: skip
    rows = [[name, f"{encode:.2f}", f"{search:.3f}", f"{encode + search:.2f}"] for name, search in searches]
    return ["### End to end: query encoding (backbone + head, batch 1) + search, p50 ms", "",
            *table(["config", "encode", "search", "encode + search"], rows), ""]  # fmt: skip


def markdown(report: dict[str, Any], command: str) -> str:
    settings, work = report["settings"], report["workload"]
    ks = list(settings["ks"])
    out = [
        f"## Retrieval at N = {settings['n']:,}",
        "",
        f"Reproduce: `{command}` ({report['elapsed_s'] / 60:.0f} min for this run). {_source(work)}, codes "
        f"from the `{work['head']}` head (h = {work['hidden_dim']})"
        + (f", `-cmp` rows from `{settings['compare_head']}`" if settings.get("compare_head") else "")
        + f"; {settings['queries']} single queries and one "
        f"batch of {settings['batch']} per config and round, {settings['repeats']} rounds.",
        "",
        *_end_to_end(report),
        "### Headline ratios (higher: sparse faster)",
        "",
        *headline_table(report),
        "",
        "### Per-query floor",
        "",
        *floor_table(report),
        "",
        *(
            [
                "### Longer queries (documents at k, queries at max(k, min(4k, 16)); higher ratio: slower)",
                "",
                *longer,
                "",
            ]
            if (longer := longer_query_table(report))
            else []
        ),
        "### Latent usage of the codes"
        + ("" if "corpus" in work else " (synthetic documents/queries vs real medical chunks/questions)"),
        "",
        *usage_table(report),
        "",
        "### Overlap@10 with exact search over the full 384 dims"
        + ("" if "corpus" in work else " (synthetic queries)"),
        "",
        "| " + " | ".join(work["overlap_with_full_dense"]) + " |",
        "|" + "---|" * len(work["overlap_with_full_dense"]),
        "| " + " | ".join(f"{v:.3f}" for v in work["overlap_with_full_dense"].values()) + " |",
    ]
    for name, target in report["targets"].items():
        out += ["", f"### {name}", "", *config_table(name, target), "", *ratio_table(target, ks)]
        if rerank := rerank_table(target):
            out += ["", *rerank]
    return "\n".join(out) + "\n"


def plot(report: dict[str, Any], path: Path, quality_csv: Path | None = None) -> None:
    """Left: p50 latency vs k (sparse) and dims (MRL) per target. Right: quality (from the reproduction
    results, medical nDCG@10) against p50 latency on the first target."""
    plt = pyplot()

    panels = 2 if quality_csv and quality_csv.exists() else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.2), squeeze=False)
    ax = axes[0][0]
    for name, target in report["targets"].items():
        configs = target["configs"]
        for prefix, style in (("sparse-k", "-o"), ("dense-", "--s")):
            points = [
                (int(n[len(prefix) :]), c["p50_ms"]["median"])
                for n, c in configs.items()
                if n.startswith(prefix) and n[len(prefix) :].isdigit()
            ]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                label = f"{name} {'sparse (k)' if prefix == 'sparse-k' else 'dense (dims)'}"
                ax.plot(xs, ys, style, label=label)
    ax.set(xscale="log", yscale="log", xlabel="active dims k / dense dims", ylabel="p50 single-query latency (ms)")
    ax.set_title(f"N = {report['settings']['n']:,}")
    ax.legend(fontsize=7)
    if panels == 2 and quality_csv is not None:
        _quality_panel(axes[0][1], report, quality_csv)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _quality_panel(ax: Any, report: dict[str, Any], quality_csv: Path) -> None:
    from csrv2_vdb.benchmarks.reproduction import read_results

    first = next(iter(report["targets"]))
    configs = report["targets"][first]["configs"]
    rows = [r for r in read_results(quality_csv) if r.task == "medical" and r.metric == "ndcg@10"]
    for method, prefix, style in (("CSRv2", "sparse-k", "-o"), ("MRL", "dense-", "--s")):
        points = [
            (configs[f"{prefix}{r.dims}"]["p50_ms"]["median"], r.score, r.dims)
            for r in rows
            if r.method == method and f"{prefix}{r.dims}" in configs
        ]
        if points:
            xs, ys, _ = zip(*points, strict=True)
            ax.plot(xs, ys, style, label=method)
            for x, y, label in points:
                ax.annotate(str(label), (x, y), fontsize=7)
    dense = [r.score for r in rows if r.method.startswith("dense")]
    full = f"dense-{report['workload']['full_dim']}"
    if dense and full in configs:
        ax.plot([configs[full]["p50_ms"]["median"]], [dense[0]], "k*", label="dense 384 (exact)")
    ax.set(xscale="log", xlabel=f"p50 latency on {first} (ms)", ylabel="medical nDCG@10 (reproduction)")
    ax.set_title("quality vs latency")
    ax.legend(fontsize=7)
