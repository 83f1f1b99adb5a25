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
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.head import SparseHead, resolve_head
from csrv2_vdb.store import DensePoints, DenseReadable, SparseStore

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
    fidelity: Fidelity | None = None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, default=str))


def _key(doc_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "little")


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (heads are fitted on unit vectors; zero rows are refused by the head)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def sample_points(
    pages: Iterator[DensePoints], size: int, holdout: int, seed: int = 0, total: int | None = None
) -> tuple[DensePoints, DensePoints]:
    """(fit sample, held-out points): the `holdout` ids with the smallest seeded hash, then the next `size`.

    Chosen by id, not by position, so every pass and every re-run picks the same points."""
    keep = size + holdout
    if keep == 0:
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
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> MigrationReport:
    """Write sparse codes of `collection`'s dense vectors into `target` (default "<collection>_csrv2") with the
    same ids and payloads.

    Without `head`, a label-free head is fitted on a seeded sample of `sample` points and saved to `head_out`
    (re-used from there by a re-run, so a resumed migration keeps its head). `checkpoint` makes the write
    resumable (see `bulk_index`); `run` adds what else identifies the run (the store's location). Returns
    counts, timings and the fidelity report (skipped when `holdout` is 0).
    """
    reader = dense_reader(source)
    target = target_name(collection, target)
    target_store = target_store or source
    if target_store is source and target == collection:
        raise InvalidArgumentError("the target must be another collection than the source")
    total, dim = reader.dense_source(collection, vector)
    log(f"{collection}: {total} points with {dim}-dim vectors")
    fit_rows, held = sample_points(
        reader.read_dense(collection, vector, batch_size), sample if head is None else 0, holdout, seed,
        total if progress else None,
    )  # fmt: skip
    sparse_head = _head(head, head_out, fit_rows, fit_overrides, log)
    if sparse_head.input_dim != dim:
        raise InvalidArgumentError(f"the head takes {sparse_head.input_dim}-dim vectors; {collection!r} holds {dim}")
    encoder = CSRv2Encoder(None, sparse_head, k, normalize)
    target_store.create_collection(target, sparse_dim=encoder.dim, encoder=encoder.identity, exist_ok=True)

    def records() -> Iterator[dict[str, Any]]:
        for page in reader.read_dense(collection, vector, batch_size):
            for doc_id, row, payload in zip(page.ids, unit(page.vectors), page.payloads, strict=True):
                yield {**payload, _ID: doc_id, _VECTOR: row}

    identity = {**(run or {}), "source": collection, "vector": vector, "encoder": encoder.identity, "k": encoder.k}
    written: BulkReport = bulk_index(
        target_store, target, records(), encoder.encode_embeddings, batch_size=batch_size, checkpoint=checkpoint,
        run=identity, id_field=_ID, vector_field=_VECTOR, total=total, progress=progress, log=log,
    )  # fmt: skip
    report = MigrationReport(
        collection, target, target_store.count(target), encoder.identity, encoder.k,
        {"rows_written": written.rows_written, "batches_resumed": written.batches_skipped, "retries": written.retries,
         "seconds": round(written.seconds, 2), "rows_per_second": round(written.rows_per_second, 1)},
    )  # fmt: skip
    if held.ids:
        report.fidelity = fidelity_report(reader, collection, target_store, target, encoder, held, vector=vector)
    return report


def _head(
    head: SparseHead | str | Path | None,
    head_out: Path | None,
    rows: DensePoints,
    overrides: dict[str, object] | None,
    log: Callable[[str], None],
) -> SparseHead:
    """The given head; else the one a previous run saved in `head_out`; else one fitted on `rows` now."""
    if isinstance(head, SparseHead):
        return head
    if head is not None:
        return resolve_head(head)
    if head_out is None:
        raise InvalidArgumentError("give a head, or head_out (a directory) for the head fitted on the collection")
    if (head_out / "model.safetensors").exists():
        log(f"re-using the head fitted by an earlier run: {head_out}")
        return SparseHead.load(head_out)
    if len(rows.ids) < 2:
        raise InvalidArgumentError(f"{len(rows.ids)} points to fit a head on; the collection is too small")
    from csrv2_vdb.training.fit import fit_embeddings

    log(f"fitting a label-free head on {len(rows.ids)} sampled points -> {head_out}")
    described = f"{len(rows.ids)} vectors sampled from a collection, label-free"
    return fit_embeddings(unit(rows.vectors), head_out, overrides=overrides, described=described).head
