"""Embedders: anything that turns texts into dense vectors, behind one small protocol.

An `Embedder` has `dim`, a stable `identity` (what produced the vectors: caches and collections key on it)
and `embed(texts, kind) -> (n, dim) float32` with unit-length rows (the heads are trained on unit vectors;
every embedder here normalises what its model returns). Implementations:

- `Backbone` (backbone.py): a transformers model, the offline all-MiniLM-L6-v2 by default;
- `SentenceTransformerEmbedder`: any sentence-transformers model directory or hub name;
- `OpenAIEmbedder`: an OpenAI-compatible `/embeddings` endpoint (OpenAI, vLLM, TEI, Ollama, LiteLLM, ...);
- `CallableEmbedder`: a Python function of (texts, kind).

`open_embedder(spec)` builds one from a command-line string; `CachedEmbedder` (embed_cache.py) wraps any of
them with an on-disk cache.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from csrv2_vdb.credentials import redact, remember_secret
from csrv2_vdb.errors import (
    DimensionMismatchError,
    EmbeddingServiceError,
    InvalidArgumentError,
    InvalidEmbeddingError,
    TransientEngineError,
)
from csrv2_vdb.texts import check_texts

Kind = Literal["query", "document"]
KINDS: tuple[Kind, ...] = ("query", "document")


@runtime_checkable
class Embedder(Protocol):
    """Texts -> (n, dim) float32 unit vectors; `identity` names the model and settings that produced them."""

    @property
    def dim(self) -> int: ...

    @property
    def identity(self) -> str: ...

    def embed(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray: ...


# Models trained with a Matryoshka loss (their first dims are meant to stand alone), as their model cards say;
# truncating any other model's vectors is plain truncation, and evaluations label it so.
MATRYOSHKA_MODELS = ("text-embedding-3-", "nomic-embed-text-v1.5", "mxbai-embed-large-v1", "gte-modernbert",
                     "snowflake-arctic-embed-m-v1.5", "jina-embeddings-v3", "embeddinggemma")  # fmt: skip


def truncation_name(embedder: Embedder) -> str:
    """ "MRL" for a model trained for truncation (MATRYOSHKA_MODELS), else "truncated" (e.g. all-MiniLM-L6-v2)."""
    identity = embedder.identity.lower()
    return "MRL" if any(name in identity for name in MATRYOSHKA_MODELS) else "truncated"


def check_kind(kind: object) -> Kind:
    if kind not in KINDS:
        raise InvalidArgumentError(f"kind must be 'query' or 'document', got {kind!r}")
    return kind


def unit_rows(vectors: Any, n: int, dim: int | None, source: str) -> np.ndarray:
    """`vectors` as an (n, dim) float32 array of unit rows, or a clear error naming `source`."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidEmbeddingError(f"{source} returned something that is not an (n, d) array of numbers") from exc
    if array.ndim != 2 or array.shape[0] != n:
        raise InvalidEmbeddingError(f"{source} returned shape {array.shape} for {n} texts; expected ({n}, d)")
    if dim is not None and array.shape[1] != dim:
        raise DimensionMismatchError(f"{source} returned {array.shape[1]}-dim vectors where {dim} were expected")
    if not np.isfinite(array).all():
        raise InvalidEmbeddingError(f"{source} returned NaN or inf")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InvalidEmbeddingError(f"{source} returned an all-zero vector; it has no direction to compare")
    return array / norms


