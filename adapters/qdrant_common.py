"""What the two Qdrant adapters share: qdrant-client and qdrant-edge-py speak the same vocabulary (FieldCondition,
MatchValue, MatchAny, Filter, SparseVector), so filters, point vectors and hits are built once here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from csrv2_vdb.errors import InvalidEmbeddingError
from csrv2_vdb.filters import Filter, conditions
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import DensePoints, Hit, document_of, hit_from_payload

SPARSE = "sparse"
DENSE = "dense"


def build_filter(filter: Filter | None, api: Any, range_type: Any) -> Any:
    """Engine-neutral filter -> `api.Filter(must=[...])` (None when empty); `api` is qdrant_client.models or
    qdrant_edge, `range_type` their numeric range class."""
    must: list[Any] = []
    for kind, key, value in conditions(filter):
        if kind == "range":
            rng = range_type(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
            must.append(api.FieldCondition(key=key, range=rng))
        elif kind == "any":
            must.append(api.FieldCondition(key=key, match=api.MatchAny(any=value)))
        else:
            must.append(api.FieldCondition(key=key, match=api.MatchValue(value=value)))
    return api.Filter(must=must) if must else None


def point_vectors(n: int, sparse: SparseBatch | None, dense: np.ndarray | None, api: Any) -> list[dict[str, Any]]:
    """The named vectors of n points: {"sparse": api.SparseVector, "dense": [floats]} as the collection holds."""
    vectors: list[dict[str, Any]] = [{} for _ in range(n)]
    if sparse is not None:
        for vector, (indices, values) in zip(vectors, sparse.rows(), strict=True):
            vector[SPARSE] = api.SparseVector(indices=indices, values=values)
    if dense is not None:
        for vector, row in zip(vectors, dense.tolist(), strict=True):
            vector[DENSE] = row
    return vectors


def hit_from_point(point: Any) -> Hit:
    """A Hit from a Qdrant scored point (server or Edge): the document id comes back out of the payload."""
    return hit_from_payload(point.payload or {}, float(point.score), fallback_id=point.id)


# A sparse score above 0 means the document shares a latent with the query (codes are non-negative): the
# threshold that keeps Qdrant's prefetch to such documents, as drop_non_matches does for plain searches.
MIN_MATCH = 1e-30


def for_matching_rows(sparse: SparseBatch, run: Callable[[list[int]], list[list[Hit]]]) -> list[list[Hit]]:
    """`run` on the rows whose sparse query has a latent; an all-zero query matches nothing and gets []."""
    live = [i for i, (indices, _) in enumerate(sparse.rows()) if len(indices)]
    results: list[list[Hit]] = [[] for _ in range(len(sparse))]
    for i, hits in zip(live, run(live) if live else [], strict=True):
        results[i] = hits
    return results


def drop_non_matches(results: list[list[Hit]]) -> list[list[Hit]]:
    """Remove sparse hits with score 0: documents that share no latent with the query.

    Qdrant returns them from some code paths (plain scan, local mode) and not from others; Milvus never
    does. With non-negative codes a score of 0 means no overlap, so every engine answers alike.
    """
    return [[h for h in row if h.score != 0.0] for row in results]


def dense_points(records: list[Any], vector: str | None) -> DensePoints:
    """Scrolled Qdrant records (server or Edge) -> DensePoints; `vector` is the named vector ("" = unnamed; None:
    none was read, the vectors have width 0)."""
    ids, payloads, rows = [], [], []
    for record in records:
        doc_id, payload = document_of(record.payload, record.id)
        if vector is None:
            ids.append(doc_id)
            payloads.append(payload)
            continue
        row = record.vector.get(vector) if isinstance(record.vector, dict) else record.vector
        if row is None:
            raise InvalidEmbeddingError(f"point {doc_id!r} has no vector {vector!r}; every point needs one to migrate")
        ids.append(doc_id)
        payloads.append(payload)
        rows.append(row)
    if vector is None:
        return DensePoints(ids, np.empty((len(ids), 0), dtype=np.float32), payloads)
    return DensePoints(ids, np.asarray(rows, dtype=np.float32).reshape(len(rows), -1), payloads)
