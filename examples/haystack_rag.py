"""A Haystack pipeline over GraphRAG-Bench medical: CSRv2 codes (k = 8) in Qdrant's in-memory mode via qdrant-haystack.

    python examples/haystack_rag.py --question "What is the most common type of skin cancer?"

Offline: the backbone is the packaged all-MiniLM-L6-v2, the head the shipped minilm-medical-csrv2-k8, and the
"LLM" is a STAND-IN (examples/standin_llm.py) that quotes the best-matching retrieved sentence. For a real LLM
(pip install haystack-ai, set OPENAI_API_KEY), add a ChatPromptBuilder and an OpenAIChatGenerator after the
retriever in the query pipeline, and read the generator's reply instead of calling `extractive_answer`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from haystack import Document, Pipeline
from haystack.components.writers import DocumentWriter
from haystack_integrations.components.retrievers.qdrant import QdrantSparseEmbeddingRetriever
from haystack_integrations.document_stores.qdrant import QdrantDocumentStore
from standin_llm import extractive_answer

from csrv2_vdb.benchmarks.datasets import chunk_words, find_data_dir, load_corpus
from csrv2_vdb.integrations.haystack import CSRv2SparseDocumentEmbedder, CSRv2SparseTextEmbedder

HEAD, K = "minilm-medical-csrv2-k8", 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is the most common type of skin cancer?")
    parser.add_argument("--data", type=Path, default=find_data_dir())
    parser.add_argument("--max-chunks", type=int, default=300, help="Index only the first N chunks (speed).")
    args = parser.parse_args()

    chunks = chunk_words(load_corpus(args.data), prefix="medical")[: args.max_chunks]
    store = QdrantDocumentStore(":memory:", use_sparse_embeddings=True, sparse_idf=False)
    indexing = Pipeline()
    indexing.add_component("sparse", CSRv2SparseDocumentEmbedder(head=HEAD, k=K))
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("sparse.documents", "writer.documents")
    indexing.run({"sparse": {"documents": [Document(id=c.id, content=c.text) for c in chunks]}})

    querying = Pipeline()
    querying.add_component("sparse", CSRv2SparseTextEmbedder(head=HEAD, k=K))
    querying.add_component("retriever", QdrantSparseEmbeddingRetriever(document_store=store, top_k=3))
    querying.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    documents = querying.run({"sparse": {"text": args.question}})["retriever"]["documents"]
    answer = extractive_answer(args.question, "\n\n".join(d.content or "" for d in documents))
    print(f"question: {args.question}\nsources:  {[d.id for d in documents]}\nanswer:   {answer}")


if __name__ == "__main__":
    main()
