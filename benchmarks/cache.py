"""On-disk caches the harnesses share: embeddings (the library's per-text cache) and heads trained on exact rows
and settings (keyed by a hash of the settings and the exact inputs, so a changed setting never reads a stale head).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csrv2_vdb.embed_cache import CachedEmbedder
from csrv2_vdb.embedders import Embedder, Kind
from csrv2_vdb.head import SparseHead
from csrv2_vdb.training.trainer import HeadTrainConfig, train_head


def cached_embed(embedder: Embedder, texts: Sequence[str], kind: Kind, cache_dir: str | Path) -> np.ndarray:
    """`embedder.embed` through the library's embedding cache in `cache_dir` (one SQLite file, keyed per text)."""
    return CachedEmbedder(embedder, Path(cache_dir) / "embeddings.sqlite").embed(texts, kind)


def fingerprint(settings: object, *arrays: np.ndarray | None) -> str:
    """A short hash of settings and the exact training arrays: the cache key of a trained artefact."""
    digest = hashlib.sha256(repr(settings).encode())
    for array in arrays:
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]


def cached_head(
    cache_dir: str | Path, name: str, embeddings: np.ndarray, config: HeadTrainConfig, labels: np.ndarray | None = None
) -> SparseHead:
    """The head trained on exactly these rows, labels and settings: loaded from `cache_dir/<name>-<hash>`, or
    trained and saved there (with its config) when missing."""
    directory = Path(cache_dir) / f"{name}-{fingerprint(config, embeddings, labels)}"
    if (directory / "model.safetensors").exists():
        return SparseHead.load(directory)
    head = train_head(embeddings, config, labels).head
    head.save(directory)
    config.save(directory / "training-config.json")
    return head
