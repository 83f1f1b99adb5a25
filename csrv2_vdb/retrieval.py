"""Text in, hits out: the query path shared by the framework integrations.

`search_text` encodes one query for the chosen mode (sparse CSRv2 code, MRL dense vector, or both for
hybrid and rerank) and asks the store; `index_texts` encodes and upserts documents, creating the collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar

from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder, encode_hybrid
from csrv2_vdb.errors import CollectionNotFoundError, InvalidArgumentError
from csrv2_vdb.explain import explain_hits
from csrv2_vdb.filters import Filter
from csrv2_vdb.head_store import follow
from csrv2_vdb.labels import LatentLabels
from csrv2_vdb.store import CodesReadable, Hit, SparseStore
from csrv2_vdb.versions import current

# sparse: the CSRv2 code; dense: the MRL vector; hybrid: both lists fused by the engine; rerank: the sparse
# candidates rescored by the stored dense vectors (two-stage retrieval: a sparse index, dense precision).
SearchMode = Literal["sparse", "dense", "hybrid", "rerank"]
SEARCH_MODES: tuple[str, ...] = ("sparse", "dense", "hybrid", "rerank")


def search_text(
    store: SparseStore,
    collection: str,
    query: str,
    *,
    encoder: CSRv2Encoder | None,
    dense_encoder: MRLEncoder | None = None,
    mode: SearchMode = "sparse",
    limit: int = 4,
    filter: Filter | None = None,
    active_dims: int | None = None,
    candidates: int | None = None,
    explain: bool = False,
    labels: LatentLabels | None = None,
) -> list[Hit]:
    """Top `limit` hits for one text query; `candidates` is rerank's sparse depth (default: the store's).
    `explain` (sparse mode): each hit's payload gains "explain", the latents it shares with the query and their
    contributions to the score (`csrv2_vdb.explain`), named by `labels`."""
    check_mode(mode, dense_encoder)
    if explain and mode != "sparse":
        raise InvalidArgumentError(f"explain decomposes sparse scores; search mode {mode!r} scores otherwise")
    if mode != "dense" and encoder is None:
        raise InvalidArgumentError(f"search mode {mode!r} needs a CSRv2Encoder (encoder=...)")

    def one(name: str, coder: CSRv2Encoder | None) -> list[Hit]:
        return _search_one(store, name, query, coder, dense_encoder, mode, limit, filter, active_dims, candidates,
                           explain, labels)  # fmt: skip

    return on_current_version(store, collection, encoder if mode != "dense" else None, one)


T = TypeVar("T")


def on_current_version(
    store: SparseStore,
    collection: str,
    encoder: CSRv2Encoder | None,
    search: Callable[[str, CSRv2Encoder | None], T],
) -> T:
    """`search(version, encoder)` on the version answering for `collection` now, with its head when `encoder` is
    given (a refit may have switched both); once more on the version answering then when that one was dropped
    meanwhile (`refit --drop-old` in another process), so that no search fails across a switch."""

    def resolve(fresh: bool) -> tuple[str, CSRv2Encoder | None]:
        if encoder is None:
            return current(store, collection, fresh=fresh), None
        return follow(store, collection, encoder, fresh=fresh)

    version, coder = resolve(False)
    try:
        return search(version, coder)
    except CollectionNotFoundError:
        again, coder = resolve(True)
        if again == version:
            raise
        return search(again, coder)


def _search_one(
    store: SparseStore,
    collection: str,
    query: str,
    encoder: CSRv2Encoder | None,
    dense_encoder: MRLEncoder | None,
    mode: SearchMode,
    limit: int,
    filter: Filter | None,
    active_dims: int | None,
    candidates: int | None,
    explain: bool,
    labels: LatentLabels | None,
) -> list[Hit]:
    """`search_text` on one resolved version with its encoder."""
    if mode in ("hybrid", "rerank"):
        assert encoder is not None and dense_encoder is not None
        sparse, dense = encode_hybrid(encoder, dense_encoder, [query], "query", active_dims)
        if mode == "rerank":
            return store.rerank_search(collection, sparse, dense, limit=limit, candidates=candidates, filter=filter)[0]
        return store.hybrid_search(collection, sparse, dense, limit=limit, filter=filter)[0]
    if mode == "dense":
        assert dense_encoder is not None
        return store.search(collection, dense_encoder.encode_queries([query]), limit=limit, filter=filter)[0]
    assert encoder is not None
    code = encoder.encode_queries([query], query_k=active_dims)
    hits = store.search(collection, code, limit=limit, filter=filter)[0]
    if not explain:
        return hits
    if not isinstance(store, CodesReadable):
        raise InvalidArgumentError(f"{type(store).__name__} cannot read stored codes back, which explain needs")
    why = explain_hits(store, collection, code, [hits], labels)[0]
    return [replace(h, payload={**h.payload, "explain": w}) for h, w in zip(hits, why, strict=True)]


class LabelsOnce:
    """The latent labels of a collection's stored head, read from the engine on first use (explained hits)."""

    def __init__(self) -> None:
        self._read = False
        self._labels: LatentLabels | None = None

    def __call__(self, store: SparseStore, collection: str, encoder: CSRv2Encoder | None) -> LatentLabels | None:
        if not self._read and encoder is not None:
            from csrv2_vdb.head_store import labels_for

            self._labels, self._read = labels_for(store, collection, identity=encoder.identity), True
        return self._labels


