"""What only the embedded engine has: a directory lock, a filter type it cannot match, compact point ids and
Qdrant's sparse index options."""

import json
import subprocess
import sys
import textwrap

import numpy as np
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


UUID_ID = "6f1c3c5e-7a51-4f0e-9a43-c5b2d0f3a2e1"
MIXED_IDS = ["7", "0", UUID_ID, "doc-1", "007", UUID_ID.upper()]


def _stored(store, name, ids):
    """(point id, payload) of each stored point, read from the shard itself."""
    points = store._shard(name).retrieve([store._point(name, i) for i in ids], True, False)
    return {str(p.id): p.payload for p in points}


def test_compact_ids_store_integer_and_uuid_ids_as_point_ids_without_payload(tmp_path):
    codes = random_sparse(len(MIXED_IDS), 32, 4, seed=3)
    with QdrantEdgeStore(tmp_path / "db") as store:
        store.create_collection("c", sparse_dim=32)
        for _ in range(2):  # re-indexing overwrites: stable ids on both schemes
            store.upsert("c", MIXED_IDS, sparse=codes, payloads=[{"n": i} for i in range(len(MIXED_IDS))])
        assert store.count("c") == len(MIXED_IDS)
        stored = _stored(store, "c", MIXED_IDS)
        assert stored["7"] == {"n": 0} and stored["0"] == {"n": 1} and stored[UUID_ID] == {"n": 2}
        hashed = {p: v for p, v in stored.items() if p not in ("7", "0", UUID_ID)}
        assert sorted(v["_csrv2_id"] for v in hashed.values()) == sorted(["doc-1", "007", UUID_ID.upper()])
        hits = store.search("c", codes, limit=1)
        assert [h[0].id for h in hits] == MIXED_IDS and [h[0].payload["n"] for h in hits] == list(range(6))
        assert [h.id for h in store.get("c", MIXED_IDS[::-1])] == MIXED_IDS[::-1]
        store.delete("c", ["7", "doc-1"])
        assert store.count("c") == len(MIXED_IDS) - 2


def test_collections_written_without_compact_ids_keep_their_scheme(tmp_path):
    codes = random_sparse(3, 32, 4, seed=4)
    with QdrantEdgeStore(tmp_path / "db", compact_ids=False) as store:
        store.create_collection("old", sparse_dim=32)
        store.upsert("old", ["1", "2", "3"], sparse=codes)
        assert all(p["_csrv2_id"] for p in _stored(store, "old", ["1", "2", "3"]).values())
    with QdrantEdgeStore(tmp_path / "db") as store:  # compact_ids=True only governs new collections
        store.upsert("old", ["1", "2", "3"], sparse=codes)
        assert store.count("old") == 3
        assert [h[0].id for h in store.search("old", codes, limit=1)] == ["1", "2", "3"]


@pytest.mark.parametrize("datatype", ["float16", "uint8"])
def test_sparse_datatype_and_on_disk_index_are_applied_and_persist(tmp_path, datatype):
    codes = random_sparse(200, 64, 8, seed=5)
    with QdrantEdgeStore(tmp_path / "db", sparse_datatype=datatype, sparse_on_disk=True) as store:
        store.create_collection("q", sparse_dim=64)
        store.upsert("q", [str(i) for i in range(200)], sparse=codes)
        store.optimize("q")
        hits = store.search("q", codes[:20], limit=1)
    config = json.loads((tmp_path / "db" / "q" / "shard" / "edge_config.json").read_text())
    assert config["sparse_vectors"]["sparse"]["datatype"] == datatype, config
    assert config["sparse_vectors"]["sparse"]["memory"] == "cold", config
    dense = codes.to_dense()
    exact = (dense[:20] @ dense.T).max(axis=1)  # the best score each query can get
    scores = np.array([h[0].score for h in hits])
    # the returned scores stay float32 dot products (measured; what the fewer bits cost in ranking is measured
    # by `bench engine-options`)
    assert np.allclose(scores, exact, rtol=1e-5), (scores, exact)
    with QdrantEdgeStore(tmp_path / "db") as store:  # reopened with default options: the collection keeps its own
        assert [h[0].score for h in store.search("q", codes[:20], limit=1)] == list(scores)


def test_unknown_sparse_datatype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sparse_datatype"):
        QdrantEdgeStore(tmp_path / "db", sparse_datatype="int4")  # type: ignore[arg-type]


def test_payload_index_serves_filters_and_unknown_kinds_are_refused(tmp_path):
    codes = random_sparse(300, 32, 4, seed=6)
    with QdrantEdgeStore(tmp_path / "db") as store:
        store.create_collection("p", sparse_dim=32)
        store.create_payload_index("p", "part", "integer")
        store.upsert("p", [str(i) for i in range(300)], sparse=codes, payloads=[{"part": i % 10} for i in range(300)])
        assert "part" in store._shard("p").info().payload_schema
        hits = store.search("p", codes[:5], limit=10, filter={"part": 3})
        assert all(h.payload["part"] == 3 for row in hits for h in row) and any(hits)
        with pytest.raises(ValueError, match="payload index kind"):
            store.create_payload_index("p", "part", "geo")
