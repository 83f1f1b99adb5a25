"""`SparseStore`: what every engine adapter implements, and the checks they share.

Collections hold a sparse vector (CSRv2 codes), a dense vector (MRL / full embeddings), or both
(for hybrid search). Ids are the caller's document ids (strings); adapters map them to the
engine's id type with `point_id` so that re-indexing the same document overwrites it (upsert).
Filters are engine-neutral: {"field": value}, {"field": [any, of, these]}, {"field": Range(...)}.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from csrv2_vdb.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DimensionMismatchError,
    EncoderMismatchError,
    InvalidArgumentError,
    InvalidEmbeddingError,
    InvalidSparseBatchError,
    UnsupportedError,
)
from csrv2_vdb.filters import Filter
from csrv2_vdb.sparse import SparseBatch

# The payload key under which adapters keep the caller's document id: a name of this library's, so that a
# user's own `_id` field (MongoDB exports, Elasticsearch dumps) is stored as any other field.
ID_FIELD = "_csrv2_id"
LEGACY_ID_FIELD = "_id"  # collections written before 0.2 kept the id here
# Collections of this library's own (a collection's head, its version pointer, its later versions) carry this in
# their names; `list_collections` does not show them.
COMPANION_MARK = "__csrv2_"
# The companion collection holding a collection's head ends so (see csrv2_vdb.head_store).
HEAD_SUFFIX = COMPANION_MARK + "head"
_ID_NAMESPACE = uuid.UUID("6f1c3c5e-7a51-4f0e-9a43-c5b2d0f3a2e1")

# rrf: reciprocal rank fusion (all engines); dbsf: distribution-based score fusion (Qdrant);
# weighted: weighted sum of scores (Milvus WeightedRanker). An adapter refuses a method its engine lacks.
Fusion = Literal["rrf", "dbsf", "weighted"]


# A collection name every engine can hold: no path separators, dots or spaces (qdrant-edge maps names to
# directories), at most 128 characters. Adapters narrow it further where their engine does.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
NAME_RULE = "1-128 letters, digits, '_' or '-', not starting with '-'"
# Search depth limit shared by the adapters (Elasticsearch's default max_result_window).
MAX_LIMIT = 10_000


def check_name(name: object, pattern: re.Pattern[str] = NAME_PATTERN, rule: str = NAME_RULE) -> str:
    """A collection name matching `pattern`, or a clear error (a name like "../other" never reaches the engine)."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise InvalidArgumentError(f"invalid collection name {name!r}: use {rule}")
    return name


def check_limit(limit: object) -> int:
    """A search depth in [1, MAX_LIMIT]."""
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"limit must be an integer in [1, {MAX_LIMIT}], got {limit!r}")
    return int(limit)


def check_fusion(fusion: object, supported: Sequence[str], engine: str) -> str:
    """A fusion method the engine offers; unknown names are refused, never replaced by another method."""
    if fusion not in supported:
        raise UnsupportedError(f"{engine} fuses with {' or '.join(map(repr, supported))}, not {fusion!r}")
    return str(fusion)


@dataclass(frozen=True)
class Hit:
    """One search result: the document id, the engine's score and the stored payload."""

    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection stores: sparse latent dim and/or dense dim, and which encoder wrote its sparse codes.

    `encoder` is the writing encoder's identity (`CSRv2Encoder.identity`: a hash of the head's config and
    weights), or None when the writer did not say. Codes of two heads share no meaning, so a
    query encoded by another head is refused (`check_encoder`) instead of returning unrelated hits.
    """

    name: str
    sparse_dim: int | None
    dense_dim: int | None
    encoder: str | None = None


def document_of(payload: Mapping[str, Any] | None, engine_id: object) -> tuple[str, dict[str, Any]]:
    """(document id, payload) of a stored point: the id under ID_FIELD when this library wrote the point, else
    the engine's own id (a collection written by anything else)."""
    rest = dict(payload or {})
    if ID_FIELD in rest:
        return str(rest.pop(ID_FIELD)), rest
    legacy = rest.get(LEGACY_ID_FIELD)
    # An `_id` is ours only when the engine id was derived from it; otherwise it is the user's own field.
    if legacy is not None and engine_id is not None and str(engine_id) == point_id(str(legacy)):
        del rest[LEGACY_ID_FIELD]
        return str(legacy), rest
    return str(engine_id), rest


