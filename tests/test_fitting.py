"""Quality on the user's data: `train --input` layouts and defaults, multi-k and sample-initialised training,
shipped heads by name, normalised codes recorded with a collection, and `eval --corpus --queries`."""

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from csrv2_vdb.cli import app
from csrv2_vdb.errors import DataNotFoundError, EncoderMismatchError, InvalidRecordError
from csrv2_vdb.head import DEFAULT_HEAD, SparseHead, head_card, pretrained_head, pretrained_heads, resolve_head
from csrv2_vdb.training.data import TrainingSet, load_training_set
from csrv2_vdb.training.fit import default_config, fit_head, label_free_width
from csrv2_vdb.training.losses import reconstruction_losses
from csrv2_vdb.training.trainer import HeadTrainConfig, train_head
from tests.conftest import assert_real_plot

runner = CliRunner()


def _fake_embed(texts, kind):
    """A deterministic stand-in embedder: one unit vector per distinct text (kind-independent)."""
    out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_texts_only_train_label_free_on_the_texts(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"text": "One short sentence here ok. And a second sentence follows it."},
                                         {"text": "No split in this single text at all"}])  # fmt: skip
    data = load_training_set(path, _fake_embed, log=lambda _: None)
    assert data.mode == "label-free" and data.labels is None
    assert len(data.embeddings) == 2  # the texts themselves, not their sentences
    assert default_config(data).method == "plain" and default_config(data).init == "samples"


def test_label_free_width_is_half_the_rows_between_4d_and_16d():
    assert [label_free_width(n, 384) for n in (10, 3_072, 5_000, 10_000, 1_000_000)] == [1536, 1536, 2500, 5000, 6144]
    rows = np.random.default_rng(0).normal(size=(9_000, 16)).astype(np.float32)
    assert default_config(TrainingSet(rows, None, "label-free", "")).hidden_dim == 256  # 16d caps 4,500
    assert default_config(TrainingSet(rows, np.zeros(9_000), "labels", "")).hidden_dim is None  # 4d, the reference


def test_labels_and_pairs_become_csrv2_labels(tmp_path):
    with open(tmp_path / "l.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["text", "label"], ["a b", "x"], ["c d", "y"], ["e f", "x"]])
    labelled = load_training_set(tmp_path / "l.csv", _fake_embed)
    assert labelled.mode == "labels" and labelled.labels.tolist() == [0, 1, 0]
    assert default_config(labelled).method == "csrv2" and default_config(labelled).lr == 1e-3

    pairs = _jsonl(tmp_path / "p.jsonl", [{"query": "q1", "positive": ["d1", "d2"], "negative": "d3"},
                                          {"query": "q2", "positive": "d2"}])  # fmt: skip
    data = load_training_set(pairs, _fake_embed)
    assert data.mode == "pairs"
    # q1 with d1 and d2 share a label, q2 with d2 another; d3 (a negative) has a label of its own.
    assert len(data.embeddings) == len(data.labels) == 3 + 2 + 1
    assert sorted(np.bincount(data.labels).tolist()) == [1, 2, 3]


def test_precomputed_embeddings(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    data = load_training_set(tmp_path / "x.npy", None)
    np.testing.assert_array_equal(data.embeddings, x)
    assert len(load_training_set(tmp_path / "x.npy", None, max_rows=5).embeddings) == 5  # a seeded sample
    rows = [{"id": i, "embedding": v.tolist(), "label": "ab"[i % 2]} for i, v in enumerate(x)]
    column = load_training_set(_jsonl(tmp_path / "e.jsonl", rows), None, max_rows=8)
    assert column.mode == "labels" and column.embeddings.shape == (8, 8) and set(column.labels) == {0, 1}
    ragged = _jsonl(tmp_path / "r.jsonl", [{"embedding": [0.1, 0.2]}, {"embedding": [0.1]}])
    with pytest.raises(Exception, match="differ in length"):
        load_training_set(ragged, None)
    x[3, 1] = np.nan
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(Exception, match="NaN"):
        load_training_set(tmp_path / "bad.npy", None)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"body": "x"}], "training needs 'text'"),
        ([{"text": "fine"}, {"text": "  "}], r"t\.jsonl:2: 'text' must be a non-empty string"),
        ([{"query": "q", "positive": None}], "'positive' is missing"),
        ([{"text": "a", "label": None}], "'label' is missing"),
    ],
)
def test_bad_training_rows_name_file_and_row(tmp_path, rows, match):
    with pytest.raises(InvalidRecordError, match=match):
        load_training_set(_jsonl(tmp_path / "t.jsonl", rows), _fake_embed)


