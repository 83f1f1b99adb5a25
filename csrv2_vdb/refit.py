"""Refit: a new head fitted on a collection's current documents, written as a new version, then switched to.

    refit(store, "docs", embedder)   fit on (a seeded sample of) the documents of the version answering now,
                                     write every document into the next version through bulk indexing
                                     (resumable), report old and new head against dense on held-out documents,
                                     switch the name (`csrv2_vdb.versions`); the old version stays
    rollback(store, "docs")          switch back to the version before
    drop_old(store, "docs")          drop the versions that are not current (csrv2_vdb.versions)

The documents come from the collection itself: their texts from the payload (`text_field`, embedded through the
embedder: give a `CachedEmbedder` and the fit's rows are embedded once), else stored dense vectors as wide as the
head's input. A collection with dense vectors beside its codes keeps them (MRL vectors of the same embedding).
A refit killed at any point is finished by running it again: the version it was writing is recorded in the
pointer before anything is written to it, with its head, so the re-run re-uses that head and skips the batches
its checkpoint recorded; the name switches only once that version holds every document. Documents written into
(or deleted from) the old version while the refit read it are carried over before the switch (up to three passes).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from csrv2_vdb.bulk import bulk_index
from csrv2_vdb.embedders import Embedder
from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder, encode_hybrid
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.head_store import StoredHead, fit_collection_head, load_head, save_head
from csrv2_vdb.migrate import dense_reader, sample_points, unit
from csrv2_vdb.store import DensePoints, DenseReadable, Optimizable, SparseStore, every_collection
from csrv2_vdb.versions import Versions, read, write

_ID, _VECTOR = "_csrv2_refit_id", "_csrv2_refit_vector"


@dataclass
class RefitReport:
    """What a refit did: the versions before and after, rows, time, and both heads against dense on held-out rows."""

    name: str
    old: str
    new: str
    rows: int
    fit_rows: int
    held_rows: int
    resumed: bool
    seconds: dict[str, float] = field(default_factory=dict)  # embed+fit, write, total
    old_fidelity: dict[str, float] | None = None  # drift.code_fidelity on the held-out rows
    new_fidelity: dict[str, float] | None = None

    def lines(self) -> list[str]:
        out = [f"{self.name}: {self.new} now answers ({self.rows} documents; before: {self.old}, kept until "
               "refit --drop-old; refit --rollback switches back)"]  # fmt: skip
        how = "re-used the head of the interrupted refit" if self.resumed else f"fitted on {self.fit_rows} documents"
        out.append(f"head: {how}; " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        for label, fid in (("old head", self.old_fidelity), ("new head", self.new_fidelity)):
            if fid is not None:
                recall, error = fid["recall_at_10"], fid["reconstruction_error"]
                out.append(f"{label} on {self.held_rows} held-out documents: recall@10 against dense {recall:.3f}, "
                           f"reconstruction error {error:.3f}")  # fmt: skip
        return out


def refit(
    store: SparseStore,
    name: str,
    embedder: Embedder | None = None,
    *,
    text_field: str = "text",
    fit_sample: int = 50_000,
    holdout: int = 500,
    k: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    checkpoint: Path | None = None,
    fit_overrides: dict[str, object] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RefitReport:
    """Fit a head on `name`'s documents, write them into a new version with it, switch `name` to that version.

    `fit_sample` documents (seeded, chosen by id) fit the head (with `index`'s defaults: its fit's figures and
    latent labels are stored too), `holdout` others (at most a tenth of the collection) measure old and new
    head; `k` defaults to the old version's. `checkpoint` makes the write resumable across runs (see `bulk_index`); a
    re-run after a crash finishes the same version with the same head either way."""
    for what, value, least in (("fit_sample", fit_sample, 2), ("holdout", holdout, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidArgumentError(f"{what} must be an integer of at least {least}, got {value!r}")
    started = time.perf_counter()
    state = read(store, name) or _first_state(store, name)
    old = state.current
    old_info = store.collection_info(old)
    if not old_info.sparse_dim:
        raise InvalidArgumentError(f"{name!r} holds no sparse codes: refit replaces a head, and it has none")
    reader = dense_reader(store)
    old_head = load_head(store, old)
    texts = _has_texts(reader, old, text_field)
    width = old_head.head.input_dim if old_head is not None else old_info.dense_dim
    if not texts and (not old_info.dense_dim or old_info.dense_dim != width):
        raise InvalidArgumentError(
            f"{old!r} keeps no texts under {text_field!r} in its payloads and no dense vectors of the head's width "
            f"({width}): nothing to fit a head on (name the field with --text-field)"
        )
    if texts and embedder is None:
        raise InvalidArgumentError("refit reads the documents' texts: give the embedder that wrote them")
    read_vectors = not texts  # with texts, MRL vectors beside the codes are derived again from them
    total = int(store.count(old))
    holdout = min(holdout, total // 10)  # a small corpus keeps nine tenths of itself for the fit
    fit, held = sample_points(reader.read_dense(old, vectors=read_vectors), fit_sample, holdout, seed,
                              total if progress else None)  # fmt: skip

    def embeddings(points: DensePoints) -> np.ndarray:
        if not points.ids:
            return np.empty((0, 0), np.float32)
        if texts:
            assert embedder is not None
            return embedder.embed([str(p[text_field]) for p in points.payloads], "document")
        return unit(points.vectors)

    resumed = _pending(store, state, log)
    if resumed is not None:
        new, encoder = state.pending, resumed.encoder(embedder)
    else:
        new = state.claim_next_name()
        state.pending = new
        write(store, state)  # before the version exists: a re-run finds it, whatever happens next
        normalize = old_head.normalize if old_head else True
        encoder, report, labels = fit_collection_head(
            embedder, lambda: (embeddings(fit), [str(p[text_field]) for p in fit.payloads] if texts else None),
            total, name, k if k is not None else old_head.k if old_head else None, normalize, fit_overrides, log,
        )  # fmt: skip
        store.create_collection(new, sparse_dim=encoder.dim, dense_dim=old_info.dense_dim, encoder=encoder.identity)
        source = f"refit of {name} on {len(fit.ids)} documents"
        save_head(store, new, encoder, source, fitted=True, report={**report, "refit_of": old}, labels=labels)
    fitted = time.perf_counter() - started
    encode = _encode(encoder, old_info.dense_dim, texts)
    run = {"refit": name, "version": new, "encoder": encoder.identity}
    bulk_index(
        store, new, _records(reader, old, read_vectors, batch_size), encode, batch_size=batch_size,
        checkpoint=checkpoint, run=run, id_field=_ID, text_field=text_field,
        vector_field=None if texts else _VECTOR, total=total, progress=progress, log=log,
    )  # fmt: skip
    for _ in range(CATCH_UP_PASSES):  # what reached the old version while this refit read it
        carried = _catch_up(store, reader, old, new, encode, read_vectors, text_field, batch_size, log)
        if not carried:
            break
        log(f"carried {carried} documents written into or deleted from {old!r} during the refit into {new!r}")
    if isinstance(store, Optimizable):
        store.optimize(new)
    rows, now = int(store.count(new)), int(store.count(old))
    if rows != now:  # writes into the old version went on through every catch-up pass
        raise InvalidArgumentError(
            f"{new!r} holds {rows} documents, {old!r} {now} (still being written while the refit read it): not "
            "switched; run refit again when fewer writes go on (it finishes this version)"
        )
    written = time.perf_counter() - started - fitted
    x_held = embeddings(held)
    fidelity = (
        _fidelity(x_held, old_head.head, old_head.k) if old_head else None,
        _fidelity(x_held, encoder.head, encoder.k),
    )
    _switch(store, state, new, encoder.identity, rows)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    seconds = {"embed and fit": round(fitted, 1), "write": round(written, 1),
               "total": round(time.perf_counter() - started, 1)}  # fmt: skip
    return RefitReport(name, old, new, rows, len(fit.ids), len(held.ids), resumed is not None, seconds, *fidelity)


def rollback(store: SparseStore, name: str) -> str:
    """Switch `name` back to the version before the current one (kept until drop_old); returns it."""
    state = read(store, name)
    previous = state.previous() if state is not None else None
    if state is None or previous is None:
        raise InvalidArgumentError(f"{name!r} has no earlier version to roll back to (none kept, or never refitted)")
    state.current = previous
    write(store, state)
    return previous


def _first_state(store: SparseStore, name: str) -> Versions:
    """The versions of a name never refitted: itself, as version 1."""
    info = store.collection_info(name)  # a missing collection is named as such
    first = {"name": name, "head": info.encoder, "written_at": None, "rows": store.count(name)}
    return Versions(name, name, [first], heads=[str(info.encoder)])


def _has_texts(reader: DenseReadable, collection: str, text_field: str) -> bool:
    """Whether the collection's documents keep their texts under `text_field` (judged on its first page)."""
    first = next(iter(reader.read_dense(collection, batch_size=32, vectors=False)), None)
    if first is None:
        raise InvalidArgumentError(f"{collection!r} holds no documents to refit on")
    return all(isinstance(p.get(text_field), str) and p[text_field].strip() for p in first.payloads)


