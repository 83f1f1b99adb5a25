"""A collection's head, kept in the engine beside the collection, so that whoever opens it codes queries alike.

The head of collection `docs` lives in the companion collection `docs__csrv2_head` of the same store, on every
engine (qdrant-edge, Qdrant, Milvus, Elasticsearch): written through the `SparseStore` protocol like any data,
so it needs no engine-specific metadata and travels with backups and replicas of the store. Its points:

    "chunk-00000", ...  the head's files (config.json + model.safetensors), base64, CHUNK_CHARS per point
    "labels-00000", ... the latents' labels (csrv2_vdb.labels, JSON), when the head has them
    "manifest"          written last: the encoder identity, k, normalisation, where the head came from,
                        when it was fitted, the fit's report, the chunk counts and the SHA-256 of each part

A head missing chunks (partial) or whose files do not hash to the manifest's digest (tampered) is refused by
name, never replaced by another head. `SparseStore.drop_collection` drops the companion with the collection,
and `list_collections` does not show it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import EncoderMismatchError, HeadLoadError
from csrv2_vdb.head import CONFIG_NAME, WEIGHTS_NAME, SparseHead
from csrv2_vdb.labels import LatentLabels
from csrv2_vdb.store import HEAD_SUFFIX, Gettable, SparseStore, every_collection

CHUNK_CHARS = 48_000  # base64 characters per point: under Milvus's 64 KB limit on a JSON field
MANIFEST = "manifest"
FORMAT = 1


def companion(collection: str) -> str:
    """The collection holding `collection`'s head."""
    return collection + HEAD_SUFFIX


@dataclass
class StoredHead:
    """A collection's head and what was recorded with it."""

    head: SparseHead
    k: int
    normalize: bool
    identity: str  # the encoder identity the collection records (CollectionInfo.encoder)
    source: str  # a head directory, a shipped head's name, or "fitted on N documents of <collection>"
    fitted_at: str | None = None  # UTC, for heads fitted by `index`
    report: dict[str, Any] = field(default_factory=dict)  # the fit's report (rows, seconds, width, ...)
    labels: LatentLabels | None = None  # names of the latents (over the fit's texts, or `csrv2-vdb label`)

    def encoder(
        self, embedder: Any = None, query_k: int | None = None, *, k: int | None = None, normalize: bool | None = None
    ) -> CSRv2Encoder:
        """The encoder that wrote the collection (its k and normalisation unless given), on `embedder`."""
        return CSRv2Encoder(
            embedder, self.head, self.k if k is None else k, self.normalize if normalize is None else normalize, query_k
        )

    def describe(self) -> str:
        """One line naming the head for people: where it came from, k, normalisation, when fitted."""
        when = f", fitted {self.fitted_at}" if self.fitted_at else ""
        return f"{self.source} (k={self.k}, normalize={self.normalize}{when}; {self.identity})"


def _files(head: SparseHead) -> bytes:
    """The head's config.json and model.safetensors as one blob (length-prefixed)."""
    with tempfile.TemporaryDirectory() as tmp:
        head.save(tmp)
        config, weights = (Path(tmp) / CONFIG_NAME).read_bytes(), (Path(tmp) / WEIGHTS_NAME).read_bytes()
    return len(config).to_bytes(8, "little") + config + weights


def _head_of(blob: bytes, where: str) -> SparseHead:
    """A head from `_files`' blob, through `SparseHead.load`'s checks."""
    n = int.from_bytes(blob[:8], "little")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / CONFIG_NAME).write_bytes(blob[8 : 8 + n])
        (Path(tmp) / WEIGHTS_NAME).write_bytes(blob[8 + n :])
        try:
            return SparseHead.load(tmp)
        except HeadLoadError as exc:
            raise HeadLoadError(f"the head stored in {where} is damaged: {exc}") from None


