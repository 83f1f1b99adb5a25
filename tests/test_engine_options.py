"""Engine options beyond the defaults (Milvus inverted_index_algo / drop_ratio_search, sliced upserts) and
`bench engine-options`, which measures them side by side with qdrant-edge's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from csrv2_vdb.adapters import milvus
from csrv2_vdb.adapters.milvus import MilvusStore
from csrv2_vdb.cli import app
from tests.conftest import random_sparse


@pytest.mark.parametrize("algo", ["DAAT_MAXSCORE", "DAAT_WAND", "TAAT_NAIVE"])
def test_every_inverted_index_algo_returns_the_exact_top10(tmp_path, algo):
    docs, queries = random_sparse(2000, 64, 8, seed=1), random_sparse(10, 64, 8, seed=2)
    with MilvusStore(str(tmp_path / "m.db"), inverted_index_algo=algo) as store:
        store.create_collection("a", sparse_dim=64)
        store.upsert("a", [str(i) for i in range(2000)], docs)
        store.flush("a")
        exact = queries.to_dense() @ docs.to_dense().T
        for q, hits in enumerate(store.search("a", queries, limit=10)):
            np.testing.assert_allclose([h.score for h in hits], np.sort(exact[q])[::-1][:10], rtol=1e-5)
            assert [exact[q, int(h.id)] for h in hits] == pytest.approx([h.score for h in hits], rel=1e-5)


def test_drop_ratio_search_above_zero_is_inexact_and_bad_options_are_refused(tmp_path):
    docs, queries = random_sparse(2000, 64, 8, seed=1), random_sparse(10, 64, 8, seed=2)
    with MilvusStore(str(tmp_path / "m.db"), drop_ratio_search=0.5) as store:
        store.create_collection("a", sparse_dim=64)
        store.upsert("a", [str(i) for i in range(2000)], docs)
        store.flush("a")
        best = (queries.to_dense() @ docs.to_dense().T).max(axis=1)
        got = np.array([hits[0].score for hits in store.search("a", queries, limit=1)])
        assert (got < best - 1e-4).any()  # half of each query's values dropped: lower scores
    with pytest.raises(ValueError, match="inverted_index_algo"):
        MilvusStore(str(tmp_path / "x.db"), inverted_index_algo="FAST")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop_ratio_search"):
        MilvusStore(str(tmp_path / "y.db"), drop_ratio_search=1.0)


def test_big_milvus_upserts_are_sent_in_slices(tmp_path, monkeypatch):
    monkeypatch.setattr(milvus, "UPSERT_BYTES", (4 * 32 + 2) * 100)  # 100 rows of 32 floats (and "{}") per call
    calls = []
    with MilvusStore(str(tmp_path / "m.db")) as store:
        store.create_collection("d", dense_dim=32)
        real = store.client.upsert
        monkeypatch.setattr(store.client, "upsert", lambda name, rows: calls.append(len(rows)) or real(name, rows))
        x = np.random.default_rng(0).standard_normal((1050, 32)).astype(np.float32)
        store.upsert("d", [f"r{i}" for i in range(1050)], x / np.linalg.norm(x, axis=1, keepdims=True))
        assert calls == [100] * 10 + [50]
        assert store.count("d") == 1050


def test_payloads_count_towards_the_slices(tmp_path, monkeypatch):
    monkeypatch.setattr(milvus, "UPSERT_BYTES", 10_000)
    calls = []
    with MilvusStore(str(tmp_path / "m.db")) as store:
        store.create_collection("t", sparse_dim=16)
        real = store.client.upsert
        monkeypatch.setattr(store.client, "upsert", lambda name, rows: calls.append(len(rows)) or real(name, rows))
        texts = [{"text": "x" * 200} for _ in range(300)]  # ~214 bytes of payload per row beside 16 of code
        store.upsert("t", [f"r{i}" for i in range(300)], random_sparse(300, 16, 2), payloads=texts)
        assert sum(calls) == 300 and len(calls) >= 6 and max(calls) <= 50
        assert store.count("t") == 300


def test_engine_options_bench_measures_every_variant(tmp_path, data_dir):
    result = CliRunner().invoke(app, ["bench", "engine-options", "--ks", "2", "--n", "3000", "--docs", "400",
                                      "--queries", "5", "--repeats", "1", "--head", "minilm-general-csrv2",
                                      "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
                                      "--cache", str(tmp_path / "cache"), "--data", str(data_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "engine-options.json").read_text())
    rows = {(r["engine"], r["variant"]): r for r in report["rows"]}
    assert len(rows) == 15 and not (tmp_path / "work").exists()
    for (engine, variant), row in rows.items():
        assert row["p50_ms"] > 0 and row["disk_bytes_per_point"] > 0, (engine, variant)
        if "inexact" not in variant:  # every exact configuration returns the exact top 10
            assert row["recall@10"] == 1.0, (engine, variant, row["recall@10"])
    for engine, dense in (("qdrant-edge", "dense 384, flat"), ("milvus", "dense 384, FLAT")):
        sparse = [r["disk_bytes_per_point"] for (e, v), r in rows.items() if e == engine and "dense" not in v]
        assert rows[engine, dense]["disk_bytes_per_point"] > 1536 > max(sparse)  # 384 floats, beside a k=2 code
    before = rows["qdrant-edge", "UUID ids + _id payload (before)"]
    assert rows["qdrant-edge", "compact ids (default)"]["disk_bytes_per_point"] < before["disk_bytes_per_point"]
    assert "| qdrant-edge | compact ids (default) | 2 |" in (tmp_path / "out" / "engine-options.md").read_text()
