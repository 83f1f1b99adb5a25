"""Qdrant servers and clusters through qdrant-client (`QdrantStore`).

Collections carry a named sparse vector "sparse" (float32 storage, IDF modifier off unless asked:
scores are then exact dot products) and/or a named dense vector "dense" (Dot: callers store unit
vectors). Hybrid search is Qdrant's prefetch + fusion (RRF or DBSF). The sparse latent dim lives in
the collection metadata.

`QdrantStore(url="http://host:6333")` talks gRPC by default. `QdrantStore(location=":memory:")` or
`QdrantStore(path=...)` is qdrant-client's local mode, a Python re-implementation (about 50 ms per
query at 10k points): good for client-API tests, not a speed reference.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import grpc
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException

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
from csrv2_vdb.filters import Filter
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
    pick_vector,
    point_id,
    stored_payload,
)

_DIM_KEY = "csrv2_sparse_dim"
_ENCODER_KEY = "csrv2_encoder"
# REST connection failures arrive as ResponseHandlingException, gRPC ones as RpcError (UNAVAILABLE, DEADLINE).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    ResponseHandlingException,
    grpc.RpcError,
)


class QdrantStore(StoreBase):
    """`SparseStore` on qdrant-client (server, cluster, or local mode)."""

    engine = "Qdrant"
    fusions = ("rrf", "dbsf")

    # Worth retrying in bulk writes: the connection dropped or the server was briefly unavailable.
    transient_errors = TRANSIENT_ERRORS

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        location: str | None = None,
        path: str | None = None,
        prefer_grpc: bool = True,
        parallel: int = 1,
        sparse_idf: bool = False,
        rrf_k: int | None = None,
        client: QdrantClient | None = None,
    ) -> None:
        super().__init__()
        self.client = client or QdrantClient(
            url=url, api_key=api_key, location=location, path=path, prefer_grpc=prefer_grpc and url is not None
        )
        self.sparse_idf = sparse_idf
        self.rrf_k = rrf_k
        self.parallel = parallel
        # Local mode persists through one sqlite connection that concurrent writers corrupt; serialise them.
        local = client is None and url is None
        self._writes: AbstractContextManager[Any] = threading.Lock() if local else nullcontext()

    # ----------------------------------------------------------- collections
    def _exists(self, name: str) -> bool:
        return bool(self.client.collection_exists(name))

    def _create(self, info: CollectionInfo) -> None:
        name, sparse_dim, dense_dim = info.name, info.sparse_dim, info.dense_dim
        sparse_params = models.SparseVectorParams(
            index=models.SparseIndexParams(on_disk=False, datatype=models.Datatype.FLOAT32),
            modifier=models.Modifier.IDF if self.sparse_idf else None,
        )
        self.client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=dense_dim, distance=models.Distance.DOT)}
            if dense_dim
            else {},
            sparse_vectors_config={SPARSE: sparse_params} if sparse_dim else None,
            metadata={_DIM_KEY: sparse_dim, _ENCODER_KEY: info.encoder},
        )

    def create_payload_index(self, name: str, field: str, kind: str = "keyword") -> None:
        """Index a payload field for filtering (keyword, integer, float, bool); a no-op in local mode."""
        self.collection_info(name)
        self.client.create_payload_index(name, field, models.PayloadSchemaType(kind))

    def _drop(self, name: str) -> None:
        self.client.delete_collection(name)

    def all_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def _read_info(self, name: str) -> CollectionInfo:
        if not self.client.collection_exists(name):
            raise self.missing(name)
        config = self.client.get_collection(name).config
        vectors = config.params.vectors
        dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
        meta = config.metadata or {}
        sparse_dim = meta.get(_DIM_KEY)
        dense_dim = dense.size if dense else None
        return CollectionInfo(name, int(sparse_dim) if sparse_dim else None, dense_dim, meta.get(_ENCODER_KEY))

    # ------------------------------------------------------- reading back (migration)
    def _dense_vector(self, name: str, vector: str | None) -> tuple[str, int]:
        """(name, size) of a collection's dense vector ("" for an unnamed one), whoever created it."""
        if not self.client.collection_exists(self.check_name(name)):
            raise self.missing(name)
        vectors = self.client.get_collection(name).config.params.vectors
        sizes = {k: v.size for k, v in vectors.items()} if isinstance(vectors, dict) else {"": vectors.size}
        return pick_vector(name, sizes, vector)

    def dense_source(self, name: str, vector: str | None = None) -> tuple[int, int]:
        _, size = self._dense_vector(name, vector)
        return int(self.client.count(name, exact=True).count), int(size)

    def read_dense(
        self, name: str, vector: str | None = None, batch_size: int = 256, *, vectors: bool = True
    ) -> Iterator[DensePoints]:
        """Scroll every point in id order (Qdrant's scroll order), `batch_size` per page."""
        field = self._dense_vector(name, vector)[0] if vectors else None
        if field is None:
            self.collection_info(name)
        offset = None
        while True:
            records, offset = self.client.scroll(
                name,
                limit=batch_size,
                offset=offset,
                with_payload=True,
                with_vectors=False if field is None else [field] if field else True,
            )
            if records:
                yield dense_points(records, field)
            if offset is None:
                return

    # ------------------------------------------------------------------ data
    def _upsert(self, name: str, batch: WriteBatch) -> None:
        ids, sparse, dense, payloads = batch.ids, batch.sparse, batch.dense, batch.payloads
        vectors = point_vectors(len(ids), sparse, dense, models)
        points = [
            models.PointStruct(id=point_id(doc_id), vector=vector, payload=stored_payload(doc_id, payload))
            for doc_id, vector, payload in zip(ids, vectors, payloads, strict=True)
        ]
        with self._writes:
            # upload_points splits large batches and, with parallel > 1, writes from worker processes;
            # retries are bulk_index's job (with backoff), so the client's own are off.
            self.client.upload_points(name, points, batch_size=256, parallel=self.parallel, max_retries=0, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self.collection_info(name)
        with self._writes:
            self.client.delete(name, points_selector=models.PointIdsList(points=[point_id(i) for i in ids]), wait=True)

    def get(self, name: str, ids: Sequence[str]) -> list[Hit]:
        self.collection_info(name)
        points = self.client.retrieve(name, [point_id(i) for i in ids], with_payload=True, with_vectors=False)
        return in_order(ids, [hit_from_payload(p.payload or {}, 0.0, p.id) for p in points])

    def _sparse_codes(self, name: str, ids: list[str]) -> dict[str, tuple[list[int], list[float]]]:
        points = self.client.retrieve(name, [point_id(i) for i in ids], with_payload=True, with_vectors=[SPARSE])
        out = {}
        for p in points:
            code = p.vector.get(SPARSE) if isinstance(p.vector, dict) else None
            if code is not None:
                out[hit_from_payload(p.payload or {}, 0.0, p.id).id] = (list(code.indices), list(code.values))
        return out

    def count(self, name: str, filter: Filter | None = None) -> int:
        self.collection_info(name)
        return int(self.client.count(name, count_filter=_filter(filter), exact=True).count)

    # ---------------------------------------------------------------- search
    @staticmethod
    def _queries(query: SparseBatch | np.ndarray) -> list[tuple[Any, str]]:
        if isinstance(query, SparseBatch):
            return [(models.SparseVector(indices=i, values=v), SPARSE) for i, v in query.rows()]
        return [(row, DENSE) for row in query.tolist()]

    def _search(self, name: str, query: SparseBatch | np.ndarray, limit: int, filter: Filter | None) -> list[list[Hit]]:
        flt = _filter(filter)
        requests = [
            models.QueryRequest(query=q, using=using, filter=flt, limit=limit, with_payload=True)
            for q, using in self._queries(query)
        ]
        results = self._run(name, requests)
        return drop_non_matches(results) if isinstance(query, SparseBatch) else results

    def _hybrid_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        sparse, dense, limit, depth, filter = r.sparse, r.dense, r.limit, r.depth, r.filter
        fusion = r.fusion
        if fusion == "dbsf":
            fused: Any = models.FusionQuery(fusion=models.Fusion.DBSF)
        elif self.rrf_k is not None:
            fused = models.RrfQuery(rrf=models.Rrf(k=self.rrf_k))
        else:
            fused = models.FusionQuery(fusion=models.Fusion.RRF)
        flt = _filter(filter)
        requests = [
            models.QueryRequest(
                prefetch=[
                    models.Prefetch(query=s, using=su, filter=flt, limit=depth),
                    models.Prefetch(query=d, using=du, filter=flt, limit=depth),
                ],
                query=fused,
                filter=flt,
                limit=limit,
                with_payload=True,
            )
            for (s, su), (d, du) in zip(self._queries(sparse), self._queries(dense), strict=True)
        ]
        return self._run(name, requests)

    def _rerank_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        """One call per query: the sparse prefetch (documents sharing a latent only) rescored by the dense query."""
        flt = _filter(r.filter)
        pairs = list(zip(self._queries(r.sparse), self._queries(r.dense), strict=True))

        def run(rows: list[int]) -> list[list[Hit]]:
            requests = [
                models.QueryRequest(
                    prefetch=[models.Prefetch(query=s, using=su, filter=flt, limit=r.depth, score_threshold=MIN_MATCH)],
                    query=d,
                    using=du,
                    limit=r.limit,
                    with_payload=True,
                )
                for (s, su), (d, du) in (pairs[i] for i in rows)
            ]
            return self._run(name, requests)

        return for_matching_rows(r.sparse, run)

    def _run(self, name: str, requests: list[models.QueryRequest]) -> list[list[Hit]]:
        # An all-zero sparse query matches nothing; Qdrant is asked only for the others.
        results: list[list[Hit]] = [[] for _ in requests]
        live = [i for i, r in enumerate(requests) if not _is_empty(r)]
        if live:
            responses = self.client.query_batch_points(name, [requests[i] for i in live])
            for i, response in zip(live, responses, strict=True):
                results[i] = [hit_from_point(p) for p in response.points]
        return results


def _is_empty(request: models.QueryRequest) -> bool:
    return isinstance(request.query, models.SparseVector) and not request.query.indices


def _filter(filter: Filter | None) -> models.Filter | None:
    return build_filter(filter, models, models.Range)