def check_mode(mode: object, dense_encoder: MRLEncoder | None) -> None:
    """A known search mode, with the dense encoder that dense, hybrid and rerank need."""
    if mode not in SEARCH_MODES:
        raise InvalidArgumentError(f"search_mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    if mode != "sparse" and dense_encoder is None:
        raise InvalidArgumentError(f"search mode {mode!r} needs a dense_encoder (MRLEncoder)")


def index_texts(
    store: SparseStore,
    collection: str,
    texts: Sequence[str],
    *,
    encoder: CSRv2Encoder,
    dense_encoder: MRLEncoder | None = None,
    ids: Sequence[str] | None = None,
    metadatas: Sequence[Mapping[str, Any]] | None = None,
    text_key: str = "text",
    batch_size: int = 256,
) -> list[str]:
    """Encode and upsert texts (payload = metadata + the text under `text_key`); returns the ids used. A
    collection this call creates stores `encoder`'s head with it, so that any later reader finds it."""
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(texts))]
    metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
    new = collection not in store.list_collections()
    if not new:  # into the version answering now, coded by its head (after a refit: the new one)
        collection, encoder = follow(store, collection, encoder)
    store.create_collection(
        collection,
        sparse_dim=encoder.dim,
        dense_dim=dense_encoder.dims if dense_encoder else None,
        exist_ok=True,
        encoder=encoder.identity,
    )
    if new:
        from csrv2_vdb.head_store import save_head

        save_head(store, collection, encoder, f"the encoder given to the first write ({encoder.identity})")
    for start in range(0, len(texts), batch_size):
        part = slice(start, start + batch_size)
        batch = list(texts[part])
        vectors = (
            encode_hybrid(encoder, dense_encoder, batch, "document")
            if dense_encoder
            else encoder.encode_documents(batch)
        )
        payloads = [{**m, text_key: t} for m, t in zip(metadatas[part], batch, strict=True)]
        store.upsert(collection, ids[part], vectors, payloads=payloads)
    return ids


def search_queries(
    store: SparseStore,
    collection: str,
    texts: Sequence[str],
    *,
    encoder: CSRv2Encoder,
    limit: int = 10,
    filter: Filter | None = None,
    batch_size: int = 64,
) -> Iterator[list[Hit]]:
    """Each query's top `limit` hits, in input order: queries coded in batches (at the encoder's query_k), one
    engine call per batch, each on the version answering then with its head. The model loads once for the whole
    file (`csrv2-vdb search --queries`)."""
    for start in range(0, len(texts), batch_size):
        search = _batch_search(store, texts[start : start + batch_size], limit, filter)
        yield from on_current_version(store, collection, encoder, search)


def _batch_search(
    store: SparseStore, texts: Sequence[str], limit: int, filter: Filter | None
) -> Callable[[str, CSRv2Encoder | None], list[list[Hit]]]:
    def search(name: str, coder: CSRv2Encoder | None) -> list[list[Hit]]:
        assert coder is not None
        return store.search(name, coder.encode_queries(list(texts)), limit=limit, filter=filter)

    return search
