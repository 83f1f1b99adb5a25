"""Migration of dense collections (written by the engines' own clients) into sparse ones, on every engine here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from csrv2_vdb.benchmarks.datasets import chunk_words, load_corpus
from csrv2_vdb.bulk import committed_batches
from csrv2_vdb.cli import app
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.head import DEFAULT_HEAD, pretrained_head
from csrv2_vdb.migrate import migrate, unit
from tests.engines import open_engine, pg_server_url, pg_url
from tests.migrate_worker import make_source

ROOT = Path(__file__).resolve().parents[1]
N = 300
ENGINES = ["qdrant-edge", "qdrant-local", "milvus-lite", "elasticsearch-fake", "pgvector"]


@pytest.fixture(scope="module")
def medical(data_dir, backbone):
    """N medical chunks: their real MiniLM vectors and payloads."""
    chunks = chunk_words(load_corpus(data_dir), size=120, overlap=0)[:N]
    vectors = backbone.embed([c.text for c in chunks])
    payloads = [{"title": c.id, "n": i, "tags": ["medical", f"part-{i % 3}"]} for i, c in enumerate(chunks)]
    return vectors, payloads


@pytest.mark.parametrize("engine", ENGINES)
def test_migration_keeps_ids_payloads_and_answers_like_direct_indexing(engine, tmp_path, medical):
    vectors, payloads = medical
    with open_engine(engine, tmp_path) as store:
        source, vector, ids = make_source(engine, store, vectors, payloads)
        report = migrate(store, source, vector=vector, head=DEFAULT_HEAD, holdout=40, batch_size=64, progress=False,
                         log=lambda _: None)  # fmt: skip
        assert report.points == N == store.count("dense_src_csrv2")
        fidelity = report.fidelity
        assert fidelity is not None and fidelity.queries == 40 and fidelity.dense_bytes == 4 * 384
        assert set(fidelity.recall_at_10) == {2, 4, 8} and all(0 < r <= 1 for r in fidelity.recall_at_10.values())
        assert fidelity.recall_at_10[8] > fidelity.recall_at_10[2]

        # the same head applied directly, through the same adapter
        encoder = CSRv2Encoder(None, pretrained_head())
        codes = encoder.encode_embeddings(unit(vectors))
        store.create_collection("direct", sparse_dim=encoder.dim, encoder=encoder.identity)
        store.upsert("direct", ids, codes, payloads=payloads)
        migrated, direct = store.search("dense_src_csrv2", codes, limit=5), store.search("direct", codes, limit=5)
    expected = dict(zip(ids, payloads, strict=True))
    seen = {}
    for got, want in zip(migrated, direct, strict=True):
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-5)
        seen.update({h.id: h.payload for h in got})
    assert seen == expected  # every id came back, each with its payload


def test_migration_fits_a_head_and_a_rerun_reuses_it(tmp_path, medical):
    vectors, payloads = medical
    with open_engine("qdrant-edge", tmp_path) as store:
        make_source("qdrant-edge", store, vectors, payloads)
        logs: list[str] = []
        first = migrate(store, "dense_src", head_out=tmp_path / "head", sample=250, holdout=30, progress=False,
                        fit_overrides={"min_steps": 40}, log=logs.append)  # fmt: skip
        assert (tmp_path / "head" / "model.safetensors").exists()
        assert any("fitting a label-free head on 250 sampled points" in line for line in logs)
        again = migrate(store, "dense_src", head_out=tmp_path / "head", holdout=30, progress=False, log=logs.append)
        assert any("re-using the head" in line for line in logs) and again.head == first.head
        assert store.count("dense_src_csrv2") == N
        with pytest.raises(InvalidArgumentError, match="another collection"):
            migrate(store, "dense_src", target="dense_src", head=DEFAULT_HEAD)


def test_migration_errors_name_what_is_wrong(tmp_path, medical):
    vectors, payloads = medical
    with open_engine("qdrant-local", tmp_path) as store:
        make_source("qdrant-local", store, vectors, payloads)
        with pytest.raises(InvalidArgumentError, match=r"2 dense vectors \['minilm', 'tiny'\]; name one"):
            migrate(store, "dense_src", head=DEFAULT_HEAD)
        with pytest.raises(InvalidArgumentError, match="no dense vector 'nope'"):
            migrate(store, "dense_src", vector="nope", head=DEFAULT_HEAD)
        with pytest.raises(InvalidArgumentError, match="takes 384-dim vectors; 'dense_src' holds 4"):
            migrate(store, "dense_src", vector="tiny", head=DEFAULT_HEAD, progress=False)
        from csrv2_vdb.errors import CollectionNotFoundError

        with pytest.raises(CollectionNotFoundError, match="nothing"):
            migrate(store, "nothing", head=DEFAULT_HEAD)


def migrate_worker(engine: str, root: Path, checkpoint: Path, delay: float, pg: str = "") -> subprocess.Popen:
    """tests/migrate_worker.py in a process of its own; `pg`: the PostgreSQL server it uses."""
    args = [engine, str(root), DEFAULT_HEAD, str(checkpoint), str(delay)]
    env = {**os.environ, "CSRV2_PG_URL": pg or pg_server_url()} if engine == "pgvector" else None
    return subprocess.Popen([sys.executable, "-m", "tests.migrate_worker", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES[:3])  # the Elasticsearch fake lives in the killed process: see below
def test_sigkill_mid_migration_then_rerun_ends_with_exactly_n_points(engine, tmp_path, medical):
    vectors, payloads = medical
    np.save(tmp_path / "vectors.npy", vectors)  # the worker creates the source (Milvus Lite allows one process)
    (tmp_path / "payloads.json").write_text(json.dumps(payloads))
    checkpoint = tmp_path / "migrate.checkpoint"
    proc = migrate_worker(engine, tmp_path, checkpoint, delay=0.3)
    deadline = time.time() + 120
    while time.time() < deadline:
        if checkpoint.exists() and len(committed_batches(checkpoint)) >= 2:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(["pkill", "-9", "-s", str(proc.pid)], check=False)  # Milvus Lite's engine process too
    assert 2 <= len(committed_batches(checkpoint)) < N // 20
    again = migrate_worker(engine, tmp_path, checkpoint, delay=0.0)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "points=300" in out and int(out.split("resumed=")[1]) >= 2, (out, err)
    with open_engine(engine, tmp_path) as store:
        assert store.count("dense_src_csrv2") == N


def test_kill_9_of_the_postgresql_server_mid_migration_then_rerun_is_exact(own_server, tmp_path, medical):
    """The server (and the migration) SIGKILLed mid-way, the server restarted, the same migration again: exactly
    N rows, each code bit-exact against the head applied to the source's vectors."""
    from tests.test_pgvector import stored_codes

    vectors, payloads = medical
    np.save(tmp_path / "vectors.npy", vectors)
    (tmp_path / "payloads.json").write_text(json.dumps(payloads))
    checkpoint = tmp_path / "migrate.checkpoint"
    own_server.kill_9_mid_run(migrate_worker("pgvector", tmp_path, checkpoint, 0.3, own_server.url), checkpoint, 2)
    assert 2 <= len(committed_batches(checkpoint)) < N // 20
    own_server.start()
    again = migrate_worker("pgvector", tmp_path, checkpoint, delay=0.0, pg=own_server.url)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "points=300" in out and int(out.split("resumed=")[1]) >= 2, (out, err)
    stored = stored_codes(pg_url(tmp_path, own_server.url), "dense_src_csrv2")
    expected = CSRv2Encoder(None, pretrained_head()).encode_embeddings(unit(vectors))
    assert sorted(stored) == sorted(str(2000 + i) for i in range(N))
    for i, (indices, values) in enumerate(expected.rows()):
        want = sorted((int(a), float(np.float32(b))) for a, b in zip(indices, values, strict=True) if b)
        assert sorted(zip(*stored[str(2000 + i)], strict=True)) == want


