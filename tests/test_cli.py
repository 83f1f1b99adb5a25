"""The csrv2-vdb command line, end to end on the real backbone and the embedded engine."""

import csv
import json

import pytest
from typer.testing import CliRunner

from csrv2_vdb.cli import app
from tests.conftest import assert_real_plot

runner = CliRunner()

DOCS = [
    ("a1", "Basal cell carcinoma is the most common skin cancer and is usually treated with surgery.", "skin"),
    ("a2", "Melanoma can spread to lymph nodes; a sentinel node biopsy checks for that.", "skin"),
    ("a3", "Radiation therapy uses high-energy rays to kill cancer cells.", "therapy"),
    ("a4", "Chemotherapy drugs travel through the bloodstream to reach cancer cells.", "therapy"),
    ("a5", "Lung cancer screening uses low-dose CT scans for people who smoked.", "lung"),
    ("a6", "Non-small cell lung cancer is the most common kind of lung cancer.", "lung"),
]


def _commands() -> dict:
    import typer.main

    root = typer.main.get_command(app)
    out = {}
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        out[name] = command  # a group too: `heads` alone lists the shipped heads
        out.update({f"{name} {sub}": c for sub, c in (getattr(command, "commands", None) or {}).items()})
    return out


def test_every_command_and_option_explains_itself():
    """Library and harness commands are all on one app; each has a summary and every option a help text."""
    commands = _commands()
    assert {"encode", "index", "search", "heads", "demo", "eval", "train", "finetune", "bench graphrag",
            "bench retrieval", "bench encoder", "bench bulk", "bench quality"} <= set(commands)  # fmt: skip
    undocumented = [
        f"{name} {param.opts[0]}"
        for name, command in commands.items()
        for param in command.params
        if param.param_type_name == "option" and param.name != "help" and not (param.help or "").strip()
    ]
    assert undocumented == []
    assert all((command.help or "").strip() for command in commands.values())


