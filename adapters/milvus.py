"""Milvus through pymilvus `MilvusClient` (`MilvusStore`): servers by URI, Milvus Lite by file path.

Schema: `pk` VARCHAR primary key (the UUIDv5 of the document id, so upserts overwrite; the caller's id
is kept in the `_id` field, so no id ever reaches an expression or Milvus Lite's own SQL), `sparse`
SPARSE_FLOAT_VECTOR with SPARSE_INVERTED_INDEX (or SPARSE_WAND) on IP with drop ratios 0, so scores
are exact dot products, and/or `dense` FLOAT_VECTOR on IP (FLAT, exact, by default; `dense_index` picks
another Milvus index type with its build and search params). Payload fields are dynamic fields.
Hybrid search is `hybrid_search` with RRFRanker or WeightedRanker.

Filters become Milvus boolean expressions. Milvus Lite 2.5 has no expression templates (`filter_params`
is a parse error there), so string values are written as double-quoted literals with `\\` and `"`
escaped, which Milvus reads back byte for byte (any unicode, control characters); a line break cannot
be written into a Milvus string literal, so such a filter value is refused.

Milvus Lite 2.5.x (tested here) is Milvus's C++ engine in a child process; it imports pkg_resources,
so it needs setuptools<81. Milvus Lite 3.x is a pure-Python rewrite: only SPARSE_INVERTED_INDEX, and
searches are about 30x slower until the collection is flushed.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

import grpc
import numpy as np
from pymilvus import AnnSearchRequest, DataType, MilvusClient, MilvusException, RRFRanker, WeightedRanker
from pymilvus.exceptions import MilvusUnavailableException

from csrv2_vdb.credentials import redact, redact_logs
from csrv2_vdb.errors import EngineError, InvalidArgumentError, StoreLockedError, TransientEngineError, UnsupportedError
from csrv2_vdb.filters import Filter, conditions
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import (
    CollectionInfo,
    DensePoints,
    Hit,
    HybridRequest,
    StoreBase,
    WriteBatch,
    document_of,
    hit_from_payload,
    in_order,
    pick_vector,
    point_id,
    stored_payload,
)

PK = "pk"
SPARSE = "sparse"
DENSE = "dense"
_RESERVED = {PK, SPARSE, DENSE}
# Only a dropped or overloaded server is worth retrying; a schema or expression error surfaces at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
_TRANSIENT_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
_RATE_LIMIT = 8  # Milvus's ErrorCode.RATE_LIMIT
# Milvus Lite's server answers 0.5 s after it starts; under load its segment core may not be initialised yet
# and the first collection call fails with this (pymilvus issue 2981): worth waiting for, nothing else is.
_LITE_STARTING = "Mmap manager has not been init"
InvertedIndexAlgo = Literal["DAAT_MAXSCORE", "DAAT_WAND", "TAAT_NAIVE"]
UPSERT_BYTES = 4 * 2**20  # vector bytes per upsert call (see _upsert)
_PK_SCHEME = "uuid5"  # recorded in the collection description: pk = point_id(document id)
# Milvus collection names: a letter or '_' first, then letters, digits and '_' (no '-').
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_NAME_RULE = "1-128 letters, digits or '_', starting with a letter or '_' (Milvus allows no '-')"

redact_logs("pymilvus")  # the client logs the URI it dials, credentials included


def _is_transient(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    if isinstance(exc, grpc.RpcError):
        code = exc.code()
    return isinstance(exc, MilvusUnavailableException) or code in _TRANSIENT_GRPC or code == _RATE_LIMIT


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """Milvus's errors as ours: transient ones as `TransientEngineError` (retried), the rest as `EngineError`."""
    try:
        yield
    except (MilvusException, grpc.RpcError) as exc:
        message = f"Milvus could not {action}: {exc}"
        if _is_transient(exc):
            raise TransientEngineError(message) from exc
        raise EngineError(message) from exc