def hit_from_payload(payload: Mapping[str, Any], score: float, fallback_id: object = None) -> Hit:
    """A Hit from a stored payload that carries the document id under ID_FIELD (see `stored_payload`)."""
    doc_id, rest = document_of(payload, fallback_id)
    return Hit(id=doc_id, score=score, payload=rest)


def stored_payload(doc_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload an engine stores for a document whose own id is a UUID: the caller's id rides along."""
    return {**payload, ID_FIELD: doc_id}


def point_id(doc_id: str | int) -> str:
    """Stable engine id (UUIDv5) for a document id, so that re-indexing is an overwrite, not a duplicate."""
    return str(uuid.uuid5(_ID_NAMESPACE, str(doc_id)))


def native_id(doc_id: str) -> int | str | None:
    """The document id itself when an engine can use it as a point id and give it back unchanged: a decimal
    integer in [0, 2**63) without leading zeros ("42", not "042"), or a lowercase hyphenated UUID. Such a
    point needs no ID_FIELD payload (on qdrant-edge at 1M points that payload costs about 150 bytes per
    point, docs/benchmarks.md). None for any other id, which keeps the `point_id` + payload scheme."""
    if doc_id.isdecimal() and doc_id.isascii() and (doc_id == "0" or not doc_id.startswith("0")):
        value = int(doc_id)
        return value if value < 2**63 else None
    try:
        return doc_id if str(uuid.UUID(doc_id)) == doc_id else None
    except ValueError:
        return None


Vectors = SparseBatch | np.ndarray | tuple[SparseBatch, np.ndarray]


@runtime_checkable
class SparseStore(Protocol):
    """The operations every engine adapter offers; everything else in the package talks to this.

    `transient_errors` are the engine's failures worth retrying (dropped connection, overload). Vectors go in
    and out alike: a SparseBatch for the sparse vector, an (n, d) array for the dense one, and for upsert
    into a hybrid collection the pair (sparse, dense).
    """

    transient_errors: tuple[type[BaseException], ...]

    def create_collection(
        self,
        name: str,
        *,
        sparse_dim: int | None = None,
        dense_dim: int | None = None,
        exist_ok: bool = False,
        encoder: str | None = None,
    ) -> CollectionInfo: ...

    def drop_collection(self, name: str) -> None: ...

    def list_collections(self) -> list[str]: ...

    def collection_info(self, name: str) -> CollectionInfo: ...

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Vectors | None = None,
        *,
        sparse: SparseBatch | None = None,
        dense: np.ndarray | None = None,
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None: ...

    def search(
        self, name: str, query: SparseBatch | np.ndarray, *, limit: int = 10, filter: Filter | None = None
    ) -> list[list[Hit]]: ...

    def hybrid_search(
        self,
        name: str,
        sparse: SparseBatch,
        dense: np.ndarray,
        *,
        limit: int = 10,
        filter: Filter | None = None,
        fusion: Fusion = "rrf",
    ) -> list[list[Hit]]: ...

    def rerank_search(
        self,
        name: str,
        sparse: SparseBatch,
        dense: np.ndarray,
        *,
        limit: int = 10,
        candidates: int | None = None,
        filter: Filter | None = None,
    ) -> list[list[Hit]]: ...

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def count(self, name: str, filter: Filter | None = None) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> SparseStore: ...

    def __exit__(self, *exc: object) -> None: ...


# Optional capabilities: an adapter that has one says so by having the method; callers test with isinstance.
@runtime_checkable
class Optimizable(Protocol):
    """Stores worth optimising once after a bulk load (qdrant-edge: merge segments, build the indexes)."""

    def optimize(self, name: str) -> bool: ...


@runtime_checkable
class Flushable(Protocol):
    """Stores whose fresh writes sit in growing segments until flushed (Milvus, qdrant-edge)."""

    def flush(self, name: str) -> None: ...


@runtime_checkable
class PayloadIndexable(Protocol):
    """Stores that index payload fields for filtering (Qdrant servers, qdrant-edge)."""

    def create_payload_index(self, name: str, field: str, kind: str = "keyword") -> None: ...


@runtime_checkable
class Gettable(Protocol):
    """Stores that return stored documents by id (all four adapters): the payloads, without vectors."""

    def get(self, name: str, ids: Sequence[str]) -> list[Hit]:
        """The documents among `ids` that exist, in the order asked (score 0.0); missing ids are left out."""
        ...


@runtime_checkable
class CodesReadable(Protocol):
    """Stores that return the sparse codes they hold (every adapter here): what explained hits and index
    diagnostics read."""

    def codes(self, name: str, ids: Sequence[str]) -> SparseBatch:
        """The stored codes of `ids`, one row each in that order; an id the collection lacks is an error."""
        ...


def rrf_fuse(lists: Sequence[Sequence[Hit]], rrf_k: int, limit: int) -> list[Hit]:
    """Reciprocal rank fusion, for engines that cannot fuse: each id scores sum(1 / (rrf_k + rank)) over the
    lists (ranks from 1), best first, ties by id; the payload is the first list's that holds the id."""
    scores: dict[str, float] = {}
    payloads: dict[str, dict[str, Any]] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (rrf_k + rank)
            payloads.setdefault(hit.id, hit.payload)
    ranked = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [Hit(id=i, score=scores[i], payload=payloads[i]) for i in ranked]


def in_order(ids: Sequence[str], found: list[Hit]) -> list[Hit]:
    """`found` ordered as `ids` asked (each once), dropping ids that were not found."""
    by_id = {hit.id: hit for hit in found}
    return [by_id[i] for i in dict.fromkeys(map(str, ids)) if i in by_id]


@dataclass(frozen=True)
class DensePoints:
    """One page of dense vectors read back from a collection: document ids, (n, d) float32 vectors, payloads."""

    ids: list[str]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]


