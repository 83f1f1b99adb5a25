"""Refit and versions (csrv2_vdb.refit, csrv2_vdb.versions): a new head written as a new version of a collection,
switched to in one write, searched through the switch, rolled back, dropped; on every engine here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from csrv2_vdb.adapters import open_store
from csrv2_vdb.bulk import committed_batches
from csrv2_vdb.cli import app
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import EncoderMismatchError, InvalidArgumentError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.head_store import default_encoder, load_head
from csrv2_vdb.refit import refit, rollback
from csrv2_vdb.retrieval import index_texts, search_text
from csrv2_vdb.versions import drop_old, read
from tests.engines import ENGINES, open_engine
from tests.refit_worker import DIM, embedder

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
N = 300
TEXTS = [f"document {i} about topic {i % 7}" for i in range(N)]
QUERIES = [f"question {i}" for i in range(6)]
FAST = {"min_steps": 60}  # a short fit: these tests check versions, not quality


def _first_encoder() -> CSRv2Encoder:
    torch.manual_seed(0)
    return CSRv2Encoder(embedder(), SparseHead(DIM, 128, k=4))


def _hits(store, collection, encoder):
    return [[(h.id, round(h.score, 4)) for h in search_text(store, collection, q, encoder=encoder, limit=5)]
            for q in QUERIES]  # fmt: skip


# one entry per adapter (the WAND index and the 8.10 fake differ below what versions touch), and a real cluster
ADAPTERS = [e for e in sorted(ENGINES) if e not in ("milvus-lite-wand", "elasticsearch-fake-8.10")]


@pytest.mark.parametrize("engine", ADAPTERS)
def test_refit_switches_the_name_follows_rolls_back_and_drops(engine, tmp_path):
    store = open_engine(engine, tmp_path)
    try:
        old = _first_encoder()
        index_texts(store, "docs", TEXTS, encoder=old, ids=[f"d{i}" for i in range(N)])
        before = _hits(store, "docs", old)
        report = refit(store, "docs", embedder(), fit_sample=200, holdout=50, fit_overrides=FAST, progress=False,
                       log=lambda _: None)  # fmt: skip
        state = read(store, "docs")
        assert (report.old, report.new, report.rows) == ("docs", "docs__csrv2_v2", N)
        assert state is not None and state.current == "docs__csrv2_v2" and state.names == ["docs", "docs__csrv2_v2"]
        assert store.list_collections() == ["docs"]  # versions, heads and the pointer are not listed
        assert report.new_fidelity is not None and report.old_fidelity is not None
        new = load_head(store, "docs__csrv2_v2")
        assert new is not None and new.identity != old.identity and store.count("docs__csrv2_v2") == N
        # the same ids and payloads, coded by the new head
        assert store.get("docs__csrv2_v2", ["d5"])[0].payload == {"text": TEXTS[5]}
        after = _hits(store, "docs", new.encoder(embedder()))
        assert after != before
        assert _hits(store, "docs", old) == after  # a client holding the old head follows the switch
        other = open_engine(engine, tmp_path) if engine.startswith(("milvus", "elastic", "pg")) else store
        assert _hits(other, "docs", default_encoder(other, "docs", embedder())) == after  # a reader naming no head
        assert rollback(store, "docs") == "docs"
        assert _hits(store, "docs", old) == before
        refit(store, "docs", embedder(), fit_sample=200, holdout=0, fit_overrides=FAST, progress=False,
              log=lambda _: None)  # fmt: skip
        assert read(store, "docs").current == "docs__csrv2_v3"  # numbers are never re-used
        assert drop_old(store, "docs") == ["docs", "docs__csrv2_v2"]
        every = set(store.all_collections())
        assert "docs__csrv2_v2" not in every and "docs__csrv2_v2__csrv2_head" not in every and "docs" not in every
        assert store.list_collections() == ["docs"]  # the name outlives its version 1
        assert _hits(store, "docs", old) == _hits(store, "docs", default_encoder(store, "docs", embedder()))
        with pytest.raises(InvalidArgumentError, match="no earlier version"):
            rollback(store, "docs")
        store.drop_collection("docs")  # every version, head and the pointer
        assert store.all_collections() == []
    finally:
        store.close()


def test_a_head_of_another_collection_is_still_refused_after_a_refit(tmp_path):
    store = open_store("qdrant-edge", tmp_path / "edge")
    index_texts(store, "docs", TEXTS, encoder=_first_encoder())
    refit(store, "docs", embedder(), fit_sample=200, holdout=0, fit_overrides=FAST, progress=False, log=lambda _: None)
    torch.manual_seed(5)
    stranger = CSRv2Encoder(embedder(), SparseHead(DIM, 128, k=4))
    with pytest.raises(EncoderMismatchError):
        search_text(store, "docs", "question", encoder=stranger)


def test_a_dropped_version_name_is_never_given_to_another_head(tmp_path):
    store = open_store("qdrant-edge", tmp_path / "edge")
    index_texts(store, "docs", TEXTS, encoder=_first_encoder())
    for _ in range(2):
        refit(store, "docs", embedder(), fit_sample=200, holdout=0, fit_overrides=FAST, progress=False,
              log=lambda _: None)  # fmt: skip
    assert rollback(store, "docs") == "docs__csrv2_v2"
    assert drop_old(store, "docs") == ["docs", "docs__csrv2_v3"]
    report = refit(store, "docs", embedder(), fit_sample=150, holdout=0, fit_overrides=FAST, progress=False,
                   log=lambda _: None)  # fmt: skip
    assert report.new == "docs__csrv2_v4"  # not v3 again: a reader may still know v3 and its head
    store.close()


def test_a_collection_with_dense_vectors_beside_its_codes_keeps_them(tmp_path):
    from csrv2_vdb.encoder import MRLEncoder, encode_hybrid

    store = open_store("qdrant-edge", tmp_path / "edge")
    old, dense = _first_encoder(), MRLEncoder(embedder(), 8)
    index_texts(store, "docs", TEXTS, encoder=old, dense_encoder=dense, ids=[f"d{i}" for i in range(N)])
    report = refit(store, "docs", embedder(), fit_sample=200, holdout=0, fit_overrides=FAST, progress=False,
                   log=lambda _: None)  # fmt: skip
    info = store.collection_info(report.new)
    assert info.dense_dim == 8 and info.sparse_dim is not None
    new = load_head(store, report.new).encoder(embedder())  # type: ignore[union-attr]
    sparse, vectors = encode_hybrid(new, dense, ["question 1"], "query")
    ranked = store.rerank_search(report.new, sparse, vectors, limit=5)[0]
    rescored = dense.encode_documents([TEXTS[int(h.id[1:])] for h in ranked]) @ vectors[0]
    assert [h.score for h in ranked] == pytest.approx(list(rescored), rel=1e-4)  # the MRL vectors, written again
    store.close()


@pytest.mark.parametrize("engine", ["qdrant-edge", "pgvector"])
def test_documents_written_changed_or_deleted_during_the_refit_are_carried_over(engine, tmp_path, monkeypatch):
    """Writes that reach the old version while the refit reads it (here: just after its bulk write) are carried
    into the new version before the switch: added and rewritten documents coded by the new head, deleted ones
    deleted; the new version then answers exactly as the old one would with the new head."""
    import csrv2_vdb.refit as refit_module

    store = open_engine(engine, tmp_path)
    try:
        old = _first_encoder()
        index_texts(store, "docs", TEXTS, encoder=old, ids=[f"d{i}" for i in range(N)])
        real = refit_module.bulk_index
        calls = []

        def bulk_then_writes(*args, **kwargs):
            report = real(*args, **kwargs)
            if not calls:  # the refit's own write is done: others write into "docs", still the current version
                index_texts(store, "docs", ["a late document about topic 3", "another late one about topic 5"],
                            encoder=old, ids=["late1", "late2"])  # fmt: skip
                index_texts(store, "docs", ["document 7 rewritten about topic 6"], encoder=old, ids=["d7"])
                store.delete("docs", ["d8"])
            calls.append(report.rows_written)
            return report

        monkeypatch.setattr(refit_module, "bulk_index", bulk_then_writes)
        report = refit(store, "docs", embedder(), fit_sample=200, holdout=0, fit_overrides=FAST, progress=False,
                       log=lambda _: None)  # fmt: skip
        assert calls == [N, 3, 0]  # the write, a catch-up pass carrying the two new and the rewritten, a clean one
        assert report.rows == N + 1 and int(store.count(report.new)) == N + 1
        got = {h.id: h.payload["text"] for h in store.get(report.new, ["late1", "late2", "d7", "d8"])}
        assert got == {"late1": "a late document about topic 3", "late2": "another late one about topic 5",
                       "d7": "document 7 rewritten about topic 6"}  # fmt: skip
        new = load_head(store, report.new).encoder(embedder())  # type: ignore[union-attr]
        ((want_i, want_v),) = new.encode_documents(["document 7 rewritten about topic 6"]).rows()
        ((got_i, got_v),) = store.codes(report.new, ["d7"]).rows()  # coded by the new head, from the new text
        assert dict(zip(got_i, got_v, strict=True)) == pytest.approx(dict(zip(want_i, want_v, strict=True)), rel=1e-4)
    finally:
        store.close()


def test_a_reader_that_resolved_a_version_just_before_drop_old_searches_the_current_one(tmp_path):
    """A reader in another process resolved v2 (pointer and collection info cached) just before `refit --drop-old`
    dropped it: its next search and batch search go to the current version with its head, and
    the engine's own error (qdrant-edge: a missing shard directory) never reaches it. Simulated in one process by
    putting the reader's caches back as they were before the drop."""
    from csrv2_vdb import versions
    from csrv2_vdb.errors import CollectionNotFoundError
    from csrv2_vdb.retrieval import search_queries

    store = open_store("qdrant-edge", tmp_path / "edge")
    old = _first_encoder()
    index_texts(store, "docs", TEXTS, encoder=old, ids=[f"d{i}" for i in range(N)])
    for _ in range(2):
        refit(store, "docs", embedder(), fit_sample=200, holdout=0, fit_overrides=FAST, progress=False,
              log=lambda _: None)  # fmt: skip
    stale = store.collection_info("docs__csrv2_v2")
    assert versions.current(store, "docs") == "docs__csrv2_v3"
    want = _hits(store, "docs", old)  # the client's old head follows to v3's head
    assert drop_old(store, "docs") == ["docs", "docs__csrv2_v2"]
    store._infos["docs__csrv2_v2"] = stale  # as the reader had them just before the drop
    versions._cache[store]["docs"] = (time.monotonic() + 60, "docs__csrv2_v2")
    with pytest.raises(CollectionNotFoundError):  # the store says which collection is gone, not the engine
        store.search("docs__csrv2_v2", old.encode_queries(["question 1"]), limit=5)
    store._infos["docs__csrv2_v2"] = stale
    assert _hits(store, "docs", old) == want
    versions._cache[store]["docs"] = (time.monotonic() + 60, "docs__csrv2_v2")
    store._infos["docs__csrv2_v2"] = stale
    batch = list(search_queries(store, "docs", QUERIES, encoder=old, limit=5))
    assert [[(h.id, round(h.score, 4)) for h in row] for row in batch] == want
    store.close()


