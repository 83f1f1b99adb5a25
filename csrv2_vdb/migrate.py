"""Turn an existing dense collection into an ultra-sparse one: read the vectors back, fit a head, write codes.

`migrate` makes three passes over the source collection, each streamed page by page:
1. sample: a seeded sample of points (the same on every run: chosen by a hash of the id) to fit a
   label-free head on (unless a head is given), plus `holdout` further points kept out of the fit;
2. write: every point's vector -> sparse code, upserted with the same id and payload into `target`
   through `bulk_index`, so the write is idempotent, retried and resumable from a checkpoint;
3. fidelity: the held-out points' exact dense top-10 over the whole collection (cosine), against the
   sparse search of the written collection at each k (`fidelity_report`), with bytes per vector.

Queries then go through the same embedding model and the head (`CSRv2Encoder(embedder, head)`); the target
records the head's identity, so a query encoded by any other head is refused.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from csrv2_vdb.bulk import BulkReport, bulk_index
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import CheckpointError, CollectionExistsError, InvalidArgumentError, InvalidEmbeddingError
from csrv2_vdb.head import SparseHead, resolve_head
from csrv2_vdb.store import DensePoints, DenseReadable, Gettable, Optimizable, SparseStore

_ID = "\0id"  # record keys that no payload field can collide with
_VECTOR = "\0vector"
CUTOFF = 10


@dataclass
class Fidelity:
    """What the sparse collection keeps of the dense one, measured on held-out points of the source."""

    queries: int
    recall_at_10: dict[int, float]  # query k -> mean overlap of the sparse top-10 with the dense top-10
    dense_bytes: int  # float32 vector
    sparse_bytes: dict[int, int]  # k (uint32 index + float32 value) per active dim, at the documents' k

    def lines(self) -> list[str]:
        out = [f"fidelity on {self.queries} held-out points (recall@10 against the collection's own dense top-10):"]
        out += [f"  k={k:<3} recall@10 {r:.3f}" for k, r in sorted(self.recall_at_10.items())]
        out += [f"  bytes per vector: dense {self.dense_bytes}, sparse {self.sparse_bytes} (k: bytes)"]
        return out


@dataclass
class MigrationReport:
    source: str
    target: str
    points: int
    head: str
    k: int
    write: dict[str, Any] = field(default_factory=dict)
    skipped_points: dict[str, str] = field(default_factory=dict)  # left out with skip_invalid: id -> why
    overwritten: int = 0  # documents of an existing target replaced (into_existing)
    fidelity: Fidelity | None = None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, default=str))


def _key(doc_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "little")


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (heads are fitted on unit vectors; zero rows are refused by the head)."""
    with np.errstate(invalid="ignore", over="ignore"):  # rows of inf are refused by the caller, not here
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def sample_points(
    pages: Iterator[DensePoints], size: int, holdout: int, seed: int = 0, total: int | None = None
) -> tuple[DensePoints, DensePoints]:
    """(fit sample, held-out points): the `holdout` ids with the smallest seeded hash, then the next `size`.

    Chosen by id, not by position, so every pass and every re-run picks the same points."""
    keep = size + holdout
    if keep == 0:
        for _ in pages:  # still one full pass: the caller may be watching it (SourceScan)
            pass
        empty = DensePoints([], np.empty((0, 0), np.float32), [])
        return empty, empty
    heap: list[tuple[int, str, np.ndarray, dict[str, Any]]] = []  # max-heap on the key (negated)
    bar = tqdm(total=total, desc="sample", unit="pt", disable=total is None)
    for page in pages:
        for doc_id, vector, payload in zip(page.ids, page.vectors, page.payloads, strict=True):
            item = (-_key(doc_id, seed), doc_id, vector, payload)
            if len(heap) < keep:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
        bar.update(len(page.ids))
    bar.close()
    chosen = sorted(heap, key=lambda item: -item[0])

    def points(items: list[tuple[int, str, np.ndarray, dict[str, Any]]]) -> DensePoints:
        vectors = np.asarray([i[2] for i in items], dtype=np.float32) if items else np.empty((0, 0), np.float32)
        return DensePoints([i[1] for i in items], vectors, [i[3] for i in items])

    return points(chosen[holdout:]), points(chosen[:holdout])


