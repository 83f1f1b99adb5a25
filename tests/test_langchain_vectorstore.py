"""`CSRv2VectorStore` passes langchain-tests' standard VectorStore suite (sync and async) on qdrant-edge,
Milvus Lite and PostgreSQL + pgvector (a real server), and answers like `CSRv2Retriever` over the same store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from langchain_core.documents import Document
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import InvalidArgumentError
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


class TestPgvectorVectorStore(_Suite):
    engine = "pgvector"


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
        retriever = CSRv2Retriever(store=store, collection="lc_docs", k=3)  # no encoder named: the general head
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


def test_langchain_milvus_store_with_the_bridge_scores_exactly(tmp_path):
    """With EXACT_* params the langchain-milvus store scores as CSRv2Retriever does. Its default index keeps
    drop_ratio_build 0.2 (pinned); Milvus Lite 2.5 applies no drop ratio here (measured: scores equal even at
    3,200 flushed rows), so what the default loses on a Milvus server cannot be shown on this machine."""
    from langchain_milvus import Milvus

    from csrv2_vdb.adapters.milvus import MilvusStore
    from csrv2_vdb.integrations.langchain_milvus import (
        EXACT_INDEX_PARAMS,
        EXACT_SEARCH_PARAMS,
        CSRv2MilvusSparseEmbedding,
    )
    from tests.framework_data import TEXTS, shared_encoder

    bridge = CSRv2MilvusSparseEmbedding(shared_encoder())  # documents and queries at the encoder's k, as below
    uri = str(tmp_path / "milvus.db")
    ids = [f"doc-{i}" for i in range(len(TEXTS))]
    exact = Milvus(bridge, collection_name="exact", connection_args={"uri": uri}, index_params=EXACT_INDEX_PARAMS,
                   search_params=EXACT_SEARCH_PARAMS, vector_field="sparse", auto_id=False)  # fmt: skip
    exact.add_texts(TEXTS, ids=ids)
    lossy = Milvus(
        bridge, collection_name="lossy", connection_args={"uri": uri}, vector_field="sparse", auto_id=False
    )  # fmt: skip  (langchain-milvus defaults: drop_ratio_build 0.2)
    lossy.add_texts(TEXTS, ids=ids)
    for name in ("exact", "lossy"):  # seal the segments: the sparse index (and its drop ratio) applies to them
        exact.client.flush(name)
    ours = MilvusStore(uri, client=exact.client)
    retriever = CSRv2Retriever.from_texts(TEXTS, bridge.encoder, ours, "ours", ids=ids, k=4)
    losses = []
    for query in ("How is skin cancer treated?", "What does radiation do?"):
        want = retriever.invoke(query)
        got = exact.similarity_search_with_score(query, k=4)
        assert [d.page_content for d, _ in got] == [d.page_content for d in want]
        assert [s for _, s in got] == pytest.approx([d.metadata["score"] for d in want], rel=1e-5)
        dropped = dict((d.page_content, s) for d, s in lossy.similarity_search_with_score(query, k=4))
        losses += [d.metadata["score"] - dropped.get(d.page_content, 0.0) for d in want]
    params = {name: exact.client.describe_index(name, "sparse")["drop_ratio_build"] for name in ("exact", "lossy")}
    assert params == {"exact": "0.0", "lossy": "0.2"}
    assert max(map(abs, losses)) < 1e-6  # Milvus Lite: no loss observed (a server drops; see the docstring)


def test_vectorstore_dense_hybrid_and_rerank_modes_answer_like_the_retriever(tmp_path):
    from csrv2_vdb.encoder import MRLEncoder
    from tests.framework_data import TEXTS, shared_encoder

    encoder = shared_encoder()
    dense = MRLEncoder(encoder.embedder, 64)
    with open_engine("qdrant-edge", tmp_path) as store:
        hybrid = CSRv2VectorStore.from_texts(TEXTS, encoder, store=store, collection="both", dense_encoder=dense,
                                             search_mode="hybrid")  # fmt: skip
        retriever = CSRv2Retriever(store=store, collection="both", encoder=encoder, dense_encoder=dense, k=3)
        for mode in ("hybrid", "dense", "rerank"):
            got = hybrid.similarity_search_with_score("How is skin cancer treated?", k=3, search_mode=mode)
            want = retriever.invoke("How is skin cancer treated?", search_mode=mode)
            # fused scores can tie (RRF), and the engine orders ties either way: compare id -> score
            assert len(got) == 3 and {d.id for d, _ in got} == {d.id for d in want}
            scores = {d.id: d.metadata["score"] for d in want}
            assert [s for _, s in got] == pytest.approx([scores[d.id] for d, _ in got], rel=1e-5)
        # rerank: the sparse candidates (every document sharing a latent), scored by their MRL-64 cosine
        query = "How is skin cancer treated?"
        reranked = CSRv2VectorStore(store, "both", encoder, dense_encoder=dense, search_mode="rerank", candidates=5)
        candidates = {d.page_content for d in retriever.invoke(query, k=5)}
        cosine = dense.encode_documents(TEXTS) @ dense.encode_queries([query])[0]
        got = reranked.similarity_search_with_score(query, k=3)
        want = sorted(((float(cosine[TEXTS.index(t)]), t) for t in candidates), reverse=True)[:3]
        assert [d.page_content for d, _ in got] == [t for _, t in want]
        assert [s for _, s in got] == pytest.approx([c for c, _ in want], rel=1e-4)
        with pytest.raises(InvalidArgumentError, match="needs a dense_encoder"):
            CSRv2VectorStore(store, "both", encoder, search_mode="hybrid")
        with pytest.raises(InvalidArgumentError, match="search_mode must be one of"):
            CSRv2VectorStore(store, "both", encoder, dense_encoder=dense, search_mode="fused")  # type: ignore[arg-type]


def test_a_collection_first_written_with_a_given_encoder_stores_that_head(tmp_path):
    """The head travels with the collection on every write path: an explicit encoder's too."""
    from csrv2_vdb.head_store import load_head

    encoder = suite_encoder(_Suite.get_embeddings())
    with open_engine("qdrant-edge", tmp_path) as store:
        CSRv2VectorStore(store, "given", encoder).add_texts(["alpha", "beta"], ids=["a", "b"])
        stored = load_head(store, "given")
        assert stored is not None and stored.identity == encoder.identity and stored.k == encoder.k
        assert "the encoder given to the first write" in stored.source
