"""Bulk indexing on a Ray cluster: `bulk_index`'s batches, checkpoint and upserts, encoded by a pool of actors.

    records -> the driver numbers them in batches -> actors embed + encode (model loaded once per actor, CPU or
    GPU) -> codes written by the driver's writer threads, or by the actors themselves (`worker_store`)

- The same run as `bulk_index`: the same batches (`batch_size` rows, numbered in input order), digests and
  checkpoint file (`run_checkpoint`), so a re-run after the driver died writes only the batches it did not
  commit, and either executor resumes the other's run. The codes are the same bit for bit on the CPU with the same
  number of torch threads (an actor of one CPU runs one; float sums depend on it, by about 1e-7).
- Writes: embedded engines (qdrant-edge, Milvus Lite, Qdrant's local mode) allow one writing process, so the
  actors hand codes back and the driver writes them (it is the one writer). Server engines (PostgreSQL,
  Qdrant, Milvus, Elasticsearch by URL) are written by the actors directly (`worker_store`): only the batch's
  row count travels back. Batches sharing an id are written in input order either way.
- A worker killed mid-batch: Ray restarts the actor and retries the call (`max_restarts`, `max_task_retries`);
  the upserts are idempotent (stable ids), so a batch written twice is written once.
- The driver reads the input (cheap next to embedding: about 25 chunks/s per core for MiniLM, see
  docs/benchmarks.md); at most `in_flight` batches per actor are queued at a time.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from csrv2_vdb.bulk import (
    Batch,
    BatchWriter,
    BulkReport,
    _Writers,
    already_written,
    prepared_batches,
    run_checkpoint,
    with_retries,
)
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import SparseStore


@dataclass(frozen=True)
class StoreSpec:
    """How a Ray worker opens the store itself (`open_store(engine, location, **options)`): server engines only."""

    engine: str
    location: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RayOptions:
    """Where and on what the actors run."""

    address: str | None = None  # a running cluster ("auto", "ray://host:10001", "host:6379"); None: start one here
    num_workers: int = 2  # actors, each holding one copy of the model
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # > 0: the backbone runs on CUDA in each actor
    in_flight: int = 2  # batches queued per actor, so none waits for the driver
    max_restarts: int = 3  # a killed actor is restarted this often, its call retried


class _Encoder:
    """A Ray actor: the encoder (head + embedder, loaded once) and, for server engines, its own store."""

    def __init__(
        self, codes: CSRv2Encoder, embedder: str | None, device: str, store: StoreSpec | None, collection: str
    ) -> None:
        self.codes, self.embedder_spec, self.device = codes, embedder, device
        self.store: SparseStore | None = None
        if store is not None:
            from csrv2_vdb.adapters import open_store

            self.store = open_store(store.engine, store.location, **dict(store.options))
        self.collection = collection
        self._embedder: Any = None

    def pid(self) -> int:
        return os.getpid()

    def encode(self, inputs: Any) -> SparseBatch:
        if isinstance(inputs, np.ndarray):  # precomputed embeddings
            return self.codes.encode_embeddings(inputs)
        if self._embedder is None:
            from csrv2_vdb.backbone import Backbone
            from csrv2_vdb.embedders import open_embedder

            self._embedder = (
                Backbone(device=self.device) if not self.embedder_spec else open_embedder(self.embedder_spec)
            )
        return self.codes.encode_embeddings(self._embedder.embed(inputs, "document"))

    def encode_and_write(self, batch: Batch, max_retries: int, backoff: float) -> int:
        """Encode and upsert one batch; returns the retries the write took."""
        assert self.store is not None
        store, codes = self.store, self.encode(batch.inputs)
        return with_retries(
            lambda: store.upsert(self.collection, batch.ids, codes, payloads=batch.payloads),
            store.transient_errors, max_retries, backoff,
        )  # fmt: skip


def ray_bulk_index(
    store: SparseStore,
    collection: str,
    records: Iterable[Mapping[str, Any]] | str | Path | Any,
    encoder: CSRv2Encoder,
    *,
    embedder: str | None = None,
    options: RayOptions | None = None,
    worker_store: StoreSpec | None = None,
    batch_size: int = 256,
    checkpoint: str | Path | None = None,
    run: Mapping[str, Any] | None = None,
    writers: int = 2,
    max_retries: int = 5,
    backoff: float = 0.5,
    text_field: str = "text",
    id_field: str = "id",
    vector_field: str | None = None,
    total: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> BulkReport:
    """`bulk_index` with the encoding spread over Ray actors (see the module docstring).

    `records`: mappings (id, text or `vector_field`, payload fields), a file of them (.jsonl, .parquet, .csv, .txt,
    read as `index --input` reads it), or a `ray.data.Dataset` of such rows (read in order, so that a re-run
    numbers its batches alike). `encoder` gives the head, k and normalisation (its
    embedder stays here: each actor opens `embedder`, an `open_embedder` spec, None: the offline backbone);
    `store` must already hold `collection`. With `worker_store` the actors write to the store themselves
    (server engines); otherwise this process does.
    """
    import ray
    import ray.data
    from ray.util import ActorPool

    options = options or RayOptions()
    if batch_size < 1 or writers < 1 or options.num_workers < 1 or options.in_flight < 1:
        raise InvalidArgumentError("batch_size, writers, num_workers and in_flight must be at least 1")
    say = log or (tqdm.write if progress else (lambda _: None))
    state = run_checkpoint(checkpoint, run, collection, batch_size, id_field, text_field, vector_field)
    if state.done:
        say(f"resuming from checkpoint {state.path}: {len(state.done)} batches recorded as written")
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    if isinstance(records, (str, Path)):
        from csrv2_vdb.records import iter_records

        records = iter_records(Path(records), vector_field=vector_field)
    if isinstance(records, ray.data.Dataset):
        cpus = ray.cluster_resources().get("CPU", 0)
        if options.num_workers * options.cpus_per_worker >= cpus:
            raise InvalidArgumentError(
                f"{options.num_workers} workers of {options.cpus_per_worker:g} CPU take all {cpus:g} CPUs of the "
                "cluster, and the Dataset's read tasks need some too (they would wait forever): use fewer workers"
            )
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        records = records.iter_rows()
    actor: Any = ray.remote(_Encoder).options(
        num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker,
        max_restarts=options.max_restarts, max_task_retries=options.max_restarts,
    )  # fmt: skip
    # held here for the whole run: a restarted actor is built again from this object
    codes = ray.put(CSRv2Encoder(None, encoder.head, encoder.k, encoder.normalize))
    device = "cuda" if options.gpus_per_worker > 0 else "cpu"
    actors = [actor.remote(codes, embedder, device, worker_store, collection) for _ in range(options.num_workers)]
    pool = ActorPool(actors)
    report = BulkReport()
    bar = tqdm(total=total, desc=f"index {collection} (ray, {options.num_workers} workers)", unit="row",
               disable=not progress, smoothing=0.1)  # fmt: skip
    writer = BatchWriter(store, collection, state, report, bar, max_retries, backoff)
    threads = _Writers(writer.write, writers) if worker_store is None else None  # None: the actors write
    queued: deque[Batch] = deque()  # submitted to the pool, in input order (results come back in that order)
    start = time.perf_counter()

    def finish_one() -> None:
        batch = queued.popleft()
        try:
            result = pool.get_next()
        except ray.exceptions.RayTaskError as exc:  # the worker's own error (a refused write), not Ray's wrapper
            raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None
        if threads is None:
            writer.committed(batch.number, batch.digest, len(batch.ids), int(result))
        elif not threads.submit((batch.number, batch.ids, result, batch.payloads, batch.digest)):
            raise threads.failures[0]

    try:
        for batch in prepared_batches(records, batch_size, id_field, text_field, vector_field):
            if batch.number in state.done and already_written(state, store, collection, batch):
                report.batches_skipped += 1
                bar.update(len(batch.ids))
                continue
            ids = set(batch.ids)  # actors write concurrently: an id in flight is written before it is sent again
            while queued and (len(queued) >= options.num_workers * options.in_flight or
                              (threads is None and any(ids.intersection(q.ids) for q in queued))):  # fmt: skip
                finish_one()
            if threads is None:
                pool.submit(lambda a, b: a.encode_and_write.remote(b, max_retries, backoff), batch)
            else:
                pool.submit(lambda a, b: a.encode.remote(b.inputs), batch)
            queued.append(batch)
        while queued:
            finish_one()
    finally:
        if threads is not None:
            threads.close()
        bar.close()
        for a in actors:
            ray.kill(a)
    report.seconds = time.perf_counter() - start
    if threads is not None and threads.failures:
        raise threads.failures[0]
    state.finish()
    return report
