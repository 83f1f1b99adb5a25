"""`csrv2-vdb pseudo-queries`: questions from an LLM become the pairs `train --input` trains CSRv2 on."""

import json

import pytest
from typer.testing import CliRunner

from csrv2_vdb.benchmarks.pseudo_queries import EXAMPLES, parse_question, prompt
from csrv2_vdb.cli import app
from csrv2_vdb.training.data import load_training_set
from tests.openai_fake import FakeOpenAI
from tests.test_fitting import _fake_embed, _jsonl

runner = CliRunner()


def test_prompt_and_parsing():
    text = "word " * 500
    p = prompt(text, 1)
    assert p.startswith("Passage: " + EXAMPLES[1][0][0]) and p.endswith("\nQuestion:")
    assert p.count("word") == 200  # the text is cut to MAX_WORDS
    assert prompt("x y z", 0) != prompt("x y z", 2)
    with pytest.raises(IndexError):
        prompt("x", len(EXAMPLES))
    assert parse_question(" what is a heat pump?\nQuestion: more") == "what is a heat pump?"
    assert parse_question("\n Question 2: why is the sky blue?") == "why is the sky blue?"
    assert parse_question(" Yes.") is None and parse_question("   ") is None


def test_pairs_from_a_fake_llm_train_csrv2(tmp_path):
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "Heat pumps move heat from outside air"},
                                           {"id": "b", "text": "Monarchs winter in Mexico every year"},
                                           {"id": "c", "text": "Too short"}])  # fmt: skip
    out = tmp_path / "pairs.jsonl"
    with FakeOpenAI() as server:
        args = ["pseudo-queries", "--input", str(corpus), "--out", str(out), "--per-text", "3", "--llm-api",
                "completions", "--llm-base-url", server.url, "--llm-model", "fake",
                "--cache", str(tmp_path / "c")]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert server.requests == 9 and set(server.paths) == {"/v1/completions"}
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        # sets 0 and 2 ask the same question (one is dropped as a repeat); "Too short" gets none
        heat, monarchs = "Heat pumps move heat from outside air", "Monarchs winter in Mexico every year"
        assert rows == [
            {"query": "what about Heat pumps move heat?", "positive": heat, "id": "a"},
            {"query": "why Heat pumps move heat?", "positive": heat, "id": "a"},
            {"query": "what about Monarchs winter in Mexico?", "positive": monarchs, "id": "b"},
            {"query": "why Monarchs winter in Mexico?", "positive": monarchs, "id": "b"},
        ]
        said = " ".join(result.output.split())
        assert "4 questions for 3 texts" in said and "(5 replies dropped" in said
        again = runner.invoke(app, args)  # answered from the cache: a re-run or a resumed run pays nothing twice
        assert again.exit_code == 0 and server.requests == 9 and "cached 9" in " ".join(again.output.split())
        refused = [*args[:4], "--out", str(tmp_path / "refused.jsonl"), "--per-text", "4", *args[8:]]
        assert runner.invoke(app, refused).exit_code == 2
        assert list(tmp_path.glob("refused.jsonl*")) == []  # refused before anything was written
    pairs = load_training_set(out, _fake_embed)
    assert pairs.mode == "pairs" and len(set(pairs.labels.tolist())) == 4


def test_pseudo_queries_need_texts(tmp_path):
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "body": "no text field"}])
    args = ["pseudo-queries", "--input", str(corpus), "--out", str(tmp_path / "p.jsonl"),
            "--llm-base-url", "http://127.0.0.1:9/v1", "--cache", str(tmp_path / "c")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "c.jsonl:1: 'text' is missing or empty" in " ".join(result.output.split())
    assert not (tmp_path / "p.jsonl").exists()
