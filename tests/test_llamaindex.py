"""LlamaIndex: the retriever on the embedded engine, and the CSRv2 functions inside the real vector-store classes."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

from csrv2_vdb import CSRv2Encoder, MRLEncoder
from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
from csrv2_vdb.integrations.llamaindex import CSRv2Retriever, sparse_fns
from csrv2_vdb.retrieval import index_texts
from tests.framework_data import TEXTS, TOPICS, shared_encoder

QUERY = "How is skin cancer treated?"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    store = QdrantEdgeStore(tmp_path_factory.mktemp("li") / "db")
    dense = MRLEncoder(shared_encoder().embedder, 384)
    ids = index_texts(store, "docs", TEXTS, encoder=shared_encoder(), dense_encoder=dense,
                      metadatas=[{"topic": t} for t in TOPICS])  # fmt: skip
    yield store, dense, ids
    store.close()


def _nodes(encoder: CSRv2Encoder) -> list[TextNode]:
    vectors = encoder.embedder.embed(TEXTS, "document")
    return [
        # topic stays out of the embedded text, so both sides encode exactly the same string
        TextNode(
            id_=f"00000000-0000-0000-0000-00000000000{i}",
            text=t,
            metadata={"topic": p},
            embedding=v.tolist(),
            excluded_embed_metadata_keys=["topic"],
        )
        for i, (t, p, v) in enumerate(zip(TEXTS, TOPICS, vectors, strict=True))
    ]


def test_retriever_returns_nodes_with_scores(indexed):
    store, dense, _ = indexed
    retriever = CSRv2Retriever(store, "docs", encoder=shared_encoder(), similarity_top_k=3)
    nodes = retriever.retrieve(QUERY)
    assert 1 <= len(nodes) <= 3 and all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].node.get_content() in TEXTS and nodes[0].node.metadata["topic"] in TOPICS
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
    only_lung = CSRv2Retriever(store, "docs", encoder=shared_encoder(), filters={"topic": "lung"}).retrieve(
        "cancer screening"
    )
    assert [n.node.metadata["topic"] for n in only_lung] == ["lung"]
    hybrid = CSRv2Retriever(store, "docs", encoder=shared_encoder(), dense_encoder=dense, search_mode="hybrid")
    assert hybrid.retrieve(QueryBundle("lung cancer screening with CT scans"))[0].node.get_content() == TEXTS[5]


async def test_aretrieve_matches_retrieve(indexed):
    store, _, _ = indexed
    retriever = CSRv2Retriever(store, "docs", encoder=shared_encoder(), similarity_top_k=3)
    assert [n.node.node_id for n in await retriever.aretrieve(QUERY)] == [
        n.node.node_id for n in retriever.retrieve(QUERY)
    ]


def _source(kind: str):
    """The bridges take an encoder, or LlamaIndex core's BaseSparseEmbedding (CSRv2SparseEmbedding)."""
    from csrv2_vdb.integrations.llamaindex import CSRv2SparseEmbedding

    return shared_encoder() if kind == "encoder" else CSRv2SparseEmbedding(encoder=shared_encoder())


@pytest.mark.parametrize("source", ["encoder", "core-sparse-embedding"])
def test_sparse_fns_inside_llama_index_qdrant_hybrid(indexed, source):
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    doc_fn, query_fn = sparse_fns(_source(source))
    vector_store = QdrantVectorStore(
        collection_name="li", client=QdrantClient(":memory:"), enable_hybrid=True,
        sparse_doc_fn=doc_fn, sparse_query_fn=query_fn,
    )  # fmt: skip
    vector_store.add(_nodes(shared_encoder()))
    query = VectorStoreQuery(query_str=QUERY, similarity_top_k=3, sparse_top_k=3, mode=VectorStoreQueryMode.SPARSE)
    theirs = vector_store.query(query)
    ours = CSRv2Retriever(indexed[0], "docs", encoder=shared_encoder(), similarity_top_k=3).retrieve(QUERY)
    assert [n.get_content() for n in theirs.nodes] == [n.node.get_content() for n in ours]
    assert theirs.similarities == pytest.approx([n.score for n in ours], rel=1e-5)


