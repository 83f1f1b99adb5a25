"""`csrv2-vdb bench engine-options`: each engine's own sparse-index knobs, measured side by side in one run.

Real codes: a head (by default fitted label-free on the documents, as `train --input` does) codes Debian
descriptions; each variant writes them, repeated under new ids up to `n` points (the real posting lengths),
through the package's adapters, and the same distinct documents once more into a small collection that
checks exactness (recall@10 against numpy, ties at the cut counted). Per variant: bytes per point on disk
(allocated blocks of its own directory or Milvus Lite file), build seconds, and single-query p50 in rounds
that time every variant in turn, with the ratio to the engine's first variant taken within each round.
Filtered variants time a filter that keeps 1 % of the points (where Qdrant's full_scan_threshold acts, given a
payload index to estimate the filter's size from).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from csrv2_vdb.adapters import open_store
from csrv2_vdb.benchmarks.quality import debian_embeddings, fit_widths
from csrv2_vdb.benchmarks.reports import table
from csrv2_vdb.benchmarks.speed.corpus import fill_repeated
from csrv2_vdb.benchmarks.speed.exact import ExactIndex, recall_at
from csrv2_vdb.benchmarks.speed.targets import PgServer, directory_bytes
from csrv2_vdb.benchmarks.speed.timing import rotating_p50
from csrv2_vdb.head import SparseHead, pretrained_head
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import Flushable, Optimizable, PayloadIndexable, SparseStore
from csrv2_vdb.training.fit import label_free_width

PARTS = 100  # filtered variants: payload "part" = point number % PARTS; the filter keeps one part


@dataclass(frozen=True)
class Variant:
    """One engine configuration: `open_store` options, and what its points carry."""

    engine: str  # "qdrant-edge", "milvus" or "pgvector"
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    dense: bool = False  # full dense vectors (flat) instead of codes: the comparator for bytes per point
    filtered: bool = False  # points carry a "part" payload; timed queries filter on one part
    indexed: bool = False  # the "part" field has a payload index (qdrant-edge)

    @property
    def label(self) -> str:
        return f"{self.engine}: {self.name}"


VARIANTS = (
    Variant("qdrant-edge", "UUID ids + _id payload (before)", {"compact_ids": False}),
    Variant("qdrant-edge", "compact ids (default)"),
    Variant("qdrant-edge", "compact ids, sparse datatype float16", {"sparse_datatype": "float16"}),
    Variant("qdrant-edge", "compact ids, sparse datatype uint8", {"sparse_datatype": "uint8"}),
    Variant("qdrant-edge", "compact ids, sparse index on disk", {"sparse_on_disk": True}),
    Variant("qdrant-edge", "dense 384, flat", dense=True),
    Variant("qdrant-edge", "filter 1 %, full_scan_threshold default", filtered=True),
    Variant("qdrant-edge", "filter 1 %, full_scan_threshold 100000", {"full_scan_threshold": 100_000}, filtered=True),
    Variant("qdrant-edge", "filter 1 %, payload index", filtered=True, indexed=True),
    Variant(
        "qdrant-edge",
        "filter 1 %, payload index, full_scan_threshold 100000",
        {"full_scan_threshold": 100_000},
        filtered=True,
        indexed=True,
    ),
    Variant("milvus", "SPARSE_INVERTED_INDEX, DAAT_MAXSCORE (default)"),
    Variant("milvus", "inverted_index_algo DAAT_WAND", {"inverted_index_algo": "DAAT_WAND"}),
    Variant("milvus", "inverted_index_algo TAAT_NAIVE", {"inverted_index_algo": "TAAT_NAIVE"}),
    Variant("milvus", "drop_ratio_search 0.2 (inexact)", {"drop_ratio_search": 0.2}),
    Variant("milvus", "dense 384, FLAT", dense=True),
    Variant("pgvector", "exact scan (default)"),
    Variant("pgvector", "sparsevec HNSW, ef_search 40", {"hnsw": True, "ef_search": 40}),
    Variant("pgvector", "sparsevec HNSW, ef_search 200", {"hnsw": True, "ef_search": 200}),
    Variant("pgvector", "filter 1 %, exact scan", filtered=True),
    Variant("pgvector", "filter 1 %, payload index", filtered=True, indexed=True),
    Variant("pgvector", "dense 384, exact scan", dense=True),
    Variant("pgvector", "dense 384, vector HNSW", {"hnsw": True, "ef_search": 40}, dense=True),
)
# pgvector's HNSW graphs are built after the load with this much memory (pgvector's advice for bulk loads)
PG_OPTIONS = {"maintenance_work_mem": "2GB"}


@dataclass
class Workload:
    """Distinct documents and queries of one k: codes and the full dense vectors."""

    docs: SparseBatch
    queries: SparseBatch
    doc_dense: np.ndarray
    query_dense: np.ndarray


def workload(
    data_dir: Path, cache: Path, ks: Sequence[int], n_docs: int, head: str | None, console: Console
) -> tuple[dict[int, Workload], dict[str, Any]]:
    """Debian descriptions and titles, embedded, and coded at each k by `head` (None: fitted label-free)."""
    _, doc_x, query_x = debian_embeddings(data_dir, cache, n_docs)
    coder: SparseHead
    if head is None:
        h = label_free_width(*doc_x.shape)
        with console.status(f"fitting a label-free head (h = {h}) on {len(doc_x):,} documents"):
            coder = fit_widths(doc_x, (h,))[h]
    else:
        coder = pretrained_head(head)
    info = {"head": head or f"label-free fit, h = {coder.hidden_dim}", "docs": len(doc_x), "queries": len(query_x)}
    loads = {k: Workload(coder.encode(doc_x, k), coder.encode(query_x, k), doc_x, query_x) for k in ks}
    return loads, info


class Built:
    """A variant's store with its big collection (n points) and its exactness collection (distinct docs)."""

    def __init__(self, variant: Variant, k: int, root: Path, number: int, pg: PgServer | None = None) -> None:
        self.variant, self.k = variant, k
        # Short names: Milvus Lite refuses a .db file name of 36 characters or more.
        self.location = root / (f"v{number:02d}_k{k}" + (".db" if variant.engine == "milvus" else ""))
        if variant.engine == "pgvector":
            assert pg is not None
            where, options = pg.database(self.location.name), {**PG_OPTIONS, **variant.options}
        else:
            where, options = str(self.location), variant.options
        self.store: SparseStore = open_store(variant.engine, where, **options)

    def fill(self, name: str, work: Workload, n: int) -> None:
        """`n` points: the distinct documents repeated under the ids 0..n-1."""
        dim = {"dense_dim": work.doc_dense.shape[1]} if self.variant.dense else {"sparse_dim": work.docs.dim}
        self.store.create_collection(name, **dim)
        if self.variant.indexed and isinstance(self.store, PayloadIndexable):
            self.store.create_payload_index(name, "part", "integer")
        part = (lambda i: {"part": i % PARTS}) if self.variant.filtered else None
        fill_repeated(self.store, name, work.doc_dense if self.variant.dense else work.docs, n, payload=part)
        if isinstance(self.store, Flushable):
            self.store.flush(name)
        if isinstance(self.store, Optimizable):
            self.store.optimize(name)

    def query(self, work: Workload, i: int) -> SparseBatch | np.ndarray:
        return work.query_dense[[i]] if self.variant.dense else work.queries[[i]]

    def search(self, name: str, work: Workload, i: int) -> list[Any]:
        where = {"part": 7} if self.variant.filtered else None
        return self.store.search(name, self.query(work, i), limit=10, filter=where)[0]

    def disk_bytes(self) -> int:
        store: Any = self.store
        if self.variant.engine == "pgvector":  # tables and indexes, as PostgreSQL accounts them
            return sum(store.disk_bytes(name) for name in store.list_collections())
        return directory_bytes(self.location)