def test_unknown_file_type_and_missing_file(tmp_path):
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(InvalidRecordError, match="unknown file type"):
        load_training_set(tmp_path / "t.xlsx", _fake_embed)
    with pytest.raises(DataNotFoundError):
        load_training_set(tmp_path / "none.jsonl", _fake_embed)


def test_extra_ks_average_their_reconstructions():
    torch.manual_seed(0)
    head = SparseHead(16, 64, k=4).train()
    x = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    single, _ = reconstruction_losses(head, x, 4, aux_coef=0)
    both, out = reconstruction_losses(head, x, 4, aux_coef=0, extra_ks=[2])
    with torch.no_grad():
        two = head.decode(out.values[:, :2], out.indices[:, :2])
    expected = (single["k"] + torch.nn.functional.mse_loss(two, x)) / 2
    torch.testing.assert_close(both["k"], expected)
    torch.testing.assert_close(both["4k"], single["4k"])


def test_sample_initialised_latents_are_centred_training_rows():
    x = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    config = HeadTrainConfig(k=4, hidden_dim=32, init="samples", epochs=0)
    head = train_head(x, config, progress=False).head
    np.testing.assert_allclose(head.pre_bias.detach().numpy(), x.mean(0), atol=1e-5)
    centred = (x - x.mean(0)) / np.linalg.norm(x - x.mean(0), axis=1, keepdims=True)
    weights = head.encoder.weight.detach().numpy()
    # every latent is one of the centred, normalised rows
    assert np.abs(weights @ centred.T).max(axis=1).min() == pytest.approx(1.0, abs=1e-5)


def test_fit_head_runs_the_defaults_and_saves_them(tmp_path):
    texts = [f"Document {i} talks about topic {i % 5}. It has a second sentence about {i}." for i in range(60)]
    path = _jsonl(tmp_path / "docs.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])

    class Embedder:
        def embed(self, texts, kind):
            return _fake_embed(texts, kind)

    result = fit_head(path, tmp_path / "head", embedder=Embedder(), overrides={"min_steps": 30}, log=lambda _: None)
    saved = json.loads((tmp_path / "head" / "training-config.json").read_text())
    assert saved["init"] == "samples" and saved["also_ks"] == [2] and saved["lr"] == 3e-4 and saved["k"] == 8
    assert result.steps >= 30
    assert "label-free" in json.loads((tmp_path / "head" / "training.json").read_text())["data"]


def test_shipped_heads_by_name_and_the_general_default(tmp_path):
    assert DEFAULT_HEAD in pretrained_heads()
    general = pretrained_head()
    assert general.fingerprint() == pretrained_head(DEFAULT_HEAD).fingerprint()
    assert resolve_head(None).fingerprint() == general.fingerprint()
    assert (
        resolve_head("minilm-medical-csrv2-k8").fingerprint()
        == pretrained_head("minilm-medical-csrv2-k8").fingerprint()
    )
    with pytest.raises(DataNotFoundError, match="neither a head directory nor a shipped head"):
        resolve_head("no-such-head")
    for name in pretrained_heads():
        card = head_card(name)
        assert card["domain"] and card["trained_on"] and card["evaluation"]
    result = runner.invoke(app, ["heads"])
    assert result.exit_code == 0
    assert all(name[:20] in result.output for name in pretrained_heads()) and "default" in result.output


def test_normalised_codes_are_recorded_and_searched_alike(tmp_path, backbone):
    from csrv2_vdb.encoder import CSRv2Encoder

    encoder = CSRv2Encoder(backbone, pretrained_head(), k=8, normalize=True)
    codes = encoder.encode_documents(["Basal cell carcinoma is a skin cancer.", "Lung cancer screening."])
    np.testing.assert_allclose(np.linalg.norm(codes.values, axis=1), 1.0, rtol=1e-5)
    assert encoder.identity.endswith(":l2")
    assert CSRv2Encoder(backbone, pretrained_head(), k=2).identity.endswith(":l2")  # on by default (measured)
    raw = CSRv2Encoder(backbone, pretrained_head(), k=8, normalize=False)
    assert not raw.identity.endswith(":l2") and raw.identity.split(":")[1] == encoder.identity.split(":")[1]

    docs = _jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "Basal cell carcinoma is a skin cancer."},
                                         {"id": "b", "text": "Lung cancer screening uses CT scans."}])  # fmt: skip
    store = ["--store", str(tmp_path / "db"), "--collection", "c"]
    indexed = runner.invoke(app, ["index", "--input", str(docs), *store, "--no-normalize"])  # the general head
    assert indexed.exit_code == 0, indexed.output
    inherited = runner.invoke(app, ["search", "skin cancer", *store])  # no flag: as the collection was written
    assert inherited.exit_code == 0, inherited.output
    assert json.loads(inherited.stdout.splitlines()[0])["id"] == "a"
    refused = runner.invoke(app, ["search", "skin cancer", *store, "--normalize"])
    assert refused.exit_code == 2 and "not comparable" in refused.output
    with pytest.raises(EncoderMismatchError):
        from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
        from csrv2_vdb.retrieval import search_text

        with QdrantEdgeStore(tmp_path / "db") as db:
            search_text(db, "c", "skin", encoder=CSRv2Encoder(backbone, pretrained_head(), k=8))


