"""Elasticsearch through the official client (`ElasticsearchStore`), 8.x and 9.x servers.

Sparse codes go to a `sparse_vector` field searched with the `sparse_vector` query (`query_vector`,
server 8.15+, `prune: false` where the server knows it), or on older clusters to a `rank_features`
field searched with `rank_feature` clauses using the linear function. Both score a dot product, but
Lucene keeps 9 significant bits of each stored value (about 0.4 % relative error), and values must
be strictly positive. Feature names are the latent index as a decimal string.

Dense vectors are `dense_vector` fields searched exactly (`script_score` with dotProduct, the default)
or approximately (`knn`); both report the plain dot product. Payload strings map to `keyword`.
Hybrid search uses the RRF retriever (8.14+), client-side RRF on older servers. Writes go through
`helpers.streaming_bulk`, which retries 429 rejections with backoff; any item that still fails is
reported (never dropped silently).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import Elasticsearch, NotFoundError, helpers

from csrv2_vdb.credentials import redact, redact_logs
from csrv2_vdb.errors import (
    BulkWriteError,
    InvalidArgumentError,
    InvalidEmbeddingError,
    TransientEngineError,
    UnsupportedError,
)
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

SPARSE = "sparse"
DENSE = "dense"
_RESERVED = {SPARSE, DENSE}
# Elasticsearch's metadata fields: a document cannot carry them in its source, and a query on `_id` matches the
# document id, not a payload field. Refused as payload keys and filter fields, so `_id` means one thing.
_METADATA = {"_id", "_index", "_source", "_routing", "_ignored", "_field_names", "_version", "_seq_no",
             "_primary_term", "_tier", "_doc_count", "_meta", "_size", "_tsid", "_type", "_nested_path"}  # fmt: skip
# Lucene's FeatureField stores floats >= Float.MIN_NORMAL only.
MIN_NORMAL = float(np.finfo(np.float32).tiny)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransportConnectionError, ConnectionTimeout, ConnectionError)
Mode = Literal["auto", "sparse_vector", "rank_features"]
MAX_ID_BYTES = 512  # Elasticsearch's limit on a document _id
# Index names are lower case and may not start with '_' or '-'.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")
_NAME_RULE = "1-128 lower-case letters, digits, '_' or '-', starting with a letter or digit (Elasticsearch)"

redact_logs("elastic_transport", "elasticsearch")  # the client logs the URI it dials, credentials included


def _version(number: str) -> tuple[int, int]:
    major, minor = number.split(".")[:2]
    return int(major), int(minor)


class ElasticsearchStore(StoreBase):
    """`SparseStore` on Elasticsearch: one index per collection."""

    engine = "the Elasticsearch adapter"
    fusions = ("rrf",)
    name_pattern = _NAME
    name_rule = _NAME_RULE

    transient_errors = TRANSIENT_ERRORS

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client: Elasticsearch | None = None,
        mode: Mode = "auto",
        dense_search: Literal["exact", "knn"] = "exact",
        refresh: bool | str = "wait_for",
        rrf_k: int = 60,
        max_retries: int = 5,
        index_prefix: str = "",
    ) -> None:
        super().__init__()
        if client is None:
            auth = (username, password) if username is not None and password is not None else None
            client = Elasticsearch(url, api_key=api_key, basic_auth=auth)
        self.client = client
        self.prefix = index_prefix  # collection "docs" lives in the index f"{prefix}docs"
        try:
            self.server = _version(self.client.info()["version"]["number"])
        except TRANSIENT_ERRORS as exc:
            # The client's message would name the node; the URL is redacted so no credential is echoed.
            raise TransientEngineError(
                f"cannot reach Elasticsearch at {redact(str(url))}: {redact(str(exc))}"
            ) from None
        if mode == "auto":
            mode = "sparse_vector" if self.server >= (8, 15) else "rank_features"
        if mode == "sparse_vector" and self.server < (8, 15):
            raise UnsupportedError(f"the sparse_vector query needs Elasticsearch 8.15+, this server is {self.server}")
        self.mode = mode
        self.dense_search = dense_search
        self.refresh = refresh
        self.rrf_k = rrf_k
        self.max_retries = max_retries

    # ----------------------------------------------------------- collections
    def _exists(self, name: str) -> bool:
        return bool(self.client.indices.exists(index=self._index(name)))

    def _create(self, info: CollectionInfo) -> None:
        name, sparse_dim, dense_dim = info.name, info.sparse_dim, info.dense_dim
        properties: dict[str, Any] = {}
        if sparse_dim:
            properties[SPARSE] = {"type": self.mode}
            if self.mode == "sparse_vector" and self.server >= (8, 19):
                properties[SPARSE]["index_options"] = {"prune": False}
        if dense_dim:
            properties[DENSE] = {"type": "dense_vector", "dims": dense_dim, "index": True, "similarity": "dot_product"}
        mappings = {
            "_meta": {"csrv2_sparse_dim": sparse_dim, "csrv2_dense_dim": dense_dim, "csrv2_encoder": info.encoder},
            "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
            "properties": properties,
        }
        self.client.indices.create(index=self._index(name), mappings=mappings)

    def _drop(self, name: str) -> None:
        self.client.indices.delete(index=self._index(name))

    def all_collections(self) -> list[str]:
        rows: Any = self.client.cat.indices(format="json").body
        names = (str(r["index"]) for r in rows)
        return sorted(n[len(self.prefix) :] for n in names if n.startswith(self.prefix) and not n.startswith("."))

    def _index(self, name: str) -> str:
        return f"{self.prefix}{self.check_name(name)}"

    def _read_info(self, name: str) -> CollectionInfo:
        try:
            index = self._index(name)
            mapping = self.client.indices.get_mapping(index=index)[index]["mappings"]
        except NotFoundError:
            raise self.missing(name) from None
        meta = mapping.get("_meta", {})
        return CollectionInfo(
            name, meta.get("csrv2_sparse_dim"), meta.get("csrv2_dense_dim"), meta.get("csrv2_encoder")
        )

    # ------------------------------------------------------- reading back (migration)
    def _dense_fields(self, name: str) -> dict[str, int]:
        """The dense_vector fields of any index under this store's prefix, with their sizes."""
        try:
            index = self._index(name)
            mapping = self.client.indices.get_mapping(index=index)[index]["mappings"]
        except NotFoundError:
            raise self.missing(name) from None
        properties = mapping.get("properties", {})
        return {k: int(v["dims"]) for k, v in properties.items() if v.get("type") == "dense_vector" and "dims" in v}

    def dense_source(self, name: str, vector: str | None = None) -> tuple[int, int]:
        _, size = pick_vector(name, self._dense_fields(name), vector)
        return int(self.client.count(index=self._index(name))["count"]), size

    def read_dense(
        self, name: str, vector: str | None = None, batch_size: int = 256, *, vectors: bool = True
    ) -> Iterator[DensePoints]:
        """Every document of a point in time, in _shard_doc order with search_after; the other fields (but the
        vector fields) are the payload. The vector is read from _source, so an index that keeps vectors out of
        _source (`index.mapping.exclude_source_vectors`) cannot be migrated this way."""
        fields = self._dense_fields(name)
        field = pick_vector(name, fields, vector)[0] if vectors else None
        skip = {*fields, SPARSE}
        pit = self.client.open_point_in_time(index=self._index(name), keep_alive="5m")["id"]
        after: list[Any] | None = None
        try:
            while True:
                extra = {"search_after": after} if after is not None else {}
                response = self.client.search(
                    pit={"id": pit, "keep_alive": "5m"}, sort=[{"_shard_doc": "asc"}], size=batch_size,
                    query={"match_all": {}}, **extra,
                )  # fmt: skip
                pit = response.get("pit_id", pit)
                hits = response["hits"]["hits"]
                if not hits:
                    return
                if field is not None and any(field not in h["_source"] for h in hits):
                    raise InvalidEmbeddingError(
                        f"documents of {name!r} have no {field!r} in _source (vectors excluded from _source, or "
                        "documents without a vector); every document needs one to migrate"
                    )
                payloads = [{k: v for k, v in h["_source"].items() if k not in skip} for h in hits]
                rows = [h["_source"][field] for h in hits] if field is not None else np.empty((len(hits), 0))
                yield DensePoints([str(h["_id"]) for h in hits], np.asarray(rows, dtype=np.float32), payloads)
                after = hits[-1]["sort"]
        finally:
            self.client.close_point_in_time(id=pit)

    # ------------------------------------------------------------------ data
    def _upsert(self, name: str, batch: WriteBatch) -> None:
        ids, sparse, dense, payloads = batch.ids, batch.sparse, batch.dense, batch.payloads
        for doc_id in ids:
            if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
                raise UnsupportedError(
                    f"document id {doc_id[:40]!r}... is longer than Elasticsearch's {MAX_ID_BYTES}-byte _id "
                    "limit; shorten it (e.g. a hash of it) before indexing"
                )
        features = _positive_features(sparse) if sparse is not None else None
        actions = []
        for i, (doc_id, payload) in enumerate(zip(ids, payloads, strict=True)):
            clash = (_RESERVED | _METADATA) & payload.keys()
            if clash:
                raise InvalidArgumentError(
                    f"document {doc_id!r}: payload keys {sorted(clash)} are reserved by Elasticsearch or this "
                    "adapter; rename them"
                )
            source = dict(payload)  # the id is the document's _id, not a payload field
            if features is not None:
                source[SPARSE] = features[i]
            if dense is not None:
                source[DENSE] = dense[i].tolist()
            actions.append({"_op_type": "index", "_index": self._index(name), "_id": doc_id, "_source": source})
        self._bulk(actions)

    def get(self, name: str, ids: Sequence[str]) -> list[Hit]:
        self.collection_info(name)
        if not ids:
            return []
        docs = self.client.mget(index=self._index(name), ids=[str(i) for i in ids])["docs"]
        found = [Hit(str(d["_id"]), 0.0, _payload(d)) for d in docs if d.get("found")]
        return in_order(ids, found)

    def _sparse_codes(self, name: str, ids: list[str]) -> dict[str, tuple[list[int], list[float]]]:
        docs = self.client.mget(index=self._index(name), ids=ids, source_includes=[SPARSE])["docs"]
        out = {}
        for d in docs:
            if d.get("found"):
                code = sorted((int(i), float(v)) for i, v in (d["_source"].get(SPARSE) or {}).items())
                out[str(d["_id"])] = ([i for i, _ in code], [v for _, v in code])
        return out

    def _dense_vectors(self, name: str, ids: list[str]) -> np.ndarray:
        docs = self.client.mget(index=self._index(name), ids=ids, source_includes=[DENSE])["docs"]
        by_id = {str(d["_id"]): d["_source"][DENSE] for d in docs if d.get("found")}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self.collection_info(name)
        self._bulk([{"_op_type": "delete", "_index": self._index(name), "_id": str(i)} for i in ids], missing_ok=True)

    def _bulk(self, actions: list[dict[str, Any]], missing_ok: bool = False) -> None:
        failed = []
        for ok, item in helpers.streaming_bulk(
            self.client,
            actions,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=self.max_retries,
            initial_backoff=0.5,
            refresh=self.refresh,
        ):
            result = next(iter(item.values()))
            if not ok and not (missing_ok and result.get("status") == 404):
                failed.append(result)
        if failed:
            first = failed[0]
            raise BulkWriteError(
                f"{len(failed)} of {len(actions)} documents were not written; first: id {first.get('_id')!r}, "
                f"status {first.get('status')}, {first.get('error')}",
                failed,
            )

    def count(self, name: str, filter: Filter | None = None) -> int:
        self.collection_info(name)
        return int(self.client.count(index=self._index(name), query=_bool([], filter))["count"])

    # ---------------------------------------------------------------- search
    def _sparse_query(self, indices: list[int], values: list[float]) -> dict[str, Any]:
        if self.mode == "sparse_vector":
            query: dict[str, Any] = {
                "field": SPARSE,
                "query_vector": {str(i): v for i, v in zip(indices, values, strict=True)},
            }
            if self.server >= (8, 19):
                query["prune"] = False
            return {"sparse_vector": query}
        clauses = [
            {"rank_feature": {"field": f"{SPARSE}.{i}", "linear": {}, "boost": v}}
            for i, v in zip(indices, values, strict=True)
            if v > 0
        ]
        return {"bool": {"should": clauses, "minimum_should_match": 1}}

    def _dense_query(self, vector: list[float], limit: int, filter: Filter | None) -> dict[str, Any]:
        """Exact dot product (script_score, shifted by +1 since scores must be non-negative)."""
        return {
            "script_score": {
                "query": _bool([], filter),
                "script": {"source": f"dotProduct(params.q, '{DENSE}') + 1.0", "params": {"q": vector}},
            }
        }

    @staticmethod
    def _queries(query: SparseBatch | np.ndarray) -> list[Any]:
        return list(query.rows()) if isinstance(query, SparseBatch) else query.tolist()

    def _search(self, name: str, query: SparseBatch | np.ndarray, limit: int, filter: Filter | None) -> list[list[Hit]]:
        sparse = isinstance(query, SparseBatch)
        out: list[list[Hit]] = []
        for q in self._queries(query):
            if sparse:
                if not q[0]:
                    out.append([])
                    continue
                body: dict[str, Any] = {"query": _bool([self._sparse_query(*q)], filter)}
                shift: float | None = 0.0
            elif self.dense_search == "knn":
                body = {"knn": {"field": DENSE, "query_vector": q, "k": limit, "num_candidates": max(100, 10 * limit)}}
                if filter:
                    body["knn"]["filter"] = _bool([], filter)
                shift = None  # knn with dot_product scores (1 + dot) / 2
            else:
                body = {"query": self._dense_query(q, limit, filter)}
                shift = 1.0
            response = self.client.search(index=self._index(name), size=limit, **body)
            out.append([_hit(h, shift) for h in response["hits"]["hits"]])
        return out

    def _hybrid_search(self, name: str, r: HybridRequest) -> list[list[Hit]]:
        """RRF of the sparse and the exact dense lists (the RRF retriever on 8.14+, client-side before)."""
        sparse, dense, limit, depth, filter = r.sparse, r.dense, r.limit, r.depth, r.filter
        out: list[list[Hit]] = []
        for s, d in zip(self._queries(sparse), self._queries(dense), strict=True):
            standard = [{"query": self._dense_query(d, depth, filter)}]
            if s[0]:
                standard.insert(0, {"query": _bool([self._sparse_query(*s)], filter)})
            if self.server >= (8, 14):
                retriever = {
                    "rrf": {
                        "retrievers": [{"standard": q} for q in standard],
                        "rank_constant": self.rrf_k,
                        "rank_window_size": depth,
                    }
                }
                response = self.client.search(index=self._index(name), size=limit, retriever=retriever)
                out.append([_hit(h, 0.0) for h in response["hits"]["hits"]])
            else:
                out.append(self._client_rrf(name, standard, depth, limit))
        return out

    def _client_rrf(self, name: str, queries: list[dict[str, Any]], depth: int, limit: int) -> list[Hit]:
        """Reciprocal rank fusion done here, for servers without the RRF retriever."""
        lists = [self.client.search(index=self._index(name), size=depth, **body)["hits"]["hits"] for body in queries]
        return rrf_fuse([[_hit(h, 0.0) for h in hits] for hits in lists], self.rrf_k, limit)


