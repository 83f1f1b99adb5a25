"""One suite, every engine that runs here: same data, same assertions (exactness against numpy brute force)."""

import numpy as np
import pytest

from csrv2_vdb.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DimensionMismatchError,
    EncoderMismatchError,
    InvalidArgumentError,
    InvalidEmbeddingError,
    UnsupportedError,
)
from csrv2_vdb.filters import Range
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import SparseStore
from tests.conftest import random_sparse
from tests.engines import ENGINES, SCORE_RTOL, open_engine

N, DIM, K = 10_000, 4096, 8


@pytest.fixture(params=sorted(ENGINES))
def engine(request, tmp_path):
    """(store, reopen): reopen() closes the store and opens the same location again."""
    state = {"store": open_engine(request.param, tmp_path)}

    def reopen() -> SparseStore:
        state["store"].close()
        state["store"] = open_engine(request.param, tmp_path)
        return state["store"]

    yield state["store"], reopen, request.param
    for name in state["store"].list_collections():  # a real cluster keeps nothing from the tests
        state["store"].drop_collection(name)
    state["store"].close()


@pytest.fixture(scope="module")
def corpus():
    return random_sparse(N, DIM, K, seed=7), random_sparse(100, DIM, 16, seed=8)


def _ids(n: int) -> list[str]:
    return [f"doc-{i}" for i in range(n)]


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_is_a_sparse_store(engine):
    """The adapter has every protocol member, with the protocol's parameters (names, kinds, defaults)."""
    import inspect

    store = engine[0]
    assert isinstance(store, SparseStore)
    assert isinstance(store.transient_errors, tuple) and all(
        issubclass(e, BaseException) for e in store.transient_errors
    )
    for member in ("create_collection", "drop_collection", "list_collections", "collection_info", "upsert", "search",
                   "hybrid_search", "rerank_search", "delete", "count", "close"):  # fmt: skip
        want = inspect.signature(getattr(SparseStore, member)).parameters
        have = inspect.signature(getattr(type(store), member)).parameters
        assert [(p.name, p.kind, p.default) for p in have.values()] == [
            (p.name, p.kind, p.default) for p in want.values()
        ], member


def test_sparse_top10_is_exact_on_10k_random_vectors(engine, corpus):
    """Exact engines: scores within 1e-6 of numpy. Elasticsearch: within its 9-bit precision, and the ranking
    still exact wherever the exact scores are further apart than that precision."""
    store, _, name = engine
    rtol = SCORE_RTOL.get(name, 0.0)
    docs, queries = corpus
    store.create_collection("s", sparse_dim=DIM)
    for start in range(0, N, 2500):
        store.upsert("s", _ids(N)[start : start + 2500], sparse=docs[start : start + 2500])
    assert store.count("s") == N
    exact = queries.dot(docs)
    for q, row in enumerate(store.search("s", queries, limit=10)):
        scores = np.array([h.score for h in row])
        assert len(row) == min(10, int((exact[q] > 0).sum()))
        mine = np.array([exact[q, int(h.id.split("-")[1])] for h in row])
        np.testing.assert_allclose(scores, mine, rtol=rtol, atol=1e-6)  # each score is that document's
        top = np.sort(exact[q])[::-1]
        np.testing.assert_allclose(mine, top[: len(row)], atol=1e-6 + 2 * rtol * top[0])
        if rtol == 0:
            continue
        # a document left out may beat one returned only by less than the stored precision
        returned = {int(h.id.split("-")[1]) for h in row}
        outside = np.delete(exact[q], sorted(returned))
        assert outside.max() <= mine.min() * (1 + 2 * rtol) + 1e-6


def test_dense_top10_is_exact(engine):
    store, *_ = engine
    docs, queries = _unit(2000, 32, 0), _unit(20, 32, 1)
    store.create_collection("d", dense_dim=32)
    store.upsert("d", _ids(2000), dense=docs)
    exact = queries @ docs.T
    for q, row in enumerate(store.search("d", queries, limit=10)):
        np.testing.assert_allclose([h.score for h in row], np.sort(exact[q])[::-1][:10], atol=1e-5)