def save_head(
    store: SparseStore,
    collection: str,
    encoder: CSRv2Encoder,
    source: str,
    *,
    fitted: bool = False,
    report: dict[str, Any] | None = None,
    labels: LatentLabels | None = None,
) -> StoredHead:
    """Store `encoder`'s head (and k, normalisation, source, report, labels) with `collection`, replacing any
    before."""
    stored = StoredHead(
        encoder.head, encoder.k, encoder.normalize, encoder.identity, source,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if fitted else None, dict(report or {}), labels,
    )  # fmt: skip
    name = companion(collection)
    if name in every_collection(store):
        store.drop_collection(name)
    store.create_collection(name, dense_dim=2)
    count, digest = _write_chunks(store, name, "chunk", base64.b64encode(_files(encoder.head)).decode("ascii"))
    manifest = {
        "format": FORMAT, "identity": stored.identity, "k": stored.k, "normalize": stored.normalize,
        "source": source, "fitted_at": stored.fitted_at, "report": json.dumps(stored.report), "chunks": count,
        "sha256": digest,
    }  # fmt: skip
    if labels is not None:
        manifest["labels_chunks"], manifest["labels_sha256"] = _write_chunks(store, name, "labels", labels.to_json())
    store.upsert(name, [MANIFEST], dense=_unit(1), payloads=[manifest])  # last: a head without it is not there
    return stored


def save_labels(store: SparseStore, collection: str, labels: LatentLabels) -> None:
    """Store (or replace) the labels of the head stored with `collection`; the manifest is rewritten last."""
    name = companion(collection)
    manifest = _manifest(store, collection) if name in every_collection(store) else None
    if manifest is None:
        raise HeadLoadError(f"collection {collection!r} has no stored head to label")
    if int(manifest.get("labels_chunks") or 0):
        stale = [f"labels-{i:05d}" for i in range(int(manifest["labels_chunks"]))]
        store.delete(name, stale)
    manifest["labels_chunks"], manifest["labels_sha256"] = _write_chunks(store, name, "labels", labels.to_json())
    store.upsert(name, [MANIFEST], dense=_unit(1), payloads=[manifest])


def _write_chunks(store: SparseStore, name: str, prefix: str, text: str) -> tuple[int, str]:
    """`text` as points `<prefix>-00000`, ... of CHUNK_CHARS characters: (chunk count, SHA-256 of the text)."""
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    ids = [f"{prefix}-{i:05d}" for i in range(len(chunks))]
    for start in range(0, len(ids), 16):
        part = ids[start : start + 16]
        store.upsert(
            name, part, dense=_unit(len(part)), payloads=[{"data": chunks[start + j]} for j in range(len(part))]
        )
    return len(chunks), hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_chunks(store: Any, name: str, prefix: str, count: int, digest: str, where: str, what: str) -> str:
    """The text `_write_chunks` stored, checked whole against its SHA-256."""
    ids = [f"{prefix}-{i:05d}" for i in range(count)]
    chunks = {
        h.id: h.payload.get("data") for start in range(0, count, 64) for h in store.get(name, ids[start : start + 64])
    }
    missing = [i for i in ids if not isinstance(chunks.get(i), str)]
    if missing:
        raise HeadLoadError(f"the {what} stored in {where} is partial: {len(missing)} of {count} chunks are missing "
                            f"(first {missing[0]}); index again, or name the head with --head")  # fmt: skip
    text = "".join(str(chunks[i]) for i in ids)
    if hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest() != digest:
        raise HeadLoadError(f"the {what} stored in {where} does not match its recorded SHA-256: it was changed "
                            "after it was written; index again, or name the head with --head")  # fmt: skip
    return text


def _manifest(store: SparseStore, collection: str) -> dict[str, Any] | None:
    """The stored head's manifest (None: no manifest point, a partial head)."""
    name = companion(collection)
    where = f"{name!r} (the head of {collection!r})"
    if not isinstance(store, Gettable):
        raise HeadLoadError(f"{type(store).__name__} cannot read the head stored in {where}")
    found = store.get(name, [MANIFEST])
    return dict(found[0].payload) if found else None


def load_head(store: SparseStore, collection: str) -> StoredHead | None:
    """The head stored with `collection`, or None when it has none (written before heads were stored, or by
    other code). A partial or tampered head raises `HeadLoadError`."""
    name = companion(collection)
    if name not in every_collection(store):
        return None
    where = f"{name!r} (the head of {collection!r})"
    manifest = _manifest(store, collection)
    if manifest is None:
        raise HeadLoadError(f"the head stored in {where} is partial: its manifest is missing (an interrupted write?); "
                            "index again, or name the head with --head")  # fmt: skip
    try:
        count, digest = int(manifest["chunks"]), str(manifest["sha256"])
        labelled = int(manifest.get("labels_chunks") or 0), str(manifest.get("labels_sha256") or "")
    except (KeyError, TypeError, ValueError) as exc:
        raise HeadLoadError(f"the head stored in {where} has a damaged manifest ({exc!r})") from None
    text = _read_chunks(store, name, "chunk", count, digest, where, "head")
    head = _head_of(base64.b64decode(text), where)
    labels = None
    if labelled[0]:
        labels = LatentLabels.from_json(_read_chunks(store, name, "labels", *labelled, where, "latent labels"))
    stored = StoredHead(
        head, int(manifest["k"]), bool(manifest["normalize"]), str(manifest["identity"]), str(manifest["source"]),
        manifest.get("fitted_at"), json.loads(manifest.get("report") or "{}"), labels,
    )  # fmt: skip
    if stored.encoder().identity != stored.identity:
        raise HeadLoadError(f"the head stored in {where} does not give its recorded identity {stored.identity}")
    return stored


