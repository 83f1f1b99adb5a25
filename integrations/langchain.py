"""LangChain: `CSRv2VectorStore` and `CSRv2Retriever` over any `SparseStore`, `CSRv2SparseEmbeddings` for
langchain-qdrant, and `LangChainEmbedder` (a LangChain `Embeddings` model as this library's embedder).

    vectorstore = CSRv2VectorStore(store, "docs")             # the general head on the offline backbone
    vectorstore.add_documents(docs)
    vectorstore.similarity_search("question", k=3, filter={"topic": "skin"})
    vectorstore.as_retriever(search_kwargs={"k": 3})

    retriever = CSRv2Retriever.from_texts(texts, encoder, store, "docs", metadatas=...)
    retriever.invoke("question", k=3, filter={"topic": "skin"})

    QdrantVectorStore(..., sparse_embedding=CSRv2SparseEmbeddings(encoder),
                      retrieval_mode=RetrievalMode.SPARSE)   # the one-line switch for langchain-qdrant users

Documents carry the stored text as `page_content`, the payload as metadata, plus "id" and "score".
Sparse engines return only documents sharing a latent with the query, so fewer than k can come back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from langchain_qdrant import SparseEmbeddings, SparseVector
from pydantic import ConfigDict, PrivateAttr, model_validator

from csrv2_vdb.embedders import CallableEmbedder, Embedder, Kind
from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder
from csrv2_vdb.errors import CollectionNotFoundError, InvalidArgumentError, UnsupportedError
from csrv2_vdb.filters import Filter
from csrv2_vdb.head import resolve_head
from csrv2_vdb.retrieval import LabelsOnce, SearchMode, check_mode, index_texts, search_text
from csrv2_vdb.store import Gettable, Hit, SparseStore


class CSRv2Retriever(BaseRetriever):
    """Retrieve from a SparseStore collection with CSRv2 codes, MRL dense vectors, or both fused; `encoder`
    defaults to the collection's own head (stored with it by `index` or `CSRv2VectorStore`), else the shipped
    general head, on the offline backbone behind the embedding cache (sparse and hybrid modes)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any
    collection: str
    encoder: CSRv2Encoder | None = None
    dense_encoder: MRLEncoder | None = None
    k: int = 4
    active_dims: int | None = None  # the query code's active dims; None: the encoder's query_k
    candidates: int | None = None  # rerank: sparse candidates rescored (default: the store's depth)
    search_mode: SearchMode = "sparse"
    filter: dict[str, Any] | None = None
    text_key: str = "text"
    explain: bool = False  # metadata["explain"]: the latents each hit shares with the query (csrv2_vdb.explain)
    _labels: LabelsOnce = PrivateAttr(default_factory=LabelsOnce)

    @model_validator(mode="after")
    def _default_encoder(self) -> CSRv2Retriever:
        """No encoder named: the head stored with the collection (`csrv2_vdb.head_store`), else the general head."""
        if self.encoder is None and self.search_mode != "dense":
            from csrv2_vdb.head_store import default_encoder

            self.encoder = default_encoder(self.store, self.collection)
        return self

    def _search(self, query: str, k: int | None, filter: Filter | None, search_mode: SearchMode | None) -> list[Hit]:
        return search_text(
            self.store,
            self.collection,
            query,
            encoder=self.encoder,
            dense_encoder=self.dense_encoder,
            mode=search_mode or self.search_mode,
            limit=k if k is not None else self.k,
            filter=filter if filter is not None else self.filter,
            active_dims=self.active_dims,
            candidates=self.candidates,
            explain=self.explain,
            labels=self._labels(self.store, self.collection, self.encoder) if self.explain else None,
        )

    def _to_document(self, hit: Hit) -> Document:
        metadata = {key: value for key, value in hit.payload.items() if key != self.text_key}
        metadata.update(id=hit.id, score=hit.score)
        return Document(page_content=str(hit.payload.get(self.text_key, "")), metadata=metadata, id=hit.id)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Filter | None = None,
        search_mode: SearchMode | None = None,
    ) -> list[Document]:
        return [self._to_document(h) for h in self._search(query, k, filter, search_mode)]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Filter | None = None,
        search_mode: SearchMode | None = None,
    ) -> list[Document]:
        hits = await run_in_executor(None, self._search, query, k, filter, search_mode)
        return [self._to_document(h) for h in hits]

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        encoder: CSRv2Encoder,
        store: SparseStore,
        collection: str,
        *,
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        dense_encoder: MRLEncoder | None = None,
        **kwargs: Any,
    ) -> CSRv2Retriever:
        """Encode and upsert the texts (creating the collection if needed), then return a retriever on it."""
        index_texts(
            store, collection, texts, encoder=encoder, dense_encoder=dense_encoder, ids=ids, metadatas=metadatas
        )
        return cls(store=store, collection=collection, encoder=encoder, dense_encoder=dense_encoder, **kwargs)

    @classmethod
    def from_documents(
        cls, documents: Iterable[Document], encoder: CSRv2Encoder, store: SparseStore, collection: str, **kwargs: Any
    ) -> CSRv2Retriever:
        docs = list(documents)
        ids = [d.id or str(i) for i, d in enumerate(docs)]
        return cls.from_texts(
            [d.page_content for d in docs], encoder, store, collection, metadatas=[d.metadata for d in docs],
            ids=ids, **kwargs,
        )  # fmt: skip


