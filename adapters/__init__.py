"""Engine adapters implementing `csrv2_vdb.store.SparseStore`; each imports its engine client lazily.

qdrant-edge   QdrantEdgeStore(path)            embedded Qdrant (Rust engine in-process), the default
qdrant        QdrantStore(url=... | path=...)  Qdrant server/cluster; path/":memory:" is local mode
milvus        MilvusStore(uri)                 Milvus server URI, or Milvus Lite from a .db file
elasticsearch ElasticsearchStore(url)          an Elasticsearch cluster (8.x; sparse_vector or rank_features)
pgvector      PgvectorStore(dsn)               PostgreSQL with pgvector (a connection string; "" reads PG*)
"""

from __future__ import annotations

import os
from typing import Any

from csrv2_vdb.credentials import credentials_from_env, redact, remember_secret
from csrv2_vdb.errors import CSRv2Error, EngineError, InvalidArgumentError
from csrv2_vdb.store import SparseStore

ENGINES = ("qdrant-edge", "qdrant", "milvus", "elasticsearch", "pgvector")


def open_store(engine: str, location: str | os.PathLike[str], **options: Any) -> SparseStore:
    """Open a store by engine name.

    location: a directory (qdrant-edge); a URL, ":memory:" or a local path (qdrant); a URI or .db file
    (milvus); a URL (elasticsearch). Credentials not given as options are read from the environment:
    CSRV2_QDRANT_API_KEY, CSRV2_MILVUS_TOKEN, CSRV2_ES_API_KEY or CSRV2_ES_USERNAME/CSRV2_ES_PASSWORD.
    """
    options = {**options, **credentials_from_env(engine, options)}
    location = os.fspath(location)  # a pathlib.Path is as good as its string
    if "://" in location:
        remember_secret(location)  # a password in the URL
    try:
        return _open(engine, location, options)
    except CSRv2Error:
        raise
    except Exception as exc:  # a client's own error (an unparsable URL, a refused connection): never raw
        raise EngineError(
            f"cannot open the {engine} store at {redact(location)}: {redact(str(exc)) or type(exc).__name__}"
        ) from None


def _open(engine: str, location: str, options: dict[str, Any]) -> SparseStore:
    if engine == "qdrant-edge":
        from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore

        return QdrantEdgeStore(location, **options)
    if engine == "qdrant":
        from csrv2_vdb.adapters.qdrant import QdrantStore

        if location == ":memory:":
            return QdrantStore(location=location, **options)
        if location.startswith(("http://", "https://")):
            return QdrantStore(url=location, **options)
        return QdrantStore(path=location, **options)
    if engine == "milvus":
        from csrv2_vdb.adapters.milvus import MilvusStore

        return MilvusStore(location, **options)
    if engine == "elasticsearch":
        from csrv2_vdb.adapters.elasticsearch import ElasticsearchStore

        return ElasticsearchStore(location, **options)
    if engine == "pgvector":
        from csrv2_vdb.adapters.pgvector import PgvectorStore

        return PgvectorStore(location, **options)
    raise InvalidArgumentError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