def check_named_head(stored: StoredHead, encoder: CSRv2Encoder, named: str) -> None:
    """Refuse a named head that differs from the collection's, naming both heads (not only their hashes)."""
    if encoder.identity != stored.identity:
        raise EncoderMismatchError(
            f"the collection was written with the head {stored.describe()}; the head named here is {named} "
            f"(k={encoder.k}, normalize={encoder.normalize}; {encoder.identity}). Codes of different heads are not "
            "comparable: leave --head out to use the collection's own head, or index into a new collection"
        )


def _unit(n: int) -> np.ndarray:
    return np.tile(np.asarray([[1.0, 0.0]], dtype=np.float32), (n, 1))


# Below this many documents `index` uses the general head instead of fitting one. Measured with `csrv2-vdb bench
# fit-size` on GraphRAG-Bench medical subsets (tune questions): fitted vs general nDCG@10 at k = 2 / 8 was
# 0.359 / 0.728 vs 0.587 / 0.718 at 20 documents, 0.545 / 0.724 vs 0.243 / 0.513 at 50, 0.847 / 0.846 vs
# 0.250 / 0.467 at 100, 0.481 / 0.518 vs 0.145 / 0.209 at 800 (docs/quality/fit-size.md).
MIN_FIT_ROWS = 50


def sample_rows(total: int, size: int, seed: int = 0) -> list[int] | None:
    """The rows (in order) of the seeded sample of at most `size` of `total` that a head is fitted on; None: all."""
    if total <= size:
        return None
    return sorted(np.random.default_rng(seed).permutation(total)[:size].tolist())


def unstored_head(recorded: str | None) -> tuple[str, SparseHead]:
    """The name and head for a collection that stores none (indexed before heads were stored with collections):
    the shipped head whose content hash its recorded encoder names (the general head of that time, now
    minilm-general-csrv2-v1, or another shipped head), else the general head."""
    from csrv2_vdb.encoder import identity_head_hash
    from csrv2_vdb.head import DEFAULT_HEAD, pretrained_head

    name = _shipped_by_hash().get(identity_head_hash(recorded) or "", DEFAULT_HEAD)
    return name, pretrained_head(name)


@functools.cache
def _shipped_by_hash() -> dict[str, str]:
    """The shipped heads' names by the content hash an encoder identity records (read once per process)."""
    from csrv2_vdb.head import pretrained_head, pretrained_heads

    return {pretrained_head(name).fingerprint()[:16]: name for name in pretrained_heads()}


