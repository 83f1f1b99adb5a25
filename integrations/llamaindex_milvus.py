"""CSRv2 codes for llama-index-vector-stores-milvus (`MilvusVectorStore(sparse_embedding_function=...)`)."""

from __future__ import annotations

from llama_index.vector_stores.milvus.utils import BaseSparseEmbeddingFunction

from csrv2_vdb.encoder import CSRv2Encoder


class CSRv2SparseEmbeddingFunction(BaseSparseEmbeddingFunction):
    """{latent: value} dicts from a CSRv2Encoder, k active dims each; Milvus indexes them with IP."""

    def __init__(self, encoder: CSRv2Encoder, k: int | None = None) -> None:
        self.encoder = encoder
        self.k = k

    def encode_queries(self, queries: list[str]) -> list[dict[int, float]]:
        return self.encoder.encode_queries(queries, k=self.k).to_dicts()

    def encode_documents(self, documents: list[str]) -> list[dict[int, float]]:
        return self.encoder.encode_documents(documents, k=self.k).to_dicts()
