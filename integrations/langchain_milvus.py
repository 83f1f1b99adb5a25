"""langchain-milvus: `CSRv2MilvusSparseEmbedding`, its `BaseSparseEmbedding` backed by a CSRv2Encoder.

    from langchain_milvus import Milvus
    Milvus(embedding_function=CSRv2MilvusSparseEmbedding(), connection_args={"uri": "milvus.db"},
           index_params=EXACT_INDEX_PARAMS, search_params=EXACT_SEARCH_PARAMS, vector_field="sparse")

Pass `EXACT_INDEX_PARAMS` and `EXACT_SEARCH_PARAMS`: langchain-milvus builds sparse indexes with
`drop_ratio_build` 0.2 by default, which drops the smallest fifth of each stored vector's weights: with 2 to
8 non-zeros per code that is one or two of them, and the scores fall below the exact dot product (a test pins
what it loses).
"""

from __future__ import annotations

from langchain_milvus.utils.sparse import BaseSparseEmbedding

from csrv2_vdb.encoder import CSRv2Encoder

EXACT_INDEX_PARAMS = {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP", "params": {"drop_ratio_build": 0.0}}
EXACT_SEARCH_PARAMS = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}


class CSRv2MilvusSparseEmbedding(BaseSparseEmbedding):
    """{latent: weight} codes, documents at `k` active latents (default: the encoder's k) and queries at the
    encoder's `query_k_for(k)`; the general head on the offline
    backbone when no encoder is given."""

    def __init__(self, encoder: CSRv2Encoder | None = None, k: int | None = None) -> None:
        self.encoder = encoder if encoder is not None else CSRv2Encoder.load()
        self.k = k

    def embed_query(self, query: str) -> dict[int, float]:
        return self.encoder.encode_queries([query], self.encoder.query_k_for(self.k)).to_dicts()[0]

    def embed_documents(self, texts: list[str]) -> list[dict[int, float]]:
        return self.encoder.encode_documents(texts, self.k).to_dicts()
