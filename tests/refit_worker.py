"""A refit in its own process, so that a test can SIGKILL it mid-write.

python -m tests.refit_worker STORE CHECKPOINT DELAY_PER_EMBED_CALL
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from csrv2_vdb.adapters import open_store
from csrv2_vdb.embedders import CallableEmbedder
from csrv2_vdb.refit import refit

DIM, TOPICS = 32, 12
_CENTRES = np.random.default_rng(7).normal(size=(TOPICS, DIM))


def vector(text: str) -> np.ndarray:
    """A deterministic embedding: the text's topic centre plus noise, both chosen by the text's hash."""
    h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    return _CENTRES[h % TOPICS] + 0.4 * np.random.default_rng(h % 2**32).normal(size=DIM)


def embedder(delay: float = 0.0) -> CallableEmbedder:
    def embed(texts: list[str], kind: str) -> np.ndarray:
        time.sleep(delay)
        return np.stack([vector(t) for t in texts])

    return CallableEmbedder(embed, DIM, "refit-test-topics")


def main() -> None:
    location, checkpoint, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    with open_store("qdrant-edge", location) as store:
        report = refit(store, "docs", embedder(delay), fit_sample=300, holdout=50, batch_size=20,
                       checkpoint=checkpoint, fit_overrides={"min_steps": 60}, progress=False)  # fmt: skip
    print("\n".join(report.lines()))


if __name__ == "__main__":
    main()
