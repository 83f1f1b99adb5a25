"""PostgreSQL + pgvector: sparse codes in a `sparsevec` column, dense vectors in `vector` (or `halfvec`), payloads
in `jsonb`.

One collection is one table (`id text primary key, sparse sparsevec(h), dense vector(d), payload jsonb`; with
`halfvec=True`, `dense halfvec(d)`: half the bytes) and
a row of `csrv2_collections` recording its dims and encoder. Search is exact by default (`ORDER BY sparse <#>
query`: pgvector's negative inner product, so the score is its negation); `hnsw=True` builds pgvector's HNSW
indexes (`sparsevec_ip_ops` / `vector_ip_ops`, at most 1,000 non-zeros per sparse vector) after the bulk load
(`optimize`, which `index` and `migrate` call; else before the first search), as pgvector advises, and
searches them with `hnsw.ef_search`, approximate. Filters become parameterised SQL over the jsonb payload (no
value or field name is ever spliced into the text), upserts are `INSERT ... ON CONFLICT (id) DO UPDATE` in one
transaction per batch, sent as one pipelined `executemany` with the vectors in pgvector's binary formats
(10x the rows/s of text literals for dense rows, and 1.06x binary COPY into a staging table: `csrv2-vdb
bench pg-write`), and connections come from a pool. The connection string (or the usual PG*
environment variables) may hold a password: it is never printed. Dropped connections and server restarts are
transient errors: bulk indexing retries them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from csrv2_vdb.credentials import redact, remember_secret
from csrv2_vdb.errors import EngineError, InvalidArgumentError, UnsupportedError
from csrv2_vdb.filters import Filter, conditions
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import (
    CollectionInfo,
    DensePoints,
    Hit,
    HybridRequest,
    StoreBase,
    WriteBatch,
    in_order,
    pick_vector,
    rrf_fuse,
)

_META = "csrv2_collections"
_MAX_HNSW_NONZEROS = 1000
_SETUP_LOCK = 0x63737276  # the advisory lock that serialises creating the tables and function this store needs


def _sparse_text(indices: Sequence[int], values: Sequence[float], dim: int) -> str:
    """pgvector's sparsevec literal: {index:value,...}/dim with 1-based indices; zeros dropped."""
    pairs = ",".join(f"{int(i) + 1}:{float(v)!r}" for i, v in zip(indices, values, strict=True) if v != 0)
    return f"{{{pairs}}}/{dim}"


def _dense_text(row: np.ndarray) -> str:
    return "[" + ",".join(repr(float(v)) for v in row) + "]"


class _Sparse(NamedTuple):
    """One code as pgvector's binary sparsevec: dim, nnz, 0, then 0-based ascending indices and float4 values
    (big-endian; no zeros). Binary parameters skip formatting and parsing every number as text."""

    indices: np.ndarray
    values: np.ndarray
    dim: int

    def binary(self) -> bytes:
        head = struct.pack(">iii", self.dim, len(self.indices), 0)
        return head + self.indices.astype(">i4").tobytes() + self.values.astype(">f4").tobytes()


class _Dense(NamedTuple):
    """One dense row as pgvector's binary vector: dim (int16), 0 (int16), float4 values (big-endian)."""

    row: np.ndarray

    def binary(self) -> bytes:
        return struct.pack(">HH", len(self.row), 0) + self.row.astype(">f4").tobytes()


class _Half(NamedTuple):
    """One dense row as pgvector's binary halfvec: dim (int16), 0 (int16), float2 values (big-endian)."""

    row: np.ndarray

    def binary(self) -> bytes:
        return struct.pack(">HH", len(self.row), 0) + self.row.astype(">f2").tobytes()


def _sparse_params(codes: SparseBatch) -> list[_Sparse]:
    """The batch's rows, indices sorted and zeros dropped, as pgvector's binary format wants them."""
    order = np.argsort(codes.indices, axis=1)
    indices = np.take_along_axis(codes.indices, order, axis=1)
    values = np.take_along_axis(codes.values, order, axis=1)
    keep = values != 0
    return [_Sparse(i[m], v[m], codes.dim) for i, v, m in zip(indices, values, keep, strict=True)]


