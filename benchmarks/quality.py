"""docs/quality.md's numbers: label-free fitting, the general head and the package-description test.

    csrv2-vdb bench quality --out docs/quality        (about 15 minutes on 2 cores, most of it embedding)

- General head (`minilm-general-csrv2`): reconstruction on Debian package titles and descriptions (no
  Python package: those are the package test's corpus), Banking77 train texts and Wikipedia vital-article
  titles, short descriptions and lead sections (`bench general` chose them); no Banking77 test row.
- Label-free fitting: `fit_head`'s defaults on the medical chunks and their sentences, no question.
- Medical questions (held-out half of the seeded split) are scored in two halves: "tune" (looked at while
  choosing the defaults) and "final" (not looked at). Scores by dot product (as the engines rank) and cosine.
- Package-description test: 1,286 descriptions of Debian `python3-*` packages, 50 of their one-line titles as
  queries (the title's own package is the answer); `train --input corpus.jsonl` with no other flag, then
  hit@5 through qdrant-edge. Nothing was tuned on it.
- Banking77: logistic-probe accuracy on the test split over codes of the general head (no head training
  on Banking77 labels).
- Latent width: label-free heads of several widths on 12,000 Debian descriptions (no Python package), 300 of
  their titles as queries (used to choose `label_free_width`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import cached_embed
from csrv2_vdb.benchmarks.corpus_eval import LONGER, LONGER_SUFFIX, EvalSet, run_corpus_eval
from csrv2_vdb.benchmarks.datasets import load_banking77, load_debian, load_wikipedia
from csrv2_vdb.benchmarks.metrics import classification_accuracy, dead_latent_ratio, retrieval_metrics
from csrv2_vdb.benchmarks.reports import table, write_csv
from csrv2_vdb.benchmarks.tasks import medical_split
from csrv2_vdb.embed_cache import CachedEmbedder
from csrv2_vdb.embedders import Kind
from csrv2_vdb.encoder import CSRv2Encoder, default_query_k, mrl_truncate
from csrv2_vdb.head import SparseHead
from csrv2_vdb.training.data import TrainingSet
from csrv2_vdb.training.fit import default_config, label_free_width
from csrv2_vdb.training.trainer import HeadTrainConfig, train_head

KS = (2, 4, 8, 16, 32, 64)
WIDTHS = (1536, 4096, 8192, 12000)  # latent widths compared on the 12,000 Debian descriptions
Fit = Callable[[Path, Path, dict[str, object]], SparseHead]  # (texts file, head dir, setting overrides) -> head
EXCLUDED_PACKAGES = ("python3-", "python-", "pypy")  # the package test's domain stays unseen
GENERAL_BODIES = 24_000
GENERAL_CONFIG = HeadTrainConfig(
    method="plain", k=8, also_ks=[2], init="samples", lr=3e-4, batch_size=256, epochs=1, min_steps=3000
)


@dataclass
class QualityRow:
    head: str
    eval_set: str  # medical-tune, medical-final, banking77, packages
    metric: str
    method: str  # sparse-dot, sparse-cos, MRL, dense
    dims: int
    score: float


WIKIPEDIA_PARTS = ("title", "description", "extract")  # the rows each article gives the general head


def general_training_rows(data_dir: Path, backbone: Backbone, cache: Path, wikipedia: Path | None) -> np.ndarray:
    """Debian titles (each with its description) and a seeded sample of descriptions, Banking77 train, and (the
    shipped head since 2026-12-07) each Wikipedia article's title, short description and lead section."""
    everything = load_debian(data_dir)
    packages = [p for p in everything if not p.name.startswith(EXCLUDED_PACKAGES)]
    titles = list(dict.fromkeys(p.title for p in everything))
    bodies = list(dict.fromkeys(p.body for p in packages))
    keep = np.sort(np.random.default_rng(0).permutation(len(bodies))[:GENERAL_BODIES])
    bodies = [bodies[i] for i in keep]
    title_x = cached_embed(backbone, titles, "query", cache)
    body_x = cached_embed(backbone, bodies, "document", cache)
    title_row = {t: i for i, t in enumerate(titles)}
    kept = set(bodies)
    paired = [title_row[p.title] for p in packages if p.body in kept]
    banking = cached_embed(backbone, load_banking77(data_dir).train_texts, "document", cache)
    base = [title_x[paired], body_x, banking]
    wiki = [] if wikipedia is None else [wikipedia_rows(wikipedia, WIKIPEDIA_PARTS, backbone, cache)]
    return np.concatenate(base + wiki).astype(np.float32)


