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

The head travels with the documents: the document embedder writes its encoder identity into each document's
`meta["csrv2_encoder"]`, and a text embedder given `document_store=` refuses, at warm-up, a store holding
documents coded by another head or normalisation (which would otherwise return nothing, without an error).
Haystack's retrievers take the query code as it is; without `document_store` nothing is checked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding

from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import EncoderMismatchError


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
            self._checked()

    def _checked(self) -> None:
        """Components that look at the store check the head here."""

    def _encoder(self) -> CSRv2Encoder:
        self.warm_up()
        assert self.encoder is not None
        return self.encoder

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, head=self.head, embedder=self.embedder, k=self.k, normalize=self.normalize)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return default_from_dict(cls, data)


ENCODER_META = "csrv2_encoder"  # the meta field naming the head that coded a document


@component
class CSRv2SparseTextEmbedder(_CSRv2Component):
    """A query text -> its CSRv2 code as a Haystack SparseEmbedding. With `document_store`, warm-up refuses a
    store whose documents were coded by another head (their `meta["csrv2_encoder"]`)."""

    def __init__(
        self,
        head: str | None = None,
        embedder: str | None = None,
        k: int | None = None,
        normalize: bool = True,
        document_store: Any = None,
    ) -> None:
        _CSRv2Component.__init__(self, head, embedder, k, normalize)  # @component rebuilds the class: no super()
        self.document_store = document_store

    def to_dict(self) -> dict[str, Any]:
        data = _CSRv2Component.to_dict(self)
        if self.document_store is not None:
            data["init_parameters"]["document_store"] = self.document_store.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        from haystack.core.serialization import import_class_by_name

        store = data.get("init_parameters", {}).get("document_store")
        if store is not None:
            store_class: Any = import_class_by_name(store["type"])
            data["init_parameters"]["document_store"] = store_class.from_dict(store)
        return default_from_dict(cls, data)

    def _checked(self) -> None:
        store, encoder = self.document_store, self.encoder
        if store is None or encoder is None:
            return
        other = {"field": f"meta.{ENCODER_META}", "operator": "!=", "value": encoder.identity}
        count = getattr(store, "count_documents_by_filter", None)
        found = count(other) if count is not None else len(store.filter_documents(other))
        if found:
            sample = store.filter_documents(other)[:1] if count is not None else []
            theirs = sample[0].meta.get(ENCODER_META) if sample else "another head"
            raise EncoderMismatchError(
                f"the document store holds {found} documents coded by {theirs}; this text embedder codes queries "
                f"with {encoder.identity} (head {self.head or 'the general head'}, k={encoder.k}, normalize="
                f"{self.normalize}). Use the head that indexed the store, or index again"
            )

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, SparseEmbedding]:
        ((indices, values),) = self._encoder().encode_queries([text]).rows()
        return {"sparse_embedding": SparseEmbedding(indices=indices, values=values)}


@component
class CSRv2SparseDocumentEmbedder(_CSRv2Component):
    """Documents -> copies with `sparse_embedding` set from their content (the inputs are not changed)."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        encoder = self._encoder()
        codes = encoder.encode_documents([d.content or "" for d in documents]).rows()
        out = [
            dataclasses.replace(
                d,
                sparse_embedding=SparseEmbedding(indices=i, values=v),
                meta={**d.meta, ENCODER_META: encoder.identity},
            )
            for d, (i, v) in zip(documents, codes, strict=True)
        ]
        return {"documents": out}


@component
class CSRv2Explainer:
    """Retrieved documents -> copies with `meta["explain"]`: the latents each shares with the query, with their
    labels and contributions (query value x document value, largest first; they add up to the score of a
    sparse inner-product retriever). Documents must carry their `sparse_embedding` (Qdrant's retrievers:
    `return_embedding=True`). Labels come from `head`'s labels.json when it is a directory that has one."""

    def __init__(self, head: str | None = None) -> None:
        self.head = head
        self._labels: Any = None

    def warm_up(self) -> None:
        from pathlib import Path

        from csrv2_vdb.labels import LatentLabels

        if self._labels is None and self.head is not None and Path(self.head).is_dir():
            self._labels = LatentLabels.load(self.head)

    @component.output_types(documents=list[Document])
    def run(self, sparse_embedding: SparseEmbedding, documents: list[Document]) -> dict[str, list[Document]]:
        from csrv2_vdb.errors import InvalidArgumentError
        from csrv2_vdb.explain import contributions

        self.warm_up()
        query = (sparse_embedding.indices, sparse_embedding.values)
        out = []
        for d in documents:
            if d.sparse_embedding is None:
                raise InvalidArgumentError(f"document {d.id!r} carries no sparse_embedding to explain; ask the "
                                           "retriever for it (return_embedding=True)")  # fmt: skip
            code = (d.sparse_embedding.indices, d.sparse_embedding.values)
            out.append(dataclasses.replace(d, meta={**d.meta, "explain": contributions(query, code, self._labels)}))
        return {"documents": out}

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, head=self.head)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return default_from_dict(cls, data)