@runtime_checkable
class DenseReadable(Protocol):
    """Stores whose dense vectors can be read back (to migrate a dense collection to sparse codes).

    `vector` names the dense vector field; None picks the only one. Collections need not have been written
    by this library: ids are the engine's own (as strings) unless the payload carries ours.
    """

    def dense_source(self, name: str, vector: str | None = None) -> tuple[int, int]:
        """(points, vector size) of the collection's dense vector."""
        ...

    def read_dense(
        self, name: str, vector: str | None = None, batch_size: int = 256, *, vectors: bool = True
    ) -> Iterator[DensePoints]:
        """Every point once, in a stable order (the same on every pass over an unchanged collection); with
        `vectors=False` ids and payloads only (vectors of width 0), also of a collection without dense vectors."""
        ...


def pick_vector(name: str, available: Mapping[str, int], wanted: str | None) -> tuple[str, int]:
    """(field, size) of the dense vector to read: `wanted`, or the only one; else an error naming the choices."""
    if wanted is not None:
        if wanted not in available:
            raise InvalidArgumentError(
                f"collection {name!r} has no dense vector {wanted!r}; it has {sorted(available) or 'none'}"
            )
        return wanted, available[wanted]
    if len(available) != 1:
        raise InvalidArgumentError(
            f"collection {name!r} has {len(available)} dense vectors {sorted(available)}; name one (--vector)"
            if available
            else f"collection {name!r} has no dense vector to read"
        )
    return next(iter(available.items()))