class MilvusStore(StoreBase):
    """`SparseStore` on Milvus (server URI, or a Milvus Lite .db file)."""

    engine = "Milvus"
    fusions = ("rrf", "weighted")
    name_pattern = _NAME
    name_rule = _NAME_RULE

    # Worth retrying in bulk writes: the connection dropped or the server was briefly unavailable.
    transient_errors = TRANSIENT_ERRORS

    def __init__(
        self,
        uri: str,
        *,
        token: str = "",
        sparse_index: Literal["SPARSE_INVERTED_INDEX", "SPARSE_WAND"] = "SPARSE_INVERTED_INDEX",
        inverted_index_algo: InvertedIndexAlgo | None = None,
        drop_ratio_search: float = 0.0,
        rrf_k: int = 60,
        weights: tuple[float, float] = (0.5, 0.5),
        dense_index: str = "FLAT",
        dense_index_params: Mapping[str, Any] | None = None,
        dense_search_params: Mapping[str, Any] | None = None,
        client: MilvusClient | None = None,
    ) -> None:
        super().__init__()
        # a Milvus Lite file this store opened itself (its server is stopped on close)
        self._lite = uri if client is None and "://" not in uri else None
        if client is None:
            client = _connect(uri, token)
        self.client = client
        self.sparse_index = sparse_index
        # How the sparse index walks its posting lists (Milvus 2.5+; None: the engine's default, DAAT_MAXSCORE).
        # All three return the exact top k (drop_ratio_build and drop_ratio_search stay 0); only speed differs,
        # measured by `csrv2-vdb bench engine-options`.
        if inverted_index_algo not in (None, *get_args(InvertedIndexAlgo)):
            raise InvalidArgumentError(
                f"inverted_index_algo must be DAAT_MAXSCORE, DAAT_WAND or TAAT_NAIVE, got {inverted_index_algo!r}"
            )
        self.sparse_params: dict[str, Any] = {"drop_ratio_build": 0.0}
        if inverted_index_algo:
            self.sparse_params["inverted_index_algo"] = inverted_index_algo
        # drop_ratio_search > 0 skips each query's smallest values: faster, no longer exact (measured ibid.).
        if not 0.0 <= drop_ratio_search < 1.0:
            raise InvalidArgumentError(f"drop_ratio_search must be in [0, 1), got {drop_ratio_search!r}")
        self.sparse_search_params = {"drop_ratio_search": float(drop_ratio_search)}
        self.rrf_k = rrf_k
        self.weights = weights
        # e.g. dense_index="IVF_FLAT", dense_index_params={"nlist": 1024}, dense_search_params={"nprobe": 16};
        # Milvus Lite builds FLAT, IVF_FLAT and AUTOINDEX only.
        self.dense_index = dense_index
        self.dense_index_params = dict(dense_index_params or {})
        self.dense_search_params = dict(dense_search_params or {})

    # ----------------------------------------------------------- collections
    def _exists(self, name: str) -> bool:
        return bool(self.client.has_collection(name))

    def _create(self, info: CollectionInfo) -> None:
        name, sparse_dim, dense_dim = info.name, info.sparse_dim, info.dense_dim
        schema = self.client.create_schema(
            auto_id=False,
            enable_dynamic_field=True,
            description=json.dumps({"sparse_dim": sparse_dim, "pk": _PK_SCHEME, "encoder": info.encoder}),
        )
        schema.add_field(PK, DataType.VARCHAR, is_primary=True, max_length=36)  # a UUID string
        index = self.client.prepare_index_params()
        if sparse_dim:
            schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
            index.add_index(
                field_name=SPARSE, index_type=self.sparse_index, metric_type="IP", params=self.sparse_params
            )
        if dense_dim:
            schema.add_field(DENSE, DataType.FLOAT_VECTOR, dim=dense_dim)
            index.add_index(
                field_name=DENSE, index_type=self.dense_index, metric_type="IP", params=self.dense_index_params
            )
        for delay in (0.25, 0.5, 1.0, 2.0, 0.0):
            try:
                with _engine_errors(f"create collection {name!r}"):
                    self.client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
                return
            except EngineError as exc:  # Milvus Lite answers before its segment core is up on a busy machine
                if not delay or _LITE_STARTING not in str(exc):
                    raise
                time.sleep(delay)

    def _drop(self, name: str) -> None:
        self.client.drop_collection(name)

    def all_collections(self) -> list[str]:
        return sorted(self.client.list_collections())

    def _read_info(self, name: str) -> CollectionInfo:
        if not self.client.has_collection(name):
            raise self.missing(name)
        described = self.client.describe_collection(name)
        fields = {f["name"]: f for f in described["fields"]}
        dense = fields.get(DENSE)
        meta = json.loads(described.get("description") or "{}")
        if meta.get("pk") != _PK_SCHEME:
            raise EngineError(
                f"collection {name!r} was not created by this adapter version (its primary keys are not UUIDs of "
                "document ids); writing to it would duplicate documents. Re-index into a new collection"
            )
        sparse_dim = meta.get("sparse_dim")
        return CollectionInfo(name, sparse_dim, int(dense["params"]["dim"]) if dense else None, meta.get("encoder"))

    # ------------------------------------------------------- reading back (migration)
    def _schema(self, name: str, vector: str | None, dense: bool = True) -> tuple[str, str, int, set[str]]:
        """(primary key field, dense vector field, its size, every vector field) of any collection (without
        `dense`: no dense field, "" and 0)."""
        if not self.client.has_collection(self.check_name(name)):
            raise self.missing(name)
        fields = self.client.describe_collection(name)["fields"]
        primary = next(f["name"] for f in fields if f.get("is_primary"))
        sizes = {f["name"]: int(f["params"]["dim"]) for f in fields if f["type"] == DataType.FLOAT_VECTOR}
        vectors = {f["name"] for f in fields if "VECTOR" in getattr(f["type"], "name", "")}
        field, size = pick_vector(name, sizes, vector) if dense else ("", 0)
        return primary, field, size, vectors

    def dense_source(self, name: str, vector: str | None = None) -> tuple[int, int]:
        _, _, size, _ = self._schema(name, vector)
        with _engine_errors(f"count {name!r}"):
            rows = self.client.query(name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]), size

    def read_dense(
        self, name: str, vector: str | None = None, batch_size: int = 256, *, vectors: bool = True
    ) -> Iterator[DensePoints]:
        """Every row through a query iterator (primary-key order), `batch_size` per page; scalar and dynamic
        fields become the payload."""
        primary, field, _, fields = self._schema(name, vector, vectors)
        with _engine_errors(f"read {name!r}"):
            pages = self.client.query_iterator(name, batch_size=batch_size, output_fields=["*"])
        try:
            while rows := pages.next():
                ids, payloads = [], []
                for row in rows:
                    doc_id, payload = document_of({k: v for k, v in row.items() if k not in fields}, row[primary])
                    payload.pop(primary, None)
                    ids.append(doc_id)
                    payloads.append(payload)
                dense = np.asarray([row[field] for row in rows] if field else np.empty((len(rows), 0)), np.float32)
                yield DensePoints(ids, dense, payloads)
        finally:
            pages.close()

    # ------------------------------------------------------------------ data
    def _upsert(self, name: str, batch: WriteBatch) -> None:
        ids, sparse, dense, payloads = batch.ids, batch.sparse, batch.dense, batch.payloads
        if sparse is not None and (sparse.values < 0).any():
            bad = int(np.argwhere(sparse.values < 0)[0, 0])
            raise UnsupportedError(
                f"row {bad} holds a negative sparse value; Milvus rejects negative sparse values. "
                "Heads from this package emit ReLU outputs (>= 0); clamp other codes at 0."
            )
        sparse_rows = sparse.to_dicts() if sparse is not None else None
        records = []
        for i, (doc_id, payload) in enumerate(zip(ids, payloads, strict=True)):
            clash = _RESERVED & payload.keys()
            if clash:
                raise InvalidArgumentError(f"payload keys {sorted(clash)} are reserved by the Milvus adapter")
            record = {**stored_payload(doc_id, payload), PK: point_id(doc_id)}
            if sparse_rows is not None:
                record[SPARSE] = sparse_rows[i]
            if dense is not None:
                record[DENSE] = dense[i].tolist()
            records.append(record)
        # One call per ~UPSERT_BYTES of vectors and payloads: Milvus Lite 2.5.1 takes 0.6 s for 4,000 rows of 384
        # floats in one call and 20 s for 6,000 (467 s for 20,000), so big batches are sent in slices.
        sampled = [json.dumps(p, default=str) for p in payloads[:: max(1, len(records) // 100)]]  # texts count too
        per_row = 4 * (dense.shape[1] if dense is not None else 0) + 8 * (sparse.width if sparse is not None else 0)
        per_row += sum(map(len, sampled)) // max(1, len(sampled))
        step = max(1, UPSERT_BYTES // max(1, per_row))
        for start in range(0, len(records), step):
            with _engine_errors(f"upsert {len(records[start : start + step])} rows into {name!r}"):
                self.client.upsert(name, records[start : start + step])

    def close(self) -> None:
        """Close the client; a Milvus Lite file opened here is released at once (not at process exit)."""
        self.client.close()
        if self._lite is not None:
            _release_lite(self._lite)
            self._lite = None

    def flush(self, name: str) -> None:
        """Seal growing segments so the index covers them (searches on growing segments scan them)."""
        self.collection_info(name)
        self.client.flush(name)

    def get(self, name: str, ids: Sequence[str]) -> list[Hit]:
        self.collection_info(name)
        if not ids:
            return []
        with _engine_errors(f"get from {name!r}"):
            rows = self.client.get(name, ids=[point_id(i) for i in ids], output_fields=["*"])
        found = [hit_from_payload({k: v for k, v in r.items() if k not in _RESERVED}, 0.0, r[PK]) for r in rows]
        return in_order(ids, found)

    def _sparse_codes(self, name: str, ids: list[str]) -> dict[str, tuple[list[int], list[float]]]:
        with _engine_errors(f"read codes from {name!r}"):
            rows = self.client.get(name, ids=[point_id(i) for i in ids], output_fields=["*"])
        out = {}
        for r in rows:
            doc_id = hit_from_payload({k: v for k, v in r.items() if k not in _RESERVED}, 0.0, r[PK]).id
            code = sorted((int(i), float(v)) for i, v in (r.get(SPARSE) or {}).items())
            out[doc_id] = ([i for i, _ in code], [v for _, v in code])
        return out

    def _dense_vectors(self, name: str, ids: list[str]) -> np.ndarray:
        keys = [point_id(i) for i in ids]
        with _engine_errors(f"read dense vectors from {name!r}"):
            rows = self.client.get(name, ids=keys, output_fields=[DENSE])
        by_key = {r[PK]: r[DENSE] for r in rows}
        return np.asarray([by_key[k] for k in keys], dtype=np.float32)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Delete by document id; the primary keys are UUIDs, so no id can change the expression pymilvus builds."""
        self.collection_info(name)
        with _engine_errors(f"delete from {name!r}"):
            self.client.delete(name, ids=[point_id(i) for i in ids])

    def count(self, name: str, filter: Filter | None = None) -> int:
        self.collection_info(name)
        with _engine_errors(f"count {name!r}"):
            result = self.client.query(name, filter=_expr(filter), output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    # ---------------------------------------------------------------- search
    def _search(self, name: str, query: SparseBatch | np.ndarray, limit: int, filter: Filter | None) -> list[list[Hit]]:
        sparse = isinstance(query, SparseBatch)
        vectors: list[Any] = query.to_dicts() if isinstance(query, SparseBatch) else query.tolist()
        return self._run(
            vectors,
            lambda live: self.client.search(
                name,
                live,
                anns_field=SPARSE if sparse else DENSE,
                limit=limit,
                filter=_expr(filter),
                output_fields=["*"],
                search_params={
                    "metric_type": "IP",
                    "params": self.sparse_search_params if sparse else self.dense_search_params,
                },
            ),
        )

    def _hybrid_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        sparse, dense, limit, depth, filter = r.sparse, r.dense, r.limit, r.depth, r.filter
        fusion = r.fusion
        ranker = RRFRanker(self.rrf_k) if fusion == "rrf" else WeightedRanker(*self.weights)
        expr = _expr(filter)
        dense_params = {"metric_type": "IP", "params": self.dense_search_params}
        out: list[list[Hit]] = []
        # hybrid_search takes one query per request; an empty sparse row falls back to the dense list alone.
        for s, d in zip(sparse.to_dicts(), dense.tolist(), strict=True):
            requests = [AnnSearchRequest([d], DENSE, dense_params, depth, expr=expr)]
            if s:
                requests.insert(
                    0,
                    AnnSearchRequest(
                        [s], SPARSE, {"metric_type": "IP", "params": self.sparse_search_params}, depth, expr=expr
                    ),
                )
            with _engine_errors(f"search {name!r}"):
                result = self.client.hybrid_search(name, requests, ranker, limit=limit, output_fields=["*"])
            out.append([_hit(h) for h in result[0]])
        return out

    def _run(self, vectors: list[Any], call: Any) -> list[list[Hit]]:
        # Milvus rejects an empty sparse query in a batch; empty rows get [] without asking.
        results: list[list[Hit]] = [[] for _ in vectors]
        live = [i for i, v in enumerate(vectors) if len(v)]
        if live:
            with _engine_errors("search"):
                answers = call([vectors[i] for i in live])
            for i, hits in zip(live, answers, strict=True):
                results[i] = [_hit(h) for h in hits]
        return results


def _connect(uri: str, token: str) -> MilvusClient:
    """A client for a server URI, or Milvus Lite on a .db file (one process at a time)."""
    if "://" in uri:
        return MilvusClient(uri=uri, token=token)
    Path(uri).parent.mkdir(parents=True, exist_ok=True)  # Milvus Lite needs the folder of its .db file
    try:
        with _lite_ignores_ctrl_c():
            return MilvusClient(uri=uri, token=token)
    except Exception as exc:  # milvus-lite raises a bare exception ("Open local milvus failed")
        if "Open local milvus failed" in str(exc):
            raise StoreLockedError(
                f"Milvus Lite could not open {redact(uri)}: another process probably has it open "
                "(Milvus Lite allows one); close it there, or give this process its own .db file"
            ) from exc
        raise


@contextmanager
def _lite_ignores_ctrl_c() -> Iterator[None]:
    """Start Milvus Lite's server process with SIGINT ignored (the disposition is inherited across exec).

    Ctrl-C reaches the terminal's whole process group: the server died with it, and pymilvus then retried the
    dead socket about 75 times (3.5 minutes) before the run could stop. The server still stops with this
    process: it exits when the file lock that this process holds is released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _release_lite(uri: str) -> None:
    """Stop this process's Milvus Lite server on `uri`, so the file can be opened again at once."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)


def _hit(hit: Mapping[str, Any]) -> Hit:
    entity = {k: v for k, v in hit["entity"].items() if k not in _RESERVED}
    return hit_from_payload(entity, float(hit["distance"]), fallback_id=hit["id"])


def _literal(key: str, value: str | int | float | bool) -> str:
    """A Milvus expression literal that Milvus reads back as exactly `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if "\n" in value or "\r" in value:
        raise UnsupportedError(
            f"filter on {key!r}: Milvus expressions cannot hold a line break inside a string ({value!r})"
        )
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _expr(filter: Filter | None) -> str:
    """Engine-neutral filter -> Milvus boolean expression over (dynamic) fields."""
    parts = []
    for kind, key, value in conditions(filter):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or key in _RESERVED:
            raise InvalidArgumentError(
                f"filter field {key!r} is not a Milvus payload field name (letters, digits, '_')"
            )
        if kind == "eq":
            parts.append(f"{key} == {_literal(key, value)}")
        elif kind == "any":
            parts.append(f"{key} in [{', '.join(_literal(key, v) for v in value)}]")
        else:
            for op, bound in ((">=", value.gte), (">", value.gt), ("<=", value.lte), ("<", value.lt)):
                if bound is not None:
                    parts.append(f"{key} {op} {bound!r}")
    return " and ".join(parts)