class CSRv2SparseEmbeddings(SparseEmbeddings):
    """langchain-qdrant's SparseEmbeddings backed by a CSRv2Encoder (documents at k active dims, queries at the
    encoder's `query_k_for(k)`; default encoder: the general head on the offline backbone).

    No head record: langchain-qdrant's QdrantVectorStore writes the points and the collection itself, so this
    bridge cannot store or check which head coded them, and a query coded by another head finds nothing,
    without an error. Keep the encoder fixed per collection, or use `CSRv2VectorStore` over
    `csrv2_vdb.adapters.qdrant.QdrantStore`, which records the head and refuses another one."""

    def __init__(self, encoder: CSRv2Encoder | None = None, k: int | None = None) -> None:
        self.encoder = encoder if encoder is not None else CSRv2Encoder.load()
        self.k = k

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        rows = self.encoder.encode_documents(texts, k=self.k).rows()
        return [SparseVector(indices=i, values=v) for i, v in rows]

    def embed_query(self, text: str) -> SparseVector:
        ((indices, values),) = self.encoder.encode_queries([text], query_k=self.encoder.query_k_for(self.k)).rows()
        return SparseVector(indices=indices, values=values)


class LangChainEmbedder(CallableEmbedder):
    """A LangChain `Embeddings` model (OpenAIEmbeddings, HuggingFaceEmbeddings, ...) as this library's `Embedder`:
    `embed_query` for queries, `embed_documents` for documents; rows are L2-normalised like every embedder's."""

    def __init__(self, embeddings: Embeddings, dim: int, identity: str) -> None:
        self.embeddings = embeddings
        super().__init__(self._vectors, dim, identity, scheme="langchain")

    def _vectors(self, texts: list[str], kind: Kind) -> list[list[float]]:
        if kind == "query":
            return [self.embeddings.embed_query(t) for t in texts]
        return self.embeddings.embed_documents(texts)


def _document(hit: Hit, text_key: str) -> Document:
    """A stored document as LangChain's Document: the text under `text_key` is the content, the rest metadata."""
    metadata = {key: value for key, value in hit.payload.items() if key != text_key}
    return Document(page_content=str(hit.payload.get(text_key, "")), metadata=metadata, id=hit.id)


