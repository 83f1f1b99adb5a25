"""`csrv2-vdb bench retrieval`: sparse k vs MRL dims vs full dense, per engine, measured side by side.

For every target (engine or the numpy baseline) all configs are built first; then `repeats` rounds
time every config in turn (the order rotates each round), so a noisy neighbour on a shared machine
slows all of them alike and every ratio is taken within one round. Reported per config: build time,
bytes per vector on disk and in memory, p50/p99 single-query latency, batch throughput, recall@10
against exact search of the same vectors, and overlap@10 with exact search over the full dense
vectors (how much of the full embedding's neighbourhood the smaller representation keeps).

Documents are drawn from a Gaussian mixture fitted to real MiniLM chunk embeddings, or (`corpus`) are a
real corpus: texts (embedded by the backbone, cached) or precomputed embeddings, with queries from a file or
held out of the corpus. With texts, one query's encoding (backbone + head, batch 1) is timed too, so the
report gives end-to-end latency beside search-only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from tqdm.auto import tqdm

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import cached_embed
from csrv2_vdb.benchmarks.datasets import load_questions
from csrv2_vdb.benchmarks.speed.corpus import EmbeddingModel, encode_chunked, even_codes, latent_usage, real_embeddings
from csrv2_vdb.benchmarks.speed.exact import ExactIndex, recall_at
from csrv2_vdb.benchmarks.speed.targets import (
    Config,
    NumpyTarget,
    RerankVectors,
    Target,
    Vectors,
    make_target,
    rss,
)
from csrv2_vdb.encoder import default_query_k, mrl_truncate
from csrv2_vdb.errors import DimensionMismatchError, InvalidRecordError
from csrv2_vdb.head import SparseHead, resolve_head
from csrv2_vdb.records import read_rows
from csrv2_vdb.training.data import load_training_set


@dataclass
class RetrievalConfig:
    """What one `bench retrieval` run measures."""

    n: int = 1_000_000
    ks: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    dims: tuple[int, ...] = (8, 16, 32, 64)
    targets: tuple[str, ...] = ("qdrant-edge", "milvus-lite", "numpy")
    queries: int = 200  # single-query calls per config and round
    batch: int = 256  # queries in the one batch call per config and round
    repeats: int = 3
    floor_rows: int = 1_000  # size of the tiny collections that measure per-query engine overhead
    limit: int = 10
    head: str = "minilm-medical-csrv2-k8"  # a shipped head's name or a head directory
    compare_head: str | None = None  # a second head: every k also coded by it ("sparse-k{k}-cmp"), same documents
    real_rows: int | None = None  # real chunks (mixture fit) and questions (usage check) to embed; None: all
    components: int = 256  # mixture components (1: a single Gaussian with the data's mean and covariance)
    even_control: bool = False  # also index the smallest k's codes with uniformly drawn latents
    full: bool = True  # include the full dense vectors (exact, and each target's ANN index)
    rerank: tuple[int, ...] = ()  # k values also served as rerank: the k-sparse top 50 rescored by full dense
    sparse_hnsw: tuple[int, ...] = ()  # k values also served by an HNSW graph over the codes (pgvector only)
    corpus: str | None = None  # real documents (.jsonl/.csv/.parquet/.txt texts, or embeddings) instead of synthetic
    query_file: str | None = None  # queries for `corpus` (texts or embeddings); None: held out of the corpus
    longer_queries: bool = True  # also time each k's collection with queries at default_query_k(k)
    seed: int = 0


@dataclass
class Workload:
    """Documents and queries of every representation, plus exact answers for each."""

    docs: dict[str, Vectors]
    queries: dict[str, Vectors]
    exact: dict[str, tuple[np.ndarray, np.ndarray]]


def longer_query_configs(settings: RetrievalConfig) -> list[Config]:
    """Each k's collection searched with queries at default_query_k(k), as the library does by default."""
    if not settings.longer_queries:
        return []
    longer = {k: default_query_k(k) for k in settings.ks}
    return [Config("sparse", k, "inverted", query_k=q) for k, q in longer.items() if q != k]


def configs_for(settings: RetrievalConfig, full_dim: int) -> list[Config]:
    """Sparse k, MRL dims and full dense (exact, and each target's ANN), plus the two floor collections."""
    out = [Config("sparse", k, "inverted") for k in settings.ks] + longer_query_configs(settings)
    out += [Config("rerank", k, "inverted") for k in settings.rerank]
    out += [Config("sparse", k, "hnsw") for k in settings.sparse_hnsw if k in settings.ks]
    out += [Config("dense", d, "flat") for d in settings.dims if d < full_dim]
    if settings.full:
        out += [Config("dense", full_dim, index) for index in ("flat", "hnsw", "ivf_flat")]
    if settings.even_control:
        out.append(Config("sparse", min(settings.ks), "inverted", variant="even"))
    if settings.compare_head:  # the same collections and queries as served, coded by the second head
        out += [Config("sparse", k, "inverted", variant="cmp") for k in settings.ks]
        out += [replace(c, variant="cmp") for c in longer_query_configs(settings)]
    out += [
        Config("sparse", min(settings.ks), "inverted", rows=settings.floor_rows),
        Config("dense", min(settings.dims), "flat", rows=settings.floor_rows),
    ]
    return out


