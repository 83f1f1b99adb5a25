"""Haystack: sparse embedder components producing Haystack `SparseEmbedding`s from CSRv2 codes.

    indexing = Pipeline()
    indexing.add_component("sparse", CSRv2SparseDocumentEmbedder())         # the general head by default
    indexing.add_component("writer", DocumentWriter(QdrantDocumentStore(":memory:", use_sparse_embeddings=True)))
    querying.add_component("sparse", CSRv2SparseTextEmbedder())
    querying.add_component("retriever", QdrantSparseEmbeddingRetriever(document_store=store))
    querying.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")

Both take what they need as plain settings (a head directory or shipped name, an embedder spec as for the CLI's
`--embedder`, k, normalize), so pipelines serialise with `to_dict`; the encoder loads in `warm_up`. Pass
`sparse_idf=False` (the default) to QdrantDocumentStore: IDF would re-weight the codes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding

from csrv2_vdb.encoder import CSRv2Encoder


class _CSRv2Component:
    """Settings, serialisation and the lazily loaded encoder the two components share."""

    def __init__(
        self, head: str | None = None, embedder: str | None = None, k: int | None = None, normalize: bool = True
    ) -> None:
        self.head, self.embedder, self.k, self.normalize = head, embedder, k, normalize
        self.encoder: CSRv2Encoder | None = None

    def warm_up(self) -> None:
        """Load the embedder and the head (once)."""
        if self.encoder is None:
            from csrv2_vdb.embedders import open_embedder

            self.encoder = CSRv2Encoder.load(self.head, open_embedder(self.embedder), self.k, self.normalize)

    def _encoder(self) -> CSRv2Encoder:
        self.warm_up()
        assert self.encoder is not None
        return self.encoder

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, head=self.head, embedder=self.embedder, k=self.k, normalize=self.normalize)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return default_from_dict(cls, data)


@component
class CSRv2SparseTextEmbedder(_CSRv2Component):
    """A query text -> its CSRv2 code as a Haystack SparseEmbedding."""

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, SparseEmbedding]:
        ((indices, values),) = self._encoder().encode_queries([text]).rows()
        return {"sparse_embedding": SparseEmbedding(indices=indices, values=values)}


@component
class CSRv2SparseDocumentEmbedder(_CSRv2Component):
    """Documents -> copies with `sparse_embedding` set from their content (the inputs are not changed)."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        codes = self._encoder().encode_documents([d.content or "" for d in documents]).rows()
        out = [
            dataclasses.replace(d, sparse_embedding=SparseEmbedding(indices=i, values=v))
            for d, (i, v) in zip(documents, codes, strict=True)
        ]
        return {"documents": out}
