"""The experiments, installed as `csrv2_vdb.benchmarks`: they use the library, the library never imports them.

datasets.py     GraphRAG-Bench and Banking77 loaders, chunking, answer-token metrics, data paths
tasks.py        the medical split and Banking77 as training rows + evaluations (one definition for all)
cache.py        on-disk embedding and trained-head caches keyed by exact inputs and settings
metrics.py      classification, clustering, retrieval (nDCG/recall) and dead-latent metrics
reports.py      the CSV / markdown / plot helpers every report uses
demo.py         `csrv2-vdb demo`: sparse vs MRL on GraphRAG-Bench medical in embedded Qdrant
reproduction.py `csrv2-vdb eval`: CSRv2 vs CSR vs MRL at each k on Banking77 and medical
graphrag.py     `csrv2-vdb bench graphrag`: GraphRAG-Bench retrieval and generation per question type
llm.py          the cached, concurrency-limited OpenAI-compatible chat client the GraphRAG harness uses
speed/          `csrv2-vdb bench retrieval | encoder | bulk`: latency, throughput, bytes, recall
cli.py          the harness commands, mounted on the `csrv2-vdb` app
"""