def build_workload(
    settings: RetrievalConfig, data_dir: Path, cache_dir: Path, console: Console
) -> tuple[Workload, dict[str, Any]]:
    """Documents and held-out queries in every representation, and what they look like."""
    backbone = Backbone()
    n_queries = max(settings.queries, settings.batch)
    head = resolve_head(settings.head)
    other = resolve_head(settings.compare_head) if settings.compare_head else None
    source: dict[str, Any]
    if settings.corpus:
        real, real_questions, source = corpus_workload(settings, backbone, head, cache_dir, n_queries, console)
        dense_docs, dense_queries = real, np.resize(real_questions, (n_queries, real_questions.shape[1]))
    else:
        real = real_embeddings(backbone, data_dir, cache_dir, settings.real_rows)
        model = EmbeddingModel.fit(real, min(settings.components, len(real) - 1), settings.seed)
        console.print(
            f"fitted a {len(model.weights)}-component Gaussian mixture to {len(real)} real MiniLM chunk embeddings; "
            f"sampling {settings.n:,} documents"
        )
        dense_docs = model.sample(settings.n, settings.seed)
        dense_queries = model.sample(n_queries, settings.seed + 1)  # held out: never indexed
        questions = [q.question for q in load_questions(data_dir)][: settings.real_rows]
        real_questions = cached_embed(backbone, questions, "query", cache_dir)
        source = {"fit_rows": len(real), "components": len(model.weights)}
    docs: dict[str, Vectors] = {}
    queries: dict[str, Vectors] = {}
    usage: dict[str, Any] = {}
    for k in tqdm(sorted({*settings.ks, *settings.rerank}), desc="encoding codes"):
        codes, query_codes = encode_chunked(head, dense_docs, k), head.encode(dense_queries, k)
        docs[f"sparse-k{k}"], queries[f"sparse-k{k}"] = codes, query_codes
        usage[f"k{k}"] = (
            {"your corpus": latent_usage(codes, query_codes)}
            if settings.corpus
            else {
                "synthetic": latent_usage(codes, query_codes),
                "real": latent_usage(head.encode(real, k), head.encode(real_questions, k)),
            }
        )
        if settings.even_control and k == min(settings.ks):
            codes, query_codes = even_codes(codes, settings.seed), even_codes(query_codes, settings.seed + 1)
            docs[f"sparse-k{k}-even"], queries[f"sparse-k{k}-even"] = codes, query_codes
            usage[f"k{k}"]["even control"] = latent_usage(codes, query_codes)
        if other is not None:
            codes, query_codes = encode_chunked(other, dense_docs, k), other.encode(dense_queries, k)
            docs[f"sparse-k{k}-cmp"], queries[f"sparse-k{k}-cmp"] = codes, query_codes
            usage[f"k{k}"]["compare head"] = latent_usage(codes, query_codes)
    for d in settings.dims:
        if d < backbone.dim:
            docs[f"dense-{d}"], queries[f"dense-{d}"] = mrl_truncate(dense_docs, d), mrl_truncate(dense_queries, d)
    docs[f"dense-{backbone.dim}"], queries[f"dense-{backbone.dim}"] = dense_docs, dense_queries
    asks = {key: key for key in docs}  # which documents each set of queries searches
    for config in configs_for(settings, backbone.dim):
        if config.query_k:
            coder = other if config.variant == "cmp" and other is not None else head
            queries[config.key] = coder.encode(dense_queries, config.query_k)
            asks[config.key] = config.indexed.key
    exact = {}
    for key, doc_key in tqdm(asks.items(), desc="exact top-k"):
        exact[key] = ExactIndex(docs[doc_key]).search(queries[key], settings.limit)
    for k in settings.rerank:  # rerank approximates the full dense ranking: its recall is against that
        key = f"rerank-k{k}"
        docs[key] = RerankVectors(docs[f"sparse-k{k}"], dense_docs)
        queries[key] = RerankVectors(queries[f"sparse-k{k}"], dense_queries)
        exact[key] = exact[f"dense-{backbone.dim}"]
    info = {
        **source,
        "n": len(dense_docs),
        "head": settings.head,
        "hidden_dim": head.hidden_dim,
        "full_dim": backbone.dim,
        "latent_usage": usage,
        "overlap_with_full_dense": {
            key: _overlap(exact[key][0], exact[f"dense-{backbone.dim}"][0])
            for key in exact
            if not key.startswith("rerank-")
        },
    }
    return Workload(docs, queries, exact), info


