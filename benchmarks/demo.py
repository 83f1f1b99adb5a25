"""The main job: GraphRAG-Bench medical chunks in an embedded Qdrant store, sparse codes vs MRL dense.

texts -> Backbone -> (trained SparseHead -> SparseBatch | MRL truncation) -> QdrantEdgeStore -> questions.
For each k (sparse) and dims (MRL, and the full dense embedding) it reports answer-token recall of
the top-5 chunks, bytes per stored vector, and median single-query latency of the engine.
One head serves every k: fitted label-free on the chunks themselves with `csrv2-vdb train --input`'s
defaults (`training.fit.default_config`; never on the questions), as a user would fit one on their corpus.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import cached_embed, cached_head
from csrv2_vdb.benchmarks.datasets import answer_token_recall, chunk_words, load_corpus, load_questions
from csrv2_vdb.benchmarks.reports import pyplot, write_csv
from csrv2_vdb.encoder import mrl_truncate
from csrv2_vdb.training.data import TrainingSet
from csrv2_vdb.training.fit import default_config

TOP = 5


@dataclass
class Row:
    method: str
    active_dims: int
    recall_at_5: float
    bytes_per_vector: float
    median_latency_ms: float


def _timed_search(store, name: str, queries: Sequence, limit: int) -> tuple[list, float]:
    """One engine call per query (single-query latency); returns hits and the median in ms."""
    hits, times = [], []
    for q in queries:
        start = time.perf_counter()
        hits.append(store.search(name, q, limit=limit)[0])
        times.append(time.perf_counter() - start)
    return hits, 1000 * statistics.median(times)


def run_demo(
    data_dir: Path,
    out_dir: Path,
    cache_dir: Path,
    ks: Sequence[int] = (2, 4, 8, 32),
    dims: Sequence[int] = (2, 4, 8, 32),
    max_questions: int | None = None,
    console: Console | None = None,
) -> list[Row]:
    from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore

    console = console or Console()
    text = load_corpus(data_dir, "medical")
    questions = load_questions(data_dir, "medical")[:max_questions]
    chunks = chunk_words(text, prefix="medical")
    console.print(f"{len(chunks)} chunks (150 words, 30 overlap), {len(questions)} questions")

    backbone = Backbone()
    doc_x = cached_embed(backbone, [c.text for c in chunks], "document", cache_dir)
    query_x = cached_embed(backbone, [q.question for q in questions], "query", cache_dir)
    head = cached_head(cache_dir / "heads", "demo-label-free", doc_x,
                       default_config(TrainingSet(doc_x, None, "label-free", "")))  # fmt: skip

    ids = [c.id for c in chunks]
    texts = {c.id: c.text for c in chunks}
    payloads = [{"text": c.text, "position": c.position} for c in chunks]
    rows: list[Row] = []

    def score(hits: list) -> float:
        return float(
            np.mean(
                [
                    answer_token_recall(q.answer, [texts[h.id] for h in hs])
                    for q, hs in zip(questions, hits, strict=True)
                ]
            )
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    store_dir = out_dir / "store"
    with QdrantEdgeStore(store_dir) as store:
        for name in store.list_collections():
            store.drop_collection(name)
        for k in ks:
            docs = head.encode(doc_x, k)
            name = f"sparse-k{k}"
            store.create_collection(name, sparse_dim=head.hidden_dim)
            store.upsert(name, ids, sparse=docs, payloads=payloads)
            queries = head.encode(query_x, k)
            hits, latency = _timed_search(store, name, [queries[i : i + 1] for i in range(len(queries))], TOP)
            raw = float(docs.nnz.mean()) * 8  # uint32 index + float32 value per active dim
            rows.append(Row("sparse", k, score(hits), raw, latency))
        for m in [*dims, backbone.dim]:
            name = f"mrl-{m}" if m != backbone.dim else "dense"
            store.create_collection(name, dense_dim=m)
            store.upsert(name, ids, dense=mrl_truncate(doc_x, m), payloads=payloads)
            dense_queries = mrl_truncate(query_x, m)
            hits, latency = _timed_search(store, name, [dense_queries[i : i + 1] for i in range(len(questions))], TOP)
            method = "MRL" if m != backbone.dim else "dense"
            rows.append(Row(method, m, score(hits), 4.0 * m, latency))
    write_outputs(rows, out_dir, console)
    return rows


def write_outputs(rows: list[Row], out_dir: Path, console: Console) -> None:
    """Print the table, and write it as results.csv and results.png."""
    table = Table(title=f"GraphRAG-Bench medical: answer-token recall of the top-{TOP} chunks (qdrant-edge)")
    for column in ("method", "k/dims", f"recall@{TOP}", "bytes/vec", "p50 ms/query"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.method,
            str(r.active_dims),
            f"{r.recall_at_5:.3f}",
            f"{r.bytes_per_vector:.0f}",
            f"{r.median_latency_ms:.3f}",
        )
    console.print(table)
    write_csv(rows, out_dir / "results.csv")
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for method, marker in (("sparse", "o"), ("MRL", "s"), ("dense", "*")):
        sel = [r for r in rows if r.method == method]
        if sel:
            ax1.plot([r.active_dims for r in sel], [r.recall_at_5 for r in sel], marker=marker, label=method)
            ax2.plot([r.bytes_per_vector for r in sel], [r.recall_at_5 for r in sel], marker=marker, label=method)
    ax1.set(xscale="log", xlabel="active dims (k) / MRL dims", ylabel=f"answer-token recall@{TOP}")
    ax2.set(xscale="log", xlabel="bytes per stored vector", ylabel=f"answer-token recall@{TOP}")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "results.png", dpi=120)
    plt.close(fig)
    console.print(f"wrote {out_dir / 'results.csv'} and {out_dir / 'results.png'}")
