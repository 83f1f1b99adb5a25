"""Versions of a collection behind one stable name: `refit` writes a new version, then switches the name to it.

Clients query a name (`docs`); the collection that answers is its current version. Version 1 is the collection
first indexed under the name (`docs` itself); a refit writes `docs__csrv2_v2`, `docs__csrv2_v3`, ... each with its
own stored head (`csrv2_vdb.head_store`). Which one is current is one point of the companion collection
`docs__csrv2_versions`, in the engine beside the data, so every process that opens the store sees it:

    "pointer"  {"current": "docs__csrv2_v2", "versions": "[...]" (JSON: name, head identity, written_at, rows),
                "pending": a version being written by an unfinished refit, or "",
                "heads": "[...]" (JSON: every head identity the name has served, dropped versions' too),
                "last": the highest version number given}

A switch is one upsert of that point, atomic on every engine here. This is the library's own pointer, not the
engines' aliases: an alias cannot take the name of the collection it would replace (version 1 is `docs`), and
qdrant-edge has none. The entry points (CLI, `csrv2_vdb.retrieval`, the framework wrappers) resolve names with
`current`; a reader resolves once per request and searches that version with that version's head (`follow`),
so a search never mixes two heads' codes, and the old version stays searchable until `drop_old`.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from csrv2_vdb.errors import CollectionNotFoundError, InvalidArgumentError
from csrv2_vdb.store import COMPANION_MARK, Gettable, SparseStore, every_collection

VERSIONS_SUFFIX = COMPANION_MARK + "versions"
POINTER = "pointer"
# How long a reader trusts the pointer it read (seconds): one engine read per name and second at most. A reader
# that is this late still searches the old version with the old head, which stays until `drop_old`.
POINTER_TTL = 1.0


def pointer_collection(name: str) -> str:
    """The companion holding `name`'s version pointer."""
    return name + VERSIONS_SUFFIX


def version_name(name: str, number: int) -> str:
    """The collection of version `number` of `name` (version 1 is `name` itself)."""
    return name if number == 1 else f"{name}{COMPANION_MARK}v{number}"


@dataclass
class Versions:
    """What `name` serves: its current version, every version kept, and one a refit is still writing."""

    name: str
    current: str
    versions: list[dict[str, Any]] = field(default_factory=list)  # {"name", "head", "written_at", "rows"}
    pending: str = ""
    heads: list[str] = field(default_factory=list)  # every head the name was ever served with (readers follow)
    last: int = 1  # the highest version number ever given (a dropped version's name is never given again)

    @property
    def names(self) -> list[str]:
        return [str(v["name"]) for v in self.versions]

    def claim_next_name(self) -> str:
        """The collection the next refit writes, counted on from `last`: a reader that still knows a dropped
        version's name and head must never meet another head under it."""
        self.last += 1
        return version_name(self.name, self.last)

    def previous(self) -> str | None:
        """The version before the current one in the list (what a rollback switches to), if still kept."""
        names = self.names
        at = names.index(self.current) if self.current in names else len(names)
        return names[at - 1] if at > 0 else None

    def lines(self) -> list[str]:
        out = []
        for v in self.versions:
            mark = "*" if v["name"] == self.current else " "
            out.append(
                f"{mark} {v['name']}: head {v.get('head')}, {v.get('rows', '?')} rows, written {v.get('written_at')}"
            )
        if self.pending:
            out.append(f"  {self.pending}: being written by an unfinished refit (run refit again to finish it)")
        return out