class StoreBase:
    """What the adapters share: argument checks before any engine call, the collection-info cache, the
    context manager, close.

    An adapter sets `engine`, `fusions` (and `name_pattern`/`name_rule` where its engine is stricter), calls
    `super().__init__()`, and implements the engine calls `_exists`, `_create`, `_read_info`, `_drop`,
    `_upsert`, `_search` and `_hybrid_search` on arguments already checked here, and either
    `_rerank_search` (one engine call) or `_dense_vectors` (the two-call rerank here uses it).
    """

    engine = "engine"
    fusions: tuple[str, ...] = ("rrf",)
    name_pattern: re.Pattern[str] = NAME_PATTERN
    name_rule = NAME_RULE
    transient_errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    # hybrid_search asks each side for hybrid_depth * limit candidates before fusing: the one setting for it.
    hybrid_depth = 2
    # rerank_search rescores rerank_depth * limit sparse candidates unless the caller says how many.
    rerank_depth = 5
    client: Any

    def __init__(self) -> None:
        # A collection's dims and encoder never change: read once per store, not on every call.
        self._infos: dict[str, CollectionInfo] = {}

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def check_name(self, name: object) -> str:
        return check_name(name, self.name_pattern, self.name_rule)

    def create_collection(
        self,
        name: str,
        *,
        sparse_dim: int | None = None,
        dense_dim: int | None = None,
        exist_ok: bool = False,
        encoder: str | None = None,
    ) -> CollectionInfo:
        """Create a collection holding sparse codes of `sparse_dim` latents and/or dense vectors of `dense_dim`,
        recording the `encoder` that writes them; with exist_ok, an existing one with the same dims and
        encoder is fine."""
        info = requested(self.check_name(name), sparse_dim, dense_dim, encoder)
        if self._exists(name):
            return reuse_existing(self.collection_info(name), info, exist_ok)
        self._create(info)
        self._infos[name] = info
        return info

    def drop_collection(self, name: str) -> None:
        """Drop the collection, and the head stored with it (`csrv2_vdb.head_store`); a name that `refit` gave
        versions loses every version and its pointer (`csrv2_vdb.versions`)."""
        from csrv2_vdb.versions import drop_all

        self.check_name(name)
        if COMPANION_MARK not in name and drop_all(self, name):  # type: ignore[arg-type]
            return
        self.drop_one(name)

    def drop_one(self, name: str) -> None:
        """Drop this one collection and its head, whatever version pointer names it."""
        self.collection_info(name)
        self._infos.pop(name, None)
        self._drop(name)
        head = name + HEAD_SUFFIX
        if not name.endswith(HEAD_SUFFIX) and head in self.all_collections():
            self._infos.pop(head, None)
            self._drop(head)

    def missing(self, name: str) -> CollectionNotFoundError:
        """The error for a collection that does not exist, naming those that do."""
        return missing_collection(name, self.list_collections())

    def list_collections(self) -> list[str]:
        """The collections of the store by the names clients query: the companions holding heads, version
        pointers and later versions are not listed, a name whose version 1 was dropped after a refit is."""
        from csrv2_vdb.versions import logical_names

        every = self.all_collections()
        names = [n for n in every if COMPANION_MARK not in n]
        return names + [n for n in logical_names(every) if n not in names]

    def all_collections(self) -> list[str]:
        """Every collection, companions included (the adapter's engine call)."""
        raise NotImplementedError

    def _exists(self, name: str) -> bool:
        raise NotImplementedError

    def _create(self, info: CollectionInfo) -> None:
        raise NotImplementedError

    def collection_info(self, name: str) -> CollectionInfo:
        """The collection's dims and encoder (cached); `CollectionNotFoundError` when it does not exist."""
        self.check_name(name)
        if name not in self._infos:
            self._infos[name] = self._read_info(name)
        return self._infos[name]

    def _read_info(self, name: str) -> CollectionInfo:
        raise NotImplementedError

    def _drop(self, name: str) -> None:
        raise NotImplementedError

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: Vectors | None = None,
        *,
        sparse: SparseBatch | None = None,
        dense: np.ndarray | None = None,
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Insert or overwrite documents by id; `vectors` or the sparse=/dense= keywords give the vectors."""
        sparse, dense = split_vectors(vectors, sparse, dense)
        sparse, dense, rows = check_upsert(self.collection_info(name), ids, sparse, dense, payloads)
        self._upsert(name, WriteBatch([str(i) for i in ids], sparse, dense, rows))

    def search(
        self, name: str, query: SparseBatch | np.ndarray, *, limit: int = 10, filter: Filter | None = None
    ) -> list[list[Hit]]:
        """Top-`limit` hits per query row: a SparseBatch searches the sparse vector, an (n, d) array the dense one."""
        check_limit(limit)
        info = self.collection_info(name)
        checked = check_sparse(info, query) if isinstance(query, SparseBatch) else check_dense(info, query)
        return self._still_there(name, lambda: self._search(name, checked, limit, filter))

    def _still_there(self, name: str, call: Callable[[], list[list[Hit]]]) -> list[list[Hit]]:
        """An engine search of `name`, whose info may be cached here; when it fails because the collection was
        dropped meanwhile (by another process, e.g. `refit --drop-old`), the cached info is forgotten and the
        error is `CollectionNotFoundError` (the engine's own error can be anything, even a missing directory)."""
        try:
            return call()
        except Exception:
            if self._dropped(name):
                self._infos.pop(name, None)
                raise self.missing(name) from None
            raise

    def _dropped(self, name: str) -> bool:
        """Whether a collection whose info is cached here no longer exists; False when that cannot be asked (the
        engine unreachable: then the search's own error is the one to raise)."""
        try:
            return name in self._infos and not self._exists(name)
        except Exception:
            return False

    def hybrid_search(
        self,
        name: str,
        sparse: SparseBatch,
        dense: np.ndarray,
        *,
        limit: int = 10,
        filter: Filter | None = None,
        fusion: Fusion = "rrf",
    ) -> list[list[Hit]]:
        """Sparse and dense candidate lists (each `hybrid_depth * limit` deep, both filtered) fused by the engine."""
        check_fusion(fusion, self.fusions, self.engine)
        check_limit(limit)
        info = self.collection_info(name)
        sparse, dense = check_sparse(info, sparse), check_dense(info, dense, len(sparse))
        request = HybridRequest(sparse, dense, limit, self.hybrid_depth * limit, filter, fusion)
        return self._still_there(name, lambda: self._hybrid_search(name, request))

    def rerank_search(
        self,
        name: str,
        sparse: SparseBatch,
        dense: np.ndarray,
        *,
        limit: int = 10,
        candidates: int | None = None,
        filter: Filter | None = None,
    ) -> list[list[Hit]]:
        """Two-stage retrieval: the sparse index's top `candidates` (default `rerank_depth * limit`, filtered)
        rescored by the dot product of their stored dense vectors (full or MRL) with `dense`, the best `limit`
        of them. The scores are dense scores; the ranking costs one sparse search plus `candidates` dot
        products, not a dense index."""
        check_limit(limit)
        depth = check_limit(candidates) if candidates is not None else min(self.rerank_depth * limit, MAX_LIMIT)
        if depth < limit:
            raise InvalidArgumentError(f"candidates ({depth}) must be at least limit ({limit})")
        info = self.collection_info(name)
        if info.sparse_dim is None or info.dense_dim is None:
            raise UnsupportedError(
                f"collection {name!r} does not hold both sparse and dense vectors: rerank needs both "
                "(index with a dense encoder, e.g. MRLEncoder, beside the CSRv2Encoder)"
            )
        sparse, dense = check_sparse(info, sparse), check_dense(info, dense, len(sparse))
        request = HybridRequest(sparse, dense, limit, depth, filter, "rerank")
        return self._still_there(name, lambda: self._rerank_search(name, request))

    def _upsert(self, name: str, batch: WriteBatch) -> None:
        raise NotImplementedError

    def _search(self, name: str, query: SparseBatch | np.ndarray, limit: int, filter: Filter | None) -> list[list[Hit]]:
        raise NotImplementedError

    def _hybrid_search(self, name: str, request: HybridRequest) -> list[list[Hit]]:
        raise NotImplementedError

    def _rerank_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        """Two engine calls: the sparse candidates, then their stored dense vectors, rescored here."""
        candidates = self._search(name, r.sparse, r.depth, r.filter)
        ids = list(dict.fromkeys(h.id for row in candidates for h in row))
        vectors = dict(zip(ids, self._dense_vectors(name, ids), strict=True)) if ids else {}
        out = []
        for row, query in zip(candidates, r.dense, strict=True):
            rescored = [replace(h, score=float(np.dot(vectors[h.id], query))) for h in row]
            out.append(sorted(rescored, key=lambda h: -h.score)[: r.limit])
        return out

    def _dense_vectors(self, name: str, ids: list[str]) -> np.ndarray:
        """The stored dense vectors of `ids` (all present), one row each, in that order."""
        raise NotImplementedError

    def codes(self, name: str, ids: Sequence[str]) -> SparseBatch:
        """The stored sparse codes of `ids`, one row each in that order (as the engine keeps them: Lucene's
        rounding on Elasticsearch, zeros dropped)."""
        info = self.collection_info(name)
        if not info.sparse_dim:
            raise InvalidArgumentError(f"collection {name!r} holds no sparse codes")
        wanted = [str(i) for i in ids]
        found = self._sparse_codes(name, list(dict.fromkeys(wanted))) if wanted else {}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise InvalidArgumentError(
                f"collection {name!r} has no document {missing[0]!r}"
                + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else "")
            )
        return SparseBatch.from_rows([found[i] for i in wanted], info.sparse_dim)

    def _sparse_codes(self, name: str, ids: list[str]) -> dict[str, tuple[list[int], list[float]]]:
        """The stored codes of those `ids` that exist: id -> (indices, values)."""
        raise NotImplementedError