def _positive_features(sparse: SparseBatch) -> list[dict[str, float]]:
    """Feature maps for indexing; Elasticsearch keeps only strictly positive normal floats."""
    active = sparse.values != 0
    bad = active & (sparse.values < MIN_NORMAL)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        value = float(sparse.values[bad][0])
        raise UnsupportedError(
            f"row {row} holds the sparse value {value!r}; Elasticsearch stores only values >= {MIN_NORMAL:.3g} "
            "(strictly positive). Heads from this package emit ReLU outputs; clamp or drop other values."
        )
    return sparse.to_feature_maps()


def _payload(hit: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hit.get("_source", {}).items() if k not in _RESERVED}


def _hit(hit: Mapping[str, Any], shift: float | None) -> Hit:
    score = float(hit["_score"])
    score = 2.0 * score - 1.0 if shift is None else score - shift
    return Hit(id=str(hit["_id"]), score=score, payload=_payload(hit))


def _bool(must: list[dict[str, Any]], filter: Filter | None) -> dict[str, Any]:
    """A bool query: the scoring clauses in `must`, the engine-neutral filter as non-scoring clauses."""
    clauses: list[dict[str, Any]] = []
    for kind, key, value in conditions(filter):
        if key in _METADATA:
            raise InvalidArgumentError(
                f"filter field {key!r} is an Elasticsearch metadata field, not a payload field; filter on your fields"
            )
        if kind == "eq":
            clauses.append({"term": {key: value}})
        elif kind == "any":
            clauses.append({"terms": {key: value}})
        else:
            bounds = {op: v for op, v in (("gte", value.gte), ("gt", value.gt), ("lte", value.lte), ("lt", value.lt))}
            clauses.append({"range": {key: {op: v for op, v in bounds.items() if v is not None}}})
    if not must and not clauses:
        return {"match_all": {}}
    return {"bool": {"must": must, "filter": clauses}}