_cache: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, str]]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def read(store: SparseStore, name: str) -> Versions | None:
    """`name`'s pointer, or None when it was never refitted (then `name` itself is the only version)."""
    pointer = pointer_collection(name)
    if not isinstance(store, Gettable):
        return None
    try:
        found = store.get(pointer, [POINTER])
    except CollectionNotFoundError:
        return None
    if not found:
        return None
    payload = found[0].payload
    try:
        versions = list(json.loads(payload["versions"]))
        heads = list(json.loads(payload.get("heads") or "[]")) or [str(v.get("head")) for v in versions]
        last = int(payload.get("last") or len(versions))
        return Versions(name, str(payload["current"]), versions, str(payload.get("pending") or ""), heads, last)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"the version pointer of {name!r} ({pointer}) is damaged: {exc!r}") from None


def write(store: SparseStore, state: Versions) -> None:
    """Write `state` as `name`'s pointer: one upsert, so readers see the old pointer or the new one."""
    pointer = pointer_collection(state.name)
    store.create_collection(pointer, dense_dim=2, exist_ok=True)
    payload = {"current": state.current, "versions": json.dumps(state.versions), "pending": state.pending,
               "heads": json.dumps(state.heads), "last": state.last}  # fmt: skip
    store.upsert(pointer, [POINTER], dense=np.asarray([[1.0, 0.0]], dtype=np.float32), payloads=[payload])
    with _cache_lock:
        _cache.setdefault(store, {}).pop(state.name, None)


def current(store: SparseStore, name: str, *, fresh: bool = False) -> str:
    """The collection that answers for `name` now: its pointer's current version, else `name` itself. Read from
    the engine at most once per POINTER_TTL per store and name unless `fresh`."""
    now = time.monotonic()
    if not fresh:
        with _cache_lock:
            hit = _cache.get(store, {}).get(name)
        if hit is not None and now - hit[0] < POINTER_TTL:
            return hit[1]
    state = read(store, name)
    resolved = state.current if state is not None else name
    try:
        with _cache_lock:
            _cache.setdefault(store, {})[name] = (now, resolved)
    except TypeError:  # a store that cannot be weakly referenced is read every time
        pass
    return resolved


def logical_names(all_collections: list[str]) -> list[str]:
    """The names that have a version pointer (listed even after their version 1 was dropped)."""
    return [n[: -len(VERSIONS_SUFFIX)] for n in all_collections if n.endswith(VERSIONS_SUFFIX)]


def drop_all(store: SparseStore, name: str) -> bool:
    """Drop every version of `name` (with their heads) and its pointer; False when `name` has no pointer. The
    pointer goes after the later versions and before version 1, so an interrupted drop leaves either a pointer
    or a plain collection to drop again, never a hidden version nothing points at."""
    state = read(store, name)
    if state is None:
        return False
    existing = set(every_collection(store))
    for version in dict.fromkeys([*state.names, state.pending, state.current]):
        if version and version != name and version in existing:
            store.drop_collection(version)
    store.drop_collection(pointer_collection(name))
    with _cache_lock:
        _cache.get(store, {}).pop(name, None)
    if name in existing:
        store.drop_collection(name)
    return True


def drop_old(store: SparseStore, name: str) -> list[str]:
    """Drop the versions of `name` that are not current (readers that resolved one of them just before re-read the
    pointer, see `follow`); returns the collections dropped."""
    state = read(store, name)
    if state is None:
        return []
    dropped = [v for v in state.names if v != state.current]
    state.versions = [v for v in state.versions if v["name"] == state.current]
    write(store, state)  # first: nobody is pointed at a version about to go
    time.sleep(2 * POINTER_TTL)  # readers that resolved an old version just before finish on it
    existing = set(every_collection(store))
    for version in dropped:
        if version in existing:
            _drop_version(store, name, version)
    return dropped


def _drop_version(store: SparseStore, name: str, version: str) -> None:
    """Drop one version's collection and head; version 1 (the name itself) without the other versions."""
    if version != name:
        store.drop_collection(version)
        return
    drop_one = getattr(store, "drop_one", None)  # drop_collection(name) would drop every version
    if drop_one is None:
        raise InvalidArgumentError(f"{type(store).__name__} cannot drop version 1 of {name!r} alone")
    drop_one(name)
