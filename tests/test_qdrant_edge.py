"""The embedded engine (qdrant-edge, Qdrant's Rust engine in-process) against numpy brute force."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore

from csrv2_vdb.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DimensionMismatchError,
    InvalidEmbeddingError,
    StoreLockedError,
)
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import Range, SparseStore
from tests.conftest import random_sparse

N, DIM, K = 10_000, 4096, 8


@pytest.fixture
def store(tmp_path):
    with QdrantEdgeStore(tmp_path / "db") as s:
        yield s


@pytest.fixture(scope="module")
def corpus():
    return random_sparse(N, DIM, K, seed=7), random_sparse(100, DIM, 16, seed=8)


def _ids(n: int) -> list[str]:
    return [f"doc-{i}" for i in range(n)]


def test_is_a_sparse_store(store):
    assert isinstance(store, SparseStore)


def test_sparse_top10_is_exact_on_10k_random_vectors(store, corpus):
    docs, queries = corpus
    store.create_collection("s", sparse_dim=DIM)
    for start in range(0, N, 2000):
        store.upsert("s", _ids(N)[start : start + 2000], sparse=docs[start : start + 2000])
    assert store.count("s") == N
    exact = queries.dot(docs)
    hits = store.search("s", queries, limit=10)
    for q, row in enumerate(hits):
        scores = np.array([h.score for h in row])
        top = np.sort(exact[q])[::-1][:10]
        assert len(row) == min(10, int((exact[q] > 0).sum()))
        np.testing.assert_allclose(scores, top[: len(row)], atol=1e-6)
        # each returned id really has the score the engine claims
        got = np.array([exact[q, int(h.id.split("-")[1])] for h in row])
        np.testing.assert_allclose(got, scores, atol=1e-6)


def test_dense_search_is_exact(store):
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(2000, 32)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:20] + 0.1 * rng.normal(size=(20, 32)).astype(np.float32)
    store.create_collection("d", dense_dim=32)
    store.upsert("d", _ids(2000), dense=docs)
    exact = queries @ docs.T
    for q, row in enumerate(store.search("d", queries, limit=10)):
        np.testing.assert_allclose([h.score for h in row], np.sort(exact[q])[::-1][:10], atol=1e-5)


def test_filters_upsert_overwrite_delete_count(store):
    docs = random_sparse(300, 64, 4, seed=3)
    payloads = [{"group": ["a", "b", "c"][i % 3], "year": 2000 + i % 10, "even": i % 2} for i in range(300)]
    store.create_collection("f", sparse_dim=64)
    store.upsert("f", _ids(300), sparse=docs, payloads=payloads)
    assert store.count("f", {"group": "a"}) == 100
    assert store.count("f", {"group": ["a", "b"]}) == 200
    assert store.count("f", {"year": Range(gte=2005)}) == 150
    assert store.count("f", {"group": "a", "even": 0}) == 50
    assert store.count("f", {"year": 2003.0}) == 30
    with pytest.raises(ValueError, match="boolean"):
        store.count("f", {"even": True})
    query = random_sparse(1, 64, 16, seed=4)
    for hit in store.search("f", query, limit=50, filter={"group": "b"})[0]:
        assert hit.payload["group"] == "b" and int(hit.id.split("-")[1]) % 3 == 1

    # re-upserting an id overwrites its vector and payload; no duplicate appears
    store.upsert("f", ["doc-0"], sparse=SparseBatch(np.array([[5]]), np.array([[9.0]]), 64), payloads=[{"group": "z"}])
    assert store.count("f") == 300
    top = store.search("f", SparseBatch(np.array([[5]]), np.array([[1.0]]), 64), limit=1)[0][0]
    assert (top.id, top.score, top.payload) == ("doc-0", 9.0, {"group": "z"})

    store.delete("f", ["doc-0", "doc-1", "never-existed"])
    assert store.count("f") == 298
    assert "doc-0" not in {h.id for h in store.search("f", query, limit=300)[0]}


def test_persistence_across_reopen(tmp_path):
    docs = random_sparse(500, 128, 4, seed=5)
    with QdrantEdgeStore(tmp_path / "db") as s:
        s.create_collection("p", sparse_dim=128)
        s.upsert("p", _ids(500), sparse=docs, payloads=[{"n": i} for i in range(500)])
        before = s.search("p", docs[:5], limit=3)
    with QdrantEdgeStore(tmp_path / "db") as s:
        assert s.list_collections() == ["p"]
        assert s.count("p") == 500
        assert s.search("p", docs[:5], limit=3) == before


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


def test_missing_collection_and_dimension_errors(store):
    with pytest.raises(CollectionNotFoundError, match="'nope' does not exist"):
        store.search("nope", random_sparse(1, 8, 2), limit=3)
    with pytest.raises(CollectionNotFoundError):
        store.count("nope")
    store.create_collection("s", sparse_dim=64)
    with pytest.raises(CollectionExistsError):
        store.create_collection("s", sparse_dim=128)
    assert store.create_collection("s", sparse_dim=64, exist_ok=True).sparse_dim == 64
    with pytest.raises(DimensionMismatchError, match="64-dim"):
        store.upsert("s", ["a"], sparse=random_sparse(1, 128, 2))
    with pytest.raises(DimensionMismatchError, match="no dense"):
        store.search("s", np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="2 ids but 1"):
        store.upsert("s", ["a", "b"], sparse=random_sparse(1, 64, 2))
    with pytest.raises(ValueError, match="reserved"):
        store.upsert("s", ["a"], sparse=random_sparse(1, 64, 2), payloads=[{"_id": "x"}])
    store.create_collection("d", dense_dim=4)
    with pytest.raises(InvalidEmbeddingError):
        store.upsert("d", ["a"], dense=np.array([[np.nan, 0, 0, 1]]))
    store.drop_collection("d")
    assert store.list_collections() == ["s"]


def test_empty_query_returns_no_hits(store):
    store.create_collection("s", sparse_dim=16)
    store.upsert("s", _ids(3), sparse=random_sparse(3, 16, 2))
    empty = SparseBatch(np.zeros((1, 2), dtype=np.int32), np.zeros((1, 2), dtype=np.float32), 16)
    assert store.search("s", empty, limit=5) == [[]]


def test_hybrid_search_fuses_both_lists(store):
    rng = np.random.default_rng(1)
    sparse = random_sparse(200, 64, 4, seed=9)
    dense = rng.normal(size=(200, 16)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    store.create_collection("h", sparse_dim=64, dense_dim=16)
    store.upsert("h", _ids(200), sparse=sparse, dense=dense, payloads=[{"g": i % 2} for i in range(200)])
    # doc-7 is the best match in both spaces: it must come first after fusion, with either method
    for fusion in ("rrf", "dbsf"):
        hits = store.hybrid_search("h", sparse[7:8], dense[7:8], limit=5, fusion=fusion)[0]
        assert hits[0].id == "doc-7" and len(hits) == 5
        s_ids = {h.id for h in store.search("h", sparse[7:8], limit=10)[0]}
        d_ids = {h.id for h in store.search("h", dense[7:8], limit=10)[0]}
        assert {h.id for h in hits} <= s_ids | d_ids
    filtered = store.hybrid_search("h", sparse[7:8], dense[7:8], limit=5, filter={"g": 0})[0]
    assert filtered and all(h.payload["g"] == 0 for h in filtered)