class CSRv2VectorStore(VectorStore):
    """A LangChain VectorStore over any `SparseStore` collection: sparse CSRv2 codes, MRL dense vectors, or both.

    Without `encoder`, the collection's own head is used: the head stored with an existing collection
    (`csrv2_vdb.head_store`), or, on the first write to a new one, a head fitted on those texts (label-free, as
    `csrv2-vdb index` does; fewer than `MIN_FIT_ROWS` texts get the shipped general head), stored with the
    collection; texts are embedded by `embedder` (default: the offline backbone behind the embedding cache).
    `search_mode` "sparse" (default), "dense" (needs `dense_encoder`), "hybrid" (both, fused by the engine) or
    "rerank" (the sparse top `candidates` rescored by the stored dense vectors).
    The collection is created on the first write. Filters are the library's ({"field": value | [values] |
    Range}); scores are the engine's (cosine for normalised codes). Sparse search returns only documents that
    share a latent with the query, so fewer than k can come back. Async methods run the sync ones in an
    executor, so they never block the event loop.
    """

    def __init__(
        self,
        store: SparseStore,
        collection: str,
        encoder: CSRv2Encoder | None = None,
        *,
        dense_encoder: MRLEncoder | None = None,
        search_mode: SearchMode = "sparse",
        text_key: str = "text",
        active_dims: int | None = None,
        candidates: int | None = None,
        embedder: Embedder | None = None,
        fit_overrides: dict[str, object] | None = None,
        explain: bool = False,
    ) -> None:
        check_mode(search_mode, dense_encoder)
        self.explain = explain  # metadata["explain"] on every hit (also per call: similarity_search(explain=True))
        self._labels = LabelsOnce()
        self.store = store
        self.collection = collection
        self._encoder = encoder
        self._embedder = embedder
        self.fit_overrides = fit_overrides
        self.dense_encoder = dense_encoder
        self.search_mode: SearchMode = search_mode
        self.text_key = text_key
        self.active_dims = active_dims
        self.candidates = candidates

    def _exists(self) -> bool:
        try:
            self.store.collection_info(self._served())
        except CollectionNotFoundError:
            return False
        return True

    def _served(self) -> str:
        """The version of the collection answering now (`csrv2_vdb.versions`: after a refit, the new one)."""
        from csrv2_vdb.versions import current

        return current(self.store, self.collection)

    @property
    def embedder(self) -> Embedder:
        """What embeds the texts when no encoder was given: the offline backbone behind the embedding cache."""
        if self._embedder is None:
            from csrv2_vdb.backbone import Backbone
            from csrv2_vdb.embed_cache import CachedEmbedder

            self._embedder = CachedEmbedder(Backbone())
        return self._embedder

    @property
    def encoder(self) -> CSRv2Encoder:
        """The encoder given, else the collection's own (its stored head); the general head before any write."""
        if self._encoder is None:
            from csrv2_vdb.head_store import encoder_for_collection

            if not self._exists():
                return CSRv2Encoder(self.embedder, resolve_head(None))
            self._encoder = encoder_for_collection(self.store, self.collection, self.embedder)
        return self._encoder

    def _writer(self, texts: list[str]) -> CSRv2Encoder:
        """The encoder for a write; on the first write to a new collection without an encoder, its own head."""
        if self._encoder is None and not self._exists():
            from csrv2_vdb.head_store import head_for_index

            embedder = self.embedder
            self._encoder = head_for_index(
                self.store, self.collection, embedder, lambda: (embedder.embed(texts, "document"), texts), len(texts),
                dense_dim=self.dense_encoder.dims if self.dense_encoder else None, fit_overrides=self.fit_overrides,
                log=lambda _: None,
            )  # fmt: skip
        return self.encoder

    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:  # fmt: skip
        """Encode and upsert; an id that is None (or not given) becomes a random UUID. Returns the ids."""
        batch = list(texts)
        given = list(ids) if ids is not None else [None] * len(batch)
        if len(given) != len(batch):
            raise InvalidArgumentError(f"{len(batch)} texts but {len(given)} ids")
        chosen = [str(i) if i is not None else str(uuid.uuid4()) for i in given]
        if not batch:
            return []
        return index_texts(
            self.store, self.collection, batch, encoder=self._writer(batch), dense_encoder=self.dense_encoder,
            ids=chosen, metadatas=metadatas, text_key=self.text_key,
        )  # fmt: skip

    def _hits(
        self, query: str, k: int, filter: Filter | None, mode: SearchMode | None, explain: bool | None = None
    ) -> list[Hit]:
        if not self._exists():
            return []
        explain = self.explain if explain is None else explain
        return search_text(
            self.store, self.collection, query, encoder=self.encoder, dense_encoder=self.dense_encoder,
            mode=mode or self.search_mode, limit=k, filter=filter, active_dims=self.active_dims,
            candidates=self.candidates, explain=explain,
            labels=self._labels(self.store, self.collection, self.encoder) if explain else None,
        )  # fmt: skip

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, search_mode: SearchMode | None = None,
        explain: bool | None = None, **kwargs: Any,
    ) -> list[Document]:  # fmt: skip
        """Top k documents; `explain`: metadata["explain"] lists each hit's shared latents and contributions."""
        return [_document(h, self.text_key) for h in self._hits(query, k, filter, search_mode, explain)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, search_mode: SearchMode | None = None,
        explain: bool | None = None, **kwargs: Any,
    ) -> list[tuple[Document, float]]:  # fmt: skip
        hits = self._hits(query, k, filter, search_mode, explain)
        return [(_document(h, self.text_key), h.score) for h in hits]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Scores of normalised codes are cosines in [0, 1] (codes are non-negative): already relevances."""
        if self.search_mode != "sparse" or not self.encoder.normalize:
            raise UnsupportedError(
                "relevance scores in [0, 1] are defined for sparse search with normalised codes only; use "
                "similarity_search_with_score for the engine's raw scores"
            )
        return lambda score: score

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by id; with no ids, drop the whole collection (it is created again on the next write)."""
        if not self._exists():
            return True
        if ids is None:
            self.store.drop_collection(self.collection)
        else:
            self.store.delete(self._served(), [str(i) for i in ids])
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among `ids`, in that order (missing ids are left out)."""
        if not isinstance(self.store, Gettable):
            raise UnsupportedError(f"{type(self.store).__name__} cannot return documents by id")
        if not self._exists():
            return []
        return [_document(h, self.text_key) for h in self.store.get(self._served(), list(ids))]

    @classmethod
    def from_texts(
        cls, texts: list[str], embedding: Embeddings | CSRv2Encoder | None = None,
        metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None, **kwargs: Any,
    ) -> CSRv2VectorStore:  # fmt: skip
        """`store=` and `collection=` name where to write; `embedding` is a CSRv2Encoder (or None: the default
        encoder). A LangChain `Embeddings` is refused: wrap it in `LangChainEmbedder` and give a head fitted on it."""
        if embedding is not None and not isinstance(embedding, CSRv2Encoder):
            raise InvalidArgumentError(
                "CSRv2VectorStore needs a CSRv2Encoder: wrap your Embeddings in LangChainEmbedder and build "
                "CSRv2Encoder(LangChainEmbedder(...), head) with a head fitted on its vectors (csrv2-vdb train)"
            )
        if "store" not in kwargs or "collection" not in kwargs:
            raise InvalidArgumentError("from_texts needs store= (a SparseStore) and collection= (its name)")
        vectorstore = cls(kwargs.pop("store"), kwargs.pop("collection"), embedding, **kwargs)
        vectorstore.add_texts(texts, metadatas, ids=ids)
        return vectorstore
