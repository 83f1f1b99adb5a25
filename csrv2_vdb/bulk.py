"""Bulk indexing: stream records, encode in this thread, write in others; idempotent, retried, resumable.

- Stable ids: each record's id goes to the store, which maps it to the engine id (UUIDv5 or the
  primary key itself), so a replayed batch overwrites instead of duplicating.
- Retries: a write that fails with one of the store's `transient_errors` (dropped connection,
  timeout) is retried with exponential backoff; any other error stops the run.
- Resume: after each acknowledged write the batch number and a digest of its content are appended to a
  checkpoint file. The file names the run (engine, store, collection, encoder and k, input, batch size); a
  restarted run with the same identity skips a recorded batch only when the input still holds the same
  content and the store still holds its ids; any other run is refused. A finished run deletes its
  checkpoint, so running it again re-indexes (harmlessly: upserts).
- Order: batches sharing an id are written in input order, so the last record of an id wins with any
  number of writers.
- Failures: an error in encoding, in a writer thread or in writing the checkpoint stops the run and is
  raised to the caller; the writers never die silently and the producer never blocks on a dead queue.
"""

from __future__ import annotations

import hashlib
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

from csrv2_vdb.errors import CheckpointError, InvalidArgumentError, InvalidRecordError
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import Gettable, SparseStore

