"""An in-process HTTP server that answers the Elasticsearch endpoints the adapter uses, with Elasticsearch's rules.

What it enforces (from the Elasticsearch and Lucene documentation and source):
- the product header every 2xx response carries (`X-Elastic-Product`), which the official client checks;
- mapping types: `sparse_vector` (8.11+) and `rank_features` values must be positive normal floats,
  else the document fails with a `document_parsing_exception`; `dense_vector` length must equal `dims`;
  `dot_product` similarity needs unit-length vectors;
- stored feature values keep 9 significant bits, exactly as Lucene's FeatureField does
  (`Float.floatToIntBits(v) >>> 15` stored, `<< 15` read back), so scores are not exact dot products;
- `sparse_vector` query (8.15+) scores sum(weight * stored value) over shared features and matches only
  documents sharing one; `rank_feature` with `linear` scores boost * stored value;
- `script_score` scripts may not return negative scores; `knn` on dot_product scores (1 + dot) / 2;
- bulk: per-item results, partial failures; `fail_next_bulk` answers whole requests with 429 and
  `reject_items` rejects single items with 429 (es_rejected_execution_exception);
- RRF retriever (8.14+): sum of 1 / (rank_constant + rank) over the standard retrievers.
Documents are visible to search at once (refresh is accepted and ignored).
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

MIN_NORMAL = float(np.finfo(np.float32).tiny)


def lucene_feature(value: float) -> float:
    """The value FeatureField gives back: float32 bits with the low 15 dropped (9 significant bits)."""
    bits = np.array([value], dtype=np.float32).view(np.uint32)
    return float(((bits >> 15) << 15).view(np.float32)[0])


class FakeElasticsearch:
    """State and rules; `url` is where the client should connect."""

    def __init__(self, version: str = "8.17.0") -> None:
        self.version = version
        self.indices: dict[str, dict[str, Any]] = {}
        self.fail_next_bulk = 0
        self.reject_items: set[str] = set()
        self.bulk_calls = 0
        self.pits: dict[str, tuple[str, list[str]]] = {}  # point-in-time id -> (index, doc ids when opened)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeElasticsearch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)

    # ------------------------------------------------------------ documents
    def index_doc(self, index: str, doc_id: str, source: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if index not in self.indices:
            return 404, _error("index_not_found_exception", f"no such index [{index}]")
        if len(doc_id.encode("utf-8")) > 512:
            return 400, _error("illegal_argument_exception", "id is too long, must be no longer than 512 bytes")
        props = self.indices[index]["mappings"].get("properties", {})
        stored = dict(source)
        for field, spec in props.items():
            if field not in source:
                continue
            value = source[field]
            if spec["type"] in ("sparse_vector", "rank_features"):
                if not isinstance(value, dict):
                    return 400, _error("document_parsing_exception", f"[{field}] must be an object of features")
                features = {}
                for name, v in value.items():
                    if "." in name and spec["type"] == "rank_features":
                        return 400, _error("document_parsing_exception", f"[{field}] feature names cannot contain dots")
                    if not isinstance(v, int | float) or not math.isfinite(v) or v < MIN_NORMAL:
                        return 400, _error(
                            "document_parsing_exception",
                            f"[{field}] featureValue must be a positive normal float, got: {v} for feature {name}",
                        )
                    features[name] = lucene_feature(float(v))
                stored[field] = features
            elif spec["type"] == "dense_vector":
                if len(value) != spec["dims"]:
                    return 400, _error(
                        "document_parsing_exception",
                        f"The [dense_vector] field [{field}] has a different number of dimensions [{len(value)}] "
                        f"than defined in the mapping [{spec['dims']}]",
                    )
                if spec.get("similarity") == "dot_product" and abs(math.sqrt(sum(x * x for x in value)) - 1) > 1e-4:
                    return 400, _error(
                        "document_parsing_exception",
                        f"The [dot_product] similarity can only be used with unit-length vectors, field [{field}]",
                    )
        self.indices[index]["docs"][doc_id] = {"source": source, "stored": stored}
        return 201, None

    # --------------------------------------------------------------- queries
    def matches(self, doc: dict[str, Any], query: dict[str, Any]) -> bool:
        return self.score(doc, query) is not None

    def score(self, doc: dict[str, Any], query: dict[str, Any]) -> float | None:
        """The document's score for a query, or None when it does not match."""
        ((kind, body),) = query.items()
        src, stored = doc["source"], doc["stored"]
        if kind == "match_all":
            return 1.0
        if kind == "term":
            ((field, value),) = body.items()
            return 0.0 if src.get(field) == value else None
        if kind == "terms":
            ((field, values),) = body.items()
            return 0.0 if src.get(field) in values else None
        if kind == "range":
            ((field, bounds),) = body.items()
            v = src.get(field)
            if v is None:
                return None
            ok = all({"gte": v >= b, "gt": v > b, "lte": v <= b, "lt": v < b}[op] for op, b in bounds.items())
            return 0.0 if ok else None
        if kind == "bool":
            total = 0.0
            for clause in body.get("must", []):
                s = self.score(doc, clause)
                if s is None:
                    return None
                total += s
            for clause in body.get("filter", []):
                if self.score(doc, clause) is None:
                    return None
            should = [self.score(doc, c) for c in body.get("should", [])]
            hit = [s for s in should if s is not None]
            if len(hit) < body.get("minimum_should_match", 0):
                return None
            return total + sum(hit)
        if kind == "sparse_vector":
            if self.major_minor < (8, 15):
                raise BadRequest("parsing_exception", "unknown query [sparse_vector]")
            features = stored.get(body["field"], {})
            shared = [w * features[t] for t, w in body["query_vector"].items() if t in features]
            return sum(shared) if shared else None
        if kind == "rank_feature":
            field, feature = body["field"].split(".", 1)
            if "linear" not in body:
                raise BadRequest("fake_limit", "the fake implements only the linear rank_feature function")
            value = stored.get(field, {}).get(feature)
            return body.get("boost", 1.0) * value if value is not None else None
        if kind == "script_score":
            if self.score(doc, body["query"]) is None:
                return None
            m = re.fullmatch(r"dotProduct\(params\.q, '(\w+)'\) \+ 1\.0", body["script"]["source"])
            if not m:
                raise BadRequest("fake_limit", "the fake implements only dotProduct(params.q, field) + 1.0")
            vector = src.get(m.group(1))
            if vector is None:
                return None
            value = float(np.dot(np.float32(body["script"]["params"]["q"]), np.float32(vector))) + 1.0
            if value < 0:
                raise BadRequest("script_exception", "script score function must not produce negative scores")
            return value
        raise BadRequest("parsing_exception", f"unknown query [{kind}]")

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        docs = self.indices[index]["docs"]
        size = body.get("size", 10)
        if "retriever" in body:
            if self.major_minor < (8, 14):
                raise BadRequest("x_content_parse_exception", "unknown field [retriever]")
            rrf = body["retriever"]["rrf"]
            window, k = rrf.get("rank_window_size", size), rrf.get("rank_constant", 60)
            fused: dict[str, float] = {}
            for retriever in rrf["retrievers"]:
                ranked = self._rank(docs, retriever["standard"]["query"])[:window]
                for rank, (doc_id, _) in enumerate(ranked, start=1):
                    fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank)
            ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        elif "knn" in body:
            knn = body["knn"]
            q = np.float32(knn["query_vector"])
            cands = [
                (i, (1.0 + float(np.dot(q, np.float32(d["source"][knn["field"]])))) / 2)
                for i, d in docs.items()
                if knn["field"] in d["source"] and ("filter" not in knn or self.matches(d, knn["filter"]))
            ]
            ranked = sorted(cands, key=lambda kv: (-kv[1], kv[0]))[: knn["k"]]
        else:
            ranked = self._rank(docs, body.get("query", {"match_all": {}}))
        hits = [{"_index": index, "_id": i, "_score": s, "_source": docs[i]["source"]} for i, s in ranked[:size]]
        return {
            "took": 1,
            "timed_out": False,
            "hits": {"total": {"value": len(ranked), "relation": "eq"}, "hits": hits},
        }

    def pit_search(self, body: dict[str, Any]) -> dict[str, Any]:
        """A search on a point in time: match_all pages in _shard_doc order, continued with search_after."""
        pit = body.get("pit", {}).get("id")
        if pit not in self.pits:
            raise BadRequest("search_context_missing_exception", f"No search context found for id [{pit}]")
        if body.get("sort") != [{"_shard_doc": "asc"}]:
            raise BadRequest("fake_limit", "the fake pages points in time by [{'_shard_doc': 'asc'}] only")
        index, ids = self.pits[pit]
        docs = self.indices[index]["docs"]
        start = body["search_after"][0] + 1 if "search_after" in body else 0
        page = [(n, i) for n, i in enumerate(ids) if n >= start and i in docs][: body.get("size", 10)]
        hits = [{"_index": index, "_id": i, "_score": None, "_source": docs[i]["source"], "sort": [n]} for n, i in page]
        return {"pit_id": pit, "took": 1, "timed_out": False, "hits": {"total": {"value": len(ids)}, "hits": hits}}

    def _rank(self, docs: dict[str, Any], query: dict[str, Any]) -> list[tuple[str, float]]:
        scored = [(i, self.score(d, query)) for i, d in docs.items()]
        return sorted(((i, s) for i, s in scored if s is not None), key=lambda kv: (-kv[1], kv[0]))


