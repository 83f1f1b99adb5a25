"""Elasticsearch specifics against the enforcing fake: positivity, 9-bit values, 429 retries, per-item errors."""

import numpy as np
import pytest

from csrv2_vdb.adapters.elasticsearch import ElasticsearchStore
from csrv2_vdb.errors import BulkWriteError, UnsupportedError
from csrv2_vdb.sparse import SparseBatch
from tests.conftest import random_sparse
from tests.es_fake import FakeElasticsearch, lucene_feature


@pytest.fixture
def fake():
    with FakeElasticsearch("8.17.0") as server:
        yield server


def test_lucene_keeps_nine_significant_bits():
    assert lucene_feature(1.0) == 1.0
    # 0.1 = 1.10011001|100110011001101b x 2^-4: 8 mantissa bits kept -> 1.59765625 / 16
    assert lucene_feature(0.1) == 0.099853515625
    # 0.999 = 1.11111111|011111001110111b x 2^-1 -> 1.99609375 / 2
    assert lucene_feature(0.999) == 0.998046875
    rng = np.random.default_rng(0)
    for v in rng.random(1000) + 1e-3:
        assert 0 <= v - lucene_feature(v) < v * 2**-8


def test_scores_are_dot_products_of_stored_values(fake):
    store = ElasticsearchStore(fake.url)
    store.create_collection("c", sparse_dim=16)
    store.upsert("c", ["a"], sparse=SparseBatch(np.array([[2, 7]]), np.array([[0.1, 0.999]]), 16))
    hit = store.search("c", SparseBatch(np.array([[2, 7]]), np.array([[1.0, 2.0]]), 16))[0][0]
    assert hit.score == pytest.approx(lucene_feature(0.1) + 2 * lucene_feature(0.999), rel=1e-6)
    assert hit.score != pytest.approx(0.1 + 2 * 0.999, rel=1e-6)


def test_non_positive_values_are_refused_before_sending(fake):
    store = ElasticsearchStore(fake.url)
    store.create_collection("c", sparse_dim=16)
    with pytest.raises(UnsupportedError, match="strictly positive"):
        store.upsert("c", ["a"], sparse=SparseBatch(np.array([[1, 2]]), np.array([[0.5, -0.1]]), 16))
    with pytest.raises(UnsupportedError, match="row 0"):
        store.upsert("c", ["a"], sparse=SparseBatch(np.array([[1]]), np.array([[1e-40]]), 16))
    assert fake.bulk_calls == 0


def test_rejected_documents_are_reported_not_dropped(fake):
    store = ElasticsearchStore(fake.url)
    store.create_collection("c", sparse_dim=16)
    good = {"_op_type": "index", "_index": "c", "_source": {"sparse": {"1": 0.5}}}
    actions = [
        {**good, "_id": "ok-1"},
        {**good, "_id": "bad", "_source": {"sparse": {"3": -1.0}}},
        {**good, "_id": "ok-2"},
    ]
    with pytest.raises(BulkWriteError, match="1 of 3 documents") as info:
        store._bulk(actions)
    (item,) = info.value.items
    assert item["_id"] == "bad" and item["error"]["type"] == "document_parsing_exception"
    assert "positive normal float" in item["error"]["reason"]
    assert store.count("c") == 2  # the partial failure kept the good documents


def test_429_is_retried_with_backoff(fake):
    store = ElasticsearchStore(fake.url)
    store.create_collection("c", sparse_dim=64)
    fake.fail_next_bulk = 2  # whole requests rejected
    fake.reject_items = {"doc-3", "doc-7"}  # single items rejected once
    store.upsert("c", [f"doc-{i}" for i in range(20)], sparse=random_sparse(20, 64, 4))
    assert store.count("c") == 20 and fake.bulk_calls >= 4


def test_rank_features_mode_and_dense_knn(fake):
    store = ElasticsearchStore(fake.url, mode="rank_features", dense_search="knn")
    store.create_collection("c", sparse_dim=16, dense_dim=2)
    dense = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    store.upsert("c", ["a", "b"], sparse=random_sparse(2, 16, 3), dense=dense, payloads=[{"g": "x"}, {"g": "y"}])
    hits = store.search("c", np.array([[0.0, 1.0]], dtype=np.float32), limit=2)[0]
    assert [h.id for h in hits] == ["b", "a"]
    assert [h.score for h in hits] == pytest.approx([0.8, 0.0], abs=1e-6)
    assert store.search("c", np.array([[0.0, 1.0]], dtype=np.float32), filter={"g": "x"})[0][0].id == "a"
    with pytest.raises(UnsupportedError, match=r"8\.15"), FakeElasticsearch("8.10.4") as old:
        ElasticsearchStore(old.url, mode="sparse_vector")
