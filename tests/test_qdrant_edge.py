"""What only the embedded engine has: a directory lock, and a filter type it cannot match."""

import subprocess
import sys
import textwrap

import pytest

from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
from csrv2_vdb.errors import StoreLockedError
from tests.conftest import random_sparse


def test_second_process_gets_a_clear_error(tmp_path):
    path = tmp_path / "db"
    with QdrantEdgeStore(path) as s:
        s.create_collection("x", sparse_dim=8)
        code = textwrap.dedent(f"""
            from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
            from csrv2_vdb.errors import StoreLockedError
            try:
                QdrantEdgeStore({str(path)!r})
            except StoreLockedError as exc:
                print("LOCKED:", exc)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "LOCKED:" in out.stdout and "another process" in out.stdout, out.stderr
    # once closed, the directory can be opened again
    QdrantEdgeStore(path).close()
    with QdrantEdgeStore(path), pytest.raises(StoreLockedError):
        # a second handle in the same process is refused as well
        QdrantEdgeStore(path)


def test_boolean_filters_are_refused_clearly(tmp_path):
    with QdrantEdgeStore(tmp_path / "db") as store:
        store.create_collection("f", sparse_dim=16)
        store.upsert("f", ["a"], sparse=random_sparse(1, 16, 2), payloads=[{"flag": True}])
        with pytest.raises(ValueError, match="boolean"):
            store.count("f", {"flag": True})
        with pytest.raises(ValueError, match="boolean"):
            store.search("f", random_sparse(1, 16, 2), filter={"flag": [True, False]})


def test_hnsw_and_flat_dense_indexes_after_optimize(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [str(i) for i in range(len(x))]
    exact = np.argsort(-(x[:20] @ x.T), axis=1)[:, :10]
    for kind in ("flat", "hnsw"):
        with QdrantEdgeStore(tmp_path / kind, dense_index=kind) as store:
            store.create_collection("d", dense_dim=32)
            store.upsert("d", ids, dense=x)
            assert isinstance(store.optimize("d"), bool)  # merges segments, builds the graph where configured
            hits = store.search("d", x[:20], limit=10)
            found = np.array([[int(h.id) for h in row] for row in hits])
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
            assert recall == 1.0 if kind == "flat" else recall > 0.9
    with pytest.raises(ValueError, match="dense_index"):
        QdrantEdgeStore(tmp_path / "bad", dense_index="ivf")  # type: ignore[arg-type]
