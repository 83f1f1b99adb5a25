"""LangChain: the standard retriever tests on the embedded engine, keyword arguments, the langchain-qdrant bridge."""

from __future__ import annotations

import tempfile

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from csrv2_vdb import MRLEncoder
from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
from csrv2_vdb.integrations.langchain import CSRv2Retriever, CSRv2SparseEmbeddings
from tests.framework_data import TEXTS, TOPICS, shared_encoder

_shared: dict = {}


def _retriever_params() -> dict:
    if "store" not in _shared:
        store = QdrantEdgeStore(tempfile.mkdtemp())
        CSRv2Retriever.from_texts(TEXTS, shared_encoder(), store, "docs", metadatas=[{"topic": t} for t in TOPICS])
        _shared["store"] = store
    return {"store": _shared["store"], "collection": "docs", "encoder": shared_encoder(), "k": 2}


class TestCSRv2RetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[CSRv2Retriever]:
        return CSRv2Retriever

    @property
    def retriever_constructor_params(self) -> dict:
        return _retriever_params()

    @property
    def retriever_query_example(self) -> str:
        return "How is skin cancer treated?"


def test_documents_filters_and_async_kwargs():
    retriever = CSRv2Retriever(**_retriever_params())
    docs = retriever.invoke("How is skin cancer treated?", k=3, filter={"topic": "skin"})
    assert 1 <= len(docs) <= 3 and all(d.metadata["topic"] == "skin" for d in docs)
    assert all(isinstance(d, Document) and d.page_content in TEXTS for d in docs)
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs), reverse=True)
    assert all(d.id == d.metadata["id"] for d in docs)


async def test_ainvoke_takes_the_same_keywords():
    retriever = CSRv2Retriever(**_retriever_params())
    sync = retriever.invoke("How is skin cancer treated?", k=2, filter={"topic": "skin"})
    not_async = await retriever.ainvoke("How is skin cancer treated?", k=2, filter={"topic": "skin"})
    assert [d.id for d in not_async] == [d.id for d in sync]


def test_dense_and_hybrid_modes(tmp_path):
    dense = MRLEncoder(shared_encoder().embedder, 64)
    with QdrantEdgeStore(tmp_path / "db") as store:
        documents = [
            Document(page_content=t, metadata={"topic": p}, id=f"doc-{i}")
            for i, (t, p) in enumerate(zip(TEXTS, TOPICS, strict=True))
        ]
        retriever = CSRv2Retriever.from_documents(documents, shared_encoder(), store, "both", dense_encoder=dense, k=3)
        for mode in ("sparse", "dense", "hybrid"):
            docs = retriever.invoke("lung cancer screening with CT scans", search_mode=mode)
            assert docs and docs[0].id == "doc-5", mode
        with pytest.raises(ValueError, match="MRLEncoder"):
            CSRv2Retriever(store=store, collection="both", encoder=shared_encoder(), search_mode="dense").invoke("x")


def test_sparse_embeddings_inside_langchain_qdrant():
    from langchain_qdrant import QdrantVectorStore, RetrievalMode

    bridge = CSRv2SparseEmbeddings(shared_encoder())
    qdrant = QdrantVectorStore.from_texts(
        TEXTS, sparse_embedding=bridge, retrieval_mode=RetrievalMode.SPARSE, location=":memory:",
        collection_name="lc", metadatas=[{"topic": t} for t in TOPICS],
    )  # fmt: skip
    theirs = qdrant.similarity_search_with_score("How is skin cancer treated?", k=3)
    ours = CSRv2Retriever(**{**_retriever_params(), "k": 3}).invoke("How is skin cancer treated?")
    assert [d.page_content for d, _ in theirs] == [d.page_content for d in ours]
    assert [s for _, s in theirs] == pytest.approx([d.metadata["score"] for d in ours], rel=1e-5)
    vector = bridge.embed_query("skin cancer")
    assert 1 <= len(vector.indices) <= 32 and all(v > 0 for v in vector.values)
