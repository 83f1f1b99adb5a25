"""An on-disk embedding cache keyed by (embedder identity, kind, text), shared by every command.

Comparing heads, k values or sparse against MRL re-uses one embedding pass: `index`, `encode`, `train`,
`eval` and `migrate` look texts up here before calling the model. The cache is one SQLite file (safe for
several processes; a crash loses at most the batch being written), rows of float32 bytes keyed by
sha256(identity, kind, text). Default location: $CSRV2_CACHE_DIR, else ~/.cache/csrv2-vdb. A vector is
4 x dim bytes, but on disk the file grows by about 5.3 KB per distinct 384-dim text (measured: 20,000 texts,
105 MB with SQLite's pages, key index and write-ahead log); deleting the file is always safe.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csrv2_vdb.embedders import Embedder, Kind, check_kind
from csrv2_vdb.errors import DataNotFoundError
from csrv2_vdb.texts import check_texts

_CHUNK = 500  # keys per SELECT (SQLite's variable limit is 999 on old builds)


def default_cache_dir() -> Path:
    """$CSRV2_CACHE_DIR, else ~/.cache/csrv2-vdb."""
    return Path(os.environ.get("CSRV2_CACHE_DIR") or Path.home() / ".cache" / "csrv2-vdb")


class EmbeddingCache:
    """Vectors by (embedder identity, kind, text) in a SQLite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "embeddings.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB) WITHOUT ROWID")
        except (OSError, sqlite3.Error) as exc:
            raise DataNotFoundError(
                f"cannot open the embedding cache {self.path} ({exc}); pass another path or turn the cache off"
            ) from None
        self._lock = threading.Lock()

    @staticmethod
    def key(identity: str, kind: Kind, text: str) -> bytes:
        return hashlib.sha256(f"{identity}\0{kind}\0{text}".encode()).digest()[:20]

    def get(self, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The cached vectors among `keys` (entries of another size are ignored: they are re-embedded)."""
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                part = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(part))
                for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part):
                    if len(blob) == 4 * dim:
                        found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        rows = [
            (key, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in zip(keys, vectors, strict=True)
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class CachedEmbedder:
    """Any `Embedder` behind an `EmbeddingCache`: only texts not seen before (per identity and kind) are
    embedded, each distinct text once per call. Same `dim` and `identity` as the wrapped embedder."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | str | Path | None = None) -> None:
        self.embedder = embedder
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)

    @property
    def dim(self) -> int:
        return self.embedder.dim

    @property
    def identity(self) -> str:
        return self.embedder.identity

    def embed(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        check_texts(texts)
        check_kind(kind)
        identity, dim = self.identity, self.dim
        keys = [EmbeddingCache.key(identity, kind, t) for t in texts]
        found = self.cache.get(keys, dim)
        todo: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                todo.setdefault(key, text)
        if todo:
            fresh = self.embedder.embed(list(todo.values()), kind)
            self.cache.put(list(todo), fresh)
            found.update(zip(todo, fresh, strict=True))
        out = np.empty((len(texts), dim), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = found[key]
        return out