def head_for_index(
    store: SparseStore,
    collection: str,
    embedder: Any,
    fit_rows: Any,
    rows: int,
    *,
    head: str | Path | None = None,
    k: int | None = None,
    normalize: bool | None = None,
    dense_dim: int | None = None,
    fit_overrides: dict[str, object] | None = None,
    log: Any = print,
) -> CSRv2Encoder:
    """The encoder `index` writes `collection` with; the collection is created (with `dense_dim` dense vectors
    beside the codes when given) and the head stored with it.

    A named `head` is used (and refused, naming both heads, when the collection already holds another); else
    the collection's own stored head; else, for a new collection of at least MIN_FIT_ROWS documents, a
    label-free head fitted on them (`fit_rows()` gives their embeddings, all of them or a seeded sample, and
    their texts or None), with `train --input`'s measured defaults, its latents labelled over those texts;
    below that, the general head (said in the log).
    """
    from csrv2_vdb.head import DEFAULT_HEAD, resolve_head

    exists = collection in every_collection(store)  # a version written by `refit` is not listed, but exists
    stored = load_head(store, collection) if exists else None
    if head is not None:
        encoder = CSRv2Encoder(embedder, resolve_head(head), k, True if normalize is None else normalize)
        if stored is not None:
            check_named_head(stored, encoder, str(head))
            return encoder
        return _stored(store, collection, encoder, dense_dim, str(head), log)
    if stored is not None:
        log(f"{collection}: using the head stored with the collection, {stored.describe()}")
        return stored.encoder(embedder, k=k, normalize=normalize)
    norm = True if normalize is None else normalize
    if exists:  # written before heads were stored with collections
        recorded = store.collection_info(collection).encoder
        name, shipped = unstored_head(recorded)
        old = CSRv2Encoder(embedder, shipped, k, norm)
        if recorded not in (None, old.identity):
            raise EncoderMismatchError(
                f"collection {collection!r} was written by encoder {recorded} and holds no stored head (it was "
                "indexed before heads were stored with collections); name its head with --head"
            )
        return _stored(store, collection, old, dense_dim, name, log)
    if rows < MIN_FIT_ROWS:
        log(f"{rows} documents: fewer than {MIN_FIT_ROWS}, too few to fit a head on; using the general head "
            f"{DEFAULT_HEAD} (name one with --head for better quality)")  # fmt: skip
        general = CSRv2Encoder(embedder, resolve_head(None), k, norm)
        return _stored(store, collection, general, dense_dim, DEFAULT_HEAD, log)
    encoder, report, labels = fit_collection_head(embedder, fit_rows, rows, collection, k, norm, fit_overrides, log)
    source = f"fitted on {report['rows']} documents of {collection}"
    return _stored(store, collection, encoder, dense_dim, source, log, report, labels)


def fit_collection_head(
    embedder: Any,
    fit_rows: Any,
    rows: int,
    collection: str,
    k: int | None,
    normalize: bool,
    fit_overrides: dict[str, object] | None,
    log: Any,
) -> tuple[CSRv2Encoder, dict[str, Any], LatentLabels | None]:
    """A label-free head fitted on `fit_rows()` (embeddings, texts or None) with `train --input`'s defaults, the
    fit's report (rows, time, its figures that `check --input` compares new documents to) and its latents'
    labels over those texts: what `index` and `refit` store with a collection."""
    from csrv2_vdb.drift import code_fidelity
    from csrv2_vdb.training.fit import fit_embeddings

    start = time.perf_counter()
    x, texts = fit_rows()
    embedded = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {**({"k": k} if k is not None else {}), **(fit_overrides or {})}
        log(f"fitting a label-free head on {len(x)} of {rows} documents")
        fitted = fit_embeddings(x, Path(tmp), overrides=overrides, described=f"{len(x)} documents of {collection}").head
    seconds = time.perf_counter() - start
    report = {"rows": len(x), "corpus": rows, "hidden_dim": fitted.hidden_dim, "k": fitted.k,
              "embed_seconds": round(embedded, 1), "fit_seconds": round(seconds - embedded, 1)}  # fmt: skip
    log(f"fitted in {seconds - embedded:.0f} s (+ {embedded:.0f} s embedding, shared with the write): h = "
        f"{fitted.hidden_dim}, k = {fitted.k}")  # fmt: skip
    encoder = CSRv2Encoder(embedder, fitted, k, normalize)
    report["fit_fidelity"] = code_fidelity(fitted, encoder.k, x)  # what `check --input` compares new documents to
    labels = None
    if texts is not None:
        from csrv2_vdb.labels import label_latents

        started = time.perf_counter()
        labels = label_latents(texts, encoder.encode_embeddings(x))
        report["label_seconds"] = round(time.perf_counter() - started, 1)
        log(f"labelled {len(labels.labels)} latents from their texts in {report['label_seconds']:.0f} s "
            "(csrv2-vdb heads show --store ... --collection ...)")  # fmt: skip
    return encoder, report, labels


def _stored(
    store: SparseStore,
    collection: str,
    encoder: CSRv2Encoder,
    dense_dim: int | None,
    source: str,
    log: Any,
    report: dict[str, Any] | None = None,
    labels: LatentLabels | None = None,
) -> CSRv2Encoder:
    """Create the collection for `encoder`'s codes and store its head with it."""
    store.create_collection(
        collection, sparse_dim=encoder.dim, dense_dim=dense_dim, encoder=encoder.identity, exist_ok=True
    )
    save_head(store, collection, encoder, source, fitted=report is not None, report=report, labels=labels)
    log(f"{collection}: head stored with the collection ({companion(collection)})")
    return encoder


