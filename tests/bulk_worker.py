"""A bulk-indexing run in its own process, so that a test can SIGKILL it mid-way.

python -m tests.bulk_worker ENGINE LOCATION N CHECKPOINT DELAY_PER_BATCH
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from csrv2_vdb.adapters import open_store
from csrv2_vdb.bulk import bulk_index
from csrv2_vdb.sparse import SparseBatch

DIM, K, BATCH = 4096, 8, 100


def vectors_for(texts: list[str]) -> SparseBatch:
    """Deterministic codes from the text (a number n): latent n at 10.0 plus K-1 random latents below 1.01.

    Latent n is unique to document n, so every document is the top hit for its own vector.
    """
    indices, values = [], []
    for text in texts:
        n = int(text)
        rng = np.random.default_rng(n)
        others = rng.choice(np.delete(np.arange(DIM), n), K - 1, replace=False)
        indices.append([n, *others])
        values.append([10.0, *(rng.random(K - 1) + 0.01)])
    return SparseBatch(np.array(indices), np.array(values), DIM)


def records(n: int):
    return ({"id": f"doc-{i}", "text": str(i), "n": i} for i in range(n))


def main() -> None:
    engine, location, n, checkpoint, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])

    def encode(texts: list[str]) -> SparseBatch:
        time.sleep(delay)
        return vectors_for(texts)

    with open_store(engine, location) as store:
        store.create_collection("bulk", sparse_dim=DIM, exist_ok=True)
        report = bulk_index(
            store, "bulk", records(n), encode, batch_size=BATCH, checkpoint=Path(checkpoint),
            run={"engine": engine, "store": location},
            writers=2, progress=False,
        )  # fmt: skip
    print(f"written={report.rows_written} skipped_batches={report.batches_skipped}")


if __name__ == "__main__":
    main()
