"""`csrv2-vdb bench width`: latent width h against quality and search speed, side by side in one run.

A k-sparse query touches about k * N / h postings when latents are used evenly, so a wider head should
search faster; whether it keeps quality is the other half. Label-free heads (the `train --input`
defaults, only h varied) are fitted on Debian descriptions (`debian_retrieval_set`); each is scored by
nDCG@10 with the titles as queries, and its codes, repeated under new ids up to `n` points (the real latent
distribution), are searched at batch 1 in each engine (embedded qdrant-edge, Milvus Lite). Every round times
every (engine, h, k) in turn, so noise hits them alike and the ratio to the narrowest head is taken within a
round.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from csrv2_vdb.adapters import open_store
from csrv2_vdb.benchmarks.metrics import retrieval_metrics
from csrv2_vdb.benchmarks.quality import debian_embeddings, fit_widths
from csrv2_vdb.benchmarks.reports import table
from csrv2_vdb.benchmarks.speed.corpus import fill_repeated
from csrv2_vdb.benchmarks.speed.timing import rotating_p50
from csrv2_vdb.sparse import SparseBatch


def postings_per_query(queries: SparseBatch, docs: SparseBatch, n: int) -> float:
    """Mean number of postings a query's latents reach in a collection of `n` points coded like `docs`."""
    counts = np.bincount(docs.indices[docs.values > 0], minlength=docs.dim) * (n / len(docs))
    rows = zip(queries.indices, queries.values, strict=True)
    return float(np.mean([counts[idx[val > 0]].sum() for idx, val in rows]))


def run_width_bench(
    data_dir: Path, cache: Path, work: Path, widths: tuple[int, ...] = (1536, 4096, 6144, 8192),
    ks: tuple[int, ...] = (2, 8), n: int = 1_000_000, n_docs: int = 12_000, queries: int = 200, repeats: int = 3,
    engines: tuple[str, ...] = ("qdrant-edge",),
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per (engine, h, k): nDCG@10, postings per query, and the median over rounds of the p50 search ms
    and of its ratio to the first width's p50 on that engine in the same round."""
    data, doc_x, query_x = debian_embeddings(data_dir, cache, n_docs)
    heads = fit_widths(doc_x, widths)
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    probes: dict[tuple[int, int], SparseBatch] = {}
    stores = {e: open_store(e, str(work / "width.db") if e == "milvus" else str(work / e)) for e in engines}
    try:
        for h, head in heads.items():
            for k in ks:
                docs, qs = head.encode(doc_x, k).normalized(), head.encode(query_x, k).normalized()
                ndcg = retrieval_metrics(qs, docs, data.qrels)["ndcg@10"]
                probes[h, k] = qs[[i % len(qs) for i in range(queries)]]
                for engine, store in stores.items():
                    store.create_collection(f"width_{h}_k{k}", sparse_dim=h, exist_ok=True)
                    fill_repeated(store, f"width_{h}_k{k}", docs, n)
                    rows[engine, h, k] = {"engine": engine, "h": h, "k": k, "n": n, "ndcg@10": ndcg, "p50_ms": [],
                                          "ratio": [], "postings": postings_per_query(qs, docs, n)}  # fmt: skip

        def search(key: tuple[str, int, int], i: int) -> object:
            engine, h, k = key
            return stores[engine].search(f"width_{h}_k{k}", probes[h, k][[i]], limit=10)

        for p50 in rotating_p50(list(rows), search, queries, repeats):
            for (engine, h, k), row in rows.items():
                row["p50_ms"].append(p50[engine, h, k])
                row["ratio"].append(p50[engine, widths[0], k] / p50[engine, h, k])
        for engine, h, k in rows:
            stores[engine].drop_collection(f"width_{h}_k{k}")
    finally:
        for store in stores.values():
            store.close()
    return [{**row, "p50_ms": statistics.median(row["p50_ms"]), "ratio": statistics.median(row["ratio"])}
            for row in rows.values()]  # fmt: skip


def width_markdown(rows: list[dict[str, Any]], command: str) -> str:
    first = rows[0]
    lines = ["## Latent width: quality and search speed (side by side)", "",
             f"Reproduce: `{command}`. Label-free heads on Debian descriptions, titles as queries (nDCG@10, "
             f"normalised codes); collections of {first['n']:,} codes per engine; p50 of single queries, the "
             f"median over rounds; speed-up = p50 at h = {first['h']} / p50 at this h on that engine, in a "
             "round.", ""]  # fmt: skip
    header = ["engine", "h", "k", "nDCG@10", "postings / query", "search p50 ms", f"speed-up vs h = {first['h']}"]
    lines += table(header, [[r["engine"], r["h"], r["k"], f"{r['ndcg@10']:.3f}", f"{r['postings']:,.0f}",
                             f"{r['p50_ms']:.3f}", f"{r['ratio']:.2f}x"]
                            for r in sorted(rows, key=lambda r: (r["engine"], r["k"], r["h"]))])  # fmt: skip
    return "\n".join(lines) + "\n"