@dataclass
class SourceScan:
    """What one pass over the source saw: its size, an order-free fingerprint of its ids, and the points whose
    vectors cannot be coded (NaN, inf, or all zeros)."""

    points: int = 0
    fingerprint: int = 0
    invalid: dict[str, str] = field(default_factory=dict)  # document id -> what is wrong with its vector

    def watch(self, pages: Iterator[DensePoints]) -> Iterator[DensePoints]:
        """`pages` passed through, each point counted, fingerprinted and checked."""
        for page in pages:
            finite = np.isfinite(page.vectors).all(axis=1)
            zero = finite & ~np.any(page.vectors != 0, axis=1)
            for doc_id, ok, empty in zip(page.ids, finite, zero, strict=True):
                self.points += 1
                self.fingerprint = (self.fingerprint + _key(doc_id, -1)) % 2**64
                if not ok or empty:
                    self.invalid[doc_id] = "all zeros" if empty else "NaN or inf"
            yield page


def exact_top(pages: Iterator[DensePoints], queries: DensePoints, depth: int = CUTOFF) -> list[list[str]]:
    """Each query point's `depth` nearest other points by cosine over the whole collection (itself excluded)."""
    q = unit(queries.vectors)
    best = np.full((len(q), depth), -np.inf, dtype=np.float32)
    best_ids = np.full((len(q), depth), "", dtype=object)
    for page in pages:
        scores = q @ unit(page.vectors).T
        ids = np.asarray(page.ids, dtype=object)
        scores[np.asarray(queries.ids, dtype=object)[:, None] == ids[None, :]] = -np.inf  # not itself
        all_scores = np.concatenate([best, scores], axis=1)
        all_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argsort(-all_scores, axis=1, kind="stable")[:, :depth]
        best, best_ids = np.take_along_axis(all_scores, top, 1), np.take_along_axis(all_ids, top, 1)
    return [[i for i in row if i] for row in best_ids.tolist()]


def target_name(collection: str, target: str | None = None) -> str:
    """The sparse collection a migration writes: `target`, else "<collection>_csrv2"."""
    return target or f"{collection}_csrv2"


def dense_reader(store: object) -> DenseReadable:
    """`store` as a reader of dense vectors, or a clear error for an engine that cannot read them back."""
    if not isinstance(store, DenseReadable):
        raise InvalidArgumentError(f"{type(store).__name__} cannot read dense vectors back")
    return store


def fidelity_report(
    source: DenseReadable,
    collection: str,
    target_store: SparseStore,
    target: str,
    encoder: CSRv2Encoder,
    holdout: DensePoints,
    *,
    vector: str | None = None,
    ks: tuple[int, ...] = (2, 4, 8, 16, 32, 64),
    batch_size: int = 1024,
) -> Fidelity:
    """recall@10 of sparse search in `target` (queries at each k up to the documents') against the source's
    exact dense top-10, for the held-out points used as queries."""
    if not len(holdout.ids):
        raise InvalidArgumentError("no held-out points to measure fidelity on (holdout=0, or an empty collection)")
    truth = exact_top(source.read_dense(collection, vector, batch_size), holdout)
    recall = {}
    for k in [k for k in ks if k <= encoder.k] or [encoder.k]:
        codes = encoder.encode_embeddings(unit(holdout.vectors), k)
        hits = target_store.search(target, codes, limit=CUTOFF + 1)
        overlaps = []
        for own, row, want in zip(holdout.ids, hits, truth, strict=True):
            got = [h.id for h in row if h.id != own][:CUTOFF]
            overlaps.append(len(set(got) & set(want)) / max(len(want), 1))
        recall[k] = round(float(np.mean(overlaps)), 4)
    dim = holdout.vectors.shape[1]
    return Fidelity(len(holdout.ids), recall, 4 * dim, {k: 8 * k for k in sorted({*recall, encoder.k})})