@dataclass(frozen=True)
class WriteBatch:
    """One checked upsert as the adapters receive it: ids as strings, vectors the collection holds, payloads."""

    ids: list[str]
    sparse: SparseBatch | None
    dense: np.ndarray | None
    payloads: list[dict[str, Any]]


@dataclass(frozen=True)
class HybridRequest:
    """One checked hybrid search: `depth` candidates per side are fused into `limit` hits (fusion "rerank":
    `depth` sparse candidates are rescored by the dense query)."""

    sparse: SparseBatch
    dense: np.ndarray
    limit: int
    depth: int
    filter: Filter | None
    fusion: str


# --------------------------------------------------------------------- checks shared by adapters
def requested(name: str, sparse_dim: int | None, dense_dim: int | None, encoder: str | None = None) -> CollectionInfo:
    """The collection a create_collection call asks for (it must store something); the caller checked the name."""
    if sparse_dim is None and dense_dim is None:
        raise InvalidArgumentError("a collection needs sparse_dim and/or dense_dim")
    for what, dim in (("sparse_dim", sparse_dim), ("dense_dim", dense_dim)):
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1):
            raise InvalidArgumentError(f"{what} must be a positive integer, got {dim!r}")
    if encoder is not None and (not isinstance(encoder, str) or not encoder or sparse_dim is None):
        raise InvalidArgumentError(f"encoder must name the writer of sparse codes, got {encoder!r}")
    return CollectionInfo(name, int(sparse_dim) if sparse_dim else None, int(dense_dim) if dense_dim else None, encoder)