def test_failure_mid_migration_then_rerun_on_elasticsearch(tmp_path, medical, monkeypatch):
    vectors, payloads = medical
    encode, calls = CSRv2Encoder.encode_embeddings, []

    def failing(self, dense, k=None):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the process dies here")
        return encode(self, dense, k)

    with open_engine("elasticsearch-fake", tmp_path) as store:
        make_source("elasticsearch-fake", store, vectors, payloads)
        options = {"head": DEFAULT_HEAD, "batch_size": 20, "holdout": 0, "checkpoint": tmp_path / "ck",
                   "progress": False, "log": lambda _: None}  # fmt: skip
        monkeypatch.setattr(CSRv2Encoder, "encode_embeddings", failing)
        with pytest.raises(RuntimeError, match="dies here"):
            migrate(store, "dense_src", **options)
        assert 0 < store.count("dense_src_csrv2") < N
        monkeypatch.setattr(CSRv2Encoder, "encode_embeddings", encode)
        report = migrate(store, "dense_src", **options)
        assert report.write["batches_resumed"] >= 2 and store.count("dense_src_csrv2") == N == report.points


def test_cli_migrate_check_and_search(tmp_path, medical, head_dir):
    vectors, payloads = medical
    edge = tmp_path / "edge"
    with open_engine("qdrant-edge", tmp_path) as store:
        make_source("qdrant-edge", store, vectors, payloads)
    runner = CliRunner()
    common = ["--store", str(edge), "--collection", "dense_src"]
    result = runner.invoke(app, ["migrate", *common, "--head", DEFAULT_HEAD, "--head-out", str(tmp_path / "out"),
                                 "--holdout", "25"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fidelity on 25 held-out points" in result.output and "k=8" in result.output
    saved = json.loads((tmp_path / "out" / "migration.json").read_text())
    assert saved["points"] == N and saved["fidelity"]["queries"] == 25
    checked = runner.invoke(app, ["check", *common, "--head", DEFAULT_HEAD, "--holdout", "25"])
    assert checked.exit_code == 0, checked.output
    assert checked.output.strip().splitlines()[1:] == [
        line for line in result.output.splitlines() if line.startswith("  ")
    ]  # the same held-out points give the same numbers
    found = runner.invoke(app, ["search", "skin infection treatment", "--store", str(edge), "--collection",
                                "dense_src_csrv2", "--limit", "3"])  # fmt: skip
    assert found.exit_code == 0, found.output
    hits = [json.loads(line) for line in found.output.splitlines() if line.startswith("{")]
    assert 1 <= len(hits) <= 3 and all(h["id"].startswith("chunk-") and "title" in h["payload"] for h in hits)
    wrong = runner.invoke(app, ["check", *common, "--head", str(head_dir)])
    assert wrong.exit_code == 2 and "written with the head migrated from 'dense_src'" in wrong.output
    stored = runner.invoke(app, ["check", *common, "--holdout", "25"])  # no --head: the head stored with it
    assert stored.exit_code == 0 and stored.output == checked.output