def migrate(
    source: SparseStore,
    collection: str,
    *,
    vector: str | None = None,
    target: str | None = None,
    target_store: SparseStore | None = None,
    head: SparseHead | str | Path | None = None,
    head_out: Path | None = None,
    k: int | None = None,
    normalize: bool = True,
    sample: int = 50_000,
    holdout: int = 200,
    seed: int = 0,
    batch_size: int = 256,
    checkpoint: Path | None = None,
    run: Mapping[str, Any] | None = None,
    fit_overrides: dict[str, object] | None = None,
    into_existing: bool = False,
    skip_invalid: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> MigrationReport:
    """Write sparse codes of `collection`'s dense vectors into `target` (default "<collection>_csrv2") with the
    same ids and payloads.

    Without `head`, a label-free head is fitted on a seeded sample of `sample` points and saved to `head_out`
    (re-used from there by a re-run, so a resumed migration keeps its head). `checkpoint` makes the write
    resumable (see `bulk_index`); `run` adds what else identifies the run (the store's location). Returns
    counts, timings and the fidelity report (skipped when `holdout` is 0).

    Nothing is written before the whole source was read once: a point whose vector holds NaN/inf or only
    zeros stops the migration, naming it, unless `skip_invalid` (then such points are left out and listed in
    the report). A target that already holds documents is refused unless `into_existing` (the report then
    counts the documents overwritten), except for the target of this run's own interrupted write. When the
    source changed between an interrupted run and its re-run, the target is rewritten from scratch.
    """
    for name, value, least in (("sample", sample, 0), ("holdout", holdout, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidArgumentError(f"{name} must be an integer of at least {least}, got {value!r}")
    reader = dense_reader(source)
    target = target_name(collection, target)
    target_store = target_store or source
    if target_store is source and target == collection:
        raise InvalidArgumentError("the target must be another collection than the source")
    total, dim = reader.dense_source(collection, vector)
    log(f"{collection}: {total} points with {dim}-dim vectors")
    scan = SourceScan()
    fit_rows, held = sample_points(
        scan.watch(reader.read_dense(collection, vector, batch_size)), sample if head is None else 0, holdout, seed,
        total if progress else None,
    )  # fmt: skip
    skipped = _invalid_points(scan, collection, skip_invalid, log)
    fit_rows, held = _without(fit_rows, skipped), _without(held, skipped)
    origin = {**(run or {}), "collection": collection, "vector": vector}
    sparse_head = _head(head, head_out, fit_rows, fit_overrides, log, origin)
    if sparse_head.input_dim != dim:
        raise InvalidArgumentError(f"the head takes {sparse_head.input_dim}-dim vectors; {collection!r} holds {dim}")
    encoder = CSRv2Encoder(None, sparse_head, k, normalize)
    identity = {**(run or {}), "source": collection, "vector": vector, "encoder": encoder.identity, "k": encoder.k,
                "source_points": scan.points, "source_fingerprint": scan.fingerprint}  # fmt: skip
    source_name = f"migrated from {collection!r}" + (f" (vector {vector!r})" if vector else "")
    overwritten = _prepare_target(
        target_store, target, encoder, checkpoint, identity, into_existing, reader.read_dense(collection, vector),
        source_name, log,
    )  # fmt: skip

    def records() -> Iterator[dict[str, Any]]:
        for page in reader.read_dense(collection, vector, batch_size):
            for doc_id, row, payload in zip(page.ids, unit(page.vectors), page.payloads, strict=True):
                if doc_id not in skipped:
                    yield {**payload, _ID: doc_id, _VECTOR: row}

    written: BulkReport = bulk_index(
        target_store, target, records(), encoder.encode_embeddings, batch_size=batch_size, checkpoint=checkpoint,
        run=identity, id_field=_ID, vector_field=_VECTOR, total=total, progress=progress, log=log,
    )  # fmt: skip
    if isinstance(target_store, Optimizable):  # qdrant-edge merges segments, pgvector builds its HNSW index
        target_store.optimize(target)
    report = MigrationReport(
        collection, target, target_store.count(target), encoder.identity, encoder.k,
        {"rows_written": written.rows_written, "batches_resumed": written.batches_skipped, "retries": written.retries,
         "seconds": round(written.seconds, 2), "rows_per_second": round(written.rows_per_second, 1)},
        skipped_points=skipped, overwritten=overwritten,
    )  # fmt: skip
    if held.ids:
        report.fidelity = fidelity_report(reader, collection, target_store, target, encoder, held, vector=vector)
    return report


def _invalid_points(scan: SourceScan, collection: str, skip: bool, log: Callable[[str], None]) -> dict[str, str]:
    """The points to leave out (with `skip`), or an error naming the first bad points before anything is written."""
    if not scan.invalid:
        return {}
    shown = ", ".join(f"{i!r} ({why})" for i, why in list(scan.invalid.items())[:5])
    more = f" and {len(scan.invalid) - 5} more" if len(scan.invalid) > 5 else ""
    if not skip:
        raise InvalidEmbeddingError(
            f"{collection!r}: {len(scan.invalid)} points have vectors no head can code: {shown}{more}. Nothing was "
            "written; fix them in the source, or leave them out with --skip-invalid (listed in the report)"
        )
    log(f"leaving out {len(scan.invalid)} points whose vectors cannot be coded: {shown}{more}")
    return dict(scan.invalid)


def _without(points: DensePoints, skipped: Mapping[str, str]) -> DensePoints:
    keep = [i for i, doc_id in enumerate(points.ids) if doc_id not in skipped]
    if len(keep) == len(points.ids):
        return points
    vectors = points.vectors[keep] if keep else np.empty((0, points.vectors.shape[1]), np.float32)
    return DensePoints([points.ids[i] for i in keep], vectors, [points.payloads[i] for i in keep])


def _prepare_target(
    store: SparseStore,
    target: str,
    encoder: CSRv2Encoder,
    checkpoint: Path | None,
    identity: Mapping[str, Any],
    into_existing: bool,
    source_pages: Iterator[DensePoints],
    source_name: str,
    log: Callable[[str], None],
) -> int:
    """Create the target and store the head with it (`head_store`), or accept an existing one: this run's own
    (interrupted, or finished and run again), or any with `into_existing`; returns how many of the source's
    ids it already held when merging into another collection (overwritten by the write)."""
    from csrv2_vdb.head_store import load_head, save_head

    ours = _checkpoint_run(checkpoint)
    if ours is not None and {k: ours.get(k) for k in ("source_points", "source_fingerprint")} != {
        k: json.loads(json.dumps(identity[k])) for k in ("source_points", "source_fingerprint")
    }:
        if into_existing:
            then, now = ours.get("source_points"), identity["source_points"]
            raise CheckpointError(
                f"the source changed since the interrupted migration (checkpoint {checkpoint}): {then} points "
                f"then, {now} now. Delete the checkpoint to write it again"
            )
        log(f"the source changed since the interrupted run ({ours.get('source_points')} points then, "
            f"{identity['source_points']} now): writing {target!r} again from scratch")  # fmt: skip
        if target in store.list_collections():
            store.drop_collection(target)
        assert checkpoint is not None
        checkpoint.unlink()
        ours = None
    exists = target in store.list_collections()
    held = store.count(target) if exists else 0
    stored = load_head(store, target) if exists else None
    if stored is not None and stored.source == source_name and stored.identity == encoder.identity:
        ours = ours or dict(identity)  # written by this migration before: a re-run overwrites its own points
    if held and ours is None and not into_existing:
        raise CollectionExistsError(
            f"target collection {target!r} already holds {held} documents; migrating into it would overwrite "
            "those with the same ids. Name another --target, or pass --into-existing to merge on purpose"
        )
    store.create_collection(target, sparse_dim=encoder.dim, encoder=encoder.identity, exist_ok=True)
    if stored is None:  # a target of another head was refused by create_collection
        save_head(store, target, encoder, source_name)
    if not held or ours is not None or not isinstance(store, Gettable):
        return 0
    return sum(len(store.get(target, page.ids)) for page in source_pages)


def _checkpoint_run(checkpoint: Path | None) -> dict[str, Any] | None:
    """The run identity an interrupted migration left in its checkpoint, or None."""
    if checkpoint is None or not checkpoint.exists():
        return None
    try:
        return dict(json.loads(checkpoint.read_text().splitlines()[0])["run"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None  # bulk_index names the unreadable file


def _head(
    head: SparseHead | str | Path | None,
    head_out: Path | None,
    rows: DensePoints,
    overrides: dict[str, object] | None,
    log: Callable[[str], None],
    origin: Mapping[str, Any],
) -> SparseHead:
    """The given head; else the one a previous run on the same source saved in `head_out`; else one fitted on
    `rows` now. `origin` (store, collection, vector) is saved beside a fitted head, so that a head fitted on
    another collection is never re-used by accident."""
    if isinstance(head, SparseHead):
        return head
    if head is not None:
        return resolve_head(head)
    if head_out is None:
        raise InvalidArgumentError("give a head, or head_out (a directory) for the head fitted on the collection")
    origin = json.loads(json.dumps(dict(origin), default=str))
    recorded = head_out / "fitted-on.json"
    if (head_out / "model.safetensors").exists():
        theirs = json.loads(recorded.read_text()) if recorded.is_file() else None
        if theirs != origin:
            raise InvalidArgumentError(
                f"{head_out} holds a head fitted on {theirs or 'an unknown source'}, not on {origin}; pass it as "
                "--head to use it on purpose, or name another --head-out"
            )
        log(f"re-using the head fitted on this collection by an earlier run: {head_out}")
        return SparseHead.load(head_out)
    if len(rows.ids) < 2:
        raise InvalidArgumentError(f"{len(rows.ids)} points to fit a head on; the collection is too small")
    from csrv2_vdb.training.fit import fit_embeddings

    log(f"fitting a label-free head on {len(rows.ids)} sampled points -> {head_out}")
    described = f"{len(rows.ids)} vectors sampled from a collection, label-free"
    fitted = fit_embeddings(unit(rows.vectors), head_out, overrides=overrides, described=described).head
    recorded.write_text(json.dumps(origin))
    return fitted
