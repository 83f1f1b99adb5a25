"""Encoders from texts to what a collection stores: `CSRv2Encoder` (sparse) and `MRLEncoder` (dense baseline).

Both sit on any `Embedder` (the offline backbone, a sentence-transformers model, an OpenAI-compatible
endpoint, a function); `encode_hybrid` gives both vectors from one embedding pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csrv2_vdb.embedders import Embedder, Kind
from csrv2_vdb.errors import DimensionMismatchError, InvalidArgumentError, InvalidEmbeddingError, InvalidKError
from csrv2_vdb.head import SparseHead, resolve_head
from csrv2_vdb.sparse import SparseBatch

QUERY_K_CAP = 16  # queries get up to 4k active dims, at most this many (never fewer than k)


def default_query_k(k: int, hidden_dim: int | None = None) -> int:
    """Active dims for queries against documents coded at `k`: max(k, min(4k, 16)), i.e. 2 -> 8, 4 -> 16,
    8 -> 16, 16 and up -> k. A query's code is not stored, so extra active dims cost search time (more posting
    lists), not memory. Chosen on the medical tune questions and 12,000 Debian descriptions (docs/quality.md,
    "Longer queries"): documents at k = 2 searched with 8-dim queries gained +0.05 nDCG@10 on both, at k = 4
    +0.01 / +0.05, at k = 8 +0.00 / +0.01; past 16 nothing or a loss, hence the cap. Held out: medical final
    k = 2 0.312 -> 0.384; a head fitted on the package test lost 2 of 50 queries (hit@5 0.88 -> 0.84)."""
    q = max(k, min(4 * k, QUERY_K_CAP))
    return min(q, hidden_dim) if hidden_dim is not None else q


class CSRv2Encoder:
    """Embedder + sparse head. `k` is the documents' number of active dims; queries use `query_k` (default
    `default_query_k(k)`: more active dims for small k, since a query's code is not stored). Each call may
    ask for another k (adaptive).

    `normalize` (default on) scales every code to unit length, so an engine's dot product ranks by cosine:
    measured on held-out questions and the package test (docs/quality.md), cosine ranks as well as or better
    than the raw dot product at every k for the general and label-free heads (nDCG@10 on medical at k = 2:
    0.082 against 0.049 with the general head). A collection records it with the head (`identity`), since
    codes written one way and searched the other rank differently; `normalize=False` gives the raw codes
    (the sentence-transformers SparseEncoder's output).
    """

    def __init__(
        self,
        embedder: Embedder | None,
        head: SparseHead,
        k: int | None = None,
        normalize: bool = True,
        query_k: int | None = None,
    ) -> None:
        if embedder is not None and head.input_dim != embedder.dim:
            raise DimensionMismatchError(
                f"the head takes {head.input_dim}-dim embeddings but the embedder {embedder.identity} gives "
                f"{embedder.dim}; fit a head on this embedder's vectors (csrv2-vdb train) or load the matching one"
            )
        self._embedder = embedder
        self.head = head.eval()
        self.k = head.check_k(head.k if k is None else k)
        self.query_k = head.check_k(default_query_k(self.k, head.hidden_dim) if query_k is None else query_k)
        self.normalize = bool(normalize)
        self._identity: str | None = None

    @classmethod
    def load(
        cls,
        head: str | Path | None = None,
        embedder: Embedder | None = None,
        k: int | None = None,
        normalize: bool = True,
        query_k: int | None = None,
    ) -> CSRv2Encoder:
        """A head directory or shipped head name (default: the general head), on the offline backbone
        unless another embedder is given."""
        from csrv2_vdb.backbone import Backbone

        return cls(embedder or Backbone(), resolve_head(head), k, normalize, query_k)

    def normalized_as(self, normalize: bool) -> CSRv2Encoder:
        """This encoder (same embedder, head, k and query_k) with the given normalisation, e.g. a collection's."""
        if normalize == self.normalize:
            return self
        return CSRv2Encoder(self._embedder, self.head, self.k, normalize, self.query_k)

    @property
    def embedder(self) -> Embedder:
        """The embedder of texts; an encoder built without one takes precomputed embeddings only."""
        return _needs(self._embedder, "CSRv2Encoder")

    @property
    def embedder_if_any(self) -> Embedder | None:
        """The embedder of texts, or None for an encoder of precomputed embeddings (what a copy should keep)."""
        return self._embedder

    @property
    def dim(self) -> int:
        """Latent dimension h of the sparse vectors."""
        return self.head.hidden_dim

    @property
    def identity(self) -> str:
        """What a collection records as the writer of its codes: the head's content hash and the normalisation
        (not k: a query may use fewer active dims than the documents, which is the adaptive-k promise)."""
        if self._identity is None:
            self._identity = f"csrv2-head:{self.head.fingerprint()[:16]}" + (":l2" if self.normalize else "")
        return self._identity

    def encode_embeddings(self, dense: np.ndarray, k: int | None = None) -> SparseBatch:
        """Precomputed embeddings (the embedder's, or vectors from the same model stored elsewhere) -> SparseBatch."""
        codes = self.head.encode(dense, self.head.check_k(self.k if k is None else k))
        return codes.normalized() if self.normalize else codes

    def encode_texts(self, texts: Sequence[str], kind: Kind, k: int | None = None) -> SparseBatch:
        """Texts embedded as `kind` (the embedder's query or document prompt) -> SparseBatch."""
        return self.encode_embeddings(self.embedder.embed(texts, kind), k)

    def query_k_for(self, k: int | None) -> int:
        """Queries' active dims against documents coded at `k`: `query_k` for this encoder's own k (or None),
        else `default_query_k(k)` (for wrappers that code documents at a k of their own)."""
        return self.query_k if k is None or k == self.k else default_query_k(k, self.dim)

    def encode_queries(self, texts: Sequence[str], query_k: int | None = None) -> SparseBatch:
        """Queries at `query_k` active dims, default the encoder's `query_k` (documents' k is `encode_documents`'s)."""
        return self.encode_texts(texts, "query", self.query_k if query_k is None else query_k)

    def encode_documents(self, texts: Sequence[str], k: int | None = None) -> SparseBatch:
        return self.encode_texts(texts, "document", k)


def writes_normalized(identity: str | None) -> bool:
    """Whether the encoder an identity names (e.g. a collection's `CollectionInfo.encoder`) normalises its codes."""
    return bool(identity and identity.endswith(":l2"))


def identity_head_hash(identity: str | None) -> str | None:
    """The head's content hash an encoder identity names (`CSRv2Encoder.identity`), or None for anything else."""
    parts = (identity or "").split(":")
    return parts[1] if len(parts) > 1 and parts[0] == "csrv2-head" and parts[1] else None


def _needs(embedder: Embedder | None, what: str) -> Embedder:
    if embedder is None:
        raise InvalidArgumentError(
            f"this {what} has no embedder: it encodes precomputed embeddings only (encode_embeddings); "
            "give it an embedder to encode texts"
        )
    return embedder


def mrl_truncate(dense: np.ndarray, dims: int) -> np.ndarray:
    """First `dims` coordinates of each row, re-normalised to unit length (the MRL baseline)."""
    dense = np.asarray(dense, dtype=np.float32)
    if dense.ndim != 2:
        raise InvalidEmbeddingError(f"expected an (n, d) array, got shape {dense.shape}")
    if not 1 <= dims <= dense.shape[1]:
        raise InvalidKError(f"MRL dims={dims} must be between 1 and the embedding size {dense.shape[1]}")
    if not np.isfinite(dense).all():
        raise InvalidEmbeddingError("embedding holds NaN or inf; fix the input before truncating")
    cut = dense[:, :dims]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.maximum(norms, 1e-12)


class MRLEncoder:
    """An embedding truncated to its first `dims` coordinates and re-normalised."""

    def __init__(self, embedder: Embedder | None, dims: int) -> None:
        top = embedder.dim if embedder is not None else 1 << 20
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= top:
            raise InvalidKError(f"dims={dims} must be between 1 and the embedding size {top}")
        self._embedder = embedder
        self.dims = dims

    @property
    def embedder(self) -> Embedder:
        return _needs(self._embedder, "MRLEncoder")

    def encode_embeddings(self, dense: np.ndarray) -> np.ndarray:
        return mrl_truncate(dense, self.dims)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return mrl_truncate(self.embedder.embed(texts, "query"), self.dims)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return mrl_truncate(self.embedder.embed(texts, "document"), self.dims)


def encode_hybrid(
    encoder: CSRv2Encoder, dense_encoder: MRLEncoder, texts: Sequence[str], kind: Kind, k: int | None = None
) -> tuple[SparseBatch, np.ndarray]:
    """Sparse codes (queries at the encoder's `query_k` unless `k` is given) and MRL vectors of `texts`: one
    embedding pass when both encoders share the embedder."""
    dense = encoder.embedder.embed(texts, kind)
    shared = dense_encoder.embedder is encoder.embedder
    sparse_k = encoder.query_k if k is None and kind == "query" else k
    return encoder.encode_embeddings(dense, sparse_k), dense_encoder.encode_embeddings(
        dense if shared else dense_encoder.embedder.embed(texts, kind)
    )
