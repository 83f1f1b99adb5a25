"""Embedded Qdrant (qdrant-edge-py: Qdrant's Rust engine in-process), the default engine.

One store is a directory; each collection is an Edge shard in a sub-directory, with a named
sparse vector "sparse" (float32, no IDF: scores are exact dot products) and/or a named dense
vector "dense" (Dot distance on unit vectors, i.e. cosine). Dense vectors are searched exactly
(`dense_index="flat"`, the default) or through an HNSW graph (`dense_index="hnsw"`); either way
`optimize(name)` after a bulk load merges segments and builds the indexes (the HNSW graph, the
immutable sparse inverted index). A lock file keeps a second process from opening the same directory.

Per-point costs (measured by `csrv2-vdb bench engine-options`): a document id that is a plain integer or a
UUID becomes the point id itself, with no `_id` payload (`compact_ids`, on for new collections); other ids
become UUIDv5 point ids with the caller's id in the payload. The sparse index's storage type and placement
(`sparse_datatype`, `sparse_on_disk`) and its `full_scan_threshold` are Qdrant's own options, fixed at creation.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import qdrant_edge as qe

from csrv2_vdb.adapters.qdrant_common import (
    DENSE,
    MIN_MATCH,
    SPARSE,
    build_filter,
    dense_points,
    drop_non_matches,
    for_matching_rows,
    hit_from_point,
    point_vectors,
)
from csrv2_vdb.errors import InvalidArgumentError, StoreLockedError
from csrv2_vdb.filters import Filter, conditions
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import (
    CollectionInfo,
    DensePoints,
    Hit,
    HybridRequest,
    StoreBase,
    WriteBatch,
    hit_from_payload,
    in_order,
    native_id,
    pick_vector,
    point_id,
    stored_payload,
)

_META = "collection.json"
_SHARD = "shard"
_COMPACT = "native"  # the collection.json "ids" value of collections written with compact ids
_PAYLOAD_KINDS = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
                  "float": qe.PayloadSchemaType.Float, "bool": qe.PayloadSchemaType.Bool}  # fmt: skip
SparseDatatype = Literal["float32", "float16", "uint8"]
_DATATYPES = {"float32": qe.VectorStorageDatatype.Float32, "float16": qe.VectorStorageDatatype.Float16,
              "uint8": qe.VectorStorageDatatype.Uint8}  # fmt: skip


class QdrantEdgeStore(StoreBase):
    """`SparseStore` on an embedded Qdrant Edge directory."""

    engine = "Qdrant"
    fusions = ("rrf", "dbsf")

    def __init__(
        self,
        path: str | Path,
        *,
        rrf_k: int = 60,
        dense_index: Literal["flat", "hnsw"] = "flat",
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        compact_ids: bool = True,
        sparse_datatype: SparseDatatype = "float32",
        sparse_on_disk: bool = False,
        full_scan_threshold: int | None = None,
    ) -> None:
        """Options after `path` apply to collections this store creates; an existing collection keeps its own.

        compact_ids: integer/UUID document ids are the point ids (no `_id` payload); False: every id is hashed
        to a UUIDv5 and kept in the payload (the scheme of collections written before this option).
        sparse_datatype: "float16"/"uint8" store the sparse vectors in fewer bits (measured at 1M: under 4 % fewer
        bytes, the same speed, results still exact; docs/benchmarks.md). sparse_on_disk: keep the inverted index
        on disk (mmap) instead of pinned in RAM. full_scan_threshold: Qdrant's switch to scoring filtered points
        directly (acts on fields with a payload index; None: its default).
        """
        super().__init__()
        if dense_index not in ("flat", "hnsw"):
            raise InvalidArgumentError(f"dense_index must be 'flat' or 'hnsw', got {dense_index!r}")
        if sparse_datatype not in _DATATYPES:
            raise InvalidArgumentError(f"sparse_datatype must be one of {sorted(_DATATYPES)}, got {sparse_datatype!r}")
        self._sparse = qe.EdgeSparseVectorParams(
            full_scan_threshold=full_scan_threshold,
            datatype=None if sparse_datatype == "float32" else _DATATYPES[sparse_datatype],
            memory=qe.Memory.Cold if sparse_on_disk else None,  # None: Qdrant's default, pinned in RAM
        )
        self.compact_ids = compact_ids
        self.path = Path(path)
        # m=0 tells Qdrant to build no graph: dense search stays an exact scan after optimize().
        self._hnsw = qe.HnswIndexConfig(
            m=hnsw_m if dense_index == "hnsw" else 0, ef_construct=hnsw_ef_construct, full_scan_threshold=10_000
        )
        self.path.mkdir(parents=True, exist_ok=True)
        self.rrf_k = rrf_k
        self._lock = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreLockedError(
                f"the store at {self.path} is open in another process; close it there, "
                "or give this process its own directory"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._compact: dict[str, bool] = {}  # per collection: were its points written with compact ids
        self._opening = threading.Lock()  # writer threads must not open the same shard twice

    def close(self) -> None:
        """Flush and close every open shard, then release the directory lock."""
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    # ----------------------------------------------------------- collections
    def _exists(self, name: str) -> bool:
        return (self.path / name / _META).exists()

    def _create(self, info: CollectionInfo) -> None:
        name, sparse_dim, dense_dim = info.name, info.sparse_dim, info.dense_dim
        directory = self.path / name
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dense_dim, distance=qe.Distance.Dot, hnsw_config=self._hnsw)}
            if dense_dim
            else None,
            sparse_vectors={SPARSE: self._sparse} if sparse_dim else None,
        )
        directory.mkdir(parents=True, exist_ok=True)
        self._shards[name] = qe.EdgeShard.create(str(directory / _SHARD), config)
        meta = {"sparse_dim": sparse_dim, "dense_dim": dense_dim, "encoder": info.encoder}
        if self.compact_ids:
            meta["ids"] = _COMPACT
        (directory / _META).write_text(json.dumps(meta))
        self._compact[name] = self.compact_ids

    def _drop(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        self._compact.pop(name, None)
        if shard is not None:
            shard.close()
        shutil.rmtree(self.path / name)

    def all_collections(self) -> list[str]:
        return sorted(p.parent.name for p in self.path.glob(f"*/{_META}"))

    def _read_info(self, name: str) -> CollectionInfo:
        # The name was checked first: names are sub-directories, "../other" never reaches the file system.
        meta = self.path / name / _META
        if not meta.exists():
            raise self.missing(name)
        dims = json.loads(meta.read_text())
        self._compact[name] = dims.get("ids") == _COMPACT
        return CollectionInfo(name, dims["sparse_dim"], dims["dense_dim"], dims.get("encoder"))

    def _native(self, name: str, doc_id: str) -> int | str | None:
        """The document id as this collection's point id, when it is written with compact ids and the id qualifies;
        None: the point id is the UUIDv5 and the id rides in the payload. Callers have read the collection's info."""
        return native_id(doc_id) if self._compact[name] else None

    def _point(self, name: str, doc_id: str) -> int | str:
        """The point id of a document in this collection (see `compact_ids`)."""
        native = self._native(name, doc_id)
        return point_id(doc_id) if native is None else native

    def _shard(self, name: str) -> qe.EdgeShard:
        self.collection_info(name)
        with self._opening:
            if name not in self._shards:
                self._shards[name] = qe.EdgeShard.load(str(self.path / name / _SHARD))
        return self._shards[name]

    # ------------------------------------------------------- reading back (migration)
    def dense_source(self, name: str, vector: str | None = None) -> tuple[int, int]:
        info = self.collection_info(name)
        _, size = pick_vector(name, {DENSE: info.dense_dim} if info.dense_dim else {}, vector)
        return self.count(name), size

    def read_dense(
        self, name: str, vector: str | None = None, batch_size: int = 256, *, vectors: bool = True
    ) -> Iterator[DensePoints]:
        """Scroll every point in id order, `batch_size` per page."""
        if vectors:
            self.dense_source(name, vector)
        shard, offset = self._shard(name), None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch_size, with_payload=True, with_vector=[DENSE] if vectors else False
            )
            records, offset = shard.scroll(request)
            if records:
                yield dense_points(records, DENSE if vectors else None)
            if offset is None:
                return

    def create_payload_index(self, name: str, field: str, kind: str = "keyword") -> None:
        """Index a payload field (keyword, integer, float, bool) so filters on it are planned from the index; with
        it, a filter that keeps fewer than `full_scan_threshold` points is answered by scoring just those points."""
        if kind not in _PAYLOAD_KINDS:
            raise InvalidArgumentError(f"payload index kind must be one of {sorted(_PAYLOAD_KINDS)}, got {kind!r}")
        self._shard(name).update(qe.UpdateOperation.create_field_index(field, _PAYLOAD_KINDS[kind]))

    def flush(self, name: str) -> None:
        self._shard(name).flush()

    def optimize(self, name: str) -> bool:
        """Merge segments and build indexes now (blocking); worth calling once after a bulk load.

        Until then points sit in appendable segments: exact, but slower to search at scale.
        """
        return bool(self._shard(name).optimize())

    # ------------------------------------------------------------------ data
    def _upsert(self, name: str, batch: WriteBatch) -> None:
        ids, sparse, dense, payloads = batch.ids, batch.sparse, batch.dense, batch.payloads
        vectors = point_vectors(len(ids), sparse, dense, qe)
        points = []
        for doc_id, vector, payload in zip(ids, vectors, payloads, strict=True):
            native = self._native(name, doc_id)
            if native is None:
                points.append(qe.Point(point_id(doc_id), vector, stored_payload(doc_id, payload)))
            else:  # the point id gives the document id back: no payload copy of it
                points.append(qe.Point(native, vector, dict(payload)))
        self._shard(name).update(qe.UpdateOperation.upsert_points(points))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self._shard(name).update(qe.UpdateOperation.delete_points([self._point(name, i) for i in ids]))

    def get(self, name: str, ids: Sequence[str]) -> list[Hit]:
        points = self._shard(name).retrieve([self._point(name, i) for i in ids], True, False)
        return in_order(ids, [hit_from_payload(p.payload or {}, 0.0, p.id) for p in points])

    def _sparse_codes(self, name: str, ids: list[str]) -> dict[str, tuple[list[int], list[float]]]:
        points = self._shard(name).retrieve([self._point(name, i) for i in ids], True, True)
        out = {}
        for p in points:
            code = p.vector.get(SPARSE) if isinstance(p.vector, dict) else None
            if isinstance(code, qe.SparseVector):
                out[hit_from_payload(p.payload or {}, 0.0, p.id).id] = (list(code.indices), list(code.values))
        return out

    def count(self, name: str, filter: Filter | None = None) -> int:
        return int(self._shard(name).count(qe.CountRequest(exact=True, filter=_filter(filter))))

    # ---------------------------------------------------------------- search
    @staticmethod
    def _queries(query: SparseBatch | np.ndarray) -> list[Any]:
        if isinstance(query, SparseBatch):
            return [qe.Query.Nearest(qe.SparseVector(indices=i, values=v), using=SPARSE) for i, v in query.rows()]
        return [qe.Query.Nearest(row, using=DENSE) for row in query.tolist()]

    def _search(self, name: str, query: SparseBatch | np.ndarray, limit: int, filter: Filter | None) -> list[list[Hit]]:
        flt = _filter(filter)
        requests = [qe.QueryRequest(limit=limit, query=q, filter=flt, with_payload=True) for q in self._queries(query)]
        results = self._run(name, requests)
        return drop_non_matches(results) if isinstance(query, SparseBatch) else results

    def _hybrid_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        sparse, dense, limit, depth, filter = r.sparse, r.dense, r.limit, r.depth, r.filter
        fusion = r.fusion
        flt = _filter(filter)
        # The stubs type QueryRequest.query as the Fusion namespace; its Rrf/Dbsf members are what it takes.
        fused: Any = qe.Fusion.Rrf(k=self.rrf_k) if fusion == "rrf" else qe.Fusion.Dbsf()
        requests = [
            qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=depth, query=s, filter=flt),
                    qe.Prefetch(limit=depth, query=d, filter=flt),
                ],
                query=fused,
                with_payload=True,
            )
            for s, d in zip(self._queries(sparse), self._queries(dense), strict=True)
        ]
        return self._run(name, requests)

    def _rerank_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        """One call per query: the sparse prefetch (documents sharing a latent only) rescored by the dense query."""
        flt = _filter(r.filter)
        pairs = list(zip(self._queries(r.sparse), self._queries(r.dense), strict=True))

        def run(rows: list[int]) -> list[list[Hit]]:
            requests = [
                qe.QueryRequest(
                    limit=r.limit,
                    prefetches=[qe.Prefetch(limit=r.depth, query=s, filter=flt, score_threshold=MIN_MATCH)],
                    query=d,
                    with_payload=True,
                )
                for s, d in (pairs[i] for i in rows)
            ]
            return self._run(name, requests)

        return for_matching_rows(r.sparse, run)

    def _run(self, name: str, requests: list[qe.QueryRequest]) -> list[list[Hit]]:
        if not requests:
            return []
        results = self._shard(name).query_batch(qe.QueryBatchRequest(requests))
        return [[hit_from_point(p) for p in points] for points in results]


def _filter(filter: Filter | None) -> qe.Filter | None:
    """Engine-neutral filter -> Qdrant Edge filter; booleans refused (qdrant-edge-py 0.9 matches none)."""
    for kind, key, value in conditions(filter):
        if kind != "range" and any(isinstance(v, bool) for v in (value if kind == "any" else [value])):
            # qdrant-edge-py 0.9 matches no point for a boolean MatchValue (seen in tests/test_qdrant_edge.py).
            raise InvalidArgumentError(
                f"filter on {key!r}: qdrant-edge cannot match boolean payload values; "
                "store the field as a string or 0/1"
            )
    return build_filter(filter, qe, qe.RangeFloat)