def test_queries_get_more_active_dims_than_documents(tmp_path):
    from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
    from csrv2_vdb.embedders import CallableEmbedder
    from csrv2_vdb.encoder import CSRv2Encoder, default_query_k
    from csrv2_vdb.retrieval import index_texts, search_text

    assert [default_query_k(k) for k in (1, 2, 4, 8, 16, 32, 64)] == [4, 8, 16, 16, 16, 32, 64]
    assert default_query_k(2, hidden_dim=6) == 6
    head = SparseHead(16, 64, k=2)
    embedder = CallableEmbedder(_fake_embed, 16, "fake")
    encoder = CSRv2Encoder(embedder, head)
    texts = [f"text {i}" for i in range(20)]
    assert encoder.query_k == 8 and (encoder.encode_documents(texts).values > 0).sum(1).max() == 2
    assert (encoder.encode_queries(texts).values > 0).sum(1).min() == 8  # the head's ReLU codes fill all 8 here
    assert (encoder.encode_queries(texts, query_k=2).values > 0).sum(1).max() == 2  # an explicit k is taken as given
    assert CSRv2Encoder(embedder, head, query_k=2).query_k == 2
    assert CSRv2Encoder(embedder, head, query_k=2).normalized_as(False).query_k == 2
    assert encoder.query_k_for(None) == 8 and encoder.query_k_for(4) == 16
    with pytest.raises(ValueError, match="k"):
        CSRv2Encoder(embedder, head, query_k=65)
    # documents stored at 2 active dims, found by 8-dim queries: the stored codes do not change
    with QdrantEdgeStore(tmp_path / "db") as db:
        index_texts(db, "c", texts, encoder=encoder)
        hits = search_text(db, "c", "text 3", encoder=encoder, limit=3)
        assert hits[0].id == "3"
    docs = _jsonl(tmp_path / "d.jsonl", [{"id": t, "text": t} for t in ("skin cancer", "lung cancer")])
    cli = ["--store", str(tmp_path / "cli"), "--collection", "c", "--k", "2"]
    assert runner.invoke(app, ["index", "--input", str(docs), *cli]).exit_code == 0
    for extra in ([], ["--query-k", "2"], ["--query-k", "32"]):
        result = runner.invoke(app, ["search", "skin", *cli, *extra])
        assert result.exit_code == 0, result.output
    refused = runner.invoke(app, ["search", "skin", *cli, "--query-k", "100000"])
    assert refused.exit_code == 2