def run_options_bench(
    data_dir: Path, cache: Path, work_dir: Path, console: Console, *, variants: Sequence[Variant] = VARIANTS,
    ks: Sequence[int] = (2, 8), n: int = 1_000_000, n_docs: int = 12_000, queries: int = 200, repeats: int = 3,
    head: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build every (variant, k), check its exactness, then time all of them in rotating rounds."""
    loads, info = workload(data_dir, cache, ks, n_docs, head, console)
    work_dir.mkdir(parents=True, exist_ok=True)
    built: list[Built] = []
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    pg = PgServer(work_dir / "pgdata") if any(v.engine == "pgvector" for v in variants) else None
    try:
        for variant in variants:
            for k in ks if not variant.dense else ks[:1]:
                b = Built(variant, k, work_dir, len(built), pg)
                built.append(b)
                before = b.disk_bytes()
                started = time.perf_counter()
                with console.status(f"{variant.label}, k = {k}: writing {n:,} points"):
                    b.fill("big", loads[k], n)
                row: dict[str, Any] = {"engine": variant.engine, "variant": variant.name,
                       "k": None if variant.dense else k, "n": n, "build_s": time.perf_counter() - started,
                       "disk_bytes_per_point": (b.disk_bytes() - before) / n,
                       "recall@10": _exactness(b, loads[k]), "p50_ms": [], "ratio": []}  # fmt: skip
                rows[variant.label, k] = row
                console.print(f"{variant.label}, k = {k}: {row['disk_bytes_per_point']:.0f} B/point, "
                              f"recall@10 {row['recall@10']:.3f}, built in {row['build_s']:.0f} s")  # fmt: skip
        _time_rounds(built, loads, rows, queries, repeats)
    finally:
        for b in built:
            b.store.close()
        if pg is not None:
            pg.close()
    out = [{**row, "p50_ms": statistics.median(row["p50_ms"]), "ratio": statistics.median(row["ratio"])}
           for row in rows.values()]  # fmt: skip
    return {"workload": info, "settings": {"n": n, "ks": list(ks), "queries": queries, "repeats": repeats}, "rows": out}


def _exactness(b: Built, work: Workload) -> float:
    """recall@10 of the variant on the distinct documents against exact numpy search (filter applied alike)."""
    docs = work.doc_dense if b.variant.dense else work.docs
    queries = work.query_dense if b.variant.dense else work.queries
    b.fill("exact", work, len(docs))
    keep = np.arange(len(docs)) % PARTS == 7 if b.variant.filtered else np.ones(len(docs), bool)
    ids_kept = np.flatnonzero(keep)
    index = ExactIndex(docs[ids_kept])
    want_ids, want_scores = index.search(queries, 10)
    want_ids = np.where(want_ids >= 0, ids_kept[np.maximum(want_ids, 0)], -1)
    found_ids, found_scores = [], []
    for i in range(len(queries)):
        hits = b.search("exact", work, i)
        found_ids.append([int(h.id) for h in hits])
        found_scores.append([_exact_score(docs, queries, i, int(h.id)) for h in hits])
    return recall_at(found_ids, found_scores, want_ids, want_scores)


def _exact_score(docs: SparseBatch | np.ndarray, queries: SparseBatch | np.ndarray, q: int, d: int) -> float:
    """The exact dot product of query q and document d (what a returned hit is judged by, not the engine's score)."""
    if isinstance(docs, np.ndarray) and isinstance(queries, np.ndarray):
        return float(docs[d] @ queries[q])
    assert isinstance(docs, SparseBatch) and isinstance(queries, SparseBatch)
    return float(docs[[d]].to_dense()[0] @ queries[[q]].to_dense()[0])


def _time_rounds(
    built: list[Built], loads: dict[int, Workload], rows: dict[tuple[str, int], dict[str, Any]], queries: int,
    repeats: int,
) -> None:  # fmt: skip
    """p50 of `queries` single queries per (variant, k) and round; ratio to the engine's first variant at that k."""

    def search(b: Built, i: int) -> object:
        return b.search("big", loads[b.k], i % len(loads[b.k].queries))

    for by_built in rotating_p50(built, search, queries, repeats):
        p50 = {(b.variant.label, b.k): ms for b, ms in by_built.items()}
        for b in built:
            first = next(x for x in built if x.variant.engine == b.variant.engine and not x.variant.dense
                         and x.variant.filtered == b.variant.filtered)  # fmt: skip
            base = p50.get((first.variant.label, b.k), p50[first.variant.label, first.k])
            rows[b.variant.label, b.k]["p50_ms"].append(p50[b.variant.label, b.k])
            rows[b.variant.label, b.k]["ratio"].append(base / p50[b.variant.label, b.k])


def options_markdown(report: dict[str, Any], command: str) -> str:
    """The table docs/benchmarks.md quotes."""
    w, s = report["workload"], report["settings"]
    lines = ["## Engine options: bytes per point, exactness and search speed (side by side)", "",
             f"Reproduce: `{command}`. {w['docs']:,} Debian descriptions coded by {w['head']}, repeated to "
             f"{s['n']:,} points per collection; {w['queries']} titles as queries; recall@10 on the distinct "
             f"documents against exact search; p50 of {s['queries']} single queries, median of {s['repeats']} "
             "rounds; speed-up = p50 of the engine's first sparse row of the same kind (filtered or not; dense rows: "
             "its first sparse row at the first k) / this p50, within a round.", ""]  # fmt: skip
    header = ["engine", "variant", "k", "disk B/point", "recall@10", "p50 ms", "speed-up", "build s"]
    lines += table(header, [[r["engine"], r["variant"], r["k"] or "-", f"{r['disk_bytes_per_point']:,.0f}",
                             f"{r['recall@10']:.3f}", f"{r['p50_ms']:.3f}", f"{r['ratio']:.2f}x",
                             f"{r['build_s']:.0f}"] for r in report["rows"]])  # fmt: skip
    return "\n".join(lines) + "\n"
