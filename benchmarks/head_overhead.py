"""Head overhead in CSRv2Encoder.encode_documents: head time / backbone time at batch 64, side by side.

    python benchmarks/head_overhead.py [--batches 20] [--k 32] [--data ../shared/data]

Both parts run on the same 64-chunk batches, interleaved, so machine noise hits them alike.
Texts are 150-word chunks of the GraphRAG-Bench medical corpus (or generated sentences without it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from csrv2_vdb import Backbone, SparseHead
from csrv2_vdb.data import chunk_words, find_data_dir, load_corpus
from csrv2_vdb.errors import DataNotFoundError


def texts(data: Path, n: int) -> list[str]:
    try:
        return [c.text for c in chunk_words(load_corpus(data))[:n]]
    except DataNotFoundError:
        return [f"Sentence {i} about treatment options, side effects and follow-up care. " * 12 for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--data", type=Path, default=find_data_dir())
    args = parser.parse_args()

    backbone = Backbone()
    torch.manual_seed(0)
    head = SparseHead(backbone.dim, k=args.k).eval()
    corpus = texts(args.data, args.batches * args.batch_size)
    backbone.embed(corpus[: args.batch_size])  # warm-up
    back_t, head_t = [], []
    for b in range(args.batches):
        batch = corpus[b * args.batch_size : (b + 1) * args.batch_size]
        start = time.perf_counter()
        dense = backbone.embed(batch, "document", progress=False)
        mid = time.perf_counter()
        head.encode(dense, args.k)
        end = time.perf_counter()
        back_t.append(mid - start)
        head_t.append(end - mid)
    ratios = [h / b for h, b in zip(head_t, back_t, strict=True)]
    print(
        f"batch {args.batch_size}, {args.batches} batches, k={args.k}, h={head.hidden_dim}, "
        f"torch threads={torch.get_num_threads()}"
    )
    print(f"backbone: median {1000 * statistics.median(back_t):.1f} ms/batch")
    print(f"head:     median {1000 * statistics.median(head_t):.3f} ms/batch")
    print(
        f"head overhead: median {100 * statistics.median(ratios):.2f}% of backbone time "
        f"(min {100 * min(ratios):.2f}%, max {100 * max(ratios):.2f}%)"
    )


if __name__ == "__main__":
    main()
