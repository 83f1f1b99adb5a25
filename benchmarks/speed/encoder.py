"""`csrv2-vdb bench encoder`: texts/s of the backbone alone and with the sparse head, batch 1 to 256.

Backbone and head run on the same batches, one right after the other, so machine noise hits both
alike; the head's share of the time is the overhead CSRv2 adds to embedding.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.datasets import chunk_words, load_corpus
from csrv2_vdb.benchmarks.reports import table
from csrv2_vdb.head import SparseHead, pretrained_head


@dataclass
class EncoderConfig:
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128, 256)
    texts_per_size: int = 256  # texts timed at every batch size (at least one batch)
    k: int = 32
    head: str | None = "minilm-medical-csrv2-k8"  # shipped head name; None: a random head of the same shape


def run_encoder_bench(settings: EncoderConfig, data_dir: Path) -> list[dict[str, Any]]:
    """One row per batch size: median ms per batch for backbone and head, texts/s without and with head."""
    backbone = Backbone()
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