def _pending(store: SparseStore, state: Versions, log: Callable[[str], None]) -> StoredHead | None:
    """The head of the version an interrupted refit was writing (re-used by this run), or None: then a version
    left without its head (killed between create and save) is dropped and fitted again."""
    if not state.pending:
        return None
    if state.pending in every_collection(store):
        stored = load_head(store, state.pending)
        if stored is not None:
            log(f"finishing the interrupted refit into {state.pending!r} with its head, {stored.describe()}")
            return stored
        store.drop_collection(state.pending)
    return None


def _encode(encoder: CSRv2Encoder, dense_dim: int | None, texts: bool) -> Callable[[Any], Any]:
    """Texts (or stored full-width vectors) -> codes, with the MRL vectors beside them when the collection has some."""
    if texts:
        if dense_dim:
            beside = MRLEncoder(encoder.embedder, dense_dim)
            return lambda batch: encode_hybrid(encoder, beside, batch, "document")
        return encoder.encode_documents
    if dense_dim:
        return lambda vectors: (encoder.encode_embeddings(vectors), vectors)
    return encoder.encode_embeddings


def _records(reader: DenseReadable, collection: str, vectors: bool, batch_size: int) -> Iterator[dict[str, Any]]:
    for page in reader.read_dense(collection, batch_size=batch_size, vectors=vectors):
        for i, (doc_id, payload) in enumerate(zip(page.ids, page.payloads, strict=True)):
            yield {**payload, _ID: doc_id, **({_VECTOR: page.vectors[i]} if vectors else {})}