def reuse_existing(existing: CollectionInfo, wanted: CollectionInfo, exist_ok: bool) -> CollectionInfo:
    """create_collection on an existing name: fine with exist_ok, the same dims and the same encoder."""
    same_dims = (existing.sparse_dim, existing.dense_dim) == (wanted.sparse_dim, wanted.dense_dim)
    if exist_ok and same_dims:
        check_encoder(existing, wanted.encoder)
        return existing
    if exist_ok and existing.sparse_dim != wanted.sparse_dim and existing.sparse_dim and wanted.sparse_dim:
        raise EncoderMismatchError(
            f"collection {wanted.name!r} holds {existing.sparse_dim}-latent codes written by encoder "
            f"{existing.encoder or '(not recorded)'}; this encoder writes {wanted.sparse_dim} latents "
            f"({wanted.encoder or 'not recorded'}): another head. Use the collection's own head (leave the head "
            "out: it is stored with the collection), or index into a new collection"
        )
    raise CollectionExistsError(
        f"collection {wanted.name!r} already exists (sparse_dim={existing.sparse_dim}, dense_dim="
        f"{existing.dense_dim}, encoder {existing.encoder}); asked for sparse_dim={wanted.sparse_dim}, dense_dim="
        f"{wanted.dense_dim}. Drop it first, or create it again with the same dims (exist_ok=True)"
    )