@pytest.mark.parametrize("source", ["encoder", "core-sparse-embedding"])
def test_sparse_function_inside_llama_index_milvus(indexed, tmp_path, source):
    from llama_index.vector_stores.milvus import MilvusVectorStore

    from csrv2_vdb.integrations.llamaindex_milvus import CSRv2SparseEmbeddingFunction

    asyncio.set_event_loop(asyncio.new_event_loop())  # MilvusVectorStore also opens an async client
    vector_store = MilvusVectorStore(
        uri=str(tmp_path / "li.db"), dim=384, overwrite=True, enable_sparse=True,
        sparse_embedding_function=CSRv2SparseEmbeddingFunction(_source(source)), similarity_metric="IP",
    )  # fmt: skip
    vector_store.add(_nodes(shared_encoder()))
    theirs = vector_store.query(VectorStoreQuery(query_str=QUERY, similarity_top_k=3, mode=VectorStoreQueryMode.SPARSE))
    everything = CSRv2Retriever(indexed[0], "docs", encoder=shared_encoder(), similarity_top_k=len(TEXTS))
    exact = {n.node.get_content(): n.score for n in everything.retrieve(QUERY)}
    assert theirs.nodes[0].get_content() == max(exact, key=exact.__getitem__)
    # llama-index-vector-stores-milvus 0.9 hard-codes drop_ratio_search=0.2: the smallest fifth of the query
    # weights is dropped, so its scores are lower bounds of the exact dot products, never above them
    for node, score in zip(theirs.nodes, theirs.similarities, strict=True):
        assert 0 < score <= exact[node.get_content()] + 1e-6
    assert any(
        score < exact[node.get_content()] - 1e-4 for node, score in zip(theirs.nodes, theirs.similarities, strict=False)
    )


def test_core_sparse_embedding_matches_the_encoder_sync_async_and_batched():
    from csrv2_vdb.integrations.llamaindex import CSRv2SparseEmbedding

    encoder = shared_encoder()
    embedding = CSRv2SparseEmbedding(encoder=encoder, k=8, embed_batch_size=2)
    query = embedding.get_query_embedding(QUERY)  # documents at 8, queries at default_query_k(8) = 16
    assert len(query) == 16 and query == encoder.encode_queries([QUERY], query_k=16).to_dicts()[0]
    assert asyncio.run(embedding.aget_query_embedding(QUERY)) == embedding.get_query_embedding(QUERY)
    docs = encoder.encode_documents(TEXTS, k=8).to_dicts()

    def same(got, want):  # batches of 2 pad differently from one batch: same latents, float noise in values
        assert [sorted(g) for g in got] == [sorted(w) for w in want]
        for g, w in zip(got, want, strict=True):
            assert [g[i] for i in sorted(g)] == pytest.approx([w[i] for i in sorted(w)], rel=1e-5)

    same(embedding.get_text_embedding_batch(TEXTS), docs)
    same(asyncio.run(embedding.aget_text_embedding_batch(TEXTS)), docs)
    same([asyncio.run(embedding.aget_text_embedding(TEXTS[0]))], docs[:1])
    assert all(len(d) == 8 for d in docs)
    assert "encoder" not in embedding.to_payload()  # what LlamaIndex logs: settings, not the encoder object


def test_every_bridge_defaults_to_the_general_head(indexed):
    """No encoder or head named: LlamaIndex's, langchain-qdrant's and both Milvus bridges use the general head."""
    from csrv2_vdb.errors import InvalidArgumentError
    from csrv2_vdb.integrations.langchain import CSRv2SparseEmbeddings
    from csrv2_vdb.integrations.langchain_milvus import CSRv2MilvusSparseEmbedding
    from csrv2_vdb.integrations.llamaindex import CSRv2SparseEmbedding
    from csrv2_vdb.integrations.llamaindex_milvus import CSRv2SparseEmbeddingFunction

    general = CSRv2Encoder.load().identity
    assert CSRv2SparseEmbedding().encoder.identity == general
    assert CSRv2SparseEmbeddingFunction().embedding.encoder.identity == general  # type: ignore[attr-defined]
    assert CSRv2SparseEmbeddings().encoder.identity == CSRv2MilvusSparseEmbedding().encoder.identity == general
    assert CSRv2Retriever(indexed[0], "not_yet", similarity_top_k=3).encoder.identity == general  # no collection
    from csrv2_vdb.errors import EncoderMismatchError

    # written through index_texts with a named head: the collection carries it, so no name means that head
    assert CSRv2Retriever(indexed[0], "docs", similarity_top_k=3).encoder.identity == shared_encoder().identity
    with pytest.raises(EncoderMismatchError, match="holds codes written by encoder"):
        CSRv2Retriever(indexed[0], "docs", encoder=CSRv2Encoder.load(), similarity_top_k=3).retrieve(QUERY)
    doc_fn, query_fn = sparse_fns()
    assert len(doc_fn(TEXTS[:2])[0]) == 2 and query_fn([QUERY])[0][0]
    with pytest.raises(InvalidArgumentError, match="set it on the sparse embedding"):
        sparse_fns(CSRv2SparseEmbedding(encoder=shared_encoder()), k=4)
