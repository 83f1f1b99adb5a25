"""Haystack: the CSRv2 sparse embedders in pipelines with qdrant-haystack's retrievers (Qdrant's in-memory mode)."""

from __future__ import annotations

import dataclasses

import pytest
from haystack import Document, Pipeline, component
from haystack.components.writers import DocumentWriter
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.components.retrievers.qdrant import QdrantHybridRetriever, QdrantSparseEmbeddingRetriever
from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

from csrv2_vdb.adapters.qdrant import QdrantStore
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.integrations.haystack import CSRv2SparseDocumentEmbedder, CSRv2SparseTextEmbedder
from csrv2_vdb.integrations.langchain import CSRv2Retriever
from tests.framework_data import TEXTS, TOPICS

QUERIES = ["How is skin cancer treated?", "What does radiation therapy do?"]


@pytest.fixture(scope="module")
def store():
    documents = [
        Document(id=f"doc-{i}", content=t, meta={"topic": p})
        for i, (t, p) in enumerate(zip(TEXTS, TOPICS, strict=False))
    ]
    document_store = QdrantDocumentStore(":memory:", use_sparse_embeddings=True, embedding_dim=384, sparse_idf=False)
    indexing = Pipeline()
    indexing.add_component("sparse", CSRv2SparseDocumentEmbedder())  # no head named: the general head
    indexing.add_component("writer", DocumentWriter(document_store))
    indexing.connect("sparse.documents", "writer.documents")
    indexing.run({"sparse": {"documents": documents}})
    assert all(d.sparse_embedding is None for d in documents)  # the inputs were not changed
    return document_store


def test_sparse_pipeline_answers_like_the_retriever(store):
    querying = Pipeline()
    querying.add_component("sparse", CSRv2SparseTextEmbedder())
    querying.add_component(
        "retriever", QdrantSparseEmbeddingRetriever(document_store=store, top_k=3, scale_score=False)
    )
    querying.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    ours = QdrantStore(location=":memory:")
    encoder = CSRv2Encoder.load()
    retriever = CSRv2Retriever.from_texts(
        TEXTS, encoder, ours, "docs", ids=[f"doc-{i}" for i in range(len(TEXTS))], k=3
    )
    for query in QUERIES:
        got = querying.run({"sparse": {"text": query}})["retriever"]["documents"]
        want = retriever.invoke(query)
        assert [d.content for d in got] == [d.page_content for d in want] and got
        assert [d.score for d in got] == pytest.approx([d.metadata["score"] for d in want], rel=1e-5)


def test_the_explainer_adds_contributions_that_add_up_to_the_retrievers_score(store):
    """CSRv2Explainer after a sparse retriever: meta["explain"] per document, summing to the engine's score; a
    document without its sparse embedding is refused by name."""
    from csrv2_vdb.errors import InvalidArgumentError
    from csrv2_vdb.integrations.haystack import CSRv2Explainer

    querying = Pipeline()
    querying.add_component("sparse", CSRv2SparseTextEmbedder())
    querying.add_component("retriever", QdrantSparseEmbeddingRetriever(
        document_store=store, top_k=3, scale_score=False, return_embedding=True))  # fmt: skip
    querying.add_component("explain", CSRv2Explainer())
    querying.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    querying.connect("sparse.sparse_embedding", "explain.sparse_embedding")
    querying.connect("retriever.documents", "explain.documents")
    explained = querying.run({"sparse": {"text": QUERIES[0]}})["explain"]["documents"]
    assert explained
    for d in explained:
        parts = d.meta["explain"]
        assert parts and sum(p["contribution"] for p in parts) == pytest.approx(d.score, rel=1e-5)
    bare = dataclasses.replace(explained[0], sparse_embedding=None)
    with pytest.raises(InvalidArgumentError, match="return_embedding=True"):
        CSRv2Explainer().run(sparse_embedding=explained[0].sparse_embedding, documents=[bare])


@component
class DenseTextEmbedder:
    """A dense query embedder (Haystack 3 ships its sentence-transformers embedders separately): the backbone."""

    def __init__(self, backbone) -> None:
        self.backbone = backbone

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict:
        return {"embedding": self.backbone.embed([text], "query")[0].tolist()}


def test_hybrid_pipeline_with_a_dense_embedder(store, backbone):
    documents = store.filter_documents()
    vectors = backbone.embed([d.content for d in documents])
    store.write_documents(
        [dataclasses.replace(d, embedding=v.tolist()) for d, v in zip(documents, vectors, strict=True)],
        policy=DuplicatePolicy.OVERWRITE,
    )
    querying = Pipeline()
    querying.add_component("sparse", CSRv2SparseTextEmbedder())
    querying.add_component("dense", DenseTextEmbedder(backbone))
    querying.add_component("retriever", QdrantHybridRetriever(document_store=store, top_k=3))
    querying.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    querying.connect("dense.embedding", "retriever.query_embedding")
    got = querying.run({"sparse": {"text": QUERIES[0]}, "dense": {"text": QUERIES[0]}})["retriever"]["documents"]
    assert len(got) == 3 and "skin" in got[0].content.lower()


def test_components_serialise_with_their_settings():
    embedder = CSRv2SparseTextEmbedder(head="minilm-general-csrv2", k=4)
    data = embedder.to_dict()
    assert data["init_parameters"] == {
        "head": "minilm-general-csrv2",
        "embedder": None,
        "k": 4,
        "normalize": True,
        "heads_dir": None,
    }
    again = CSRv2SparseTextEmbedder.from_dict(data)
    assert len(again.run("skin cancer")["sparse_embedding"].indices) == 16  # queries at default_query_k(4)


def test_the_head_travels_with_the_documents_and_a_query_head_that_differs_is_refused(store, head_dir):
    """29.10: documents carry the head that coded them; a text embedder given the store checks it at warm-up."""
    from csrv2_vdb.errors import EncoderMismatchError

    general = CSRv2Encoder.load().identity
    assert {d.meta["csrv2_encoder"] for d in store.filter_documents()} == {general}
    CSRv2SparseTextEmbedder(document_store=store).warm_up()  # the same head: fine
    other = CSRv2SparseTextEmbedder(head=str(head_dir), document_store=store)
    with pytest.raises(EncoderMismatchError, match=r"holds \d+ documents coded by csrv2-head:"):
        other.warm_up()
    again = CSRv2SparseTextEmbedder.from_dict(CSRv2SparseTextEmbedder(document_store=store).to_dict())
    assert again.document_store is not None
    follower = CSRv2SparseDocumentEmbedder(document_store=store)  # no head: the store's (general) head, no new fit
    follower.warm_up()
    assert follower.head == "minilm-general-csrv2" and follower.encoder is not None
    assert follower.encoder.identity == general