def corpus_workload(
    settings: RetrievalConfig, backbone: Backbone, head: SparseHead, cache_dir: Path, n_queries: int, console: Console
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(documents, queries, description) from the user's corpus: at most `settings.n` documents; the queries
    from `settings.query_file`, else `n_queries` rows held out of the corpus (never indexed)."""
    corpus = Path(str(settings.corpus))

    def embed(texts: Sequence[str], kind: str) -> np.ndarray:
        return cached_embed(backbone, list(texts), "query" if kind == "query" else "document", cache_dir)

    held_out = 0 if settings.query_file else n_queries
    docs = load_training_set(corpus, embed, max_rows=settings.n + held_out, seed=settings.seed, log=console.print)
    x = docs.embeddings
    if settings.query_file:
        queries = load_training_set(Path(settings.query_file), lambda t, _: embed(t, "query"), log=console.print)
        q = queries.embeddings
    else:
        if len(x) <= held_out:
            raise InvalidRecordError(f"{corpus} has {len(x)} rows: too few to hold out {held_out} queries")
        x, q = x[held_out:], x[:held_out]
    for what, rows in (("corpus", x), ("queries", q)):
        if rows.shape[1] != head.input_dim:
            raise DimensionMismatchError(
                f"the {what} embeddings have {rows.shape[1]} dims; the head {settings.head} takes {head.input_dim}"
            )
    source: dict[str, Any] = {"corpus": str(corpus), "queries_from": settings.query_file or f"{held_out} rows held out"}
    texts = _query_texts(Path(settings.query_file) if settings.query_file else None)
    if texts:
        source["query_encode_p50_ms"] = _encode_p50(backbone, head, texts[:100], max(settings.ks))
    console.print(f"corpus {corpus}: {len(x):,} documents, {len(q):,} queries")
    return x, q, source


def _query_texts(path: Path | None) -> list[str]:
    """The query file's texts (none for embeddings): what the end-to-end timing encodes."""
    if path is None or path.suffix == ".npy":
        return []
    return [str(row["text"]) for _, row in read_rows(path) if "text" in row]


def _encode_p50(backbone: Backbone, head: SparseHead, texts: list[str], k: int) -> float:
    """p50 ms of one query text through the backbone and the head at batch 1 (after one warm-up)."""
    head.encode(backbone.embed(texts[:1], "query"), k)
    times = []
    for text in texts:
        start = time.perf_counter()
        head.encode(backbone.embed([text], "query"), k)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of b's top list that a's top list also holds."""
    shares = [len(set(x[x >= 0]) & set(y[y >= 0])) / max(1, (y >= 0).sum()) for x, y in zip(a, b, strict=True)]
    return float(np.mean(shares))


def measure_target(
    target: Target, configs: list[Config], work: Workload, settings: RetrievalConfig, console: Console
) -> dict[str, Any]:
    """Build every config the target supports, measure its memory, then time them all in rotating rounds."""
    configs = [c for c in configs if target.supports(c)]
    results: dict[str, Any] = {c.name: {"index": c.index, "rows": c.rows or settings.n} for c in configs}
    built = [c for c in configs if c.indexed is c]  # longer-query configs search these collections
    for config in built:
        results[config.name].update(_build(target, config, work, console))
    target.reopen()
    for config in built:
        results[config.name]["memory_bytes_per_vector"] = _memory_per_vector(target, config, work, settings)
    rounds = _time_rounds(target, configs, work, settings, results)
    for name, measured in rounds.items():
        results[name]["rounds"] = measured
        for metric in ("p50_ms", "p99_ms", "qps"):
            values = [m[metric] for m in measured]
            results[name][metric] = _spread_of(values)
    return {"configs": results, "ratios": ratios(results, configs)}


def _build(target: Target, config: Config, work: Workload, console: Console) -> dict[str, float]:
    """Index the config's documents: seconds taken and bytes per vector the target's files grew by."""
    docs = work.docs[config.key]
    docs = docs[: config.rows] if config.rows else docs
    before = target.disk_bytes()
    start = time.perf_counter()
    with console.status(f"{target.name}: building {config.name} ({len(docs):,} rows)"):
        target.build(config, docs)
    out = {"build_s": time.perf_counter() - start}
    after = target.disk_bytes()
    if before is not None and after is not None:
        out["disk_bytes_per_vector"] = (after - before) / len(docs)
    console.print(f"{target.name}: built {config.name} in {out['build_s']:.1f} s")
    return out


def _memory_per_vector(target: Target, config: Config, work: Workload, settings: RetrievalConfig) -> float | None:
    """Array bytes for numpy; for engines, their process's RSS growth while the collection loads and answers
    its first 20 queries (a working set: mmapped data not yet read does not count)."""
    rows = config.rows or settings.n
    if isinstance(target, NumpyTarget):
        return target.nbytes(config) / rows
    pid = target.memory_pid()
    before = rss(pid) if pid else 0
    target.search(config, work.queries[config.key][:20], settings.limit)  # loads the collection
    return (rss(pid) - before) / rows if pid else None


def _time_rounds(
    target: Target, configs: list[Config], work: Workload, settings: RetrievalConfig, results: dict[str, Any]
) -> dict[str, list[dict[str, float]]]:
    """p50/p99 of single-query calls and batch throughput per config and round; recall@10 from round 1."""
    n_single = min(settings.queries, target.max_queries or settings.queries)
    n_batch = min(settings.batch, target.max_queries or settings.batch)
    rounds: dict[str, list[dict[str, float]]] = {c.name: [] for c in configs}
    for r in range(settings.repeats):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for config in tqdm(order, desc=f"{target.name} round {r + 1}/{settings.repeats}", leave=False):
            queries = work.queries[config.key]
            times, found_ids, found_scores = [], [], []
            for i in range(n_single):
                start = time.perf_counter()
                ids, scores = target.search(config, queries[i : i + 1], settings.limit)
                times.append(time.perf_counter() - start)
                found_ids += ids
                found_scores += scores
            start = time.perf_counter()
            target.search(config, queries[:n_batch], settings.limit)
            batch_s = time.perf_counter() - start
            ms = 1000 * np.array(times)
            p50, p99 = float(np.median(ms)), float(np.percentile(ms, 99))
            rounds[config.name].append({"p50_ms": p50, "p99_ms": p99, "qps": n_batch / batch_s})
            if r == 0 and not config.rows:
                want_ids, want_scores = (a[:n_single] for a in work.exact[config.key])
                results[config.name]["recall_at_10"] = recall_at(found_ids, found_scores, want_ids, want_scores)
    return rounds


def _spread_of(values: list[float]) -> dict[str, float]:
    """Median, min and max over the rounds: how every figure and ratio is reported."""
    return {"median": float(np.median(values)), "min": min(values), "max": max(values)}


def _ratio(results: dict[str, Any], over: str, under: str) -> dict[str, Any]:
    """p50 of `over` / p50 of `under` and throughput of `under` / of `over`, per round: median, min, max."""
    pairs = list(zip(results[over]["rounds"], results[under]["rounds"], strict=True))
    return {
        "p50_latency": _spread_of([a["p50_ms"] / b["p50_ms"] for a, b in pairs]),
        "throughput": _spread_of([b["qps"] / a["qps"] for a, b in pairs]),
    }


def ratios(results: dict[str, Any], configs: list[Config]) -> dict[str, Any]:
    """Each comparator over each sparse k, each longer-query config over the same collection with queries at
    k (what longer queries cost), and each k's codes over the compare head's (above 1: the compare head faster)."""
    sparse = [name for name in results if name.startswith(("sparse-", "rerank-")) and "-n" not in name]
    others = [name for name in results if name.startswith("dense-") and "-n" not in name]
    out = {f"{o} / {s}": _ratio(results, o, s) for s in sparse for o in others}
    for c in configs:
        if c.query_k and c.name in results:
            out[f"{c.name} / {c.indexed.name}"] = _ratio(results, c.name, c.indexed.name)
        if c.variant == "cmp" and c.name in results:
            base = replace(c, variant="").name
            out[f"{base} / {c.name}"] = _ratio(results, base, c.name)
    return out


def run_retrieval_bench(
    settings: RetrievalConfig, data_dir: Path, cache_dir: Path, work_dir: Path, out: Path, console: Console
) -> dict[str, Any]:
    """The whole run; writes the JSON result to `out` after each target, and returns it."""
    started = time.perf_counter()
    work, info = build_workload(settings, data_dir, cache_dir, console)
    settings = replace(settings, n=info["n"], floor_rows=min(settings.floor_rows, info["n"]))  # a corpus may be smaller
    configs = configs_for(settings, info["full_dim"])
    report: dict[str, Any] = {"settings": asdict(settings), "workload": info, "targets": {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in settings.targets:
        target = make_target(name, work_dir)
        try:
            report["targets"][name] = measure_target(target, configs, work, settings, console)
        finally:
            target.close()
        report["elapsed_s"] = time.perf_counter() - started
        out.write_text(json.dumps(report, indent=1))
        console.print(f"{name}: done, results so far in {out}")
    return report
