"""CSRv2 codes for llama-index-vector-stores-milvus (`MilvusVectorStore(sparse_embedding_function=...)`), from an
encoder or any LlamaIndex core `BaseSparseEmbedding` (the store does not take core's type itself)."""

from __future__ import annotations

from llama_index.vector_stores.milvus.utils import BaseSparseEmbeddingFunction

from csrv2_vdb.integrations.llamaindex import SparseSource, as_sparse_embedding


class CSRv2SparseEmbeddingFunction(BaseSparseEmbeddingFunction):
    """{latent: value} dicts, k active dims each (default source: the general head); Milvus indexes them with IP."""

    def __init__(self, source: SparseSource = None, k: int | None = None) -> None:
        self.embedding = as_sparse_embedding(source, k)

    def encode_queries(self, queries: list[str]) -> list[dict[int, float]]:
        return [self.embedding.get_query_embedding(q) for q in queries]

    def encode_documents(self, documents: list[str]) -> list[dict[int, float]]:
        return self.embedding.get_text_embedding_batch(documents)