def test_filters(engine):
    store, _, name = engine
    docs = random_sparse(300, 64, 4, seed=3)
    payloads = [{"group": ["a", "b", "c"][i % 3], "year": 2000 + i % 10, "parity": i % 2} for i in range(300)]
    store.create_collection("f", sparse_dim=64)
    store.upsert("f", _ids(300), sparse=docs, payloads=payloads)
    assert store.count("f", {"group": "a"}) == 100
    assert store.count("f", {"group": ["a", "b"]}) == 200
    assert store.count("f", {"year": Range(gte=2005)}) == 150
    assert store.count("f", {"year": Range(gt=2002, lt=2005)}) == 60
    assert store.count("f", {"group": "a", "parity": 0}) == 50
    assert store.count("f", {"year": 2003.0}) == 30
    query = random_sparse(1, 64, 16, seed=4)
    hits = store.search("f", query, limit=50, filter={"group": "b", "year": Range(lte=2004)})[0]
    assert hits and all(h.payload["group"] == "b" and h.payload["year"] <= 2004 for h in hits)
    true = query.dot(docs)[0]
    allowed = [i for i in range(300) if i % 3 == 1 and 2000 + i % 10 <= 2004 and true[i] > 0]
    best = sorted(allowed, key=lambda i: -true[i])[:50]
    # exactly the best filtered matches; where the 50th place ties, any of the tied documents may fill it
    assert len(hits) == len(best) and {h.id for h in hits} <= {f"doc-{i}" for i in allowed}
    floor = true[best[-1]] * (1 - SCORE_RTOL.get(name, 0.0)) - 1e-6
    assert all(true[int(h.id.split("-")[1])] >= floor for h in hits)


def test_a_collection_remembers_the_encoder_that_wrote_it(engine):
    store, reopen, _ = engine
    store.create_collection("e", sparse_dim=64, encoder="csrv2-head:aaaa")
    store.create_collection("plain", sparse_dim=64)
    store = reopen()
    assert store.collection_info("e").encoder == "csrv2-head:aaaa"
    assert store.collection_info("plain").encoder is None
    store.create_collection("e", sparse_dim=64, exist_ok=True, encoder="csrv2-head:aaaa")
    with pytest.raises(EncoderMismatchError, match="not comparable"):
        store.create_collection("e", sparse_dim=64, exist_ok=True, encoder="csrv2-head:bbbb")
    with pytest.raises(ValueError, match="encoder must name"):
        store.create_collection("d", dense_dim=4, encoder="csrv2-head:aaaa")


def test_upsert_overwrites_and_delete(engine):
    store, *_ = engine
    store.create_collection("u", sparse_dim=64)
    store.upsert("u", _ids(100), sparse=random_sparse(100, 64, 4), payloads=[{"v": 1}] * 100)
    new = SparseBatch(np.array([[5]]), np.array([[9.0]]), 64)
    store.upsert("u", ["doc-0"], sparse=new, payloads=[{"v": 2}])
    assert store.count("u") == 100
    top = store.search("u", SparseBatch(np.array([[5]]), np.array([[1.0]]), 64), limit=1)[0][0]
    assert (top.id, top.score, top.payload) == ("doc-0", pytest.approx(9.0), {"v": 2})
    store.delete("u", ["doc-0", "doc-1", "never-existed"])
    assert store.count("u") == 98
    assert store.count("u", {"v": 2}) == 0


def test_get_returns_stored_documents_by_id_in_the_order_asked(engine):
    from csrv2_vdb.store import Gettable

    store, *_ = engine
    assert isinstance(store, Gettable)
    store.create_collection("g", sparse_dim=64, dense_dim=8)
    payloads = [{"text": f"t{i}", "n": i, "tags": ["a", "b"]} for i in range(5)]
    store.upsert("g", _ids(5), sparse=random_sparse(5, 64, 4), dense=_unit(5, 8, 1), payloads=payloads)
    got = store.get("g", ["doc-3", "missing", "doc-0", "doc-3"])
    assert [(h.id, h.payload) for h in got] == [("doc-3", payloads[3]), ("doc-0", payloads[0])]
    assert store.get("g", []) == []


