"""On-disk caches the harnesses share: embeddings of exact text lists, and heads trained on exact rows and settings.

Keys hash the model settings and the exact inputs, so a changed corpus or setting never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csrv2_vdb.backbone import Backbone, Kind
from csrv2_vdb.head import SparseHead
from csrv2_vdb.training.trainer import HeadTrainConfig, train_head


def cached_embed(backbone: Backbone, texts: Sequence[str], kind: Kind, cache_dir: str | Path) -> np.ndarray:
    """`backbone.embed` with an on-disk .npy cache keyed by model, settings and the exact texts."""
    digest = hashlib.sha256(backbone.fingerprint(kind).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    path = Path(cache_dir) / f"emb-{kind}-{digest.hexdigest()[:20]}.npy"
    if path.exists():
        return np.load(path)
    vectors = backbone.embed(texts, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # one per process: two runs may fill the same entry
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


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