class BadRequest(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def _error(kind: str, reason: str) -> dict[str, Any]:
    return {"type": kind, "reason": reason}


def _handler(es: FakeElasticsearch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: Any | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _fail(self, status: int, kind: str, reason: str) -> None:
            self._send(
                status, {"error": {"root_cause": [_error(kind, reason)], **_error(kind, reason)}, "status": status}
            )

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_GET(self) -> None:
            self._route("GET")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            parts = [p for p in url.path.split("/") if p]
            raw = self._body()
            try:
                with es.lock:
                    self._dispatch(method, parts, raw, parse_qs(url.query))
            except BadRequest as exc:
                self._fail(400, exc.kind, exc.reason)

        def _dispatch(self, method: str, parts: list[str], raw: bytes, params: dict[str, list[str]]) -> None:
            if not parts:
                version = {"number": es.version, "build_flavor": "default", "lucene_version": "9.12.0"}
                return self._send(200, {"name": "fake", "cluster_name": "fake", "version": version})
            if parts == ["_bulk"]:
                return self._bulk(raw)
            if parts == ["_pit"] and method == "DELETE":
                found = es.pits.pop(json.loads(raw or b"{}").get("id", ""), None)
                return self._send(200 if found else 404, {"succeeded": bool(found), "num_freed": int(bool(found))})
            if parts == ["_search"]:
                return self._send(200, es.pit_search(json.loads(raw or b"{}")))
            if len(parts) > 1 and parts[1] == "_search" and "pit" in json.loads(raw or b"{}"):
                raise BadRequest("action_request_validation_exception", "[indices] cannot be used with point in time")
            if parts[:2] == ["_cat", "indices"]:
                return self._send(
                    200, [{"index": name, "docs.count": str(len(i["docs"]))} for name, i in es.indices.items()]
                )
            index = parts[0]
            exists = index in es.indices
            if len(parts) == 1:
                if method == "HEAD":
                    return self._send(200 if exists else 404)
                if method == "PUT":
                    if exists:
                        return self._fail(400, "resource_already_exists_exception", f"index [{index}] already exists")
                    body = json.loads(raw or b"{}")
                    es.indices[index] = {"mappings": body.get("mappings", {}), "docs": {}}
                    return self._send(200, {"acknowledged": True, "shards_acknowledged": True, "index": index})
                if method == "DELETE":
                    if not exists:
                        return self._fail(404, "index_not_found_exception", f"no such index [{index}]")
                    del es.indices[index]
                    return self._send(200, {"acknowledged": True})
            if not exists:
                return self._fail(404, "index_not_found_exception", f"no such index [{index}]")
            action = parts[1]
            if action == "_pit" and method == "POST":
                if "keep_alive" not in params:
                    raise BadRequest("action_request_validation_exception", "[keep_alive] is required")
                pit = f"pit-{len(es.pits)}-{index}"
                es.pits[pit] = (index, list(es.indices[index]["docs"]))  # a snapshot: later writes are not seen
                return self._send(200, {"id": pit})
            if action == "_mapping":
                return self._send(200, {index: {"mappings": es.indices[index]["mappings"]}})
            if action == "_refresh":
                return self._send(200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})
            body = json.loads(raw or b"{}")
            if action == "_count":
                query = body.get("query", {"match_all": {}})
                n = sum(es.matches(d, query) for d in es.indices[index]["docs"].values())
                return self._send(200, {"count": n})
            if action == "_mget":
                docs = es.indices[index]["docs"]
                found = [
                    {"_index": index, "_id": i, "found": True, "_source": docs[i]["source"]}
                    if i in docs
                    else {"_index": index, "_id": i, "found": False}
                    for i in body["ids"]
                ]
                return self._send(200, {"docs": found})
            if action == "_search":
                if "size" in params:
                    body["size"] = int(params["size"][0])
                return self._send(200, es.search(index, body))
            return self._fail(400, "fake_limit", f"the fake does not implement {method} {'/'.join(parts)}")

        def _bulk(self, raw: bytes) -> None:
            es.bulk_calls += 1
            if es.fail_next_bulk > 0:
                es.fail_next_bulk -= 1
                return self._fail(429, "es_rejected_execution_exception", "rejected execution (queue capacity 200)")
            lines = [json.loads(line) for line in raw.decode().split("\n") if line.strip()]
            items, errors, i = [], False, 0
            while i < len(lines):
                ((op, meta),) = lines[i].items()
                index, doc_id = meta["_index"], str(meta["_id"])
                if op == "delete":
                    i += 1
                    found = index in es.indices and es.indices[index]["docs"].pop(doc_id, None) is not None
                    items.append({"delete": {"_index": index, "_id": doc_id, "status": 200 if found else 404,
                                             "result": "deleted" if found else "not_found"}})  # fmt: skip
                    continue
                source = lines[i + 1]
                i += 2
                if doc_id in es.reject_items:
                    es.reject_items.discard(doc_id)
                    status, error = 429, _error("es_rejected_execution_exception", "rejected execution")
                else:
                    status, error = es.index_doc(index, doc_id, source)
                item = {"_index": index, "_id": doc_id, "status": status}
                if error:
                    errors = True
                    item["error"] = error
                else:
                    item["result"] = "created"
                items.append({op: item})
            self._send(200, {"took": 1, "errors": errors, "items": items})

    return Handler