def check_encoder(info: CollectionInfo, encoder: str | None) -> None:
    """Refuse to mix codes of two encoders: `encoder` (None: not known) must be the one that wrote `info`."""
    if encoder is not None and info.encoder is not None and encoder != info.encoder:
        raise EncoderMismatchError(
            f"collection {info.name!r} holds codes written by encoder {info.encoder}; these come from "
            f"{encoder}. Codes of different heads (or normalisations) are not comparable: use the head that "
            "indexed the collection, or index into a new collection"
        )


def every_collection(store: SparseStore) -> list[str]:
    """Every collection of the store, this library's companions (heads, version pointers, later versions)
    included: `all_collections` where the store has it, else what it lists."""
    lister = getattr(store, "all_collections", None)
    return list(lister() if lister is not None else store.list_collections())


def missing_collection(name: str, existing: list[str]) -> CollectionNotFoundError:
    return CollectionNotFoundError(
        f"collection {name!r} does not exist; existing: {existing}. "
        "Create it with create_collection (or `csrv2-vdb index`)."
    )


def check_dense(info: CollectionInfo, dense: np.ndarray, n: int | None = None) -> np.ndarray:
    """A finite (n, dense_dim) float32 array, or a clear error."""
    if info.dense_dim is None:
        raise DimensionMismatchError(f"collection {info.name!r} has no dense vector; create it with dense_dim")
    dense = np.asarray(dense, dtype=np.float32)
    if dense.ndim != 2 or dense.shape[1] != info.dense_dim or (n is not None and dense.shape[0] != n):
        want = f"({n if n is not None else 'n'}, {info.dense_dim})"
        raise DimensionMismatchError(f"collection {info.name!r} takes dense vectors of shape {want}, got {dense.shape}")
    if not np.isfinite(dense).all():
        raise InvalidEmbeddingError(f"dense vectors for {info.name!r} hold NaN or inf")
    return dense


def check_sparse(info: CollectionInfo, sparse: SparseBatch, n: int | None = None) -> SparseBatch:
    """A SparseBatch of the collection's latent dim (and n rows), or a clear error."""
    if info.sparse_dim is None:
        raise DimensionMismatchError(f"collection {info.name!r} has no sparse vector; create it with sparse_dim")
    if not isinstance(sparse, SparseBatch):
        raise InvalidSparseBatchError(f"expected a SparseBatch, got {type(sparse).__name__}")
    if sparse.dim != info.sparse_dim:
        raise DimensionMismatchError(
            f"collection {info.name!r} holds {info.sparse_dim}-dim sparse codes, got dim {sparse.dim}; "
            "was it encoded with another head?"
        )
    if n is not None and len(sparse) != n:
        raise InvalidSparseBatchError(f"{n} ids but {len(sparse)} sparse rows")
    return sparse


