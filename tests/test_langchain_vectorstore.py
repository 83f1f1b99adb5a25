"""`CSRv2VectorStore` passes langchain-tests' standard VectorStore suite (sync and async) on qdrant-edge and
Milvus Lite, and answers like `CSRv2Retriever` over the same store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from langchain_core.documents import Document
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.head import SparseHead
from csrv2_vdb.integrations.langchain import CSRv2Retriever, CSRv2VectorStore, LangChainEmbedder
from tests.engines import open_engine


def suite_encoder(embeddings) -> CSRv2Encoder:
    """CSRv2 over the suite's 6-dim fake embeddings. The head is random but for latent 0, which fires on every
    input (zero weights, bias 3): any two codes share it, so a sparse search returns every stored document
    ranked by the other latents, which is what the suite's exact-list assertions need (a real head returns
    only documents sharing a latent with the query)."""
    torch.manual_seed(0)
    head = SparseHead(6, 48, k=6)
    with torch.no_grad():
        head.encoder.weight[0] = 0.0
        head.latent_bias[0] = 3.0
    return CSRv2Encoder(LangChainEmbedder(embeddings, 6, "deterministic-fake-6"), head)


class _Suite(VectorStoreIntegrationTests):
    engine = ""

    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Iterator[CSRv2VectorStore]:
        with open_engine(self.engine, tmp_path) as store:
            yield CSRv2VectorStore(store, "lc_docs", suite_encoder(self.get_embeddings()))


class TestQdrantEdgeVectorStore(_Suite):
    engine = "qdrant-edge"


class TestMilvusLiteVectorStore(_Suite):
    engine = "milvus-lite"


@pytest.mark.parametrize("engine", ["qdrant-edge", "milvus-lite"])
def test_vectorstore_answers_like_the_retriever_on_the_default_head(engine, tmp_path):
    texts = [
        "Basal cell carcinoma is a skin cancer.",
        "Radiation therapy uses high-energy rays.",
        "Melanoma starts in pigment cells of the skin.",
        "Chemotherapy drugs kill fast-growing cells.",
    ]
    with open_engine(engine, tmp_path) as store:
        vectorstore = CSRv2VectorStore.from_texts(
            texts, metadatas=[{"topic": t} for t in ("skin", "therapy", "skin", "therapy")], ids=["a", "b", "c", "d"],
            store=store, collection="lc_docs",
        )  # fmt: skip
        assert vectorstore.encoder.identity == CSRv2Encoder.load().identity  # no head named: the general head
        retriever = CSRv2Retriever(store=store, collection="lc_docs", encoder=vectorstore.encoder, k=3)
        for query in ("skin cancer", "treatment with rays"):
            ours = vectorstore.similarity_search_with_score(query, k=3)
            theirs = retriever.invoke(query)
            assert [d.id for d, _ in ours] == [d.id for d in theirs]
            assert [s for _, s in ours] == pytest.approx([d.metadata["score"] for d in theirs], rel=1e-5)
        hits = vectorstore.as_retriever(search_kwargs={"k": 2, "filter": {"topic": "skin"}}).invoke("skin cancer")
        assert {d.id for d in hits} <= {"a", "c"} and all(d.metadata == {"topic": "skin"} for d in hits)
        assert vectorstore.get_by_ids(["c", "zz", "a"]) == [
            Document(page_content=texts[2], metadata={"topic": "skin"}, id="c"),
            Document(page_content=texts[0], metadata={"topic": "skin"}, id="a"),
        ]