def test_codes_returns_the_stored_codes_by_id(engine):
    """What explained hits read: each document's code as the engine holds it (Lucene rounds values)."""
    from csrv2_vdb.store import CodesReadable

    store, _, name = engine
    assert isinstance(store, CodesReadable)
    codes = random_sparse(6, 64, 4)
    store.create_collection("codes", sparse_dim=64)
    store.upsert("codes", _ids(6), codes)
    got = store.codes("codes", ["doc-4", "doc-1", "doc-4"])
    want = codes[[4, 1, 4]]
    np.testing.assert_allclose(got.to_dense(), want.to_dense(), rtol=SCORE_RTOL.get(name, 1e-6))
    with pytest.raises(InvalidArgumentError, match="no document 'nope'"):
        store.codes("codes", ["doc-0", "nope"])


def test_explained_contributions_add_up_to_each_hits_score(engine, corpus):
    """search --explain's decomposition, on what the engine stored and scored: the contributions (query value x
    stored value over shared latents) sum to the engine's score."""
    from csrv2_vdb.explain import explain_hits

    store, _, name = engine
    docs, queries = corpus
    store.create_collection("why", sparse_dim=docs.dim)
    store.upsert("why", _ids(2000), docs[:2000])
    hits = store.search("why", queries[:5], limit=5)
    explained = explain_hits(store, "why", queries[:5], hits)
    for row, parts_of_row in zip(hits, explained, strict=True):
        assert row
        for hit, parts in zip(row, parts_of_row, strict=True):
            total = sum(p["contribution"] for p in parts)
            assert total == pytest.approx(hit.score, rel=max(SCORE_RTOL.get(name, 0), 1e-5))


def test_reopen_keeps_everything(engine):
    store, reopen, _ = engine
    docs = random_sparse(500, 128, 4, seed=5)
    store.create_collection("p", sparse_dim=128, dense_dim=8)
    store.upsert("p", _ids(500), sparse=docs, dense=_unit(500, 8, 2), payloads=[{"n": i} for i in range(500)])
    before = store.search("p", docs[:5], limit=3)
    store = reopen()
    assert store.list_collections() == ["p"]
    assert store.collection_info("p").sparse_dim == 128 and store.collection_info("p").dense_dim == 8
    assert store.count("p") == 500
    after = store.search("p", docs[:5], limit=3)
    assert [[(h.id, h.payload) for h in r] for r in after] == [[(h.id, h.payload) for h in r] for r in before]
    np.testing.assert_allclose([h.score for r in after for h in r], [h.score for r in before for h in r], rtol=1e-6)


def test_empty_query_returns_no_hits(engine):
    store, *_ = engine
    store.create_collection("e", sparse_dim=16, dense_dim=4)
    store.upsert("e", _ids(3), sparse=random_sparse(3, 16, 2), dense=_unit(3, 4, 0))
    empty = SparseBatch(np.zeros((2, 2), dtype=np.int32), np.zeros((2, 2), dtype=np.float32), 16)
    assert store.search("e", empty, limit=5) == [[], []]
    docs = store.search("e", random_sparse(3, 16, 2), limit=5)
    mixed = SparseBatch.concat([empty[:1], random_sparse(3, 16, 2)[:1]])
    results = store.search("e", mixed, limit=5)
    assert results[0] == [] and [h.id for h in results[1]] == [h.id for h in docs[0]] and docs[0]


def test_documents_sharing_no_latent_are_not_hits(engine):
    store, *_ = engine
    store.create_collection("o", sparse_dim=16)
    store.upsert("o", _ids(2), sparse=SparseBatch(np.array([[1, 2], [3, 4]]), np.array([[1.0, 1.0], [1.0, 1.0]]), 16))
    hits = store.search("o", SparseBatch(np.array([[2, 9]]), np.array([[1.0, 1.0]]), 16), limit=5)
    assert [h.id for h in hits[0]] == ["doc-0"]


