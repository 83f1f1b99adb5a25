"""Benchmarks behind `csrv2-vdb bench`: retrieval latency/throughput/memory per engine, encoder throughput.

corpus.py     synthetic corpora drawn to match real MiniLM embeddings, encoded by a trained head
exact.py      exact top-k in numpy/scipy: the ground truth and the no-engine baseline
targets.py    one interface over the engines (qdrant-edge, Milvus Lite, Qdrant local, numpy)
retrieval.py  the side-by-side run: build, latency, throughput, recall, bytes, ratios with spread
report.py     JSON, markdown tables and plots of a run
encoder.py    texts/s of the backbone alone and with the head, batch 1..256
"""
