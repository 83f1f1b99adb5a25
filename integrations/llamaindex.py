"""LlamaIndex: `CSRv2Retriever` over any `SparseStore`, and CSRv2 sparse functions for LlamaIndex's vector stores.

    retriever = CSRv2Retriever(store, "docs", encoder=encoder, similarity_top_k=3)
    retriever.retrieve("question")                           # -> list[NodeWithScore]
    retriever = CSRv2Retriever.from_documents(documents, store, "docs")  # indexes them: a new collection fits
                                                                         # its own head, as `csrv2-vdb index`

    embedding = CSRv2SparseEmbedding(k=8)                    # core's BaseSparseEmbedding; the general head
    embedding.get_query_embedding("question")                # -> {latent: weight}

No installable LlamaIndex vector store takes a core `BaseSparseEmbedding` yet (llama-index-vector-stores-qdrant
0.10 takes two functions, -milvus 1.2 its own `BaseSparseEmbeddingFunction`), so both bridges accept one:

    doc_fn, query_fn = sparse_fns(embedding)                 # or sparse_fns(encoder)
    QdrantVectorStore(..., enable_hybrid=True, sparse_doc_fn=doc_fn, sparse_query_fn=query_fn)

For llama-index-vector-stores-milvus see `csrv2_vdb.integrations.llamaindex_milvus`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding, SparseEmbedding
from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TextNode

from csrv2_vdb.embedders import Embedder, Kind
from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.filters import Filter
from csrv2_vdb.retrieval import LabelsOnce, SearchMode, index_texts, search_text
from csrv2_vdb.store import Hit, SparseStore

SparseFn = Callable[[list[str]], tuple[list[list[int]], list[list[float]]]]


class CSRv2Retriever(BaseRetriever):
    """Retrieve NodeWithScore from a SparseStore collection: sparse codes, MRL dense, or hybrid; `encoder`
    defaults to the collection's own head (stored with it by `index` or `CSRv2VectorStore`), else the shipped
    general head, on the offline backbone behind the embedding cache (sparse and hybrid modes)."""

    def __init__(
        self,
        store: SparseStore,
        collection: str,
        *,
        encoder: CSRv2Encoder | None = None,
        dense_encoder: MRLEncoder | None = None,
        similarity_top_k: int = 4,
        active_dims: int | None = None,
        search_mode: SearchMode = "sparse",
        candidates: int | None = None,
        filters: Filter | None = None,
        text_key: str = "text",
        callback_manager: CallbackManager | None = None,
        explain: bool = False,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.store = store
        self.collection = collection
        if encoder is None and search_mode != "dense":  # the collection's stored head, else the general head
            from csrv2_vdb.head_store import default_encoder

            encoder = default_encoder(store, collection)
        self.encoder = encoder
        self.dense_encoder = dense_encoder
        self.similarity_top_k = similarity_top_k
        self.active_dims = active_dims  # the query code's active dims; None: the encoder's query_k
        self.candidates = candidates
        self.search_mode: SearchMode = search_mode
        self.filters = filters
        self.text_key = text_key
        self.explain = explain  # metadata["explain"]: the latents each hit shares with the query (csrv2_vdb.explain)
        self._labels = LabelsOnce()

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[BaseNode],
        store: SparseStore,
        collection: str,
        *,
        encoder: CSRv2Encoder | None = None,
        embedder: Embedder | None = None,
        fit_overrides: dict[str, object] | None = None,
        **kwargs: Any,
    ) -> CSRv2Retriever:
        """Index LlamaIndex documents (or nodes: their text, node id and metadata) into `collection`, and a
        retriever over it. With no `encoder`, a new collection of at least MIN_FIT_ROWS documents is coded by a
        head fitted on their texts and stored with it, exactly as `csrv2-vdb index` does (fewer: the general
        head); an existing collection by its own head. `embedder` defaults to the backbone behind the cache."""
        texts = [d.get_content() for d in documents]
        if encoder is None:
            from csrv2_vdb.head_store import head_for_index
            from csrv2_vdb.versions import current

            model = embedder or _cached_backbone()
            encoder = head_for_index(
                store, current(store, collection), model, lambda: (model.embed(texts, "document"), texts),
                len(texts), fit_overrides=fit_overrides, log=lambda _: None,
            )  # fmt: skip
        ids, metadatas = [d.node_id for d in documents], [dict(d.metadata) for d in documents]
        index_texts(store, collection, texts, encoder=encoder, ids=ids, metadatas=metadatas,
                    text_key=kwargs.get("text_key", "text"))  # fmt: skip
        return cls(store, collection, encoder=encoder, **kwargs)

    def _node(self, hit: Hit) -> NodeWithScore:
        metadata = {key: value for key, value in hit.payload.items() if key != self.text_key}
        node = TextNode(id_=hit.id, text=str(hit.payload.get(self.text_key, "")), metadata=metadata)
        return NodeWithScore(node=node, score=hit.score)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = search_text(
            self.store,
            self.collection,
            query_bundle.query_str,
            encoder=self.encoder,
            dense_encoder=self.dense_encoder,
            mode=self.search_mode,
            limit=self.similarity_top_k,
            filter=self.filters,
            active_dims=self.active_dims,
            candidates=self.candidates,
            explain=self.explain,
            labels=self._labels(self.store, self.collection, self.encoder) if self.explain else None,
        )
        return [self._node(h) for h in hits]


class CSRv2SparseEmbedding(BaseSparseEmbedding):
    """LlamaIndex core's sparse embedding (`BaseSparseEmbedding`) backed by a CSRv2Encoder: {latent: weight}
    dicts, documents at `k` active latents (default: the encoder's k) and queries at the encoder's
    `query_k_for(k)`; the general head on the offline backbone when no
    encoder is given. Texts are encoded `embed_batch_size` at a time; async methods run in a worker thread."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    encoder: CSRv2Encoder = Field(default_factory=CSRv2Encoder.load, exclude=True)
    k: int | None = Field(default=None, description="Active latents per document; None: the encoder's k.")

    @classmethod
    def class_name(cls) -> str:
        return "CSRv2SparseEmbedding"

    def _codes(self, texts: list[str], kind: Kind) -> list[SparseEmbedding]:
        k = self.encoder.query_k_for(self.k) if kind == "query" else self.k
        return self.encoder.encode_texts(texts, kind, k).to_dicts()

    def _get_query_embedding(self, query: str) -> SparseEmbedding:
        return self._codes([query], "query")[0]

    async def _aget_query_embedding(self, query: str) -> SparseEmbedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> SparseEmbedding:
        return self._codes([text], "document")[0]

    async def _aget_text_embedding(self, text: str) -> SparseEmbedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return self._codes(texts, "document")

    async def _aget_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


SparseSource = CSRv2Encoder | BaseSparseEmbedding | None


def as_sparse_embedding(source: SparseSource, k: int | None = None) -> BaseSparseEmbedding:
    """Any core sparse embedding as it is (`k` must then be None), or an encoder (None: the general head on the
    offline backbone) as `CSRv2SparseEmbedding`."""
    if isinstance(source, BaseSparseEmbedding):
        if k is not None:
            raise InvalidArgumentError("k applies to a CSRv2Encoder; set it on the sparse embedding instead")
        return source
    return CSRv2SparseEmbedding(encoder=source, k=k) if source is not None else CSRv2SparseEmbedding(k=k)


def sparse_fns(source: SparseSource = None, k: int | None = None) -> tuple[SparseFn, SparseFn]:
    """(sparse_doc_fn, sparse_query_fn) in the form llama-index-vector-stores-qdrant calls them, from an encoder
    or any core `BaseSparseEmbedding` (default: `CSRv2SparseEmbedding()`)."""
    embedding = as_sparse_embedding(source, k)

    def split(vectors: list[SparseEmbedding]) -> tuple[list[list[int]], list[list[float]]]:
        rows = [sorted(v.items()) for v in vectors]
        return [[i for i, _ in r] for r in rows], [[w for _, w in r] for r in rows]

    def documents(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        return split(embedding.get_text_embedding_batch(texts))

    def queries(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        return split([embedding.get_query_embedding(t) for t in texts])

    return documents, queries


def _cached_backbone() -> Embedder:
    """The offline backbone behind the embedding cache (texts are embedded once for the fit and the write)."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.embed_cache import CachedEmbedder

    return CachedEmbedder(Backbone())
