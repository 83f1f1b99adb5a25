"""`csrv2-vdb bench encoder`: texts/s of the backbone alone and with the sparse head, batch 1 to 256; the
backbone's runtimes (torch, ONNX Runtime fp32, ONNX Runtime int8) side by side; and a query end to end
(encode + search in an embedded qdrant-edge collection) per runtime.

Backbone and head run on the same batches, one right after the other, so machine noise hits both
alike; the head's share of the time is the overhead CSRv2 adds to embedding. The runtimes take turns on
every query and every bulk batch for the same reason.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csrv2_vdb.backbone import Backbone, Runtime
from csrv2_vdb.benchmarks.datasets import chunk_words, load_corpus
from csrv2_vdb.benchmarks.reports import table
from csrv2_vdb.head import SparseHead, pretrained_head


@dataclass
class EncoderConfig:
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128, 256)
    texts_per_size: int = 256  # texts timed at every batch size (at least one batch)
    k: int = 32
    head: str | None = "minilm-medical-csrv2-k8"  # shipped head name; None: a random head of the same shape
    runtime: Runtime = "auto"  # the backbone's runtime for the batch-size table


def run_encoder_bench(settings: EncoderConfig, data_dir: Path) -> list[dict[str, Any]]:
    """One row per batch size: median ms per batch for backbone and head, texts/s without and with head."""
    backbone = Backbone(runtime=settings.runtime)
    head = pretrained_head(settings.head) if settings.head else SparseHead(backbone.dim, k=settings.k)
    needed = max(settings.texts_per_size, max(settings.batch_sizes))
    chunks = chunk_words(load_corpus(data_dir))
    texts = [chunks[i % len(chunks)].text for i in range(needed)]
    backbone.embed(texts[:8], "document", progress=False)  # warm-up
    rows = []
    for size in settings.batch_sizes:
        back, top = [], []
        for start in range(0, max(size, settings.texts_per_size), size):
            batch = texts[start : start + size]
            if len(batch) < size:
                break
            t0 = time.perf_counter()
            dense = backbone.embed(batch, "document", progress=False)
            t1 = time.perf_counter()
            head.encode(dense, settings.k)
            t2 = time.perf_counter()
            back.append(t1 - t0)
            top.append(t2 - t1)
        b, h = statistics.median(back), statistics.median(top)
        rows.append(
            {
                "batch": size,
                "batches": len(back),
                "backbone_ms": 1000 * b,
                "head_ms": 1000 * h,
                "texts_per_s_backbone": size / b,
                "texts_per_s_with_head": size / (b + h),
                "head_share": statistics.median(x / y for x, y in zip(top, back, strict=True)),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], settings: EncoderConfig, command: str) -> str:
    lines = [
        "## Encoder throughput (backbone alone vs with the head)",
        "",
        f"Reproduce: `{command}`. all-MiniLM-L6-v2 on 150-word medical chunks; head `{settings.head}` "
        f"at k = {settings.k}; medians over the batches of {settings.texts_per_size} texts per batch size.",
        "",
    ]
    header = ["batch", "backbone ms/batch", "head ms/batch", "texts/s backbone", "texts/s with head", "head / backbone"]
    lines += table(header, [[r["batch"], f"{r['backbone_ms']:.1f}", f"{r['head_ms']:.2f}",
                             f"{r['texts_per_s_backbone']:.1f}", f"{r['texts_per_s_with_head']:.1f}",
                             f"{r['head_share']:.2%}"] for r in rows])  # fmt: skip
    return "\n".join(lines) + "\n"


QUESTIONS = ["What is the most common type of skin cancer?", "How does radiation therapy damage cancer cells?",
             "Which vitamin deficiency causes scurvy?", "What are the symptoms of a heart attack?"]  # fmt: skip


def run_runtime_bench(
    data_dir: Path, queries: int = 60, bulk_texts: int = 128, batch: int = 64
) -> list[dict[str, Any]]:
    """Per runtime: query latency at batch 1 (p50, p90), bulk texts/s on 150-word chunks, and the cosine of its
    vectors with torch's (min, mean); the runtimes alternate on every call."""
    runtimes: dict[str, Callable[[], Backbone]] = {
        "torch": lambda: Backbone(runtime="torch"),
        "onnx": lambda: Backbone(runtime="onnx"),
        "onnx-int8": lambda: Backbone(runtime="onnx", quantize=True),
    }
    models = {name: make() for name, make in runtimes.items()}
    chunks = chunk_words(load_corpus(data_dir))
    texts = [chunks[i % len(chunks)].text for i in range(bulk_texts)]
    reference = models["torch"].embed(texts, "document", progress=False)
    for model in models.values():
        model.embed(texts[:batch], "document", progress=False)  # warm-up
    latency: dict[str, list[float]] = {name: [] for name in models}
    bulk: dict[str, list[float]] = {name: [] for name in models}
    for i in range(queries):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.embed([QUESTIONS[i % len(QUESTIONS)]], "query", progress=False)
            latency[name].append(time.perf_counter() - t0)
    for start in range(0, bulk_texts, batch):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.embed(texts[start : start + batch], "document", progress=False)
            bulk[name].append(time.perf_counter() - t0)
    rows = []
    for name, model in models.items():
        cos = (model.embed(texts, "document", progress=False) * reference).sum(axis=1)
        rows.append({
            "runtime": name, "query_p50_ms": 1000 * float(np.median(latency[name])),
            "query_p90_ms": 1000 * float(np.percentile(latency[name], 90)),
            "bulk_texts_per_s": bulk_texts / sum(bulk[name]), "cos_min": float(cos.min()),
            "cos_mean": float(cos.mean()),
        })  # fmt: skip
    return rows


