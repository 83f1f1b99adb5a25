"""What a refit costs at scale, beside what indexing the same rows cost, in one run.

    csrv2-vdb bench refit [--rows 200000] [--engine qdrant-edge] [--out docs/benchmarks]

The collection holds `rows` unit vectors sampled from a mixture fitted to real MiniLM embeddings of the medical
chunks (`EmbeddingModel`, as the 1M retrieval benchmark), stored full width beside their codes (the general
head, k = 8). Indexing them (precomputed vectors through `bulk_index`) is timed, then `refit` from the stored
vectors (its defaults: a 50,000-row fit sample, 500 held out), by phase. Refitting a collection that keeps texts
instead re-embeds every document through the embedding cache: add the embedding pass (`bench encoder`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from csrv2_vdb.adapters import open_store
from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.speed.corpus import EmbeddingModel, real_embeddings
from csrv2_vdb.bulk import bulk_index
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.head import DEFAULT_HEAD, pretrained_head
from csrv2_vdb.head_store import save_head
from csrv2_vdb.refit import refit

STORES = {"qdrant-edge": "edge", "milvus": "milvus.db"}  # embedded engines, where each writes in the run's folder


def run_refit_bench(
    data: Path,
    cache: Path,
    rows: int,
    engine: str = "qdrant-edge",
    seed: int = 0,
    fit_steps: int | None = None,
    real_rows: int | None = None,
) -> dict[str, Any]:
    """Seconds to index `rows` stored vectors and to refit the collection from them, by phase. For a quick check:
    `fit_steps` fewer optimizer steps than the fit's default, `real_rows` fewer medical chunks to sample from."""
    model = EmbeddingModel.fit(real_embeddings(Backbone(), data, cache, real_rows), components=32, seed=seed)
    x = model.sample(rows, seed)
    encoder = CSRv2Encoder(None, pretrained_head(), k=8)  # codes of stored vectors: no embedder to load
    records = ({"id": f"r{i}", "vector": x[i]} for i in range(rows))

    def both(v: Any) -> Any:  # the codes and the vectors beside them
        return encoder.encode_embeddings(v), v

    with tempfile.TemporaryDirectory() as tmp, open_store(engine, str(Path(tmp) / STORES[engine])) as store:
        store.create_collection("docs", sparse_dim=encoder.dim, dense_dim=x.shape[1], encoder=encoder.identity)
        save_head(store, "docs", encoder, DEFAULT_HEAD)  # as `index --head` stores it: refit compares with it
        start = time.perf_counter()
        bulk_index(store, "docs", records, both, vector_field="vector", total=rows, progress=False)
        indexed = time.perf_counter() - start
        overrides: dict[str, object] | None = {"min_steps": fit_steps, "epochs": 1} if fit_steps else None
        report = refit(store, "docs", None, fit_overrides=overrides, progress=False, log=lambda _: None)
        assert int(store.count(report.new)) == rows
    seconds = dict(report.seconds)
    return {"rows": rows, "engine": engine, "cpus": os.cpu_count(), "fit_steps": fit_steps or "default",
            "index_seconds": round(indexed, 1),
            "refit_seconds": seconds, "fit_rows": report.fit_rows, "held_rows": report.held_rows,
            "refit_per_1000_rows": round(seconds["total"] / rows * 1000, 3),
            "refit_over_index": round(seconds["total"] / indexed, 2),
            "old_fidelity": report.old_fidelity, "new_fidelity": report.new_fidelity}  # fmt: skip


def markdown(result: dict[str, Any], command: str) -> str:
    s = result["refit_seconds"]
    fid = [result[f"{w}_fidelity"] or {} for w in ("old", "new")]
    return "\n".join([
        "## Refit at scale",
        "",
        f"Reproduce: `{command}`. {result['rows']:,} stored 384-d vectors (sampled from a mixture fitted to the "
        f"medical chunks' embeddings) with their general-head codes (k = 8) on {result['engine']}, "
        f"{result['cpus']} cores; refit from the stored vectors with its defaults ({result['fit_rows']:,} fit "
        f"rows, {result['held_rows']} held out).",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| index the rows (precomputed vectors, `bulk_index`) | {result['index_seconds']:.1f} |",
        f"| refit: read, sample, fit the head | {s['embed and fit']:.1f} |",
        f"| refit: write the new version, carry over, optimize | {s['write']:.1f} |",
        f"| refit: total (with the switch and the held-out comparison) | {s['total']:.1f} |",
        "",
        f"Refit: {result['refit_per_1000_rows']:.3f} s per 1,000 rows, {result['refit_over_index']:.2f}x the time "
        "indexing the same rows took in this run. Held-out recall@10 against dense, old / new head: "
        f"{fid[0].get('recall_at_10', float('nan')):.3f} / {fid[1].get('recall_at_10', float('nan')):.3f} (vectors "
        "sampled from a mixture: the figure shows the refit ran, not the quality on real text).",
        "",
    ])  # fmt: skip
