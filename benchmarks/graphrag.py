"""GraphRAG-Bench harness: the same chunks as sparse CSRv2 / CSR collections and MRL / dense collections,
retrieval and generation scored per question type.

Offline metrics (no LLM, always computed):
- answer-token recall: share of the reference answer's content words found in the top-k chunks;
- embedding attribution: share of reference-answer sentences whose closest retrieved chunk (cosine of
  full MiniLM embeddings, independent of the method under test) is at least `attribution_threshold`.
LLM metrics (with an OpenAI-compatible endpoint; prompts and parsers in judge.py):
- context recall: share of reference statements the judge finds supported by the retrieved chunks;
- context relevance: the judge's 0/1/2 rating of the chunks for the question, reported / 2;
- generation: a reader answers from the chunks; judge-free: ROUGE-L F1 (rouge-score) and answer F1
  (content words) against the reference, and `answered` (the reader's reply was not an echo); judged:
  accuracy (0/1), coverage (share of reference statements the answer covers) and faithfulness (share
  of answer sentences the chunks support). The share of judge replies that parsed is written to
  parse_rates.md per method.
Questions that trained a head (the seeded train half of `answer_qrels`) are left out of every method.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from csrv2_vdb.adapters import open_store
from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import cached_embed, cached_head
from csrv2_vdb.benchmarks.datasets import (
    Chunk,
    Question,
    answer_token_recall,
    chunk_words,
    load_corpus,
    load_questions,
)
from csrv2_vdb.benchmarks.judge import JUDGED, llm_scores, parse_rates, sentences
from csrv2_vdb.benchmarks.llm import ChatClient
from csrv2_vdb.benchmarks.reports import pyplot, table, write_csv
from csrv2_vdb.benchmarks.tasks import medical_split, medical_task, trained_head
from csrv2_vdb.encoder import CSRv2Encoder, mrl_truncate
from csrv2_vdb.errors import CollectionExistsError, DataNotFoundError, InvalidArgumentError, InvalidRecordError
from csrv2_vdb.head import DEFAULT_HEAD, SparseHead, pretrained_head
from csrv2_vdb.store import SparseStore
from csrv2_vdb.training.trainer import HeadTrainConfig

QUESTION_TYPES = ("Fact Retrieval", "Complex Reasoning", "Contextual Summarize", "Creative Generation")


@dataclass
class Score:
    method: str
    dims: int
    question_type: str
    metric: str
    value: float
    questions: int


def embedding_attribution(answer_vectors: np.ndarray, chunk_vectors: np.ndarray, threshold: float) -> float:
    """Share of answer sentences (rows, unit vectors) whose best retrieved chunk has cosine >= threshold."""
    if len(chunk_vectors) == 0:
        return 0.0
    return float(((answer_vectors @ chunk_vectors.T).max(axis=1) >= threshold).mean())


@dataclass
class Method:
    """One collection under test: name, size (k or dims), and how to turn dense embeddings into its vectors."""

    name: str
    dims: int
    transform: Callable[[np.ndarray], object]
    sparse_dim: int | None = None
    dense_dim: int | None = None


def methods_for(
    specs: Sequence[str], backbone: Backbone, data_dir: Path, cache: Path, corpus: Corpus | None = None
) -> list[Method]:
    """ "csrv2:8" (question-supervised, from the reproduction pipeline), "csrv2-zeroshot:8" (the shipped general
    head: no medical text), "csrv2-fit:8" (fitted label-free on the corpus's chunks, no question),
    "csr:32", "mrl:8", "dense"."""
    out = []
    task = None
    for spec in specs:
        kind, _, size = spec.partition(":")
        if kind in ("csrv2", "csr"):
            task = task or medical_task(data_dir, backbone, cache)
            head = trained_head(task, kind, int(size), HeadTrainConfig(lr=1e-3, epochs=10), cache)
            label = "CSRv2 supervised" if kind == "csrv2" else "CSR"
            out.append(Method(label, int(size), partial(head.encode, k=int(size)), sparse_dim=head.hidden_dim))
        elif kind == "csrv2-zeroshot":
            head = pretrained_head(DEFAULT_HEAD)
            encode = CSRv2Encoder(None, head).encode_embeddings  # the library's default: normalised codes
            out.append(Method("CSRv2 zero-shot", int(size), partial(encode, k=int(size)), sparse_dim=head.hidden_dim))
        elif kind == "csrv2-fit":
            if corpus is None:
                raise InvalidArgumentError("csrv2-fit needs the corpus to fit on")
            head = _label_free_head(corpus, cache)
            encode = CSRv2Encoder(None, head).encode_embeddings
            out.append(Method("CSRv2 fitted", int(size), partial(encode, k=int(size)), sparse_dim=head.hidden_dim))
        elif kind == "mrl":
            out.append(Method("MRL", int(size), partial(mrl_truncate, dims=int(size)), dense_dim=int(size)))
        elif kind == "mrl-trained":
            from csrv2_vdb.benchmarks.reproduction import trained_projection

            task = task or medical_task(data_dir, backbone, cache)
            projection = trained_projection(task, cache)
            out.append(Method("MRL trained", int(size), partial(projection.transform, dims=int(size)),
                              dense_dim=int(size)))  # fmt: skip
        elif kind == "dense":
            out.append(Method("dense", backbone.dim, np.asarray, dense_dim=backbone.dim))
        else:
            raise InvalidArgumentError(
                f"unknown method {spec!r}; use csrv2:K, csrv2-zeroshot:K, csrv2-fit:K, csr:K, mrl:DIMS, "
                "mrl-trained:DIMS or dense"
            )
    return out


def _label_free_head(corpus: Corpus, cache: Path) -> SparseHead:
    """What `csrv2-vdb train --input chunks` fits (the measured label-free defaults) on the chunks: no question
    is used."""
    from csrv2_vdb.training.data import TrainingSet
    from csrv2_vdb.training.fit import default_config

    config = default_config(TrainingSet(corpus.chunk_x, None, "label-free", ""))
    return cached_head(cache / "heads", "graphrag-label-free", corpus.chunk_x, config)


@dataclass
class Corpus:
    """What every method is scored on: the chunks, the held-out questions, and the embeddings they share."""

    chunks: list[Chunk]
    questions: list[Question]
    chunk_x: np.ndarray
    query_x: np.ndarray
    answer_x: list[np.ndarray]  # per question, its reference answer's sentence embeddings


DOMAINS = ("medical", "novel")


def read_corpus_file(path: Path) -> str:
    """A user-given corpus: GraphRAG-Bench's JSON (a list of {"context": ...}) or plain UTF-8 text."""
    if not path.is_file():
        raise DataNotFoundError(f"corpus file {path} does not exist")
    if path.suffix == ".json":
        try:
            return "\n".join(str(r["context"]) for r in json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRecordError(f"{path}: expected a JSON list of objects with a 'context' ({exc!r})") from None
    return path.read_text(encoding="utf-8")


def load_eval_corpus(
    data_dir: Path, cache: Path, backbone: Backbone, chunk_size: int, overlap: int, per_type: int | None,
    domain: str = "medical", corpus_path: Path | None = None,
) -> Corpus:  # fmt: skip
    """Chunks and the questions no head trained on (at most `per_type` per question type), embedded once.
    The medical corpus ships in the data folder; another domain's corpus comes from `corpus_path`."""
    if domain not in DOMAINS:
        raise InvalidArgumentError(f"domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    if corpus_path is None and domain != "medical":
        raise DataNotFoundError(f"the {domain} corpus is not in the data folder: give its file with --corpus")
    text = read_corpus_file(corpus_path) if corpus_path is not None else load_corpus(data_dir, domain)
    questions = load_questions(data_dir, domain)
    chunks = chunk_words(text, chunk_size, overlap, prefix=domain)
    # the questions the supervised (medical) heads saw
    trained_on = set(medical_split(data_dir).train_q) if domain == "medical" else set()
    picked: list[int] = []
    for qtype in QUESTION_TYPES:
        rows = [i for i, q in enumerate(questions) if q.question_type == qtype and i not in trained_on]
        picked += rows[:per_type]
    eval_q = [questions[i] for i in picked]
    answer_sents = [sentences(q.answer) for q in eval_q]
    sent_x = cached_embed(backbone, [s for ss in answer_sents for s in ss], "document", cache)
    offsets = np.cumsum([0] + [len(s) for s in answer_sents])
    return Corpus(
        chunks,
        eval_q,
        cached_embed(backbone, [c.text for c in chunks], "document", cache),
        cached_embed(backbone, [q.question for q in eval_q], "query", cache),
        [sent_x[offsets[j] : offsets[j + 1]] for j in range(len(eval_q))],
    )


def index_method(store: SparseStore, method: Method, corpus: Corpus, owned: bool) -> str:
    """A fresh collection of the chunks as `method` encodes them; an existing one is dropped only when `owned`."""
    name = f"graphrag_{re.sub(r'[^a-z0-9]+', '_', method.name.lower())}_{method.dims}"
    if name in store.list_collections():
        if not owned:
            raise CollectionExistsError(
                f"collection {name!r} already exists in the store; this run did not create it and will "
                "not drop it. Drop it yourself, or point --store at another location"
            )
        store.drop_collection(name)
    store.create_collection(name, sparse_dim=method.sparse_dim, dense_dim=method.dense_dim)
    vectors: Any = method.transform(corpus.chunk_x)
    ids = [c.id for c in corpus.chunks]
    for start in range(0, len(ids), 512):
        store.upsert(name, ids[start : start + 512], vectors[start : start + 512])
    return name


def score_retrieval(
    corpus: Corpus, retrieved: list[list[int]], client: ChatClient | None, attribution_threshold: float
) -> dict[str, list]:
    """Per question, every metric: the offline ones always, the LLM-judged ones with a client."""
    texts = [[corpus.chunks[i].text for i in r] for r in retrieved]
    per_q: dict[str, list] = {
        "answer_token_recall": [answer_token_recall(q.answer, t) for q, t in zip(corpus.questions, texts, strict=True)],
        "embedding_attribution": [
            embedding_attribution(a, corpus.chunk_x[r], attribution_threshold)
            for a, r in zip(corpus.answer_x, retrieved, strict=True)
        ],
    }
    if client is not None:
        per_q.update(llm_scores(client, corpus.questions, texts))
    return per_q


def by_question_type(method: Method, questions: list[Question], per_q: dict[str, list]) -> list[Score]:
    """Each metric's mean per question type (questions a judge could not score are left out)."""
    scores = []
    for metric, values in per_q.items():
        for qtype in QUESTION_TYPES:
            vals = [v for q, v in zip(questions, values, strict=True) if q.question_type == qtype and v is not None]
            if vals:
                scores.append(Score(method.name, method.dims, qtype, metric, float(np.mean(vals)), len(vals)))
    return scores


def run_graphrag(
    data_dir: Path,
    out_dir: Path,
    cache: Path,
    methods: Sequence[str] = ("csrv2:8", "csrv2:32", "mrl:8", "mrl:32", "dense"),
    *,
    engine: str = "qdrant-edge",
    location: str | None = None,
    top_k: int = 5,
    chunk_size: int = 150,
    overlap: int = 30,
    per_type: int | None = None,
    client: ChatClient | None = None,
    attribution_threshold: float = 0.6,
    console: Console | None = None,
    domain: str = "medical",
    corpus_path: Path | None = None,
) -> list[Score]:
    """Index, retrieve, score; writes scores.csv, scores.md and scores.png under out_dir (and, with a client,
    parse_rates.csv/.md: the share of each judge's replies that parsed, per method).

    Only the harness's own store (<out>/store) is rebuilt; in a store the user names (`location`), a
    collection this run did not create is never dropped.
    """
    console = console or Console()
    backbone = Backbone()
    corpus = load_eval_corpus(data_dir, cache, backbone, chunk_size, overlap, per_type, domain, corpus_path)
    if domain != "medical" and any(m.partition(":")[0] in ("csrv2", "csr", "mrl-trained") for m in methods):
        raise InvalidArgumentError(
            "csrv2:K, csr:K and mrl-trained:DIMS are supervised on medical questions; on another domain use "
            "csrv2-zeroshot:K, csrv2-fit:K and mrl:DIMS"
        )
    console.print(f"{len(corpus.chunks)} chunks, {len(corpus.questions)} held-out questions, top-{top_k}, {engine}")
    position = {c.id: i for i, c in enumerate(corpus.chunks)}
    scores: list[Score] = []
    parsed: list[Score] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_store(engine, location or str(out_dir / "store")) as store:
        for method in methods_for(methods, backbone, data_dir, cache, corpus):
            name = index_method(store, method, corpus, owned=location is None)
            hits = store.search(name, method.transform(corpus.query_x), limit=top_k)
            per_q = score_retrieval(corpus, [[position[h.id] for h in row] for row in hits], client,
                                    attribution_threshold)  # fmt: skip
            scores += by_question_type(method, corpus.questions, per_q)
            parsed += [Score(method.name, method.dims, "all", metric, rate, n)
                       for metric, (rate, n) in parse_rates(per_q).items()]  # fmt: skip
            means = (
                f"{m}={np.mean(kept):.3f}" for m, vals in per_q.items() if (kept := [v for v in vals if v is not None])
            )
            console.print(f"  {name}: " + ", ".join(means))
    if client is not None:
        usage = client.usage
        console.print(
            f"LLM: {usage.calls} calls, {usage.cached} cached, "
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
        )
    write_scores(scores, out_dir)
    if parsed:
        write_parse_rates(parsed, out_dir)
    return scores


def write_parse_rates(rates: list[Score], out_dir: Path) -> None:
    """parse_rates.csv and .md: rows method and dims, columns the judged metrics, cells rate (replies)."""
    write_csv(rates, out_dir / "parse_rates.csv")
    cells = {(r.method, r.dims, r.metric): f"{r.value:.2f} ({r.questions})" for r in rates}
    rows = list(dict.fromkeys((r.method, r.dims) for r in rates))
    body = [[m, d, *(cells.get((m, d, metric), "") for metric in JUDGED)] for m, d in rows]
    (out_dir / "parse_rates.md").write_text("\n".join(table(["method", "dims", *JUDGED], body)) + "\n")


def write_scores(scores: list[Score], out_dir: Path) -> None:
    """scores.csv, scores.md (per metric: rows method and dims, columns question types) and scores.png."""
    write_csv(scores, out_dir / "scores.csv")
    metrics = list(dict.fromkeys(s.metric for s in scores))
    rows = list(dict.fromkeys((s.method, s.dims) for s in scores))
    lines = []
    for metric in metrics:
        cells = {(s.method, s.dims, s.question_type): s.value for s in scores if s.metric == metric}
        body = [
            [
                method,
                dims,
                *(f"{cells[method, dims, t]:.3f}" if (method, dims, t) in cells else "" for t in QUESTION_TYPES),
            ]
            for method, dims in rows
        ]
        lines += [f"### {metric}", "", *table(["method", "dims", *QUESTION_TYPES], body), ""]
    (out_dir / "scores.md").write_text("\n".join(lines))

    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        width = 0.8 / len(rows)
        for r, (method, dims) in enumerate(rows):
            vals = [
                next(
                    (
                        s.value
                        for s in scores
                        if (s.method, s.dims, s.metric, s.question_type) == (method, dims, metric, t)
                    ),
                    0.0,
                )
                for t in QUESTION_TYPES
            ]
            ax.bar(np.arange(4) + r * width, vals, width, label=f"{method} {dims}")
        ax.set_xticks(np.arange(4) + 0.4 - width / 2, [t.replace(" ", "\n") for t in QUESTION_TYPES], fontsize=7)
        ax.set_title(metric)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "scores.png", dpi=110)
    plt.close(fig)
