"""Ray executor against in-process `bulk_index`, on the same machine and texts: what distributing costs.

    csrv2-vdb bench ray [--rows 2000] [--workers 2] [--gpus 0]

Both paths embed the same 150-word GraphRAG-Bench medical chunks with the offline backbone, code them with
the general head at k = 8 and write them to qdrant-edge; in-process uses torch's threads on every core, Ray
one actor per core (one thread each). Rates are rows written per second of the indexing call (for Ray
including its actors' start and model loads; `ray.init` is reported beside it). From the measured
per-worker rate the report projects the workers and hours that 100 million chunks take.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from csrv2_vdb.adapters import open_store
from csrv2_vdb.benchmarks.datasets import chunk_words, load_corpus
from csrv2_vdb.bulk import bulk_index
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.ray_index import RayOptions, ray_bulk_index

TARGET = 100_000_000  # chunks in the projection


def run_ray_bench(data: Path, rows: int = 1000, workers: int = 2, gpus_per_worker: float = 0.0,
                  batch_size: int = 64) -> dict[str, Any]:  # fmt: skip
    """rows/s of in-process bulk_index and of ray_bulk_index (same texts, head, engine); the projection."""
    import ray
    import torch

    chunks = [c.text for c in chunk_words(load_corpus(data))][:rows]
    records = [{"id": f"c{i}", "text": t} for i, t in enumerate(chunks)]
    encoder = CSRv2Encoder.load(k=8)
    result: dict[str, Any] = {"rows": len(records), "workers": workers, "gpus_per_worker": gpus_per_worker,
                              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, open_store("qdrant-edge", str(Path(tmp) / "edge")) as store:
        for name in ("local", "ray"):
            store.create_collection(name, sparse_dim=encoder.dim, encoder=encoder.identity)
        encoder.encode_documents([chunks[0]])  # the model loaded and warm, as the actors' will be when timed
        local = bulk_index(store, "local", records, encoder.encode_documents, batch_size=batch_size, progress=False)
        started = time.perf_counter()
        ray.init(num_cpus=max(workers, 1), num_gpus=math.ceil(workers * gpus_per_worker) if gpus_per_worker else None,
                 include_dashboard=False, log_to_driver=False)  # fmt: skip
        result["ray_init_s"] = time.perf_counter() - started
        try:
            options = RayOptions(num_workers=workers, gpus_per_worker=gpus_per_worker)
            timed = ray_bulk_index(store, "ray", records, encoder, options=options, batch_size=batch_size,
                                   progress=False)  # fmt: skip
        finally:
            ray.shutdown()
        assert store.count("local") == store.count("ray") == len(records)
    result["local_rows_per_s"] = local.rows_per_second
    result["ray_rows_per_s"] = timed.rows_per_second
    result["overhead"] = 1 - timed.rows_per_second / local.rows_per_second
    per_worker = timed.rows_per_second / workers
    result["per_worker_rows_per_s"] = per_worker
    result["projection"] = {
        "chunks": TARGET,
        "worker_hours": TARGET / per_worker / 3600,
        "hours_on": {n: TARGET / (per_worker * n) / 3600 for n in (64, 256, 1024)},
    }
    return result


def markdown(result: dict[str, Any], command: str) -> str:
    p = result["projection"]
    kind = f"{result['gpus_per_worker']:g} GPU" if result["gpus_per_worker"] else "1 CPU core"
    hours = ", ".join(f"{n} workers {h:,.1f} h" for n, h in p["hours_on"].items())
    return "\n".join([
        "## Bulk indexing on Ray vs in-process",
        "",
        f"Reproduce: `{command}`. {result['rows']:,} 150-word medical chunks, general head k = 8, qdrant-edge; "
        f"{result['cpus']} cores; in-process on {result['torch_threads']} torch threads, Ray on "
        f"{result['workers']} actors of {kind} each.",
        "",
        "| path | rows/s | note |",
        "|---|---|---|",
        f"| in-process `bulk_index` | {result['local_rows_per_s']:.1f} | model loaded before timing |",
        f"| Ray, {result['workers']} actors | {result['ray_rows_per_s']:.1f} | includes starting the actors and "
        f"loading a model in each (`ray.init` before: {result['ray_init_s']:.1f} s) |",
        "",
        f"Ray's overhead on the same cores: {result['overhead']:.1%} (rows/s lost against in-process). "
        f"Per worker: {result['per_worker_rows_per_s']:.1f} rows/s, so {p['chunks']:,} chunks take "
        f"{p['worker_hours']:,.0f} worker-hours: {hours} (encoding-bound; the engine must take the writes).",
        "",
    ])  # fmt: skip
