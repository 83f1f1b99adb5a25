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
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_qdrant import SparseEmbeddings, SparseVector
from pydantic import ConfigDict

from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder
from csrv2_vdb.store import Filter, Hit, SparseStore

SearchMode = Literal["sparse", "dense", "hybrid"]


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
        limit = k if k is not None else self.k
        mode = search_mode or self.search_mode
        flt = filter if filter is not None else self.filter
        if mode in ("sparse", "hybrid") and self.encoder is None:
            raise ValueError(f"search_mode {mode!r} needs a CSRv2Encoder (encoder=...)")
        if mode in ("dense", "hybrid") and self.dense_encoder is None:
            raise ValueError(f"search_mode {mode!r} needs an MRLEncoder (dense_encoder=...)")
        if mode == "sparse":
            assert self.encoder is not None
            sparse = self.encoder.encode_queries([query], k=self.active_dims)
            return self.store.search(self.collection, sparse, limit=limit, filter=flt)[0]
        assert self.dense_encoder is not None
        dense = self.dense_encoder.encode_queries([query])
        if mode == "dense":
            return self.store.search(self.collection, dense, limit=limit, filter=flt)[0]
        assert self.encoder is not None
        sparse = self.encoder.encode_queries([query], k=self.active_dims)
        return self.store.hybrid_search(self.collection, sparse, dense, limit=limit, filter=flt)[0]

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
        from csrv2_vdb.bulk import bulk_index

        ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        store.create_collection(
            collection,
            sparse_dim=encoder.dim,
            dense_dim=dense_encoder.dims if dense_encoder else None,
            exist_ok=True,
        )
        records = [{**m, "id": i, "text": t} for t, m, i in zip(texts, metadatas, ids, strict=True)]
        if dense_encoder is None:
            bulk_index(store, collection, records, encoder.encode_documents, progress=False)
        else:
            for start in range(0, len(records), 256):
                part = records[start : start + 256]
                batch = [r["text"] for r in part]
                store.upsert(
                    collection,
                    [r["id"] for r in part],
                    sparse=encoder.encode_documents(batch),
                    dense=dense_encoder.encode_documents(batch),
                    payloads=[{k: v for k, v in r.items() if k != "id"} for r in part],
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