class CallableEmbedder:
    """A Python function `fn(texts, kind) -> (n, dim) array` as an embedder; `identity` must name the model.

    `scheme` prefixes the identity (other wrappers, such as the LangChain one, say what they wrap)."""

    def __init__(
        self, fn: Callable[[list[str], Kind], Any], dim: int, identity: str, *, scheme: str = "callable"
    ) -> None:
        if not identity:
            raise InvalidArgumentError(f"a {scheme} embedder needs an identity naming its model (caches key on it)")
        self.fn = fn
        self.dim = int(dim)
        self.identity = f"{scheme}:{identity}"

    def embed(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        check_texts(texts)
        return unit_rows(self.fn(list(texts), check_kind(kind)), len(texts), self.dim, f"embedder {self.identity}")


class SentenceTransformerEmbedder:
    """A sentence-transformers model (directory or hub name); its "query"/"document" prompts are used when
    the model defines them."""

    def __init__(self, model: str | Path, *, batch_size: int = 64, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.name = str(model)
        self.model = SentenceTransformer(self.name, device=device)
        self.batch_size = batch_size
        size = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = size()
        if dim is None:
            raise InvalidArgumentError(f"sentence-transformers model {self.name} does not say its embedding size")
        self.dim = int(dim)
        prompts = getattr(self.model, "prompts", {}) or {}
        self._prompts = {kind: kind if prompts.get(kind) else None for kind in KINDS}
        from csrv2_vdb.backbone import weights_digest

        settings = f"{self.name}|{self.model.max_seq_length}|{sorted(prompts.items())}"
        weights = weights_digest(self.model)  # the content, not the path (see Backbone.weights)
        self.identity = f"st:{self.name}@{weights}|{hashlib.sha256(settings.encode()).hexdigest()[:12]}"

    def embed(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        check_texts(texts)
        out = self.model.encode(
            list(texts),
            prompt_name=self._prompts[check_kind(kind)],
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=len(texts) > 4 * self.batch_size,
        )
        return unit_rows(out, len(texts), self.dim, f"model {self.name}")


class _Retry(Exception):
    """A reply worth another try (429, 5xx, a dropped connection), with the server's wait if it gave one."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings endpoint (POST {base_url}/embeddings).

    `base_url` defaults to CSRV2_EMBED_BASE_URL, then OPENAI_BASE_URL, then https://api.openai.com/v1; the key
    to `api_key`, then CSRV2_EMBED_API_KEY, then OPENAI_API_KEY (none for local servers). The key is sent in
    the Authorization header only: never in an identity, a repr, a log line or an error. Texts go in batches
    of `batch_size`, at most `concurrency` requests at a time; a 429 waits for its Retry-After (else
    exponential backoff), 5xx replies and dropped connections are retried with backoff, `max_retries` times
    and within `max_wait` seconds per batch in all (default CSRV2_EMBED_MAX_WAIT, else 120; `timeout` bounds
    each request). A reply must hold each text's index once (data[].index a permutation of the request).
    `dimensions` asks models that take it (text-embedding-3-*) for shorter vectors; every reply must have the
    expected size. Query and document texts are embedded alike unless `query_prefix`/`document_prefix` say
    otherwise (for models that want an instruction, e.g. "query: ").
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 128,
        concurrency: int = 4,
        max_retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        timeout: float = 30.0,
        max_wait: float | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
    ) -> None:
        import httpx

        if not model:
            raise InvalidArgumentError("OpenAIEmbedder needs a model name")
        if batch_size < 1 or concurrency < 1:
            raise InvalidArgumentError(f"batch_size and concurrency must be >= 1, got {batch_size}, {concurrency}")
        if dimensions is not None and dimensions < 1:
            raise InvalidArgumentError(f"dimensions must be a positive integer, got {dimensions}")
        env = os.environ
        url = base_url or env.get("CSRV2_EMBED_BASE_URL") or env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.base_url = url.rstrip("/")
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.prefixes = {"query": query_prefix, "document": document_prefix}
        self.retries = 0  # retried requests so far, for reports
        self.timeout = timeout
        self.max_wait = max_wait if max_wait is not None else float(env.get("CSRV2_EMBED_MAX_WAIT", "120"))
        if self.max_wait <= 0 or timeout <= 0:
            raise InvalidArgumentError(f"timeout and max_wait must be positive, got {timeout}, {self.max_wait}")
        key = api_key or env.get("CSRV2_EMBED_API_KEY") or env.get("OPENAI_API_KEY")
        remember_secret(key)
        remember_secret(url)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._transport_errors: tuple[type[BaseException], ...] = (httpx.TransportError,)
        self._dim: int | None = dimensions
        self._lock = threading.Lock()
        prefixes = f"|{query_prefix}|{document_prefix}" if query_prefix or document_prefix else ""
        self._identity = f"openai:{redact(self.base_url)}|{model}|{dimensions or 'native'}{prefixes}"

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, base_url={redact(self.base_url)!r})"

    @property
    def dim(self) -> int:
        """The vector size: `dimensions` when given, else learnt from one request."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    @property
    def identity(self) -> str:
        return self._identity

    def close(self) -> None:
        self._http.close()

    def embed(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        check_texts(texts)
        prefix = self.prefixes[check_kind(kind)]
        batches = [[prefix + t for t in texts[i : i + self.batch_size]] for i in range(0, len(texts), self.batch_size)]
        if len(batches) <= 1 or self.concurrency == 1:
            parts = [self._request(b) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                parts = list(pool.map(self._request, batches))
        return np.concatenate(parts) if parts else np.empty((0, self._dim or 0), np.float32)

    def _request(self, batch: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        attempt = 0
        deadline = time.monotonic() + self.max_wait
        while True:
            try:
                return self._post(body, len(batch), min(self.timeout, max(deadline - time.monotonic(), 0.1)))
            except _Retry as exc:
                wait = min(exc.wait if exc.wait is not None else self.backoff * 2**attempt, self.max_backoff)
                if attempt == self.max_retries or time.monotonic() + wait >= deadline:
                    raise TransientEngineError(
                        f"embeddings endpoint {redact(self.base_url)} still failing after {attempt + 1} tries in "
                        f"{self.max_wait:.0f} s at most (max_wait, CSRV2_EMBED_MAX_WAIT): {exc}"
                    ) from None
                with self._lock:
                    self.retries += 1
                time.sleep(wait)
                attempt += 1

    def _post(self, body: dict[str, Any], n: int, timeout: float) -> np.ndarray:
        try:
            response = self._http.post("/embeddings", json=body, timeout=timeout)
        except self._transport_errors as exc:
            raise _Retry(f"connection failed ({type(exc).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}", _retry_after(response.headers.get("retry-after")))
        if response.status_code != 200:
            raise EmbeddingServiceError(
                f"embeddings endpoint {redact(self.base_url)} refused the request (HTTP {response.status_code}): "
                f"{redact(response.text[:300])}"
            )
        try:
            data = response.json()["data"]
            order = [item["index"] for item in data]
            vectors = [item["embedding"] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingServiceError(
                f"embeddings endpoint {redact(self.base_url)} answered without data[].embedding ({exc!r})"
            ) from None
        if sorted(order, key=repr) != list(range(n)) or any(isinstance(i, bool) for i in order):
            shown = order[:8] if len(order) <= 8 else [*order[:8], "..."]
            raise EmbeddingServiceError(
                f"embeddings endpoint {redact(self.base_url)} answered with data[].index {shown} for {n} texts; "
                f"each of 0..{n - 1} must appear once, or vectors would land on the wrong texts"
            )
        vectors = [vectors[order.index(i)] for i in range(n)]
        if len(vectors) != n or len({len(v) for v in vectors}) > 1:
            raise InvalidEmbeddingError(
                f"embeddings endpoint {redact(self.base_url)} returned {len(vectors)} vectors of sizes "
                f"{sorted({len(v) for v in vectors})} for {n} texts"
            )
        with self._lock:
            if self._dim is None:
                self._dim = len(vectors[0])
        return unit_rows(vectors, n, self._dim, f"embeddings endpoint {redact(self.base_url)} (model {self.model})")


def open_embedder(spec: str | None, *, dimensions: int | None = None) -> Embedder:
    """An embedder from a command-line string.

    None or "" -> the offline all-MiniLM-L6-v2 `Backbone`; "st:NAME_OR_DIR" -> sentence-transformers;
    "openai:MODEL" -> an OpenAI-compatible endpoint (URL and key from the environment, see `OpenAIEmbedder`);
    anything else -> a transformers model directory or hub name through `Backbone`.
    """
    from csrv2_vdb.backbone import Backbone

    if not spec:
        return Backbone()
    scheme, sep, rest = spec.partition(":")
    if sep and scheme == "st":
        return SentenceTransformerEmbedder(rest)
    if sep and scheme == "openai":
        return OpenAIEmbedder(rest, dimensions=dimensions)
    return Backbone(spec)