def _no_nul(value: Any, where: str) -> None:
    """PostgreSQL text and jsonb cannot hold the NUL character: refuse it by name instead of failing inside."""
    if isinstance(value, str) and "\x00" in value:
        raise UnsupportedError(f"{where}: PostgreSQL cannot store the NUL character (\\x00); remove it")
    if isinstance(value, dict):
        for key, inner in value.items():
            _no_nul(key, where)
            _no_nul(inner, where)
    elif isinstance(value, list):
        for inner in value:
            _no_nul(inner, where)


class PgvectorStore(StoreBase):
    """`SparseStore` on PostgreSQL with the pgvector extension (0.7+ for sparsevec)."""

    engine = "PostgreSQL + pgvector"
    fusions = ("rrf",)
    # Quoted identifiers of at most 63 bytes: the collection names of NAME_PATTERN that fit.
    name_rule = "1-63 letters, digits, '_' or '-', not starting with '-'"

    def __init__(
        self,
        dsn: str = "",
        *,
        hnsw: bool = False,
        ef_search: int = 40,
        rrf_k: int = 60,
        maintenance_work_mem: str | None = None,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 30.0,
        halfvec: bool = False,
    ) -> None:
        """`dsn`: a libpq connection string or URL ("" reads PGHOST, PGUSER, PGPASSWORD, ... as psql does);
        `maintenance_work_mem` ("2GB"): the memory HNSW builds may take (the server's setting when None);
        `halfvec`: collections this store creates keep their dense vectors as `halfvec` (float16: half the
        bytes, about three significant digits); each collection is read and written as its column says."""
        import re

        import psycopg
        from psycopg_pool import ConnectionPool

        super().__init__()
        self.name_pattern = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
        remember_secret(dsn)
        self.dsn, self.hnsw, self.ef_search, self.rrf_k = dsn, hnsw, ef_search, rrf_k
        self.maintenance_work_mem = maintenance_work_mem
        self.halfvec = halfvec
        self._dense_types: dict[str, str] = {}  # collection -> "vector" or "halfvec", as its dense column is
        self._psycopg = psycopg
        self._indexed: set[str] = set()  # collections whose HNSW indexes this process has seen built
        self._dumpers: dict[type, type] = {}  # binary parameter dumpers for sparsevec and vector
        self.transient_errors = (ConnectionError, TimeoutError, psycopg.OperationalError)
        try:
            psycopg.connect(dsn, connect_timeout=int(timeout)).close()  # a wrong password or a server down: at once
            self.client = ConnectionPool(
                dsn, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
                check=ConnectionPool.check_connection,  # a connection the server dropped is replaced, not handed out
            )  # fmt: skip
            self.client.open(wait=True, timeout=timeout)
        except Exception as exc:
            why = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(f"cannot reach PostgreSQL at {redact(dsn) or 'the PG* environment'}: {why}") from None
        if not self._sql("SELECT 1 FROM pg_extension WHERE extname = 'vector'", fetch=True):
            try:
                self._sql("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise EngineError(f"the pgvector extension is not installed in this database and this user cannot "
                                  f"install it ({str(exc).splitlines()[0]}); run CREATE EXTENSION vector as a "
                                  "superuser") from None  # fmt: skip
        with self.client.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SETUP_LOCK])  # clients opening at once wait here
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_META} (name text PRIMARY KEY, sparse_dim int, "
                         "dense_dim int, encoder text)")  # fmt: skip
            if not conn.execute("SELECT 1 FROM pg_proc WHERE proname = '_csrv2_number'").fetchone():
                # the number in a payload field, NULL for any other type: what range filters and indexes compare
                conn.execute(
                    "CREATE FUNCTION _csrv2_number(value jsonb) RETURNS float8 IMMUTABLE LANGUAGE sql "
                    "AS $$ SELECT CASE WHEN jsonb_typeof(value) = 'number' THEN value::float8 END $$"
                )

    # ------------------------------------------------------------------ plumbing
    def _sql(self, query: Any, params: Sequence[Any] | None = None, *, fetch: bool = False) -> list[tuple]:
        """Run one statement in its own transaction; rows when `fetch`."""
        with self.client.connection() as conn, conn.cursor() as cur:
            if self.hnsw:
                cur.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")
            cur.execute(query, params)
            return cur.fetchall() if fetch else []

    def _table(self, name: str) -> Any:
        return self._psycopg.sql.Identifier(self.check_name(name))

    # ------------------------------------------------------------- collections
    def all_collections(self) -> list[str]:
        return sorted(r[0] for r in self._sql(f"SELECT name FROM {_META}", fetch=True))

    def _exists(self, name: str) -> bool:
        return bool(self._sql(f"SELECT 1 FROM {_META} WHERE name = %s", [name], fetch=True))

    def _create(self, info: CollectionInfo) -> None:
        sql = self._psycopg.sql
        columns = [sql.SQL("id text PRIMARY KEY"), sql.SQL("payload jsonb NOT NULL DEFAULT '{}'")]
        if info.sparse_dim:
            columns.append(sql.SQL("sparse sparsevec({})").format(sql.Literal(info.sparse_dim)))
        if info.dense_dim:
            kind = "halfvec" if self.halfvec else "vector"
            columns.append(sql.SQL("dense {}({})").format(sql.SQL(kind), sql.Literal(info.dense_dim)))
        with self.client.connection() as conn, conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(self._table(info.name), sql.SQL(", ").join(columns)))
            conn.execute(f"INSERT INTO {_META} VALUES (%s, %s, %s, %s)",
                         [info.name, info.sparse_dim, info.dense_dim, info.encoder])  # fmt: skip

    def optimize(self, name: str) -> bool:
        """After a bulk load: build the HNSW indexes (with `hnsw=True`; pgvector builds them faster over loaded
        rows than row by row) and refresh the planner's statistics. True when an index was built."""
        built = self._hnsw_indexes(name)
        self._sql(self._psycopg.sql.SQL("ANALYZE {}").format(self._table(name)))
        return built

    def _hnsw_indexes(self, name: str) -> bool:
        """Build the collection's missing HNSW indexes (once per collection and process); True when one was."""
        if not self.hnsw or name in self._indexed:
            return False
        info, sql, built = self.collection_info(name), self._psycopg.sql, False
        dense_ops = f"{self._dense_type(name)}_ip_ops" if info.dense_dim else ""
        for column, ops, dim in (("sparse", "sparsevec_ip_ops", info.sparse_dim), ("dense", dense_ops, info.dense_dim)):
            index = f"{name}__{column}_hnsw"[:63]
            if dim and not self._sql("SELECT 1 FROM pg_class WHERE relname = %s", [index], fetch=True):
                with self.client.connection() as conn, conn.transaction():
                    if self.maintenance_work_mem:  # the graph in memory builds many times faster
                        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", [self.maintenance_work_mem])
                    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {})").format(
                        sql.Identifier(index), self._table(name), sql.Identifier(column), sql.SQL(ops)))  # fmt: skip
                built = True
        self._indexed.add(name)
        return built

    def disk_bytes(self, name: str) -> int:
        """Bytes the collection takes on disk: its table, TOAST and indexes (pg_total_relation_size; WAL not
        counted)."""
        self.collection_info(name)
        return int(self._sql("SELECT pg_total_relation_size(to_regclass(quote_ident(%s)))", [name], fetch=True)[0][0])

    def _read_info(self, name: str) -> CollectionInfo:
        rows = self._sql(f"SELECT sparse_dim, dense_dim, encoder FROM {_META} WHERE name = %s", [name], fetch=True)
        if not rows:
            raise self.missing(name)
        sparse_dim, dense_dim, encoder = rows[0]
        return CollectionInfo(name, sparse_dim, dense_dim, encoder)

    def _dense_type(self, name: str) -> str:
        """ "vector" or "halfvec": the type of the collection's dense column (read once)."""
        if name not in self._dense_types:
            rows = self._sql(
                "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = "
                "to_regclass(quote_ident(%s)) AND a.attname = 'dense' AND NOT a.attisdropped", [name], fetch=True,
            )  # fmt: skip
            self._dense_types[name] = str(rows[0][0]) if rows else "vector"
        return self._dense_types[name]

    def _drop(self, name: str) -> None:
        self._indexed.discard(name)
        self._dense_types.pop(name, None)
        with self.client.connection() as conn, conn.transaction():
            conn.execute(self._psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(name)))
            conn.execute(f"DELETE FROM {_META} WHERE name = %s", [name])

    def create_payload_index(self, name: str, field: str, kind: str = "keyword") -> None:
        """Indexes that filters use: one GIN index over the whole payload (jsonb_path_ops: equality and any-of
        on every field), plus a B-tree over the field's number for integer/float (ranges)."""
        if kind not in ("keyword", "integer", "float", "bool"):
            raise InvalidArgumentError(f"payload index kind must be keyword, integer, float or bool, got {kind!r}")
        conditions({field: ""})  # the field name is checked like a filter's
        sql = self._psycopg.sql
        self._sql(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (payload jsonb_path_ops)").format(
            sql.Identifier(f"{name}__payload"[:63]), self._table(name)))  # fmt: skip
        if kind in ("integer", "float"):
            path = sql.Literal("{" + ",".join(field.split(".")) + "}")
            self._sql(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ((_csrv2_number(payload #> {}::text[])))").format(
                sql.Identifier(f"{name}__{field}"[:63]), self._table(name), path))  # fmt: skip

    # --------------------------------------------------------------------- data
    def _upsert(self, name: str, batch: WriteBatch) -> None:
        info = self.collection_info(name)
        sql = self._psycopg.sql
        for doc_id, payload in zip(batch.ids, batch.payloads, strict=True):
            _no_nul(doc_id, "document id")
            _no_nul(payload, f"document {doc_id!r}")
        if batch.sparse is not None and self.hnsw:
            heavy = int((batch.sparse.values != 0).sum(axis=1).max(initial=0))
            if heavy > _MAX_HNSW_NONZEROS:
                raise UnsupportedError(
                    f"pgvector's HNSW index takes at most {_MAX_HNSW_NONZEROS} non-zeros, got {heavy}"
                )
        columns, rows = ["id", "payload"], []
        if info.sparse_dim:
            columns.append("sparse")
        if info.dense_dim:
            columns.append("dense")
        sparse_rows = _sparse_params(batch.sparse) if batch.sparse is not None else None
        half = batch.dense is not None and self._dense_type(name) == "halfvec"
        for i, doc_id in enumerate(batch.ids):
            row: list[Any] = [doc_id, json.dumps(batch.payloads[i])]
            if sparse_rows is not None:
                row.append(sparse_rows[i])
            if batch.dense is not None:
                row.append(_Half(batch.dense[i]) if half else _Dense(batch.dense[i]))
            rows.append(row)
        updates = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns[1:])
        statement = sql.SQL("INSERT INTO {} ({}) VALUES (%s, %s::jsonb, {}) ON CONFLICT (id) DO UPDATE SET {}").format(
            self._table(name), sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join([sql.Placeholder(format=self._psycopg.adapt.PyFormat.BINARY)] * (len(columns) - 2)),
            updates,
        )  # fmt: skip
        with self.client.connection() as conn, conn.transaction():
            self._binary_vectors(conn)  # before the cursor, which copies the connection's adapters
            with conn.cursor() as cur:
                cur.executemany(statement, rows)

    def _binary_vectors(self, conn: Any) -> None:
        """Let `conn` send _Sparse, _Dense and _Half parameters in pgvector's binary formats (dumpers made once per
        store, with this database's type oids)."""
        if not self._dumpers:
            from psycopg.adapt import Dumper
            from psycopg.pq import Format

            oids = self._sql("SELECT 'sparsevec'::regtype::oid, 'vector'::regtype::oid, 'halfvec'::regtype::oid",
                             fetch=True)[0]  # fmt: skip
            for cls, oid in zip((_Sparse, _Dense, _Half), oids, strict=True):
                body = {"format": Format.BINARY, "oid": int(oid), "dump": lambda self, obj: obj.binary()}
                self._dumpers[cls] = type(f"{cls.__name__}Dumper", (Dumper,), body)
        for cls, dumper in self._dumpers.items():
            conn.adapters.register_dumper(cls, dumper)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self.collection_info(name)
        statement = self._psycopg.sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table(name))
        self._sql(statement, [[str(i) for i in ids]])

    def get(self, name: str, ids: Sequence[str]) -> list[Hit]:
        self.collection_info(name)
        statement = self._psycopg.sql.SQL("SELECT id, payload FROM {} WHERE id = ANY(%s)").format(self._table(name))
        rows = self._sql(statement, [[str(i) for i in ids]], fetch=True)
        return in_order(ids, [Hit(r[0], 0.0, r[1]) for r in rows])

    def count(self, name: str, filter: Filter | None = None) -> int:
        self.collection_info(name)
        where, params = _where(filter, self._psycopg.sql)
        statement = self._psycopg.sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table(name), where)
        return int(self._sql(statement, params, fetch=True)[0][0])

    def _sparse_codes(self, name: str, ids: list[str]) -> dict[str, tuple[list[int], list[float]]]:
        statement = self._psycopg.sql.SQL("SELECT id, sparse::text FROM {} WHERE id = ANY(%s) AND sparse IS NOT NULL")
        out = {}
        for doc_id, text in self._sql(statement.format(self._table(name)), [ids], fetch=True):
            pairs = [p.split(":") for p in text.split("}")[0].lstrip("{").split(",") if p]  # {i:v,...}/dim, 1-based
            out[doc_id] = ([int(i) - 1 for i, _ in pairs], [float(v) for _, v in pairs])
        return out

    def _dense_vectors(self, name: str, ids: list[str]) -> np.ndarray:
        statement = self._psycopg.sql.SQL("SELECT id, dense::text FROM {} WHERE id = ANY(%s)").format(self._table(name))
        found = {r[0]: json.loads(r[1]) for r in self._sql(statement, [ids], fetch=True)}
        return np.asarray([found[i] for i in ids], dtype=np.float32)

    # ------------------------------------------------------- reading back (migration)
    def _source(self, name: str, vector: str | None) -> tuple[Any, Any, int, Any]:
        """(primary key column, dense column, its size, payload expression) of a collection of this library's
        or of any table with a one-column primary key and `vector`/`halfvec` columns (the other columns
        become the payload)."""
        sql = self._psycopg.sql
        if self._exists(name):
            info = self.collection_info(name)
            column, size = pick_vector(name, {"dense": info.dense_dim} if info.dense_dim else {}, vector)
            return sql.Identifier("id"), sql.Identifier(column), size, sql.SQL("payload")
        table = self.check_name(name)
        columns = self._sql(
            "SELECT a.attname, t.typname, a.atttypmod FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(quote_ident(%s)) AND a.attnum > 0 AND NOT a.attisdropped",
            [table], fetch=True,
        )  # fmt: skip
        if not columns:
            raise self.missing(name)
        dense = {c: int(mod) for c, kind, mod in columns if kind in ("vector", "halfvec")}
        column, size = pick_vector(name, dense, vector)
        keys = self._sql(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
            "a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(quote_ident(%s)) AND i.indisprimary",
            [table], fetch=True,
        )  # fmt: skip
        if len(keys) != 1:
            raise InvalidArgumentError(
                f"table {name!r} has no one-column primary key; migration reads rows by it (stable ids): add one"
            )
        primary = keys[0][0]
        others = [c for c, kind, _ in columns if c != primary and kind not in ("vector", "halfvec", "sparsevec")]
        payload = sql.SQL("jsonb_build_object({})").format(
            sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in others)
        )
        return sql.Identifier(primary), sql.Identifier(column), size, payload

    def dense_source(self, name: str, vector: str | None = None) -> tuple[int, int]:
        _, _, size, _ = self._source(name, vector)
        statement = self._psycopg.sql.SQL("SELECT count(*) FROM {}").format(self._table(name))
        return int(self._sql(statement, fetch=True)[0][0]), size

    def read_dense(
        self, name: str, vector: str | None = None, batch_size: int = 256, *, vectors: bool = True
    ) -> Iterator[DensePoints]:
        """Every row in primary-key order, `batch_size` per page (keyset pagination: stable under concurrent
        reads and writes)."""
        if vectors:
            primary, column, _, payload = self._source(name, vector)
        else:  # this library's collections only
            self.collection_info(name)
            primary, column, payload = (
                self._psycopg.sql.Identifier("id"),
                self._psycopg.sql.SQL("NULL"),
                self._psycopg.sql.SQL("payload"),
            )
        sql = self._psycopg.sql
        select = sql.SQL("SELECT {key} AS _csrv2_key, {key}::text, {col}::text, {payload} FROM {table} {where} "
                         "ORDER BY _csrv2_key LIMIT %s")  # fmt: skip
        parts = {"key": primary, "col": column, "payload": payload, "table": self._table(name)}
        first = select.format(where=sql.SQL(""), **parts)
        after = select.format(where=sql.SQL("WHERE {} > %s").format(primary), **parts)
        rows = self._sql(first, [batch_size], fetch=True)
        while rows:
            dense = np.asarray([json.loads(r[2]) for r in rows] if vectors else np.empty((len(rows), 0)), np.float32)
            yield DensePoints([r[1] for r in rows], dense, [r[3] for r in rows])
            rows = self._sql(after, [rows[-1][0], batch_size], fetch=True)

    # ------------------------------------------------------------------- search
    def _search(self, name: str, query: SparseBatch | np.ndarray, limit: int, filter: Filter | None) -> list[list[Hit]]:
        info = self.collection_info(name)
        self._hnsw_indexes(name)  # written without a bulk load's optimize(): built before the first search
        if isinstance(query, SparseBatch):
            texts = [_sparse_text(i, v, info.sparse_dim or 0) for i, v in query.rows()]
            column, cast = "sparse", "sparsevec"
        else:
            texts = [_dense_text(row) for row in query]
            column, cast = "dense", self._dense_type(name)
        sql = self._psycopg.sql
        where, params = _where(filter, sql)
        statement = sql.SQL(
            "SELECT id, payload, -({col} <#> %s::{cast}) AS score FROM {table} WHERE {where} AND {col} IS NOT NULL "
            "ORDER BY {col} <#> %s::{cast} LIMIT %s"
        ).format(col=sql.Identifier(column), cast=sql.SQL(cast), table=self._table(name), where=where)  # fmt: skip
        out = []
        for text in texts:
            rows = self._sql(statement, [text, *params, text, limit], fetch=True)
            hits = [Hit(r[0], float(r[2]), r[1]) for r in rows]
            out.append([h for h in hits if h.score > 0] if column == "sparse" else hits)  # no shared latent: no hit
        return out

    def _hybrid_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        """Reciprocal rank fusion of the sparse and the dense top `depth`, done here (SQL has no fusion)."""
        sparse = self._search(name, r.sparse, r.depth, r.filter)
        dense = self._search(name, r.dense, r.depth, r.filter)
        return [rrf_fuse([s, d], self.rrf_k, r.limit) for s, d in zip(sparse, dense, strict=True)]


