"""The engines the conformance suite runs on, each opened on a location inside a test's tmp_path.

Every entry is a real engine except qdrant-local (qdrant-client's Python re-implementation, which
is what Qdrant ships as its local mode). Elasticsearch joins when its adapter lands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from csrv2_vdb.adapters import open_store

from csrv2_vdb.store import SparseStore

Opener = Callable[[Path], SparseStore]

ENGINES: dict[str, Opener] = {
    "qdrant-edge": lambda root: open_store("qdrant-edge", str(root / "edge")),
    "qdrant-local": lambda root: open_store("qdrant", str(root / "qdrant-local")),
    "milvus-lite": lambda root: open_store("milvus", str(root / "milvus.db")),
}
