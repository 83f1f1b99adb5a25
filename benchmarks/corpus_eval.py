"""`csrv2-vdb eval --corpus docs.jsonl --queries q.jsonl`: what a head gives on the user's own data, scored by an
engine exactly as it will serve it (the engine ranks by the dot product of the stored codes).

The corpus is embedded once; every configuration (sparse at each k with queries at k too, and with queries
at `query_k_for(k)` as search does by default; MRL at each dims; the full dense embedding) is written to its
own collection of an embedded qdrant-edge store (or the engine given), searched with every query, and scored
with nDCG@10, recall@10 and MRR@10 against the relevance judgements.
Queries name their relevant documents in a field (`relevant`: a list of document ids) or in a qrels file
(JSONL {"query_id", "doc_id"} or TSV query_id<TAB>doc_id[<TAB>score], BEIR's layout; score 0 = not relevant).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from csrv2_vdb.benchmarks.reports import log_ticks, pyplot, write_csv
from csrv2_vdb.embedders import truncation_name
from csrv2_vdb.encoder import CSRv2Encoder, mrl_truncate
from csrv2_vdb.errors import InvalidRecordError
from csrv2_vdb.records import json_line, numbered_lines, read_records
from csrv2_vdb.store import SparseStore

CUTOFF = 10
LONGER_SUFFIX = ", longer queries"  # documents at k, queries at the encoder's query_k_for(k)
LONGER = "sparse" + LONGER_SUFFIX


@dataclass(frozen=True)
class EvalSet:
    """Documents and queries as texts, and each query's relevant document rows."""

    doc_ids: list[str]
    doc_texts: list[str]
    query_texts: list[str]
    qrels: dict[int, set[int]]  # query row -> relevant document rows


def load_eval_set(corpus: Path, queries: Path, qrels: Path | None = None) -> EvalSet:
    """Read the corpus (id, text), the queries (id, text, optional `relevant`) and the judgements."""
    docs = read_records(corpus)
    rows = {d["id"]: i for i, d in enumerate(docs)}
    if len(rows) != len(docs):
        raise InvalidRecordError(f"{corpus}: document ids repeat; every document needs its own id")
    query_records = read_records(queries)
    judged = _read_qrels(qrels) if qrels is not None else _field_qrels(queries, query_records)
    relevant: dict[int, set[int]] = {}
    for qi, record in enumerate(query_records):
        wanted = judged.get(record["id"], set())
        unknown = sorted(wanted - rows.keys())
        if unknown:
            raise InvalidRecordError(f"query {record['id']!r} names documents not in {corpus}: {unknown[:5]}")
        if wanted:
            relevant[qi] = {rows[d] for d in wanted}
    if not relevant:
        raise InvalidRecordError(f"no query of {queries} has a relevant document; nothing can be scored")
    return EvalSet([d["id"] for d in docs], [d["text"] for d in docs], [q["text"] for q in query_records], relevant)


def _field_qrels(path: Path, records: Sequence[dict]) -> dict[str, set[str]]:
    judged: dict[str, set[str]] = {}
    for record in records:
        value = record.get("relevant")
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise InvalidRecordError(f"{path}: query {record['id']!r}: 'relevant' must list document ids")
        judged[record["id"]] = {str(v) for v in values}
    if not judged:
        raise InvalidRecordError(f"{path}: no query has a 'relevant' field; add one or pass --qrels FILE")
    return judged


def _read_qrels(path: Path) -> dict[str, set[str]]:
    """Judgements from JSONL {"query_id", "doc_id"[, "score"]} or TSV (a header line is skipped)."""
    judged: dict[str, set[str]] = {}
    for n, line in numbered_lines(path):
        if path.suffix == ".jsonl":
            obj = json_line(path, n, line)
            if not isinstance(obj, dict) or "query_id" not in obj or "doc_id" not in obj:
                raise InvalidRecordError(f"{path}:{n}: expected an object {{query_id, doc_id[, score]}}")
            qid, did, score = obj["query_id"], obj["doc_id"], obj.get("score", 1)
        else:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise InvalidRecordError(f"{path}:{n}: expected query_id<TAB>doc_id[<TAB>score]")
            qid, did = parts[0], parts[1]
            try:
                score = float(parts[2]) if len(parts) > 2 else 1
            except ValueError:
                if n == 1:
                    continue  # header
                raise InvalidRecordError(f"{path}:{n}: score {parts[2]!r} is not a number") from None
        if float(score) > 0:
            judged.setdefault(str(qid), set()).add(str(did))
    return judged