# texts -> vectors; with `vector_field`, the records' (n, d) precomputed embeddings -> vectors
Encode = Callable[[Any], SparseBatch | np.ndarray]


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
    """The committed batches of one run: an append-only JSON-lines file, its first line naming the run.

    `run` holds the run's identity (engine, store, collection, encoder and k, input, batch size, ...). A file
    written by a run with any other value is refused, naming the field, so a resume never mixes two encoders'
    codes in one collection. Each later line records one committed batch with a digest of its content (ids,
    texts or vectors, payloads): a batch is only skipped when the input still holds exactly that content and
    the store still holds its ids (`bulk_index` checks), so an edited input or a dropped collection is
    rewritten, never trusted. A line cut short by a crash is ignored. The file is written when the run starts,
    so a path that cannot be written fails before any work is done.
    """

    def __init__(self, path: Path | None, run: Mapping[str, Any]) -> None:
        self.path = path
        self.run = json.loads(json.dumps(dict(run), default=str))  # the form it takes in the file
        self.done: dict[int, str] = {}  # batch number -> content digest
        self._lock = threading.Lock()
        if path is None:
            return
        if path.exists():
            self.done = self._read(path)
        else:
            self._start()

    def _read(self, path: Path) -> dict[int, str]:
        try:
            lines = path.read_text().splitlines()
            theirs = json.loads(lines[0])["run"]
            done: dict[int, str] = {}
            for line in lines[1:]:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # the last line, cut short by a crash while it was written
                done[int(entry["batch"])] = str(entry["digest"])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(
                f"checkpoint {path} is unreadable or not a csrv2-vdb checkpoint ({exc!r}); "
                "delete it to start over (re-indexing is harmless: upserts overwrite)"
            ) from None
        differs = [k for k in sorted(set(theirs) | set(self.run)) if theirs.get(k) != self.run.get(k)]
        if differs and not done:
            # A run that committed nothing (it failed on its first batch) leaves nothing to protect: start over.
            self._start()
            return done
        if differs:
            field = differs[0]
            raise CheckpointError(
                f"checkpoint {path} belongs to another run: {field} was {theirs.get(field)!r} there and is "
                f"{self.run.get(field)!r} now (differs: {', '.join(differs)}). Re-run with the same settings to "
                "resume, or delete the file (or pass another checkpoint path) to start over"
            )
        return done

    def _start(self) -> None:
        """A new file holding only the run's identity (atomic rename)."""
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps({"run": self.run}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            raise CheckpointError(f"cannot write the checkpoint {self.path}: {exc.strerror or exc}") from exc

    def commit(self, batch: int, digest: str) -> None:
        """Record `batch` (with its content digest) as acknowledged by the store; durable on return."""
        with self._lock:
            self.done[batch] = digest
            if self.path is None:
                return
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps({"batch": batch, "digest": digest}) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise CheckpointError(f"cannot write the checkpoint {self.path}: {exc.strerror or exc}") from exc

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def committed_batches(path: Path) -> set[int]:
    """The batch numbers a checkpoint file records as committed (for tools and tests)."""
    return set(Checkpoint(path, json.loads(path.read_text().splitlines()[0])["run"]).done)


def batch_digest(ids: list[str], inputs: Any, payloads: list[dict]) -> str:
    """A digest of one batch's content (ids, payloads, and texts when it has them): what a resumed run compares
    before it skips the batch. Precomputed vectors are left out: an engine can hand a stored vector back with
    float noise after a restart (Qdrant's local mode did), which would rewrite every batch of a resumed
    migration; a source whose points change between runs is caught by the migration's own fingerprint."""
    texts = None if isinstance(inputs, np.ndarray) else list(inputs)
    blob = json.dumps([ids, payloads, texts], sort_keys=True, default=repr).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _batches(records: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def _embeddings(batch: list[Mapping[str, Any]], field: str) -> np.ndarray:
    try:
        return np.asarray([r[field] for r in batch], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecordError(
            f"records around id {batch[0].get('id')!r} need {field!r} as equal-length lists of numbers ({exc})"
        ) from None


def with_retries(
    write: Callable[[], None],
    transient: tuple[type[BaseException], ...],
    max_retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
) -> int:
    """Run `write`, retrying transient failures with exponential backoff; returns the retries it took."""
    attempt = 0
    while True:
        try:
            write()
            return attempt
        except transient:
            if attempt == max_retries:
                raise
            time.sleep(min(backoff * 2**attempt, max_backoff))
            attempt += 1


Item = tuple[int, list[str], Any, list[dict], str]  # batch number, ids, vectors, payloads, content digest


class BatchWriter:
    """Upserts a batch with retries, records it in the checkpoint once acknowledged and counts it (what each
    writer thread runs; `committed` alone when someone else wrote it, e.g. a Ray worker)."""

    def __init__(
        self, store: SparseStore, collection: str, state: Checkpoint, report: BulkReport, bar: Any,
        max_retries: int = 5, backoff: float = 0.5,
    ) -> None:  # fmt: skip
        self.store, self.collection, self.state, self.report, self.bar = store, collection, state, report, bar
        self.max_retries, self.backoff = max_retries, backoff
        self._lock = threading.Lock()

    def write(self, item: Item) -> None:
        number, ids, vectors, payloads, digest = item

        def upsert() -> None:
            self.store.upsert(self.collection, ids, vectors, payloads=payloads)

        retries = with_retries(upsert, self.store.transient_errors, self.max_retries, self.backoff)
        self.committed(number, digest, len(ids), retries)

    def committed(self, number: int, digest: str, rows: int, retries: int) -> None:
        self.state.commit(number, digest)
        with self._lock:
            self.report.rows_written += rows
            self.report.batches_written += 1
            self.report.retries += retries
            self.bar.update(rows)


class _Writers:
    """Threads that upsert queued batches, retry transient failures and commit each batch to the checkpoint.

    Every failure is kept for the caller (`failures`); a writer that failed goes on draining the queue, and
    `submit` stops waiting once anything failed, so neither side can block on the other. Batches sharing an
    id are written in input order: a batch waits until every earlier batch holding one of its ids is written,
    so the last record of an id wins whatever the number of writers.
    """

    def __init__(self, write: Callable[[Item], None], count: int) -> None:
        self.write = write
        self.failures: list[BaseException] = []
        self.queue: queue.Queue[Item | None] = queue.Queue(maxsize=2 * count)
        self._written = threading.Condition()
        self._owner: dict[str, int] = {}  # id -> the latest queued, unwritten batch holding it
        self._pending: set[int] = set()  # queued batches not written yet
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.failures:
                continue
            try:
                self.write(item)
            except BaseException as exc:
                self.failures.append(exc)
            finally:
                self._done(item)

    def _done(self, item: Item) -> None:
        number, ids = item[0], item[1]
        with self._written:
            self._pending.discard(number)
            for doc_id in ids:
                if self._owner.get(doc_id) == number:
                    del self._owner[doc_id]
            self._written.notify_all()

    def submit(self, item: Item) -> bool:
        """Queue a batch once the earlier batches sharing its ids are written; False once a writer has failed."""
        number, ids = item[0], item[1]
        with self._written:
            earlier = {self._owner[i] for i in ids if i in self._owner}
            while earlier & self._pending and not self.failures:
                self._written.wait(timeout=0.1)
            self._pending.add(number)
            self._owner.update(dict.fromkeys(ids, number))
        while not self.failures:
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """Let the queued batches finish, then stop the threads."""
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()


def already_written(state: Checkpoint, store: SparseStore, collection: str, batch: Batch) -> bool:
    """Whether a resumed run may skip `batch`: the checkpoint holds it with this content and the store its ids."""
    return state.done.get(batch.number) == batch.digest and _held(store, collection, batch.ids)


def _held(store: SparseStore, collection: str, ids: list[str]) -> bool:
    """Whether the store holds every id (a store that cannot say is taken not to: the batch is rewritten)."""
    if not isinstance(store, Gettable):
        return False
    return len(store.get(collection, ids)) == len(set(ids))


@dataclass
class Batch:
    """One numbered batch of records, ready to encode: ids, texts (or precomputed embeddings), payloads."""

    number: int
    ids: list[str]
    inputs: Any
    payloads: list[dict]
    digest: str


def prepared_batches(
    records: Iterable[Mapping[str, Any]], batch_size: int, id_field: str, text_field: str, vector_field: str | None
) -> Iterator[Batch]:
    """`records` in numbered batches; a repeated id inside one batch keeps its last record, as sequential upserts
    would."""
    for number, rows in enumerate(_batches(records, batch_size)):
        rows = list({str(r[id_field]): r for r in rows}.values())
        ids = [str(r[id_field]) for r in rows]
        payloads = [{k: v for k, v in r.items() if k not in (id_field, vector_field)} for r in rows]
        inputs = [r[text_field] for r in rows] if vector_field is None else _embeddings(rows, vector_field)
        yield Batch(number, ids, inputs, payloads, batch_digest(ids, inputs, payloads))


def run_checkpoint(
    checkpoint: str | Path | None, run: Mapping[str, Any] | None, collection: str, batch_size: int, id_field: str,
    text_field: str, vector_field: str | None,
) -> Checkpoint:  # fmt: skip
    """The checkpoint of a bulk run: the caller's `run` identity plus everything that numbers its batches (the same
    for `bulk_index` and the Ray executor, so either resumes the other's run)."""
    identity = {**(run or {}), "collection": collection, "batch_size": batch_size, "id_field": id_field,
                "text_field": text_field, "vector_field": vector_field}  # fmt: skip
    return Checkpoint(Path(checkpoint) if checkpoint else None, identity)


def bulk_index(
    store: SparseStore,
    collection: str,
    records: Iterable[Mapping[str, Any]],
    encode: Encode,
    *,
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
    """Encode and upsert `records` (mappings with an id and a text; other fields become payload).

    `encode` maps a list of texts to a SparseBatch (sparse collection) or an (n, d) array (dense); with
    `vector_field`, records carry precomputed embeddings there and `encode` gets them as an (n, d) array.
    `run` names what else makes a checkpoint's batches valid (engine, store, encoder and k, input identity):
    a checkpoint written under other values is refused. Any failure, in encoding, in a writer thread or in
    writing the checkpoint, stops the run and is raised here; nothing is reported as written that was not.
    """
    if batch_size < 1 or writers < 1:
        raise InvalidArgumentError(f"batch_size and writers must be at least 1, got {batch_size} and {writers}")
    say = log or (tqdm.write if progress else (lambda _: None))
    state = run_checkpoint(checkpoint, run, collection, batch_size, id_field, text_field, vector_field)
    if state.done:
        say(f"resuming from checkpoint {state.path}: {len(state.done)} batches recorded as written")
    report = BulkReport()
    bar = tqdm(total=total, desc=f"index {collection}", unit="row", disable=not progress, smoothing=0.1)
    not_held = 0  # batches the checkpoint recorded but the input or the store no longer matches
    writer = BatchWriter(store, collection, state, report, bar, max_retries, backoff)
    pool = _Writers(writer.write, writers)
    start = time.perf_counter()
    try:
        for batch in prepared_batches(records, batch_size, id_field, text_field, vector_field):
            if pool.failures:
                break
            if batch.number in state.done:
                if already_written(state, store, collection, batch):
                    report.batches_skipped += 1
                    bar.update(len(batch.ids))
                    continue
                not_held += 1
            if not pool.submit((batch.number, batch.ids, encode(batch.inputs), batch.payloads, batch.digest)):
                break
    finally:
        pool.close()
        bar.close()
    if not_held:
        say(f"{not_held} batches recorded in the checkpoint were rewritten: the input changed or the store no "
            "longer held them")  # fmt: skip
    report.seconds = time.perf_counter() - start
    if pool.failures:
        raise pool.failures[0]
    state.finish()
    return report