def encoder_for_collection(
    store: SparseStore,
    collection: str,
    embedder: Any,
    *,
    head: str | Path | None = None,
    k: int | None = None,
    normalize: bool | None = None,
    query_k: int | None = None,
) -> CSRv2Encoder:
    """The encoder to search `collection` with: its stored head (at its k and normalisation unless given), or a
    named head (refused when the collection stored another). A collection without a stored head is searched
    with the named head or the general head, checked against the encoder the collection records."""
    from csrv2_vdb.encoder import writes_normalized
    from csrv2_vdb.head import resolve_head
    from csrv2_vdb.store import check_encoder
    from csrv2_vdb.versions import current

    collection = current(store, collection)  # after a refit: the version answering now
    info = store.collection_info(collection)
    stored = load_head(store, collection)
    if stored is not None and head is None:
        encoder = stored.encoder(embedder, query_k, k=k, normalize=normalize)
    else:
        wanted = writes_normalized(info.encoder) if normalize is None and info.encoder else normalize
        model = resolve_head(head) if head is not None or stored is not None else unstored_head(info.encoder)[1]
        encoder = CSRv2Encoder(embedder, model, k, True if wanted is None else wanted, query_k)
        if stored is not None:
            check_named_head(stored, encoder, str(head))
    check_encoder(info, encoder.identity)
    return encoder


def default_encoder(store: SparseStore, collection: str, embedder: Any = None) -> CSRv2Encoder:
    """What a retriever over `collection` codes queries with when no encoder is named: the collection's stored
    head, else (a collection without one, or none yet) the general head; texts through the embedding cache."""
    from csrv2_vdb.errors import CollectionNotFoundError
    from csrv2_vdb.head import resolve_head

    if embedder is None:
        from csrv2_vdb.backbone import Backbone
        from csrv2_vdb.embed_cache import CachedEmbedder

        embedder = CachedEmbedder(Backbone())
    try:
        return encoder_for_collection(store, collection, embedder)
    except CollectionNotFoundError:
        return CSRv2Encoder(embedder, resolve_head(None))


def labels_for(
    store: SparseStore, collection: str, head: str | Path | None = None, identity: str | None = None
) -> LatentLabels | None:
    """The latent labels that go with the codes of `collection`: a named head directory's labels.json, else the
    stored head's (when `identity`, the encoder's, is that head's); None when there are none."""
    if head is not None:
        return LatentLabels.load(head) if Path(head).is_dir() else None
    from csrv2_vdb.versions import current

    stored = load_head(store, current(store, collection))
    return stored.labels if stored is not None and identity in (None, stored.identity) else None


# A version's head never changes once written: the heads followed after a switch, by the identity of the version.
_followed: dict[str, StoredHead] = {}
_served_heads: set[tuple[int, str, str]] = set()  # (store, name, head) known to have served the name


def follow(
    store: SparseStore, collection: str, encoder: CSRv2Encoder, *, fresh: bool = False
) -> tuple[str, CSRv2Encoder]:
    """The collection that answers for `collection` now (its current version, `csrv2_vdb.versions`) and the
    encoder to query it with: `encoder`, or, when a refit switched the name to a version of another head since
    `encoder` was chosen for it, that version's stored head on the same embedder. A head that belongs to no
    version of the name is refused (`check_encoder`), as before."""
    from csrv2_vdb.encoder import default_query_k
    from csrv2_vdb.errors import CollectionNotFoundError
    from csrv2_vdb.store import check_encoder
    from csrv2_vdb.versions import current, read

    version = current(store, collection, fresh=fresh)
    try:
        info = store.collection_info(version)
    except CollectionNotFoundError:
        if fresh or version == collection:
            raise
        return follow(store, collection, encoder, fresh=True)  # dropped since the pointer was read
    if info.encoder is None or info.encoder == encoder.identity:
        return version, encoder
    served_before = (id(store), collection, encoder.identity)
    if served_before not in _served_heads:  # checked once: a name's list of heads only grows
        state = read(store, collection)
        if state is None or encoder.identity not in state.heads:
            check_encoder(info, encoder.identity)  # raises: a head of no version of this name
        _served_heads.add(served_before)
    if info.encoder not in _followed:
        stored = load_head(store, version)
        if stored is None or stored.identity != info.encoder:
            raise HeadLoadError(f"version {version!r} of {collection!r} holds no stored head of its codes")
        _followed[info.encoder] = stored
    default = encoder.query_k == default_query_k(encoder.k, encoder.head.hidden_dim)
    return version, _followed[info.encoder].encoder(encoder.embedder_if_any, None if default else encoder.query_k)