def wikipedia_rows(wikipedia: Path, parts: tuple[str, ...], backbone: Backbone, cache: Path) -> np.ndarray:
    """The backbone's embeddings of the Wikipedia articles' `parts` (titles and short descriptions as queries,
    lead sections as documents), through the cache."""
    articles = load_wikipedia(wikipedia)
    kinds: dict[str, Kind] = {"title": "query", "description": "query", "extract": "document"}
    return np.concatenate([cached_embed(backbone, [getattr(a, part) for a in articles], kinds[part], cache)
                           for part in parts])  # fmt: skip


def train_general_head(data_dir: Path, backbone: Backbone, cache: Path, out: Path, wikipedia: Path) -> SparseHead:
    """The shipped general head, trained from scratch into `out` (bit for bit on a 2-core CPU, torch 2.13.0)."""
    head = train_head(general_training_rows(data_dir, backbone, cache, wikipedia), GENERAL_CONFIG).head
    head.save(out)
    GENERAL_CONFIG.save(out / "training-config.json")
    return head


def package_eval_set(data_dir: Path, n_docs: int = 1286, n_queries: int = 50, seed: int = 0) -> EvalSet:
    """Descriptions of `python3-*` packages as the corpus, titles of some as queries (their package answers)."""
    packages = list({p.body: p for p in load_debian(data_dir) if p.name.startswith("python3-")}.values())
    docs = packages if len(packages) <= n_docs else [packages[i] for i in _sample(len(packages), n_docs, seed)]
    asked = _sample(len(docs), n_queries, seed + 1)
    return EvalSet([d.name for d in docs], [d.body for d in docs], [docs[i].title for i in asked],
                   {qi: {i} for qi, i in enumerate(asked)})  # fmt: skip


def medical_eval_set(data_dir: Path, half: str) -> EvalSet:
    """The medical chunks with one half of the held-out questions: "tune" (looked at while choosing
    settings) or "final" (not); the other half of the questions trained the supervised medical head."""
    split = medical_split(data_dir, 0)
    questions = {"tune": split.test_q[0::2], "final": split.test_q[1::2]}[half]
    return EvalSet([c.id for c in split.chunks], [c.text for c in split.chunks],
                   [split.questions[q].question for q in questions],
                   {i: split.qrels[q] for i, q in enumerate(questions)})  # fmt: skip


def write_task_eval_files(data_dir: Path, out: Path) -> list[Path]:
    """What `eval --corpus/--queries` scores for docs/quality.md: medical (corpus, tune and final
    questions) and the package test; returns the files written."""
    medical = out / "medical"
    written = []
    for half in ("tune", "final"):  # the same corpus file each time; the queries file renamed per half
        corpus, queries = write_eval_files(medical_eval_set(data_dir, half), medical)
        written.append(queries.replace(medical / f"queries-{half}.jsonl"))
    return [corpus, *written, *write_eval_files(package_eval_set(data_dir), out / "packages")]


def _sample(n: int, size: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(n, size, replace=False).tolist())