def check_upsert(
    info: CollectionInfo,
    ids: Sequence[str],
    sparse: SparseBatch | None,
    dense: np.ndarray | None,
    payloads: Sequence[Mapping[str, Any]] | None,
) -> tuple[SparseBatch | None, np.ndarray | None, list[dict[str, Any]]]:
    """Validate one upsert against the collection; returns the vectors and payloads (without the id) to write."""
    if isinstance(ids, str | bytes):
        raise InvalidArgumentError(f"ids must be a list of document ids, got one string {ids!r:.40}; wrap it in a list")
    n = len(ids)
    if len(set(map(str, ids))) != n:
        raise InvalidArgumentError("ids in one upsert must be unique")
    if sparse is None and dense is None:
        raise InvalidArgumentError("upsert needs sparse and/or dense vectors")
    if (info.sparse_dim is not None) != (sparse is not None) or (info.dense_dim is not None) != (dense is not None):
        raise DimensionMismatchError(
            f"collection {info.name!r} stores sparse={info.sparse_dim is not None}, "
            f"dense={info.dense_dim is not None}; "
            "give exactly those vectors"
        )
    sparse = check_sparse(info, sparse, n) if sparse is not None else None
    dense = check_dense(info, dense, n) if dense is not None else None
    if payloads is not None and len(payloads) != n:
        raise InvalidArgumentError(f"{n} ids but {len(payloads)} payloads")
    rows = [check_payload(str(i), p) for i, p in zip(ids, payloads, strict=True)] if payloads is not None else []
    return sparse, dense, rows or [{} for _ in range(n)]


# Deeper payloads are refused: qdrant-edge accepted 130 levels and then could not read its own WAL back.
MAX_PAYLOAD_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)


def check_payload(doc_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload every engine can store and give back unchanged, as a plain dict, or an error naming the
    document and the field: JSON-like values only (strings, bools, None, finite floats, integers within
    64 bits, lists, objects with string keys), at most MAX_PAYLOAD_DEPTH levels, and not the id key."""
    if not isinstance(payload, Mapping):
        raise InvalidArgumentError(f"document {doc_id!r}: a payload must be a mapping, got {type(payload).__name__}")
    if ID_FIELD in payload:
        raise InvalidArgumentError(f"document {doc_id!r}: payload key {ID_FIELD!r} is reserved for the document id")
    return {key: _payload_value(doc_id, str(key), value, 1) for key, value in _keyed(doc_id, "", payload)}


def _keyed(doc_id: str, where: str, mapping: Mapping[Any, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in mapping.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"document {doc_id!r}: payload key {key!r}{where} must be a non-empty string")
        yield key, value


def _payload_value(doc_id: str, path: str, value: Any, depth: int) -> Any:
    if depth > MAX_PAYLOAD_DEPTH:
        raise InvalidArgumentError(
            f"document {doc_id!r}: payload field {path!r} is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
        )
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidArgumentError(
                f"document {doc_id!r}: payload field {path!r} = {value} does not fit a 64-bit integer (engines "
                "would store it as a float and give back another number); store it as a string"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"document {doc_id!r}: payload field {path!r} is {value}; engines store "
                                       "finite numbers only")  # fmt: skip
        return value
    if isinstance(value, Mapping):
        return {
            k: _payload_value(doc_id, f"{path}.{k}", v, depth + 1) for k, v in _keyed(doc_id, f" in {path!r}", value)
        }
    if isinstance(value, list | tuple):
        return [_payload_value(doc_id, f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value)]
    raise InvalidArgumentError(
        f"document {doc_id!r}: payload field {path!r} holds a {type(value).__name__}, which no engine stores as "
        "is; convert it to a string, number, bool, list or object"
    )


def split_vectors(
    vectors: Vectors | None, sparse: SparseBatch | None, dense: np.ndarray | None
) -> tuple[SparseBatch | None, np.ndarray | None]:
    """`vectors` (a SparseBatch, an array, or the pair) as (sparse, dense); or the keywords when it is None."""
    if vectors is None:
        return sparse, dense
    if sparse is not None or dense is not None:
        raise InvalidArgumentError("give the vectors either positionally or as sparse=/dense=, not both")
    if isinstance(vectors, tuple):
        if len(vectors) != 2:
            raise InvalidArgumentError("a vectors pair is (SparseBatch, dense array)")
        return vectors[0], vectors[1]
    if isinstance(vectors, SparseBatch):
        return vectors, None
    return None, vectors