def run_end_to_end(
    data_dir: Path, work: Path, n: int = 100_000, k: int = 8, queries: int = 100
) -> list[dict[str, Any]]:
    """Per runtime: p50 / p90 of a query's encode (backbone + default head), of its qdrant-edge search (top 10)
    and of both, at batch 1. The collection holds `n` codes: the medical chunks' codes under fresh ids, repeated
    (the real latent distribution and posting lengths); the runtimes alternate on every query."""
    from csrv2_vdb.adapters import open_store
    from csrv2_vdb.benchmarks.speed.corpus import fill_repeated
    from csrv2_vdb.encoder import CSRv2Encoder

    chunks = chunk_words(load_corpus(data_dir))
    models = {"torch": Backbone(runtime="torch"), "onnx": Backbone(runtime="onnx"),
              "onnx-int8": Backbone(runtime="onnx", quantize=True)}  # fmt: skip
    encoders = {name: CSRv2Encoder(model, pretrained_head(), k=k) for name, model in models.items()}
    codes = encoders["onnx"].encode_documents([c.text for c in chunks])
    timings: dict[str, dict[str, list[float]]] = {name: {"encode": [], "search": []} for name in encoders}
    with open_store("qdrant-edge", str(work)) as store:
        store.create_collection("e2e", sparse_dim=codes.dim, exist_ok=True)
        fill_repeated(store, "e2e", codes, n)
        questions = [QUESTIONS[i % len(QUESTIONS)] + f" ({i})" for i in range(queries)]  # no cache can answer
        for encoder in encoders.values():
            store.search("e2e", encoder.encode_queries(questions[:2]), limit=10)  # warm-up
        for question in questions:
            for name, encoder in encoders.items():
                t0 = time.perf_counter()
                code = encoder.encode_queries([question])
                t1 = time.perf_counter()
                store.search("e2e", code, limit=10)
                t2 = time.perf_counter()
                timings[name]["encode"].append(t1 - t0)
                timings[name]["search"].append(t2 - t1)
        store.drop_collection("e2e")
    rows = []
    for name, t in timings.items():
        total = np.add(t["encode"], t["search"])
        rows.append({"runtime": name, "n": n, "k": k, **{
            f"{part}_{q}_ms": 1000 * float(np.percentile(values, q))
            for part, values in (("encode", t["encode"]), ("search", t["search"]), ("total", total)) for q in (50, 90)
        }})  # fmt: skip
    return rows


def end_to_end_markdown(rows: list[dict[str, Any]], command: str) -> str:
    first = rows[0]
    lines = ["## A query end to end: encode + search (side by side, alternating)", "",
             f"Reproduce: `{command}`. One question at a time through `CSRv2Encoder` (all-MiniLM-L6-v2 + the "
             f"default head, k = {first['k']}) and a top-10 search of an embedded qdrant-edge collection of "
             f"{first['n']:,} codes (the medical chunks' codes, repeated).", ""]  # fmt: skip
    header = ["runtime", "encode p50 ms", "search p50 ms", "total p50 ms", "total p90 ms", "total vs torch (p50)"]
    lines += table(header, [[r["runtime"], f"{r['encode_50_ms']:.1f}", f"{r['search_50_ms']:.2f}",
                             f"{r['total_50_ms']:.1f}", f"{r['total_90_ms']:.1f}",
                             f"{first['total_50_ms'] / r['total_50_ms']:.2f}x"] for r in rows])  # fmt: skip
    return "\n".join(lines) + "\n"


def runtime_markdown(rows: list[dict[str, Any]], command: str) -> str:
    torch_row = rows[0]
    lines = ["## Backbone runtimes (side by side, alternating)", "",
             f"Reproduce: `{command}`. all-MiniLM-L6-v2; queries are short questions at batch 1; bulk is 150-word "
             "medical chunks in batches of 64; cosine against torch's vectors for the same chunks.", ""]  # fmt: skip
    header = ["runtime", "query p50 ms", "query p90 ms", "speed-up (p50)", "bulk texts/s", "cos min", "cos mean"]
    lines += table(header, [[r["runtime"], f"{r['query_p50_ms']:.1f}", f"{r['query_p90_ms']:.1f}",
                             f"{torch_row['query_p50_ms'] / r['query_p50_ms']:.2f}x", f"{r['bulk_texts_per_s']:.1f}",
                             f"{r['cos_min']:.5f}", f"{r['cos_mean']:.5f}"] for r in rows])  # fmt: skip
    return "\n".join(lines) + "\n"
