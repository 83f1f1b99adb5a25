"""Shared fixtures: the real offline backbone, random k-sparse data, the shared data folder."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

# With several pytest-xdist workers on one machine, each process (and the CLI processes tests start, which inherit
# the environment) gets its share of the cores for its compute threads; torch and BLAS default to every core per
# process, and the oversubscribed threads slowed the heaviest tests several times over.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, _share)

import numpy as np
import pytest

from csrv2_vdb.benchmarks.datasets import find_data_dir
from csrv2_vdb.sparse import SparseBatch


@pytest.fixture(scope="session", autouse=True)
def embedding_cache_dir(tmp_path_factory) -> Path:
    """The CLI's default embedding cache lives in a temporary folder, not in the user's home."""
    path = tmp_path_factory.mktemp("embed-cache")
    os.environ["CSRV2_CACHE_DIR"] = str(path)
    return path


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


@pytest.fixture(scope="session")
def data_slice(data_dir, tmp_path_factory):
    """A small copy of the shared data: 5,000 corpus words, 80 questions, three Banking77 intents."""
    root = tmp_path_factory.mktemp("slice")
    (root / "graphrag-bench").mkdir()
    (root / "banking77").mkdir()
    corpus = json.loads((data_dir / "graphrag-bench" / "medical_corpus.json").read_text())
    words = corpus[0]["context"].split()[:5000]
    (root / "graphrag-bench" / "medical_corpus.json").write_text(json.dumps([{"context": " ".join(words)}]))
    questions = json.loads((data_dir / "graphrag-bench" / "medical_questions.json").read_text())[:80]
    (root / "graphrag-bench" / "medical_questions.json").write_text(json.dumps(questions))
    for split, n in (("train", 400), ("test", 150)):
        with open(data_dir / "banking77" / f"{split}.csv", newline="") as f:
            rows = [
                r
                for r in csv.DictReader(f)
                if r["category"] in ("card_arrival", "exchange_rate", "lost_or_stolen_card")
            ]
        with open(root / "banking77" / f"{split}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows(rows[:n])
    return root


def assert_real_plot(path: Path) -> None:
    """A PNG that is a picture: readable, at least 300x200 pixels, and not one flat colour."""
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= 200 and pixels.shape[1] >= 300, pixels.shape
    assert float(pixels[..., :3].std()) > 0.01


@pytest.fixture
def own_server():
    """A PostgreSQL server of the test's own, which it may kill, restart or reconfigure (stopped and deleted after).
    Its folder is not under pytest's temporary root: the server runs as another user, and any pytest started on
    the machine meanwhile sets that root back to owner-only (a restart then failed with "Permission denied")."""
    import shutil
    import tempfile

    from tests.engines import OwnPgServer

    folder = Path(tempfile.mkdtemp(prefix="csrv2-pg-own-"))
    server = OwnPgServer(folder / "pg")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)
