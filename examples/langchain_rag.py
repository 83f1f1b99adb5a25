"""A RAG chain in LangChain over GraphRAG-Bench medical, retrieving CSRv2 codes (k = 8) from embedded Qdrant.

    python examples/langchain_rag.py --question "What is the most common type of skin cancer?"

Offline: the backbone is the packaged all-MiniLM-L6-v2, the head the shipped minilm-medical-csrv2-k8, and
the "LLM" is a STAND-IN (examples/standin_llm.py) that quotes the best-matching retrieved sentence.
To use a real LLM, change these three lines (pip install langchain-openai, set OPENAI_API_KEY):

    from langchain_openai import ChatOpenAI                 # 1. instead of the RunnableLambda import below
    llm = ChatOpenAI(model="gpt-4o-mini")                   # 2. instead of llm = RunnableLambda(stand_in)
    chain = ... | prompt | llm | StrOutputParser()         # 3. the prompt now reaches a model that reads it
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from standin_llm import extractive_answer

from csrv2_vdb import Backbone, CSRv2Encoder
from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
from csrv2_vdb.benchmarks.datasets import chunk_words, find_data_dir, load_corpus
from csrv2_vdb.head import pretrained_head
from csrv2_vdb.integrations.langchain import CSRv2Retriever

PROMPT = ChatPromptTemplate.from_template(
    "Answer the question from the context only.\n\nContext:\n{context}\n\nQuestion: {question}"
)


def stand_in(prompt: PromptValue) -> str:
    """Reads the question and context back out of the prompt and quotes one context sentence."""
    text = prompt.to_string()
    context = text.split("Context:\n", 1)[1].split("\n\nQuestion: ", 1)[0]
    return extractive_answer(text.rsplit("Question: ", 1)[1], context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="What is the most common type of skin cancer?")
    parser.add_argument("--data", type=Path, default=find_data_dir())
    parser.add_argument("--max-chunks", type=int, default=300, help="Index only the first N chunks (speed).")
    args = parser.parse_args()

    chunks = chunk_words(load_corpus(args.data), prefix="medical")[: args.max_chunks]
    encoder = CSRv2Encoder(Backbone(), pretrained_head("minilm-medical-csrv2-k8"), k=8)
    with QdrantEdgeStore(tempfile.mkdtemp()) as store:
        retriever = CSRv2Retriever.from_texts(
            [c.text for c in chunks], encoder, store, "medical", ids=[c.id for c in chunks], k=3
        )
        llm = RunnableLambda(stand_in)
        chain = (
            {
                "context": retriever | (lambda docs: "\n\n".join(d.page_content for d in docs)),
                "question": RunnablePassthrough(),
            }
            | PROMPT
            | llm
            | StrOutputParser()
        )
        sources = [d.id for d in retriever.invoke(args.question)]
        print(f"question: {args.question}\nsources:  {sources}\nanswer:   {chain.invoke(args.question)}")


if __name__ == "__main__":
    main()