def test_eval_on_the_users_corpus(tmp_path):
    docs = _jsonl(tmp_path / "d.jsonl", [
        {"id": "skin", "text": "Basal cell carcinoma is the most common skin cancer, treated with surgery."},
        {"id": "lung", "text": "Lung cancer screening uses low-dose CT scans for people who smoked."},
        {"id": "chemo", "text": "Chemotherapy drugs travel through the bloodstream to reach cancer cells."},
        {"id": "radio", "text": "Radiation therapy uses high-energy rays to kill cancer cells."},
    ])  # fmt: skip
    queries = _jsonl(tmp_path / "q.jsonl", [
        {"id": "q1", "text": "how is skin cancer treated", "relevant": ["skin"]},
        {"id": "q2", "text": "CT scan for smokers", "relevant": ["lung"]},
    ])  # fmt: skip
    out = tmp_path / "out"
    args = ["eval", "--corpus", str(docs), "--queries", str(queries), "--out", str(out), "--ks", "2,8",
            "--dims", "8", "--rerank", "20", "--cache", str(tmp_path / "cache")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "eval.csv").read_text().splitlines()))
    assert [(r["method"], r["dims"]) for r in rows] == [
        ("sparse", "2"),
        ("sparse, longer queries", "2"),  # queries at 8, as search does by default
        ("rerank@20", "2"),
        ("sparse", "8"),
        ("sparse, longer queries", "8"),
        ("rerank@20", "8"),
        ("truncated", "8"),  # all-MiniLM-L6-v2 was not trained for truncation: not labelled MRL
        ("dense", "384"),
    ]
    dense = next(r for r in rows if r["method"] == "dense")
    assert float(dense["hit_at_5"]) == 1.0  # four documents: the answer is always in the top 5
    assert all(0.0 <= float(r["ndcg_at_10"]) <= 1.0 for r in rows)
    assert_real_plot(out / "eval.png")

    bad = _jsonl(tmp_path / "bad.jsonl", [{"id": "q1", "text": "x", "relevant": ["missing"]}])
    refused = runner.invoke(app, ["eval", "--corpus", str(docs), "--queries", str(bad), "--out", str(out)])
    assert refused.exit_code == 2 and "names documents not in" in refused.output


def test_eval_files_hold_the_quality_sets_with_disjoint_question_halves(data_dir, tmp_path):
    result = runner.invoke(app, ["bench", "eval-files", "--data", str(data_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output

    def read(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    medical = tmp_path / "medical"
    chunk_ids = {d["id"] for d in read(medical / "corpus.jsonl")}
    tune, final = read(medical / "queries-tune.jsonl"), read(medical / "queries-final.jsonl")
    assert len(tune) > 400 and len(final) > 400
    assert not {q["text"] for q in tune} & {q["text"] for q in final}
    assert all(q["relevant"] and set(q["relevant"]) <= chunk_ids for q in tune + final)
    packages = read(tmp_path / "packages" / "queries.jsonl")
    assert len(packages) == 50 and len(read(tmp_path / "packages" / "corpus.jsonl")) == 1286


def test_train_input_errors_come_before_any_model_loads(tmp_path):
    missing = runner.invoke(app, ["train", "--input", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "h")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    layout = runner.invoke(app, ["train", "--input", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "h")])
    assert layout.exit_code == 2 and "training needs 'text'" in layout.output
    both = runner.invoke(app, ["train", "--input", str(tmp_path / "bad.csv"), "--task", "medical", "--out", "h"])
    assert both.exit_code == 2 and "--input FILE (your data) or --task" in both.output


def test_eval_reads_judgements_from_a_qrels_file(tmp_path):
    from csrv2_vdb.benchmarks.corpus_eval import load_eval_set

    docs = _jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}])
    queries = _jsonl(tmp_path / "q.jsonl", [{"id": "q1", "text": "one"}, {"id": "q2", "text": "two"}])
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tb\t1\nq2\ta\t0\n")
    assert load_eval_set(docs, queries, tmp_path / "qrels.tsv").qrels == {0: {1}}  # score 0: not relevant
    _jsonl(tmp_path / "qrels.jsonl", [{"query_id": "q2", "doc_id": "a"}])
    assert load_eval_set(docs, queries, tmp_path / "qrels.jsonl").qrels == {1: {0}}
    _jsonl(tmp_path / "bad.jsonl", [{"query": "q2"}])
    with pytest.raises(InvalidRecordError, match=r"bad\.jsonl:1: expected an object"):
        load_eval_set(docs, queries, tmp_path / "bad.jsonl")


def test_train_hidden_dim_flag(tmp_path):
    """--hidden-dim sets the width of a head fitted on --input; with --task it is refused (the reproduction
    keeps 4d)."""
    rows = np.random.default_rng(0).normal(size=(300, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", rows / np.linalg.norm(rows, axis=1, keepdims=True))
    out = tmp_path / "head"
    result = runner.invoke(app, ["train", "--input", str(tmp_path / "x.npy"), "--out", str(out), "--hidden-dim", "96"])
    assert result.exit_code == 0, result.output
    assert SparseHead.load(out).hidden_dim == 96 and "h=96" in result.output
    task = runner.invoke(app, ["train", "--task", "medical", "--out", str(tmp_path / "t"), "--hidden-dim", "96"])
    assert task.exit_code == 2 and "--hidden-dim applies to --input" in task.output
