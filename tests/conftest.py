"""Shared fixtures: the real offline backbone, random k-sparse data, the shared data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from csrv2_vdb.benchmarks.datasets import find_data_dir
from csrv2_vdb.sparse import SparseBatch


@pytest.fixture(scope="session")
def backbone():
    from csrv2_vdb.backbone import Backbone

    return Backbone()


@pytest.fixture(scope="session")
def head_dir(tmp_path_factory) -> Path:
    """An untrained (randomly initialised) head for the 384-dim backbone: enough to encode, index and search."""
    import torch

    from csrv2_vdb.head import SparseHead

    torch.manual_seed(0)
    return SparseHead(384, 1536, k=8).save(tmp_path_factory.mktemp("head") / "head")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = find_data_dir()
    if not (path / "graphrag-bench" / "medical_corpus.json").exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def random_sparse(n: int, dim: int, k: int, seed: int = 0) -> SparseBatch:
    """n rows with exactly k distinct indices and strictly positive values."""
    rng = np.random.default_rng(seed)
    indices = np.argsort(rng.random((n, dim)), axis=1)[:, :k]
    values = rng.random((n, k)).astype(np.float32) + 0.01
    return SparseBatch(indices, values, dim)