@dataclass
class EvalRow:
    method: str  # sparse, MRL (a model trained for truncation), truncated (any other model) or dense
    dims: int  # active dims k, or dense dims
    ndcg_at_10: float
    recall_at_10: float
    mrr_at_10: float
    hit_at_5: float  # share of queries with a relevant document in the top 5


def ranking_metrics(
    ranked: Mapping[int, Sequence[int]], qrels: dict[int, set[int]]
) -> tuple[float, float, float, float]:
    """Mean nDCG@10, recall@10, MRR@10 and hit@5 (binary relevance) of ranked document rows per query row."""
    ndcg, recall, mrr, hit = [], [], [], []
    for qi, relevant in qrels.items():
        top = list(ranked[qi])[:CUTOFF]
        gains = [1.0 if d in relevant else 0.0 for d in top]
        ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), CUTOFF)))
        ndcg.append(sum(g / math.log2(i + 2) for i, g in enumerate(gains)) / ideal)
        recall.append(sum(gains) / len(relevant))
        mrr.append(next((1 / (i + 1) for i, g in enumerate(gains) if g), 0.0))
        hit.append(float(any(gains[:5])))
    return float(np.mean(ndcg)), float(np.mean(recall)), float(np.mean(mrr)), float(np.mean(hit))


def run_corpus_eval(
    data: EvalSet,
    encoder: CSRv2Encoder,
    out_dir: Path,
    ks: Sequence[int] = (2, 4, 8, 16, 32, 64),
    dims: Sequence[int] = (2, 4, 8, 16, 32, 64),
    store: SparseStore | None = None,
    console: Console | None = None,
    normalize: bool | None = None,
    rerank: Sequence[int] = (),
) -> list[EvalRow]:
    """Score every configuration through `store` (default: a temporary qdrant-edge store); write CSV and PNG.

    Codes are normalised as `normalize` says, or (None) as the encoder does. Texts are embedded by the
    encoder's embedder (a `CachedEmbedder` makes a second evaluation of the same texts free). Each depth N
    in `rerank` adds rows "rerank@N" at every k: the sparse top N rescored by the full dense vectors."""
    console = console or Console()
    embedder = encoder.embedder
    doc_x = embedder.embed(data.doc_texts, "document")
    query_x = embedder.embed(data.query_texts, "query")
    if store is None:
        from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore

        with tempfile.TemporaryDirectory(prefix="csrv2-eval-") as tmp, QdrantEdgeStore(tmp) as temporary:
            return run_corpus_eval(data, encoder, out_dir, ks, dims, temporary, console, normalize, rerank)
    rows: list[EvalRow] = []
    queries = sorted(data.qrels)
    row_of = {d: i for i, d in enumerate(data.doc_ids)}
    configs: list[tuple[str, int, dict[str, Any], Any, Any, int | None]] = []
    at_k = encoder if normalize is None else encoder.normalized_as(normalize)
    for k in ks:
        spec: dict[str, Any] = {"sparse_dim": at_k.dim, "encoder": at_k.identity}
        docs, qs = at_k.encode_embeddings(doc_x, k), at_k.encode_embeddings(query_x[queries], k)
        configs.append(("sparse", k, spec, docs, qs, None))
        longer = at_k.query_k_for(k)
        if longer != k:  # what search does by default: documents at k, queries at query_k (not stored)
            configs.append((LONGER, k, spec, docs, at_k.encode_embeddings(query_x[queries], longer), None))
        hybrid = {**spec, "dense_dim": embedder.dim}
        configs += [(f"rerank@{n}", k, hybrid, (docs, doc_x), (qs, query_x[queries]), n) for n in rerank]
    truncated = truncation_name(embedder)  # "truncated" unless the model was trained for it (MRL)
    for m in [*dims, embedder.dim]:
        method = "dense" if m == embedder.dim else truncated
        configs.append((method, m, {"dense_dim": m}, mrl_truncate(doc_x, m), mrl_truncate(query_x[queries], m), None))
    for method, size, spec, docs, qs, depth in configs:
        name = f"csrv2_eval_{re.sub(r'[^a-z0-9]+', '_', method.lower())}_{size}"
        store.create_collection(name, **spec)
        try:
            for start in range(0, len(data.doc_ids), 1024):
                part = slice(start, start + 1024)
                batch = (docs[0][part], docs[1][part]) if depth else docs[part]
                store.upsert(name, data.doc_ids[part], batch)
            if depth:
                hits = store.rerank_search(name, qs[0], qs[1], limit=CUTOFF, candidates=max(depth, CUTOFF))
            else:
                hits = store.search(name, qs, limit=CUTOFF)
        finally:
            store.drop_collection(name)
        ranked = {qi: [row_of[h.id] for h in hs] for qi, hs in zip(queries, hits, strict=True)}
        rows.append(EvalRow(method, size, *ranking_metrics(ranked, data.qrels)))
    write_eval_reports(rows, out_dir, len(data.doc_ids), len(data.qrels), console)
    return rows


