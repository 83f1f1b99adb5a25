"""Metrics against hand-checked examples, and the reproduction pipeline end to end on a data slice."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from csrv2_vdb.benchmarks.datasets import Chunk, Question, answer_qrels
from csrv2_vdb.benchmarks.metrics import (
    classification_accuracy,
    clustering_v_measure,
    dead_latent_ratio,
    retrieval_metrics,
)
from csrv2_vdb.cli import app
from csrv2_vdb.sparse import SparseBatch
from tests.conftest import assert_real_plot


def test_retrieval_metrics_hand_checked():
    docs = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    # q0 ranks d0, d1, d2 and d1 is relevant: DCG = 1/log2(3); ideal 1 -> 0.6309
    # q1 ranks d2, d1, d0 and d2 is relevant: nDCG 1
    out = retrieval_metrics(queries, docs, {0: {1}, 1: {2}}, k=10)
    assert out["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    assert out["recall@10"] == 1.0
    top1 = retrieval_metrics(queries, docs, {0: {1}, 1: {2}}, k=1)
    assert top1["recall@1"] == 0.5 and top1["ndcg@1"] == pytest.approx(0.5)


def test_retrieval_ties_count_against_relevant_documents():
    codes = SparseBatch(np.array([[0], [1], [2]]), np.array([[1.0], [1.0], [1.0]]), 4)
    query = SparseBatch(np.array([[3]]), np.array([[1.0]]), 4)  # shares no latent with any doc
    assert retrieval_metrics(query, codes, {0: {2}}, k=2)["recall@2"] == 0.0


def test_classification_and_clustering_on_separable_data():
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:4] * 5
    y = np.repeat(np.arange(4), 50)
    x = centers[y] + rng.normal(scale=0.1, size=(200, 8))
    assert classification_accuracy(x[::2], y[::2], x[1::2], y[1::2]) == 1.0
    assert clustering_v_measure(x, y) == pytest.approx(1.0)
    shuffled = rng.permutation(y)
    assert clustering_v_measure(x, shuffled) < 0.2


def test_dead_latent_ratio():
    codes = SparseBatch(np.array([[3, 0], [1, 5]]), np.array([[1.0, 0.0], [2.0, 1.0]]), 10)
    assert dead_latent_ratio(codes) == pytest.approx(0.7)  # latents 1, 3, 5 fire; index 0 is only padding


def test_answer_qrels_pick_the_chunk_holding_the_answer():
    chunks = [Chunk("a", "melanoma spreads to lymph nodes", 0), Chunk("b", "radiation therapy kills cancer cells", 1)]
    questions = [
        Question("q1", "?", "Radiation kills cancer cells.", "Fact Retrieval"),
        Question("q2", "?", "Unrelated words entirely.", "Fact Retrieval"),
    ]
    assert answer_qrels(questions, chunks) == {0: {1}}


def test_eval_command_writes_the_comparison(data_slice, tmp_path):
    out = tmp_path / "repro"
    result = CliRunner().invoke(
        app,
        ["eval", "--data", str(data_slice), "--out", str(out), "--cache", str(tmp_path / "cache"),
         "--ks", "2,8", "--dims", "2,8", "--epochs", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    methods = {(r["task"], r["metric"], r["method"], r["dims"]) for r in rows}
    for task, metric in (("banking77", "accuracy"), ("banking77", "v_measure"), ("medical", "ndcg@10")):
        for method in ("CSR", "CSRv2", "MRL", "MRL-trained"):
            assert {(task, metric, method, "2"), (task, metric, method, "8")} <= methods
        assert (task, metric, "dense", "384") in methods
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert all(0.0 <= float(r["dead_ratio"]) <= 1.0 for r in rows if r["method"].startswith("CSR"))
    assert "| CSRv2 |" in (out / "results.md").read_text()
    assert_real_plot(out / "results.png")
    # The CSRv2 row is the label-trained head's own score (swapping CSR and CSRv2 would fail here).
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.benchmarks.tasks import banking_task, trained_head
    from csrv2_vdb.training.trainer import HeadTrainConfig

    task = banking_task(data_slice, Backbone(), tmp_path / "cache")
    config = HeadTrainConfig(lr=1e-3, epochs=2)
    for method, label in (("csrv2", "CSRv2"), ("csr", "CSR")):
        head = trained_head(task, method, 2, config, tmp_path / "cache")
        mine = task.evaluate(lambda x, h=head: h.encode(x, 2))["accuracy"]
        (row,) = [r for r in rows if (r["task"], r["metric"], r["method"], r["dims"]) == ("banking77", "accuracy",
                                                                                             label, "2")]  # fmt: skip
        assert float(row["score"]) == pytest.approx(mine, abs=1e-9)


def test_train_command_checkpoints_and_resumes(data_slice, tmp_path):
    runner = CliRunner()
    base = ["train", "--task", "banking77", "--data", str(data_slice), "--cache", str(tmp_path / "cache")]
    first = runner.invoke(app, [*base, "--method", "csrv2", "--k", "4", "--epochs", "2", "--out", str(tmp_path / "h"),
                                "--checkpoint-every", "2"])  # fmt: skip
    assert first.exit_code == 0, first.output
    assert (tmp_path / "h" / "checkpoint.pt").exists() and (tmp_path / "h" / "model.safetensors").exists()
    summary = json.loads((tmp_path / "h" / "training.json").read_text())
    assert summary["config"]["method"] == "csrv2" and summary["steps"] > 0
    again = runner.invoke(app, [*base, "--method", "csrv2", "--k", "4", "--epochs", "2", "--out", str(tmp_path / "h"),
                                "--resume"])  # fmt: skip
    assert (
        again.exit_code == 0 and json.loads((tmp_path / "h" / "training.json").read_text())["steps"] == summary["steps"]
    )
    mrl = runner.invoke(app, [*base, "--method", "mrl", "--out", str(tmp_path / "p")])
    assert mrl.exit_code == 0, mrl.output
    bad = runner.invoke(app, [*base, "--method", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--method" in bad.output