CATCH_UP_PASSES = 3


def _catch_up(
    store: SparseStore, reader: DenseReadable, old: str, new: str, encode: Callable[[Any], Any], vectors: bool,
    text_field: str, batch_size: int, log: Callable[[str], None],
) -> int:  # fmt: skip
    """One pass carrying into `new` what changed in `old` since it was read: documents whose payload differs or
    that `new` lacks are encoded and written again, documents `old` no longer holds are deleted. Returns how many
    documents it wrote or deleted. (A change of a stored vector alone, without its payload, is not seen.)"""
    written = {doc_id: _digest(payload) for page in reader.read_dense(new, batch_size=batch_size, vectors=False)
               for doc_id, payload in zip(page.ids, page.payloads, strict=True)}  # fmt: skip
    seen: set[str] = set()

    def changed() -> Iterator[dict[str, Any]]:
        for record in _records(reader, old, vectors, batch_size):
            doc_id = str(record[_ID])
            seen.add(doc_id)
            if written.get(doc_id) != _digest({k: v for k, v in record.items() if k not in (_ID, _VECTOR)}):
                yield record

    report = bulk_index(store, new, changed(), encode, batch_size=batch_size, id_field=_ID, text_field=text_field,
                        vector_field=_VECTOR if vectors else None, progress=False, log=log)  # fmt: skip
    gone = [doc_id for doc_id in written if doc_id not in seen]
    if gone:
        store.delete(new, gone)
    return report.rows_written + len(gone)


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _fidelity(x: np.ndarray, head: SparseHead, k: int) -> dict[str, float] | None:
    """Recall@10 against dense and reconstruction error of `head`'s codes on the held-out rows."""
    if len(x) < 2:
        return None
    from csrv2_vdb.drift import code_fidelity

    return code_fidelity(head, k, x)


def _switch(store: SparseStore, state: Versions, new: str, identity: str, rows: int) -> None:
    """Point `state.name` at `new` (one upsert) and list it among the versions kept."""
    state.versions.append(
        {"name": new, "head": identity, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    )
    state.current, state.pending = new, ""
    state.heads = [*dict.fromkeys([*state.heads, identity])]
    write(store, state)