def test_hybrid_ordering(engine):
    store, *_ = engine
    sparse, dense = random_sparse(200, 64, 4, seed=9), _unit(200, 16, 1)
    store.create_collection("h", sparse_dim=64, dense_dim=16)
    store.upsert("h", _ids(200), sparse=sparse, dense=dense, payloads=[{"g": i % 2} for i in range(200)])
    s_ids = [h.id for h in store.search("h", sparse[7:8], limit=10)[0]]
    d_ids = [h.id for h in store.search("h", dense[7:8], limit=10)[0]]
    assert s_ids[0] == d_ids[0] == "doc-7"
    hits = store.hybrid_search("h", sparse[7:8], dense[7:8], limit=5)[0]
    assert hits[0].id == "doc-7" and len(hits) == 5  # first in both lists is first after fusion
    assert {h.id for h in hits} <= set(s_ids) | set(d_ids)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    filtered = store.hybrid_search("h", sparse[7:8], dense[7:8], limit=5, filter={"g": 0})[0]
    assert filtered and all(h.payload["g"] == 0 for h in filtered)
    other = "weighted" if type(store).__name__.startswith("Qdrant") else "dbsf"
    with pytest.raises(UnsupportedError):
        store.hybrid_search("h", sparse[7:8], dense[7:8], limit=5, fusion=other)


def test_rerank_rescores_the_sparse_candidates_with_stored_dense_vectors(engine):
    """rerank_search == the engine's own sparse top-`candidates`, rescored by numpy dot products of the dense
    vectors written, best `limit` first (filters apply to the candidates; an all-zero query gets [])."""
    store, *_ = engine
    n = 400
    sparse, dense = random_sparse(n, 256, 4, seed=11), _unit(n, 16, 2)
    queries, dense_q = random_sparse(12, 256, 8, seed=12), _unit(12, 16, 3)
    store.create_collection("r", sparse_dim=256, dense_dim=16)
    store.upsert("r", _ids(n), sparse=sparse, dense=dense, payloads=[{"g": i % 2} for i in range(n)])
    row = {doc_id: i for i, doc_id in enumerate(_ids(n))}

    def expected(candidates: list, q: np.ndarray, limit: int) -> dict[str, float]:
        scored = sorted(((float(dense[row[h.id]] @ q), h.id) for h in candidates), reverse=True)[:limit]
        return {doc_id: score for score, doc_id in scored}

    for flt in (None, {"g": 0}):
        got = store.rerank_search("r", queries, dense_q, limit=5, candidates=20, filter=flt)
        sparse_top = store.search("r", queries, limit=20, filter=flt)
        for hits, candidates, q in zip(got, sparse_top, dense_q, strict=True):
            want = expected(candidates, q, 5)
            assert {h.id for h in hits} == set(want)  # ids and scores as maps: ties may order either way
            assert [h.score for h in hits] == pytest.approx([want[h.id] for h in hits], rel=1e-5, abs=1e-6)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            assert flt is None or all(h.payload["g"] == 0 for h in hits)
    # every document as a candidate: the dense ranking of the documents sharing a latent with the query
    everything = store.rerank_search("r", queries[:3], dense_q[:3], limit=5, candidates=n)
    for hits, candidates, q in zip(everything, store.search("r", queries[:3], limit=n), dense_q[:3], strict=True):
        assert {h.id for h in hits} == set(expected(candidates, q, 5))
    empty = SparseBatch(np.zeros((1, 2), dtype=np.int32), np.zeros((1, 2), dtype=np.float32), 256)
    assert store.rerank_search("r", empty, dense_q[:1], limit=5) == [[]]
    with pytest.raises(InvalidArgumentError, match="candidates"):
        store.rerank_search("r", queries[:1], dense_q[:1], limit=5, candidates=3)
    store.create_collection("sparse_only", sparse_dim=256)
    with pytest.raises(UnsupportedError, match="both sparse and dense"):
        store.rerank_search("sparse_only", queries[:1], dense_q[:1], limit=5)


def test_errors_name_the_problem(engine):
    store, *_ = engine
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
        store.upsert("s", ["a"], sparse=random_sparse(1, 64, 2), payloads=[{"_csrv2_id": "x"}])
    store.create_collection("d", dense_dim=4)
    with pytest.raises(InvalidEmbeddingError):
        store.upsert("d", ["a"], dense=np.array([[np.nan, 0, 0, 1]]))
    store.drop_collection("d")
    assert store.list_collections() == ["s"]