@pytest.mark.parametrize("command", ["encode", "index", "search", "train", "heads", "demo"])
def test_help_is_useful_on_its_own(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    summary = (_commands()[command].help or "").split("\n")[0][:40]
    assert summary and summary.split()[0] in result.output
    options = [p.opts[0] for p in _commands()[command].params if p.param_type_name == "option"]
    assert all(option in result.output for option in options), options


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    with open(root / "docs.jsonl", "w") as f:
        for doc_id, text, topic in DOCS * 4:  # repeats give the head more rows to train on
            f.write(json.dumps({"id": doc_id, "text": text, "topic": topic}) + "\n")
    result = runner.invoke(
        app,
        ["train", "--input", str(root / "docs.jsonl"), "--out", str(root / "head"), "--k", "8", "--epochs", "3"],
    )
    assert result.exit_code == 0, result.output
    return root


def _index(root, collection="docs"):
    return runner.invoke(
        app,
        [
            "index",
            "--input",
            str(root / "docs.jsonl"),
            "--head",
            str(root / "head"),
            "--store",
            str(root / "db"),
            "--collection",
            collection,
            "--batch-size",
            "5",
        ],
    )


def test_train_index_search(workspace):
    assert (workspace / "head" / "model.safetensors").exists()
    assert json.loads((workspace / "head" / "training.json").read_text())["config"]["k"] == 8
    first = _index(workspace)
    assert first.exit_code == 0, first.output
    assert "docs: 6 documents" in first.output  # 24 rows, 6 distinct ids: upserts, no duplicates
    again = _index(workspace)
    assert "docs: 6 documents" in again.output

    result = runner.invoke(
        app,
        [
            "search",
            "treatment of skin cancer",
            "--head",
            str(workspace / "head"),
            "--store",
            str(workspace / "db"),
            "--collection",
            "docs",
            "--limit",
            "3",
            "--filter",
            "topic=skin",
        ],
    )
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert 1 <= len(hits) <= 2 and {h["id"] for h in hits} <= {"a1", "a2"}
    assert all(h["payload"]["topic"] == "skin" for h in hits)
    assert hits == sorted(hits, key=lambda h: -h["score"])


def test_index_dense_dims_then_search_rerank(workspace, tmp_path):
    """--dense-dims stores MRL vectors beside the codes; search --rerank rescores the sparse candidates by
    them: the hits are the candidates' best MRL cosines, with those cosines as scores."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.encoder import MRLEncoder

    args = ["--head", str(workspace / "head"), "--store", str(tmp_path / "db"), "--collection", "both"]
    indexed = runner.invoke(app, ["index", "--input", str(workspace / "docs.jsonl"), *args, "--dense-dims", "64"])
    assert indexed.exit_code == 0, indexed.output
    query = "treatment of skin cancer"
    sparse = runner.invoke(app, ["search", query, *args, "--limit", "6"])
    reranked = runner.invoke(app, ["search", query, *args, "--limit", "2", "--rerank", "6"])
    assert sparse.exit_code == 0 and reranked.exit_code == 0, reranked.output
    candidates = [json.loads(line)["id"] for line in sparse.stdout.splitlines()]
    texts = {doc_id: text for doc_id, text, _ in DOCS}
    mrl = MRLEncoder(Backbone(), 64)
    cosine = mrl.encode_documents([texts[i] for i in candidates]) @ mrl.encode_queries([query])[0]
    want = sorted(zip(cosine.tolist(), candidates, strict=True), reverse=True)[:2]
    hits = [json.loads(line) for line in reranked.stdout.splitlines()]
    assert [h["id"] for h in hits] == [i for _, i in want]
    assert [h["score"] for h in hits] == pytest.approx([c for c, _ in want], abs=1e-4)
    no_dense = runner.invoke(app, ["search", query, "--head", str(workspace / "head"), "--store",
                                   str(workspace / "db"), "--collection", "docs", "--rerank", "6"])  # fmt: skip
    assert no_dense.exit_code == 2 and "--dense-dims" in no_dense.output
    both = runner.invoke(app, ["index", "--input", str(workspace / "docs.jsonl"), "--store", str(tmp_path / "db"),
                               "--collection", "x", "--mrl-dims", "32", "--dense-dims", "64"])  # fmt: skip
    assert both.exit_code == 2 and "--dense-dims" in both.output


def test_encode_writes_k_sparse_rows(workspace):
    out = workspace / "codes.jsonl"
    result = runner.invoke(
        app,
        [
            "encode",
            "--input",
            str(workspace / "docs.jsonl"),
            "--head",
            str(workspace / "head"),
            "--output",
            str(out),
            "--k",
            "2",
            "--kind",
            "query",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 24 and all(1 <= len(r["indices"]) <= 2 for r in rows)
    assert all(v > 0 for r in rows for v in r["values"])


def test_cli_errors_are_messages_not_tracebacks(workspace, tmp_path):
    assert _index(workspace).exit_code == 0  # the store exists (upserts: harmless after test_train_index_search)
    missing = runner.invoke(
        app,
        ["search", "x", "--head", str(workspace / "head"), "--store", str(workspace / "db"), "--collection", "nope"],
    )
    assert missing.exit_code == 2 and "'nope' does not exist" in missing.output and "Traceback" not in missing.output
    (tmp_path / "bad.jsonl").write_text('{"id": "1", "text": "ok"}\n{"id": "2", "text": "  "}\n')
    empty = runner.invoke(
        app,
        [
            "index",
            "--input",
            str(tmp_path / "bad.jsonl"),
            "--head",
            str(workspace / "head"),
            "--store",
            str(tmp_path / "db"),
            "--collection",
            "c",
        ],
    )
    assert empty.exit_code == 2 and "bad.jsonl:2: 'text' is empty" in empty.output
    too_big = runner.invoke(
        app,
        [
            "search",
            "x",
            "--head",
            str(workspace / "head"),
            "--store",
            str(workspace / "db"),
            "--collection",
            "docs",
            "--k",
            "5000",
        ],
    )
    assert too_big.exit_code == 2 and "k=5000" in too_big.output


def test_demo_without_data_says_where_files_go(tmp_path):
    result = runner.invoke(app, ["demo", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "medical_corpus.json" in result.output and "--data" in result.output
    assert "Traceback" not in result.output


def test_demo_end_to_end_on_a_slice_of_the_medical_corpus(data_dir, tmp_path):
    corpus = json.loads((data_dir / "graphrag-bench" / "medical_corpus.json").read_text())
    questions = json.loads((data_dir / "graphrag-bench" / "medical_questions.json").read_text())
    words = corpus[0]["context"].split()[:6000]
    sliced = tmp_path / "data" / "graphrag-bench"
    sliced.mkdir(parents=True)
    (sliced / "medical_corpus.json").write_text(json.dumps([{"corpus_name": "Medical", "context": " ".join(words)}]))
    (sliced / "medical_questions.json").write_text(json.dumps(questions[:40]))
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "demo",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
            "--ks",
            "2,8",
            "--dims",
            "2,8",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [(r["method"], r["active_dims"]) for r in rows] == [
        ("sparse", "2"),
        ("sparse", "8"),
        ("MRL", "2"),
        ("MRL", "8"),
        ("dense", "384"),
    ]
    assert all(0.0 <= float(r["recall_at_5"]) <= 1.0 and float(r["median_latency_ms"]) > 0 for r in rows)
    assert float(rows[0]["bytes_per_vector"]) <= 16 and float(rows[-1]["bytes_per_vector"]) == 1536
    assert float(rows[-1]["recall_at_5"]) > float(rows[2]["recall_at_5"])  # full dense beats 2-dim MRL
    assert_real_plot(out / "results.png")
    assert "recall@5" in result.output


def test_index_reads_parquet_into_milvus_and_dense_mrl(workspace, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, texts, topics = zip(*DOCS, strict=True)
    pq.write_table(pa.table({"id": ids, "text": texts, "topic": topics}), tmp_path / "docs.parquet")
    for args in (["--head", str(workspace / "head")], ["--mrl-dims", "32"]):
        collection = "sparse" if args[0] == "--head" else "mrl32"
        result = runner.invoke(
            app,
            ["index", "--input", str(tmp_path / "docs.parquet"), *args, "--engine", "milvus",
             "--store", str(tmp_path / "m.db"), "--collection", collection],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"{collection}: 6 documents" in result.output
    both = runner.invoke(
        app,
        ["index", "--input", str(tmp_path / "docs.parquet"), "--head", str(workspace / "head"), "--mrl-dims", "32",
         "--store", str(tmp_path / "x"), "--collection", "c"],
    )  # fmt: skip
    assert both.exit_code == 2 and "not both" in both.output
    neither = runner.invoke(  # no --head: the shipped general head
        app, ["index", "--input", str(tmp_path / "docs.parquet"), "--store", str(tmp_path / "x"), "--collection", "c"]
    )
    assert neither.exit_code == 0 and "c: 6 documents" in neither.output
