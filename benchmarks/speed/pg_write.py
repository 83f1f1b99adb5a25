"""`csrv2-vdb bench pg-write`: how the pgvector adapter should send a batch of upserts, measured.

Two ways to write one batch in one transaction, both sending vectors in pgvector's binary formats: the
adapter's pipelined `executemany` of `INSERT ... ON CONFLICT (id) DO UPDATE`, and binary COPY into a
temporary staging table followed by one `INSERT ... SELECT ... ON CONFLICT`. Each run writes the same
rows twice (inserts, then all conflicts: updates) into a fresh table, sparse codes alone and with
384-dim dense vectors; the two ways alternate round by round, so a noisy machine slows both alike.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from csrv2_vdb.adapters import open_store
from csrv2_vdb.benchmarks.reports import table
from csrv2_vdb.benchmarks.speed.targets import PgServer
from csrv2_vdb.sparse import SparseBatch

METHODS = ("executemany", "copy")


def _copy(store: Any, name: str, ids: list[str], codes: SparseBatch, dense: np.ndarray | None) -> None:
    """The alternative: binary COPY of the batch into a staging table, then one INSERT ... SELECT ... ON CONFLICT."""
    from csrv2_vdb.adapters.pgvector import _Dense, _Sparse, _sparse_params

    columns = ["id", "payload", "sparse"] + (["dense"] if dense is not None else [])
    listed = ", ".join(columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    with store.client.connection() as conn, conn.transaction():
        store._binary_vectors(conn)
        with conn.cursor() as cur:
            cur.execute(f'CREATE TEMP TABLE staging (LIKE "{name}") ON COMMIT DROP')
            with cur.copy(f"COPY staging ({listed}) FROM STDIN (FORMAT BINARY)") as copy:
                oids = [25, 3802, store._dumpers[_Sparse].oid, store._dumpers[_Dense].oid]  # text, jsonb, ...
                copy.set_types(oids[: len(columns)])
                for i, code in enumerate(_sparse_params(codes)):
                    copy.write_row([ids[i], {}, code] + ([_Dense(dense[i])] if dense is not None else []))
            cur.execute(f'INSERT INTO "{name}" ({listed}) SELECT {listed} FROM staging ON CONFLICT (id) DO UPDATE '
                        f"SET {updates}")  # fmt: skip


def run_pg_write_bench(work: Path, rows: int = 20_000, batch: int = 500, rounds: int = 3) -> list[dict[str, Any]]:
    """rows/s of each method, sparse only and sparse + dense: the median over `rounds` and the ratio."""
    rng = np.random.default_rng(0)
    dim, k = 4096, 8
    codes = SparseBatch(np.argsort(rng.random((rows, dim)), axis=1)[:, :k], rng.random((rows, k)).astype(np.float32),
                        dim)  # fmt: skip
    dense_all = rng.standard_normal((rows, 384)).astype(np.float32)
    ids = [f"d{i}" for i in range(rows)]
    server = PgServer(work / "pgdata")
    out = []
    try:
        with open_store("pgvector", server.database("pgwrite")) as store:
            for with_dense in (False, True):
                rates: dict[str, list[float]] = {m: [] for m in METHODS}
                for r in range(rounds):
                    for method in METHODS if r % 2 == 0 else METHODS[::-1]:
                        name = f"w_{method}_{r}"
                        store.create_collection(name, sparse_dim=dim, dense_dim=384 if with_dense else None)
                        start = time.perf_counter()
                        for _ in range(2):  # inserts, then the same ids again: updates
                            for s in range(0, rows, batch):
                                dense = dense_all[s : s + batch] if with_dense else None
                                if method == "copy":
                                    _copy(store, name, ids[s : s + batch], codes[s : s + batch], dense)
                                else:
                                    store.upsert(name, ids[s : s + batch], sparse=codes[s : s + batch], dense=dense)
                        rates[method].append(2 * rows / (time.perf_counter() - start))
                        assert store.count(name) == rows
                        store.drop_collection(name)
                medians = {m: statistics.median(v) for m, v in rates.items()}
                out.append({"vectors": "sparse k=8 + dense 384" if with_dense else "sparse k=8", "rows": rows,
                            "batch": batch, "rounds": rounds, **{f"{m}_rows_per_s": medians[m] for m in METHODS},
                            "copy_over_executemany": medians["copy"] / medians["executemany"]})  # fmt: skip
    finally:
        server.close()
    return out


def pg_write_markdown(rows: list[dict[str, Any]], command: str) -> str:
    head = ["vectors", "rows x 2 passes", "batch", "executemany rows/s", "COPY + INSERT rows/s", "COPY / executemany"]
    body = [[r["vectors"], f"{r['rows']:,}", r["batch"], f"{r['executemany_rows_per_s']:,.0f}",
             f"{r['copy_rows_per_s']:,.0f}", f"{r['copy_over_executemany']:.2f}"] for r in rows]  # fmt: skip
    return f"# pgvector upserts: executemany vs COPY\n\n`{command}`\n\n" + "\n".join(table(head, body)) + "\n"