@pytest.mark.parametrize("engine", ["qdrant-edge", "milvus-lite"])
def test_eight_threads_search_through_the_switch_without_a_failure_or_a_mixed_result(engine, tmp_path):
    store = open_engine(engine, tmp_path)
    old = _first_encoder()
    index_texts(store, "docs", TEXTS, encoder=old)
    expected_old = _hits(store, "docs", old)
    results: list[tuple[int, list]] = []  # (query number, its hits)
    failures: list[BaseException] = []
    stop = threading.Event()

    def search(first: int) -> None:
        n = first
        while not stop.is_set():
            q = n % len(QUERIES)
            try:
                hits = search_text(store, "docs", QUERIES[q], encoder=old, limit=5)
                results.append((q, [(h.id, round(h.score, 4)) for h in hits]))
            except BaseException as exc:  # every failure counts, of any kind
                failures.append(exc)
            n += 1

    threads = [threading.Thread(target=search, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        refit(store, "docs", embedder(), fit_sample=200, holdout=0, fit_overrides=FAST, progress=False,
              log=lambda _: None)  # fmt: skip
        time.sleep(2.5)  # past the readers' pointer cache
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    new = load_head(store, "docs__csrv2_v2")
    expected_new = _hits(store, "docs__csrv2_v2", new.encoder(embedder()))
    assert failures == []
    assert expected_new != expected_old
    assert all(hits in (expected_old[q], expected_new[q]) for q, hits in results)  # each from one head only
    seen_old = sum(hits == expected_old[q] != expected_new[q] for q, hits in results)
    seen_new = sum(hits == expected_new[q] != expected_old[q] for q, hits in results)
    assert seen_old > 8 and seen_new > 8  # searches ran on both sides of the switch
    assert results[-1][1] == expected_new[results[-1][0]]
    store.close()


def test_a_refit_killed_while_writing_is_finished_by_running_it_again(tmp_path):
    location, checkpoint = str(tmp_path / "edge"), tmp_path / "refit.checkpoint"
    with open_store("qdrant-edge", location) as store:
        index_texts(store, "docs", TEXTS, encoder=_first_encoder())
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.refit_worker", location, str(checkpoint), "0.3"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and worker.poll() is None:
        if checkpoint.exists() and len(committed_batches(checkpoint)) >= 3:
            break
        time.sleep(0.05)
    assert worker.poll() is None, worker.communicate()
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    with open_store("qdrant-edge", location) as store:
        state = read(store, "docs")
        assert state is not None and state.current == "docs" and state.pending == "docs__csrv2_v2"
        assert 0 < store.count("docs__csrv2_v2") < N
    rerun = subprocess.run([sys.executable, "-m", "tests.refit_worker", location, str(checkpoint), "0"], cwd=ROOT,
                           capture_output=True, text=True, timeout=240)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert "re-used the head of the interrupted refit" in rerun.stdout
    with open_store("qdrant-edge", location) as store:
        state = read(store, "docs")
        assert state.current == "docs__csrv2_v2" and state.pending == "" and state.names == ["docs", "docs__csrv2_v2"]
        assert store.count("docs__csrv2_v2") == N and store.count("docs") == N
        assert sorted(store.all_collections()) == sorted(
            ["docs", "docs__csrv2_head", "docs__csrv2_v2", "docs__csrv2_v2__csrv2_head", "docs__csrv2_versions"]
        )  # exactly one new version: the re-run finished the killed one, it did not start another
    assert not checkpoint.exists()


def test_cli_refit_rollback_and_drop_old(tmp_path, backbone):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS[:80])))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(QUERIES)))
    store = str(tmp_path / "edge")
    base = ["--store", store, "--collection", "docs"]

    def search_file() -> list[dict]:
        out = tmp_path / "hits.jsonl"
        result = runner.invoke(app, ["search", *base, "--queries", str(queries), "--out", str(out)])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in out.read_text().splitlines()]

    result = runner.invoke(app, ["index", "--input", str(corpus), *base, "--fit-steps", "60"])
    assert result.exit_code == 0, result.output
    first = search_file()
    result = runner.invoke(app, ["refit", *base, "--fit-steps", "60", "--holdout", "20"])
    assert result.exit_code == 0, result.output
    assert "docs__csrv2_v2 now answers (80 documents" in result.output
    assert "new head on 8 held-out documents: recall@10 against dense"  # a tenth of 80 in result.output
    assert "* docs__csrv2_v2" in result.output
    second = search_file()
    assert [h["hits"] for h in second] != [h["hits"] for h in first]
    more = tmp_path / "more.jsonl"  # indexing into the name after a refit writes the current version, by its head
    more.write_text("".join(json.dumps({"id": f"m{i}", "text": f"another text {i}"}) + "\n" for i in range(10)))
    result = runner.invoke(app, ["index", "--input", str(more), *base])
    assert result.exit_code == 0, result.output
    assert "its current version is docs__csrv2_v2" in result.output and "using the head stored" in result.output
    assert "docs__csrv2_v2: 90 documents" in result.output
    # the refit stored its fit's figures and latent labels, as index does: drift and labels work on the new version
    result = runner.invoke(app, ["check", *base, "--input", str(more)])
    assert result.exit_code == 0 and "drift: 10 new documents against the 72" in result.output, result.output
    result = runner.invoke(app, ["heads", "show", *base])
    assert result.exit_code == 0 and "refit of docs on 72 documents" in result.output, result.output
    result = runner.invoke(app, ["refit", *base, "--rollback"])
    assert result.exit_code == 0 and "docs answers again" in result.output
    assert search_file() == first
    result = runner.invoke(app, ["refit", *base, "--rollback"])
    assert result.exit_code == 2 and "no earlier version" in result.output
    result = runner.invoke(app, ["refit", *base, "--drop-old"])
    assert result.exit_code == 0 and "dropped docs__csrv2_v2" in result.output
    assert search_file() == first
    result = runner.invoke(app, ["refit", "--store", store, "--collection", "nope"])
    assert result.exit_code == 2 and "nope" in result.output