def _where(filter: Filter | None, sql: Any) -> tuple[Any, list[Any]]:
    """Engine-neutral filter -> a parameterised SQL condition over the jsonb payload (TRUE when empty).

    Equality compares jsonb values (type included: 1 and "1" differ); a payload field holding a list matches
    when one element does, as on Qdrant. Ranges apply to numbers only."""
    parts: list[Any] = []
    params: list[Any] = []
    for kind, key, value in conditions(filter):
        path = key.split(".")
        if kind in ("eq", "any"):
            options = value if kind == "any" else [value]
            _no_nul(options, f"filter on {key!r}")
            # containment, which a GIN index answers: the field equals the value, or is a list holding it
            documents = [_nested(path, shaped) for v in options for shaped in (v, [v])]
            parts.append(
                sql.SQL("({})").format(sql.SQL(" OR ").join(sql.SQL("payload @> %s::jsonb") for _ in documents))
            )
            params += [json.dumps(d) for d in documents]
            continue
        for op, bound in ((">=", value.gte), (">", value.gt), ("<=", value.lte), ("<", value.lt)):
            if bound is not None:
                parts.append(sql.SQL("_csrv2_number(payload #> %s::text[]) {} %s").format(sql.SQL(op)))
                params += ["{" + ",".join(path) + "}", float(bound)]
    return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")), params


def _nested(path: list[str], value: Any) -> dict[str, Any]:
    """{"a": {"b": value}} for the path ["a", "b"]."""
    for key in reversed(path):
        value = {key: value}
    return value
