"""Bulk indexing throughput per engine: rows/s for write-only and for encode-and-write, sparse vs dense.

    csrv2-vdb bench bulk [--rows 12000] [--encode-rows 256] [--out docs/bulk-throughput.json]

Write-only rows are real MiniLM embeddings of the GraphRAG-Bench medical corpus (sentences and
150-word chunks), coded by a sparse head (k = 8 and 32) or MRL-truncated (32 and 384 dims);
encode-and-write runs the backbone (and head) inside `bulk_index` on 150-word chunks. Every engine
gets the same rows in the same run; each figure is the median of --repeats runs into fresh collections.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from csrv2_vdb import Backbone, CSRv2Encoder, MRLEncoder, SparseHead, mrl_truncate
from csrv2_vdb.adapters import open_store
from csrv2_vdb.benchmarks.cache import cached_embed
from csrv2_vdb.benchmarks.datasets import chunk_words, load_corpus
from csrv2_vdb.benchmarks.tasks import corpus_sentences
from csrv2_vdb.bulk import bulk_index

# The embedded engines, by `open_store` name, and where each writes inside a run's folder.
ENGINES = {"qdrant-edge": "edge", "qdrant": "qdrant-local", "milvus": "milvus.db"}


def run(engine: str, root: Path, label: str, records: list[dict], encode, dims: dict, repeats: int) -> float:
    """Median rows/s of `repeats` bulk_index runs, each into a fresh store."""
    rates = []
    for r in range(repeats):
        with open_store(engine, str(root / f"{label}-{r}" / ENGINES[engine])) as store:
            store.create_collection("bench", **dims)
            report = bulk_index(store, "bench", records, encode, batch_size=256, progress=False)
            assert store.count("bench") == len(records)
            rates.append(report.rows_per_second)
    return statistics.median(rates)


def run_bulk_bench(data: Path, cache: Path, out: Path, rows: int = 12000, encode_rows: int = 256,
                   repeats: int = 3) -> dict:  # fmt: skip
    """Write-only and encode-and-write rows/s per embedded engine; writes and returns the JSON results."""
    backbone = Backbone()
    text = load_corpus(data)
    chunks = [c.text for c in chunk_words(text)]
    embeddings = cached_embed(backbone, corpus_sentences(text) + chunks, "document", cache)[:rows]
    torch.manual_seed(0)
    head = SparseHead(backbone.dim, k=32).eval()  # untrained codes: write cost depends on k, not on training
    ids = [f"row-{i}" for i in range(len(embeddings))]
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    records = [{"id": doc_id, "text": doc_id} for doc_id in ids]

    def precomputed(kind: str, size: int):
        def encode(keys: list[str]):
            rows = embeddings[[position[k] for k in keys]]
            return head.encode(rows, size) if kind == "sparse" else mrl_truncate(rows, size)

        return encode

    variants = [("sparse", 8), ("sparse", 32), ("dense", 32), ("dense", 384)]
    results: dict = {"rows": len(records), "encode_rows": encode_rows, "write_only": {}, "encode_and_write": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for engine in ENGINES:
            for kind, size in variants:
                dims = {"sparse_dim": head.hidden_dim} if kind == "sparse" else {"dense_dim": size}
                rate = run(engine, root, f"w-{engine}-{kind}{size}", records, precomputed(kind, size), dims, repeats)
                results["write_only"][f"{engine}/{kind}-{size}"] = rate
                print(f"write-only       {engine:13s} {kind}-{size:<4d} {rate:9.0f} rows/s", flush=True)
        chunk_records = [{"id": f"chunk-{i}", "text": t} for i, t in enumerate(chunks[:encode_rows])]
        sparse_encoder = CSRv2Encoder(backbone, head, k=32)
        dense_encoder = MRLEncoder(backbone, 32)
        for engine in ENGINES:
            for kind, encode, dims in (
                ("sparse-32", sparse_encoder.encode_documents, {"sparse_dim": head.hidden_dim}),
                ("dense-32", dense_encoder.encode_documents, {"dense_dim": 32}),
            ):
                rate = run(engine, root, f"e-{engine}-{kind}", chunk_records, encode, dims, 1)
                results["encode_and_write"][f"{engine}/{kind}"] = rate
                print(f"encode-and-write {engine:13s} {kind:9s} {rate:9.1f} rows/s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}; torch threads {torch.get_num_threads()}, numpy {np.__version__}")
    return results
