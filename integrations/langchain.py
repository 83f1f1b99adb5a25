"""LangChain: `CSRv2Retriever` over any `SparseStore`, and `CSRv2SparseEmbeddings` for langchain-qdrant.

    retriever = CSRv2Retriever.from_texts(texts, encoder, store, "docs", metadatas=...)
    retriever.invoke("question", k=3, filter={"topic": "skin"})

    QdrantVectorStore(..., sparse_embedding=CSRv2SparseEmbeddings(encoder),
                      retrieval_mode=RetrievalMode.SPARSE)   # the one-line switch for langchain-qdrant users

Documents carry the stored text as `page_content`, the payload as metadata, plus "id" and "score".
Sparse engines return only documents sharing a latent with the query, so fewer than k can come back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_qdrant import SparseEmbeddings, SparseVector
from pydantic import ConfigDict

from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder
from csrv2_vdb.filters import Filter
from csrv2_vdb.retrieval import SearchMode, index_texts, search_text
from csrv2_vdb.store import Hit, SparseStore


class CSRv2Retriever(BaseRetriever):
    """Retrieve from a SparseStore collection with CSRv2 codes, MRL dense vectors, or both fused."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any
    collection: str
    encoder: CSRv2Encoder | None = None
    dense_encoder: MRLEncoder | None = None
    k: int = 4
    active_dims: int | None = None
    search_mode: SearchMode = "sparse"
    filter: dict[str, Any] | None = None
    text_key: str = "text"

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
    """langchain-qdrant's SparseEmbeddings backed by a CSRv2Encoder (k active dims per vector)."""

    def __init__(self, encoder: CSRv2Encoder, k: int | None = None) -> None:
        self.encoder = encoder
        self.k = k

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        rows = self.encoder.encode_documents(texts, k=self.k).rows()
        return [SparseVector(indices=i, values=v) for i, v in rows]

    def embed_query(self, text: str) -> SparseVector:
        ((indices, values),) = self.encoder.encode_queries([text], k=self.k).rows()
        return SparseVector(indices=indices, values=values)