def write_eval_files(data: EvalSet, out: Path) -> tuple[Path, Path]:
    """The eval set as the corpus.jsonl / queries.jsonl a user would give `train` and `eval`."""
    out.mkdir(parents=True, exist_ok=True)
    corpus, queries = out / "corpus.jsonl", out / "queries.jsonl"
    with open(corpus, "w") as f:
        for doc_id, text in zip(data.doc_ids, data.doc_texts, strict=True):
            f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    with open(queries, "w") as f:
        for qi, text in enumerate(data.query_texts):
            relevant = [data.doc_ids[d] for d in sorted(data.qrels.get(qi, ()))]
            f.write(json.dumps({"id": f"q{qi}", "text": text, "relevant": relevant}) + "\n")
    return corpus, queries


def debian_retrieval_set(data_dir: Path, n_docs: int = 12_000, n_queries: int = 300, seed: int = 5) -> EvalSet:
    """A larger corpus for choosing the latent width: Debian descriptions (no Python package: those are the
    package test's), the one-line titles of some as queries (their package answers; titles shared by two
    sampled packages are not asked)."""
    packages = [p for p in load_debian(data_dir) if not p.name.startswith(EXCLUDED_PACKAGES)]
    unique = list({p.body: p for p in packages}.values())
    docs = [unique[i] for i in _sample(len(unique), n_docs, seed)]
    shared = {t for t, n in Counter(d.title for d in docs).items() if n > 1}
    asked = [i for i in _sample(len(docs), 2 * n_queries, seed + 1) if docs[i].title not in shared][:n_queries]
    return EvalSet([d.name for d in docs], [d.body for d in docs], [docs[i].title for i in asked],
                   {qi: {i} for qi, i in enumerate(asked)})  # fmt: skip