def write_eval_reports(rows: list[EvalRow], out_dir: Path, n_docs: int, n_queries: int, console: Console) -> None:
    table = Table(title=f"{n_docs} documents, {n_queries} judged queries, scored by the engine")
    for column in ("method", "k/dims", "nDCG@10", "recall@10", "MRR@10", "hit@5"):
        table.add_column(column, justify="right")
    for r in rows:
        scores = (r.ndcg_at_10, r.recall_at_10, r.mrr_at_10, r.hit_at_5)
        table.add_row(r.method, str(r.dims), *(f"{v:.3f}" for v in scores))
    console.print(table)
    write_csv(rows, out_dir / "eval.csv")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    methods = [m for m in dict.fromkeys(r.method for r in rows) if m != "dense"]
    for method, marker in zip(methods, "osD^v<>", strict=False):
        sel = [r for r in rows if r.method == method]
        if sel:
            ax.plot([r.dims for r in sel], [r.ndcg_at_10 for r in sel], marker=marker, label=method)
    for r in rows:
        if r.method == "dense":
            ax.axhline(r.ndcg_at_10, color="gray", linestyle="--", label=f"dense ({r.dims})")
    log_ticks(ax, sorted({r.dims for r in rows if r.method != "dense"}))
    ax.set(xlabel="active dims k / MRL dims", ylabel="nDCG@10")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "eval.png", dpi=110)
    plt.close(fig)
    console.print(f"wrote {out_dir / 'eval.csv'} and {out_dir / 'eval.png'}")


SERVED = "sparse, as served"  # documents as stored, queries as `search` codes them


def load_queries(queries: Path, qrels: Path | None = None) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """(query ids, query texts, relevant document ids per query id) from a queries file and its judgements."""
    records = read_records(queries)
    judged = _read_qrels(qrels) if qrels is not None else _field_qrels(queries, records)
    return [r["id"] for r in records], [r["text"] for r in records], judged


def eval_served(
    store: SparseStore,
    collection: str,
    encoder: CSRv2Encoder,
    queries: Path,
    qrels: Path | None,
    out_dir: Path,
    record: Mapping[str, Any],
    console: Console | None = None,
) -> list[EvalRow]:
    """Score an existing collection exactly as it is served: its stored documents, queries coded by `encoder`
    (the collection's head) at its default query dims, and at the documents' k; writes eval.csv/.png and
    eval.json (`record`: which store, collection and head were scored)."""
    from csrv2_vdb.retrieval import search_queries

    console = console or Console()
    ids, texts, judged = load_queries(queries, qrels)
    rows_of: dict[str, int] = {}

    def row(doc: str) -> int:  # document ids as rows, numbered as they are met
        return rows_of.setdefault(doc, len(rows_of))

    qrels_rows = {i: {row(d) for d in judged[q]} for i, q in enumerate(ids) if judged.get(q)}
    if not qrels_rows:
        raise InvalidRecordError(f"no query of {queries} has a relevant document; nothing can be scored")
    variants = [(SERVED, encoder)]
    if encoder.query_k != encoder.k:
        variants.append(
            ("sparse", CSRv2Encoder(encoder.embedder, encoder.head, encoder.k, encoder.normalize, encoder.k))
        )
    rows = []
    for method, coder in variants:
        hits = search_queries(store, collection, texts, encoder=coder, limit=CUTOFF)
        ranked = {i: [row(h.id) for h in found] for i, found in enumerate(hits)}
        rows.append(EvalRow(method, coder.query_k, *ranking_metrics(ranked, qrels_rows)))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps({**record, "queries": len(ids), "judged": len(qrels_rows),
                                                   "k": encoder.k, "query_k": encoder.query_k}, indent=2))  # fmt: skip
    write_eval_reports(rows, out_dir, store.count(collection), len(qrels_rows), console)
    return rows
