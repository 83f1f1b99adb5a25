"""Framework integrations (LangChain, LlamaIndex) over any `SparseStore`."""