def debian_embeddings(
    data_dir: Path, cache: Path, n_docs: int = 12_000, backbone: Backbone | None = None
) -> tuple[EvalSet, np.ndarray, np.ndarray]:
    """`debian_retrieval_set` (up to 300 queries, a quarter of the documents at most) and the backbone's
    embeddings of its documents and queries, through the cache."""
    data = debian_retrieval_set(data_dir, n_docs=n_docs, n_queries=min(300, n_docs // 4))
    backbone = backbone or Backbone()
    doc_x = cached_embed(backbone, data.doc_texts, "document", cache)
    return data, doc_x, cached_embed(backbone, data.query_texts, "query", cache)


def fit_widths(doc_x: np.ndarray, widths: tuple[int, ...]) -> dict[int, SparseHead]:
    """Label-free heads on `doc_x` with `train --input`'s defaults, one per latent width (only h varied)."""
    rule = default_config(TrainingSet(doc_x, None, "label-free", ""))
    return {h: train_head(doc_x, replace(rule, hidden_dim=h)).head for h in dict.fromkeys(widths)}


def width_rows(data_dir: Path, backbone: Backbone, cache: Path, widths: tuple[int, ...] = WIDTHS) -> list[QualityRow]:
    """Label-free heads (the measured defaults) of several widths, and the default width rule, on
    `debian_retrieval_set`: nDCG@10 at k = 2, 8, 32 beside MRL and dense."""
    data, doc_x, query_x = debian_embeddings(data_dir, cache, backbone=backbone)
    rule = label_free_width(*doc_x.shape)
    rows = baseline_rows(query_x, doc_x, data.qrels, "debian-12k")
    for h, head in fit_widths(doc_x, (*widths, rule)).items():
        name = f"label-free, h = {h}" + (" (default rule)" if h == rule else "")
        rows += head_rows(name, head, query_x, doc_x, data.qrels, "debian-12k", (2, 8, 32))
    return rows


def head_rows(name: str, head: SparseHead, query_x: np.ndarray, doc_x: np.ndarray, qrels: dict[int, set[int]],
              eval_set: str, ks: tuple[int, ...] = KS) -> list[QualityRow]:  # fmt: skip
    """nDCG@10 / recall@10 at each k, by dot product (raw codes, as an engine ranks) and by cosine; and with
    queries at `default_query_k(k)` (", longer queries": what search does by default) where that differs."""
    rows = []
    for k in ks:
        docs = head.encode(doc_x, k)
        longer = default_query_k(k, head.hidden_dim)
        for q, suffix in ((k, ""), (longer, LONGER_SUFFIX)) if longer != k else ((k, ""),):
            queries = head.encode(query_x, q)
            for method, scores in (("sparse-dot", retrieval_metrics(queries, docs, qrels, cosine=False)),
                                   ("sparse-cos", retrieval_metrics(queries, docs, qrels))):  # fmt: skip
                rows += [QualityRow(name, eval_set, m, method + suffix, k, v) for m, v in scores.items()]
    return rows


def baseline_rows(query_x: np.ndarray, doc_x: np.ndarray, qrels: dict[int, set[int]], eval_set: str) -> list:
    rows = []
    for m in [*KS, doc_x.shape[1]]:
        method = "dense" if m == doc_x.shape[1] else "MRL"
        scores = retrieval_metrics(mrl_truncate(query_x, m), mrl_truncate(doc_x, m), qrels)
        rows += [QualityRow("-", eval_set, metric, method, m, v) for metric, v in scores.items()]
    return rows


def run_quality(
    data_dir: Path, out: Path, cache: Path, heads: dict[str, SparseHead], console: Console | None = None,
    fit: Fit | None = None,
) -> list[QualityRow]:  # fmt: skip
    """Every table of docs/quality.md; `heads` are scored on the medical halves and Banking77, and `fit`
    (texts file, head directory, setting overrides -> head) is run on the package corpus and on the medical
    corpus, with its defaults and once per k."""
    console = console or Console()
    backbone = Backbone()
    out.mkdir(parents=True, exist_ok=True)
    work = cache / "quality"  # fitted heads, the texts they were fitted on, per-head evaluation files
    work.mkdir(parents=True, exist_ok=True)
    split = medical_split(data_dir, 0)
    q_x = cached_embed(backbone, [q.question for q in split.questions], "query", cache)
    c_x = cached_embed(backbone, [c.text for c in split.chunks], "document", cache)
    halves = {"medical-tune": split.test_q[0::2], "medical-final": split.test_q[1::2]}
    rows: list[QualityRow] = []
    all_heads = dict(heads)
    if fit is not None:
        medical_file = work / "medical-texts.jsonl"
        with open(medical_file, "w") as f:
            for i, text in enumerate([c.text for c in split.chunks]):
                f.write(json.dumps({"id": i, "text": text}) + "\n")
        all_heads["label-free fit (medical chunks)"] = fit(medical_file, work / "medical-fit", {})
        # the same fit trained at one k only, scored at that k: what one head for every k is compared with
        per_k = {k: fit(medical_file, work / f"medical-fit-k{k}", {"k": k, "also_ks": []}) for k in KS}
    for eval_set, questions in halves.items():
        qrels = {i: split.qrels[q] for i, q in enumerate(questions)}
        rows += baseline_rows(q_x[questions], c_x, qrels, eval_set)
        for name, head in all_heads.items():
            rows += head_rows(name, head, q_x[questions], c_x, qrels, eval_set)
        if fit is not None:
            for k, head in per_k.items():
                rows += head_rows("label-free fit, one head per k", head, q_x[questions], c_x, qrels, eval_set, (k,))
    for name, head in all_heads.items():
        rows.append(QualityRow(name, "medical-chunks", "dead@2", "sparse", 2, dead_latent_ratio(head.encode(c_x, 2))))
    rows += _banking_rows(data_dir, backbone, cache, heads)
    rows += width_rows(data_dir, backbone, cache)
    rows += _package_rows(data_dir, backbone, cache, heads, out, work, fit, console)
    write_csv(rows, out / "quality.csv")
    (out / "quality.md").write_text("\n".join(quality_tables(rows)) + "\n")
    console.print(f"wrote {out / 'quality.csv'} and {out / 'quality.md'}")
    return rows


def _banking_rows(data_dir: Path, backbone: Backbone, cache: Path, heads: dict[str, SparseHead]) -> list:
    data = load_banking77(data_dir)
    train_x = cached_embed(backbone, data.train_texts, "document", cache)
    test_x = cached_embed(backbone, data.test_texts, "document", cache)
    names = sorted(set(data.train_labels))
    y_train = np.array([names.index(c) for c in data.train_labels])
    y_test = np.array([names.index(c) for c in data.test_labels])
    rows = []
    for m in (8, 64):
        acc = classification_accuracy(mrl_truncate(train_x, m), y_train, mrl_truncate(test_x, m), y_test)
        rows.append(QualityRow("-", "banking77", "accuracy", "MRL", m, acc))
    for name, head in heads.items():
        for k in (2, 8, 32):
            acc = classification_accuracy(head.encode(train_x, k), y_train, head.encode(test_x, k), y_test)
            rows.append(QualityRow(name, "banking77", "accuracy", "sparse", k, acc))
    return rows


def _package_rows(
    data_dir: Path, backbone: Backbone, cache: Path, heads: dict[str, SparseHead], out: Path, work: Path,
    fit: Fit | None, console: Console,
) -> list[QualityRow]:  # fmt: skip
    """hit@5 through qdrant-edge; the corpus and queries files are written to `out/packages` for re-runs."""
    data = package_eval_set(data_dir)
    corpus, _ = write_eval_files(data, out / "packages")
    candidates = dict(heads)
    if fit is not None:
        candidates["train --input corpus.jsonl (defaults)"] = fit(corpus, work / "packages-fit", {})
    rows = []
    embedder = CachedEmbedder(backbone, cache / "embeddings.sqlite")
    for i, (name, head) in enumerate(candidates.items()):
        encoder = CSRv2Encoder(embedder, head, k=8)
        for normalize in (False, True):
            evals = run_corpus_eval(data, encoder, work / f"packages-{i}", (2, 8, 32), (8, 32), console=console,
                                    normalize=normalize)  # fmt: skip
            for r in evals:
                sparse = r.method in ("sparse", LONGER)
                method = ("sparse-cos" if normalize else "sparse-dot") if sparse else r.method
                method += LONGER_SUFFIX if r.method == LONGER else ""
                rows.append(QualityRow(name if sparse else "-", "packages", "hit@5", method, r.dims, r.hit_at_5))
    return rows


def quality_tables(rows: list[QualityRow]) -> list[str]:
    """Markdown: one table per (eval set, metric), a row per head and scoring, a column per k / dims."""
    lines: list[str] = []
    for eval_set, metric in dict.fromkeys((r.eval_set, r.metric) for r in rows):
        sel = [r for r in rows if (r.eval_set, r.metric) == (eval_set, metric)]
        sizes = sorted({r.dims for r in sel})
        body = []
        for head, method in dict.fromkeys((r.head, r.method) for r in sel):
            by = {r.dims: r.score for r in sel if (r.head, r.method) == (head, method)}
            body.append([head, method, *(f"{by[s]:.3f}" if s in by else "" for s in sizes)])
        lines += [f"### {eval_set}: {metric}", "", *table(["head", "scoring", *map(str, sizes)], body), ""]
    return lines


FIT_SIZES = (100, 200, 400, 800)


def corpus_subset(
    qrels: dict[int, set[int]], n_docs: int, size: int, rng: np.random.Generator
) -> tuple[list[int], list[int], dict[int, set[int]]]:
    """A corpus of `size` of `n_docs` documents: the relevant documents of random queries while they fill at most
    half of it, then random others. Returns its document rows, the queries all of whose relevant documents it
    holds, and their qrels renumbered (query i of those -> document rows of the subset)."""
    chosen: set[int] = set()
    for q in rng.permutation(sorted(qrels)):
        if len(chosen | qrels[q]) <= size // 2:
            chosen |= qrels[q]
    others = [i for i in rng.permutation(n_docs) if i not in chosen][: size - len(chosen)]
    docs = sorted(chosen) + sorted(others)
    where = {d: i for i, d in enumerate(docs)}
    kept = {q: {where[d] for d in rel} for q, rel in qrels.items() if rel <= set(where)}
    queries = sorted(kept)
    return docs, queries, {i: kept[q] for i, q in enumerate(queries)}


def fit_size_rows(
    data_dir: Path, backbone: Backbone, cache: Path, sizes: tuple[int, ...] = FIT_SIZES, seed: int = 0
) -> list[QualityRow]:
    """The general head against a label-free head fitted on the corpus itself, for corpora of `sizes` medical
    chunks (the relevant chunks of the tune questions that fit, plus random others): nDCG@10 at k = 2 and 8
    with queries as served. The size at which fitting starts to pay is `index`'s minimum for fitting."""
    from csrv2_vdb.head import pretrained_head

    data = medical_eval_set(data_dir, "tune")
    doc_x = cached_embed(backbone, data.doc_texts, "document", cache)
    query_x = cached_embed(backbone, data.query_texts, "query", cache)
    rng = np.random.default_rng(seed)
    general = pretrained_head()
    rows: list[QualityRow] = []
    for size in sizes:
        docs, queries, qrels = corpus_subset(data.qrels, len(doc_x), size, rng)
        qx, dx = query_x[queries], doc_x[docs]
        name = f"medical-tune-{size}"
        fitted = train_head(dx, default_config(TrainingSet(dx, None, "label-free", ""))).head
        rows += baseline_rows(qx, dx, qrels, name)
        rows += head_rows("general", general, qx, dx, qrels, name, (2, 8))
        rows += head_rows("fitted on the corpus", fitted, qx, dx, qrels, name, (2, 8))
    return rows


BALANCE_COEFS = (0.0, 0.01, 0.03, 0.1)


def balance_rows(
    data_dir: Path, backbone: Backbone, cache: Path, coefs: tuple[float, ...] = BALANCE_COEFS, out: Path | None = None
) -> list[QualityRow]:
    """Label-free heads fitted with the latent load-balancing term at several weights (`train --input`'s defaults
    otherwise) on the medical chunks and on the package corpus: nDCG@10 at k = 2 and 8 with queries as served
    (cosine, the default), and the postings an exact search reads per query. Medical "tune" questions were
    looked at while choosing the weights, "final" and the packages were not. With `out`, each head is saved
    there as `<corpus>-balance-<coef>` (for `bench retrieval --head/--compare-head`)."""
    from csrv2_vdb.benchmarks.speed.corpus import latent_usage

    medical, packages = {h: medical_eval_set(data_dir, h) for h in ("tune", "final")}, package_eval_set(data_dir)
    sets = {"medical": (medical["tune"].doc_texts, {f"medical-{h}": e for h, e in medical.items()}),
            "packages": (packages.doc_texts, {"packages": packages})}  # fmt: skip
    rows: list[QualityRow] = []
    for corpus, (doc_texts, evals) in sets.items():
        doc_x = cached_embed(backbone, doc_texts, "document", cache)
        rule = default_config(TrainingSet(doc_x, None, "label-free", ""))
        queries = {name: cached_embed(backbone, data.query_texts, "query", cache) for name, data in evals.items()}
        for coef in coefs:
            head = train_head(doc_x, replace(rule, balance_coef=coef)).head
            if out is not None:
                head.save(out / f"{corpus}-balance-{coef:g}")
            name = f"balance {coef:g}"
            for eval_set, data in evals.items():
                query_x = queries[eval_set]
                rows += [r for r in head_rows(name, head, query_x, doc_x, data.qrels, eval_set, (2, 8))
                         if r.method == "sparse-cos" + LONGER_SUFFIX and r.metric.startswith("ndcg")]  # fmt: skip
                for k in (2, 8):
                    used = latent_usage(
                        head.encode(doc_x, k), head.encode(query_x, default_query_k(k, head.hidden_dim))
                    )
                    rows.append(QualityRow(name, eval_set, "postings/query", "sparse", k, used["postings_per_query"]))
                    rows.append(QualityRow(name, eval_set, "top-1% share", "sparse", k, used["top1pct_postings_share"]))
    return rows
