"""The engines the conformance suite runs on, each opened on a location inside a test's tmp_path.

Every entry is a real engine except qdrant-local (qdrant-client's Python re-implementation, which
is what Qdrant ships as its local mode). Elasticsearch joins when its adapter lands.
"""

from __future__ import annotations

from pathlib import Path

from csrv2_vdb.adapters import open_store
from csrv2_vdb.store import SparseStore

# test name -> (open_store engine, location under the test's tmp_path)
ENGINES: dict[str, tuple[str, str]] = {
    "qdrant-edge": ("qdrant-edge", "edge"),
    "qdrant-local": ("qdrant", "qdrant-local"),
    "milvus-lite": ("milvus", "milvus.db"),
    "milvus-lite-wand": ("milvus", "milvus-wand.db"),
}
# open_store options per test name (the WAND entry checks Milvus's other sparse index type)
OPTIONS: dict[str, dict] = {"milvus-lite-wand": {"sparse_index": "SPARSE_WAND"}}


def location(name: str, root: Path) -> tuple[str, str]:
    """(engine kind, location string) for `open_store` or a subprocess."""
    kind, rel = ENGINES[name]
    return kind, str(root / rel)


def open_engine(name: str, root: Path) -> SparseStore:
    return open_store(*location(name, root), **OPTIONS.get(name, {}))
