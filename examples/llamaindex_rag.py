"""A RAG query engine in LlamaIndex over GraphRAG-Bench medical, retrieving CSRv2 codes (k = 8) from embedded Qdrant.

    python examples/llamaindex_rag.py --question "What is the most common type of skin cancer?"

Offline: the backbone is the packaged all-MiniLM-L6-v2, the head the shipped minilm-medical-csrv2-k8, and
the "LLM" is a STAND-IN (examples/standin_llm.py) that quotes the best-matching retrieved sentence.
To use a real LLM, change these three lines (pip install llama-index-llms-openai, set OPENAI_API_KEY):

    from llama_index.llms.openai import OpenAI              # 1. next to the other imports
    llm = OpenAI(model="gpt-4o-mini")                       # 2. instead of llm = StandInLLM()
    RetrieverQueryEngine.from_args(retriever, llm=llm)      # 3. unchanged: the engine now calls the model
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms import CustomLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from standin_llm import extractive_answer

from csrv2_vdb import Backbone, CSRv2Encoder
from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
from csrv2_vdb.benchmarks.datasets import chunk_words, find_data_dir, load_corpus
from csrv2_vdb.head import pretrained_head
from csrv2_vdb.integrations.llamaindex import CSRv2Retriever
from csrv2_vdb.retrieval import index_texts


class StandInLLM(CustomLLM):
    """Not a model: quotes the context sentence closest to the query (LlamaIndex's QA prompt holds both)."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="stand-in-extractive")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        context = prompt.split("---------------------", 2)[1] if "---------------------" in prompt else prompt
        query = prompt.rsplit("Query:", 1)[-1].split("Answer:", 1)[0]
        return CompletionResponse(text=extractive_answer(query, context))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        yield self.complete(prompt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is the most common type of skin cancer?")
    parser.add_argument("--data", type=Path, default=find_data_dir())
    parser.add_argument("--max-chunks", type=int, default=300, help="Index only the first N chunks (speed).")
    args = parser.parse_args()

    chunks = chunk_words(load_corpus(args.data), prefix="medical")[: args.max_chunks]
    encoder = CSRv2Encoder(Backbone(), pretrained_head("minilm-medical-csrv2-k8"), k=8)
    with QdrantEdgeStore(tempfile.mkdtemp()) as store:
        index_texts(store, "medical", [c.text for c in chunks], encoder=encoder, ids=[c.id for c in chunks])
        retriever = CSRv2Retriever(store, "medical", encoder=encoder, similarity_top_k=3)
        llm = StandInLLM()
        engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
        response = engine.query(args.question)
        sources = [n.node.node_id for n in response.source_nodes]
        print(f"question: {args.question}\nsources:  {sources}\nanswer:   {response}")


if __name__ == "__main__":
    main()
