"""Bulk indexing: stream records, encode in this thread, write in others; idempotent, retried, resumable.

- Stable ids: each record's id goes to the store, which maps it to the engine id (UUIDv5 or the
  primary key itself), so a replayed batch overwrites instead of duplicating.
- Retries: a write that fails with one of the store's `transient_errors` (dropped connection,
  timeout) is retried with exponential backoff; any other error stops the run.
- Resume: after each acknowledged write the batch number goes to a checkpoint file (atomic rename).
  A restarted run with the same source, collection and batch size skips the batches recorded there;
  a finished run deletes its checkpoint, so running it again re-indexes (harmlessly: upserts).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import SparseStore

Encode = Callable[[list[str]], SparseBatch | np.ndarray]
DEFAULT_TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


@dataclass
class BulkReport:
    rows_written: int = 0
    batches_written: int = 0
    batches_skipped: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds else 0.0


class Checkpoint:
    """The set of committed batch numbers of one (source, collection, batch size) run, kept in a JSON file."""

    def __init__(self, path: Path | None, collection: str, batch_size: int, source: str = "") -> None:
        self.path = path
        self.key = {"source": source, "collection": collection, "batch_size": batch_size}
        self.done: set[int] = set()
        self._lock = threading.Lock()
        if path is not None and path.exists():
            state = json.loads(path.read_text())
            if {k: state.get(k) for k in self.key} != self.key:
                raise ValueError(
                    f"checkpoint {path} belongs to another run ({state.get('source')!r} -> "
                    f"{state.get('collection')!r}, batch size {state.get('batch_size')}); "
                    "resume with the same input and settings, or delete the file to start over"
                )
            self.done = set(range(state["done_below"])) | set(state["done_extra"])

    def commit(self, batch: int) -> None:
        with self._lock:
            self.done.add(batch)
            if self.path is None:
                return
            below = 0
            while below in self.done:
                below += 1
            state = {**self.key, "done_below": below, "done_extra": sorted(b for b in self.done if b > below)}
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _batches(records: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def with_retries(
    write: Callable[[], None],
    transient: tuple[type[BaseException], ...],
    max_retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
) -> int:
    """Run `write`, retrying transient failures with exponential backoff; returns the retries it took."""
    for attempt in range(max_retries + 1):
        try:
            write()
            return attempt
        except transient:
            if attempt == max_retries:
                raise
            time.sleep(min(backoff * 2**attempt, max_backoff))
    raise AssertionError("unreachable")


def bulk_index(
    store: SparseStore,
    collection: str,
    records: Iterable[Mapping[str, Any]],
    encode: Encode,
    *,
    batch_size: int = 256,
    checkpoint: str | Path | None = None,
    source: str = "",
    writers: int = 2,
    max_retries: int = 5,
    backoff: float = 0.5,
    text_field: str = "text",
    id_field: str = "id",
    total: int | None = None,
    progress: bool = True,
) -> BulkReport:
    """Encode and upsert `records` (mappings with an id and a text; other fields become payload).

    `encode` maps a list of texts to a SparseBatch (sparse collection) or an (n, d) array (dense).
    `source` names the input (path, size, mtime) so that a checkpoint is never applied to other data.
    """
    state = Checkpoint(Path(checkpoint) if checkpoint else None, collection, batch_size, source)
    transient = getattr(store, "transient_errors", DEFAULT_TRANSIENT)
    report = BulkReport()
    work: queue.Queue[tuple[int, list[str], Any, list[dict]] | None] = queue.Queue(maxsize=2 * writers)
    failures: list[BaseException] = []
    lock = threading.Lock()
    bar = tqdm(total=total, desc=f"index {collection}", unit="row", disable=not progress, smoothing=0.1)

    def writer() -> None:
        while (item := work.get()) is not None:
            number, ids, vectors, payloads = item
            if failures:
                continue
            key = "sparse" if isinstance(vectors, SparseBatch) else "dense"
            try:
                retries = with_retries(
                    lambda: store.upsert(collection, ids, payloads=payloads, **{key: vectors}),  # noqa: B023
                    transient,
                    max_retries,
                    backoff,
                )
            except BaseException as exc:
                failures.append(exc)
                continue
            state.commit(number)
            with lock:
                report.rows_written += len(ids)
                report.batches_written += 1
                report.retries += retries
                bar.update(len(ids))

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(max(writers, 1))]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    try:
        for number, batch in enumerate(_batches(records, batch_size)):
            if failures:
                break
            if number in state.done:
                report.batches_skipped += 1
                bar.update(len(batch))
                continue
            # A repeated id inside one batch keeps its last record, as sequential upserts would.
            batch = list({str(r[id_field]): r for r in batch}.values())
            ids = [str(r[id_field]) for r in batch]
            payloads = [{k: v for k, v in r.items() if k != id_field} for r in batch]
            work.put((number, ids, encode([str(r[text_field]) for r in batch]), payloads))
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
        bar.close()
    report.seconds = time.perf_counter() - start
    if failures:
        raise failures[0]
    state.finish()
    return report
