"""The paper's comparison on this machine: CSRv2 vs CSR vs MRL at each k, on Banking77 and GraphRAG-Bench medical.

    csrv2-vdb eval --data ../shared/data --out docs/reproduction

- Banking77 (classification accuracy, clustering V-measure): heads train on the train split with the
  intent as label (CSRv2) or in-batch (CSR); metrics on the test split.
- GraphRAG-Bench medical (retrieval nDCG@10, recall@10): questions are split in half; a head trains
  on the train questions, all 150-word chunks and the corpus sentences, a question sharing its label
  with each chunk that answers it (`answer_qrels`; a chunk answering several questions is one row per
  question); metrics on the held-out questions against all chunks.
- MRL: the first m dims of the MiniLM embedding, re-normalised; and MRL-trained, the same after a
  Matryoshka projection trained on the same labels. Dense: the full 384 dims.
The same optimiser settings (lr, epochs, batch) are used for CSR and CSRv2 at every k.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from csrv2_vdb.backbone import Backbone, cached_embed
from csrv2_vdb.data import answer_qrels, chunk_words, load_banking77, load_corpus, load_questions
from csrv2_vdb.demo import corpus_sentences
from csrv2_vdb.encoder import mrl_truncate
from csrv2_vdb.evaluation import (
    Features,
    classification_accuracy,
    clustering_v_measure,
    dead_latent_ratio,
    retrieval_metrics,
)
from csrv2_vdb.head import SparseHead
from csrv2_vdb.training.labels import classification_labels, retrieval_rows
from csrv2_vdb.training.mrl import MatryoshkaProjection, MRLConfig, train_matryoshka
from csrv2_vdb.training.trainer import HeadTrainConfig, cached_head, fingerprint

Transform = Callable[[np.ndarray], Features]


@dataclass
class Result:
    task: str
    metric: str
    method: str
    dims: int
    score: float
    dead_ratio: float | None = None


@dataclass
class Task:
    """Training rows (embeddings + labels) and an evaluation function of a feature transform."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    evaluate: Callable[[Transform], dict[str, float]]
    dead_on: np.ndarray  # rows on which the dead-latent ratio is measured


def banking_task(data_dir: Path, backbone: Backbone, cache: Path) -> Task:
    data = load_banking77(data_dir)
    train_x = cached_embed(backbone, data.train_texts, "document", cache)
    test_x = cached_embed(backbone, data.test_texts, "document", cache)
    names = sorted(set(data.train_labels))
    y_train = classification_labels(data.train_labels)
    y_test = np.array([names.index(c) for c in data.test_labels])

    def evaluate(transform: Transform) -> dict[str, float]:
        test = transform(test_x)
        return {
            "accuracy": classification_accuracy(transform(train_x), y_train, test, y_test),
            "v_measure": clustering_v_measure(test, y_test),
        }

    return Task("banking77", train_x, y_train, evaluate, test_x)


def medical_task(data_dir: Path, backbone: Backbone, cache: Path, seed: int = 0) -> Task:
    text = load_corpus(data_dir)
    questions = load_questions(data_dir)
    chunks = chunk_words(text, prefix="medical")
    qrels = answer_qrels(questions, chunks)
    train_q, test_q = split_questions(qrels, seed)
    q_x = cached_embed(backbone, [q.question for q in questions], "query", cache)
    c_x = cached_embed(backbone, [c.text for c in chunks], "document", cache)
    s_x = cached_embed(backbone, corpus_sentences(text), "document", cache)
    items = np.concatenate([q_x[train_q], c_x, s_x])
    rows, y = retrieval_rows(len(train_q), len(chunks) + len(s_x), {i: qrels[q] for i, q in enumerate(train_q)})
    train_x = items[rows]
    test_rel = {i: qrels[q] for i, q in enumerate(test_q)}

    def evaluate(transform: Transform) -> dict[str, float]:
        return retrieval_metrics(transform(q_x[test_q]), transform(c_x), test_rel)

    return Task("medical", train_x, y, evaluate, c_x)


def trained_head(task: Task, method: str, k: int, config: HeadTrainConfig, cache: Path) -> SparseHead:
    """The task's CSR / CSRv2 head at k from the cache, trained and cached when missing."""
    config = HeadTrainConfig(**{**asdict(config), "method": method, "k": k})
    labels = task.train_y if method == "csrv2" else None
    return cached_head(cache / "heads", f"{task.name}-{method}-k{k}", task.train_x, config, labels)


def run_reproduction(
    data_dir: Path,
    out_dir: Path,
    cache: Path,
    ks: Sequence[int] = (2, 4, 8, 16, 32, 64),
    dims: Sequence[int] = (2, 4, 8, 16, 32, 64),
    tasks: Sequence[str] = ("banking77", "medical"),
    config: HeadTrainConfig | None = None,
    console: Console | None = None,
    backbone: Backbone | None = None,
) -> list[Result]:
    """Train what is missing (cached by settings), evaluate everything, write CSV, Markdown and PNG.

    `backbone` defaults to the offline MiniLM; pass a finetuned one (`csrv2-vdb finetune`) for full CSRv2.
    """
    console = console or Console()
    config = config or HeadTrainConfig(lr=1e-3, epochs=10)
    backbone = backbone or Backbone()
    results: list[Result] = []
    builders = {"banking77": banking_task, "medical": medical_task}
    for name in tasks:
        task = builders[name](data_dir, backbone, cache)
        console.print(f"[bold]{name}[/]: {len(task.train_x)} training rows")

        def record(method: str, size: int, transform: Transform, dead: float | None = None, t: Task = task) -> None:
            scores = t.evaluate(transform)
            results.extend(Result(t.name, metric, method, size, value, dead) for metric, value in scores.items())
            console.print(f"  {method:12s} {size:4d} " + " ".join(f"{m}={v:.4f}" for m, v in scores.items()))

        for method, label in (("csr", "CSR"), ("csrv2", "CSRv2")):
            for k in ks:
                head = trained_head(task, method, k, config, cache)
                dead = dead_latent_ratio(head.encode(task.dead_on, k))
                record(label, k, partial(head.encode, k=k), dead)
        projection = _projection(task, cache)
        for m in dims:
            record("MRL", m, partial(mrl_truncate, dims=m))
            record("MRL-trained", m, partial(projection.transform, dims=m))
        record("dense", backbone.dim, lambda x: x)
    write_reports(results, out_dir)
    console.print(f"wrote {out_dir}/results.csv, results.md, results.png")
    return results


def _projection(task: Task, cache: Path) -> MatryoshkaProjection:
    config = MRLConfig()
    directory = cache / "heads" / f"{task.name}-matryoshka-{fingerprint(config, task.train_x, task.train_y)}"
    if (directory / "model.safetensors").exists():
        return MatryoshkaProjection.load(directory)
    projection, _ = train_matryoshka(task.train_x, task.train_y, config)
    projection.save(directory)
    return projection


METHODS = ("CSRv2", "CSR", "MRL", "MRL-trained", "dense")


def task_pairs(task: str, data_dir: Path, max_pairs: int, seed: int = 0) -> list[tuple[str, str]]:
    """Finetuning pairs from a task's training labels: same-intent texts, or (question, answering chunk)."""
    from csrv2_vdb.training.finetune import label_pairs

    if task == "banking77":
        data = load_banking77(data_dir)
        rows = label_pairs(classification_labels(data.train_labels), max_pairs, seed)
        return [(data.train_texts[i], data.train_texts[j]) for i, j in rows]
    if task == "medical":
        questions, chunks = load_questions(data_dir), chunk_words(load_corpus(data_dir), prefix="medical")
        qrels = answer_qrels(questions, chunks)
        train_q = split_questions(qrels, seed)[0]
        return [(questions[q].question, chunks[min(qrels[q])].text) for q in train_q][:max_pairs]
    raise ValueError(f"unknown task {task!r}; choose banking77 or medical")


def split_questions(qrels: dict[int, set[int]], seed: int) -> tuple[list[int], list[int]]:
    """Half of the questions (with relevant chunks) for training, half held out."""
    order = np.random.default_rng(seed).permutation(sorted(qrels))
    half = len(order) // 2
    return sorted(order[:half].tolist()), sorted(order[half:].tolist())


def write_reports(results: list[Result], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(results[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    lines = []
    panels = sorted({(r.task, r.metric) for r in results})
    for task, metric in panels:
        sel = [r for r in results if (r.task, r.metric) == (task, metric)]
        sizes = sorted({r.dims for r in sel if r.method != "dense"})
        lines += [f"### {task}: {metric}", "", "| method | " + " | ".join(f"k/dims {s}" for s in sizes) + " |"]
        lines.append("|---|" + "---|" * len(sizes))
        for method in METHODS:
            by_size = {r.dims: r.score for r in sel if r.method == method}
            if method == "dense" and by_size:
                lines.append(
                    f"| dense ({next(iter(by_size))} dims) | "
                    + " | ".join(f"{next(iter(by_size.values())):.4f}" for _ in sizes)
                    + " |"
                )
            elif by_size:
                lines.append(
                    f"| {method} | " + " | ".join(f"{by_size[s]:.4f}" if s in by_size else "" for s in sizes) + " |"
                )
        lines.append("")
    dead = sorted({(r.task, r.method, r.dims, float(r.dead_ratio)) for r in results if r.dead_ratio is not None})
    if dead:
        sizes = sorted({d[2] for d in dead})
        lines += ["### dead-latent ratio (share of the h latents never active on the evaluation rows)", ""]
        lines += ["| task / method | " + " | ".join(f"k {s}" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
        for task, method in sorted({(d[0], d[1]) for d in dead}):
            by_size = {d[2]: d[3] for d in dead if (d[0], d[1]) == (task, method)}
            lines.append(
                f"| {task} / {method} | " + " | ".join(f"{by_size.get(s, float('nan')):.2f}" for s in sizes) + " |"
            )
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    _plot(results, panels, out_dir / "results.png")


def _plot(results: list[Result], panels: list[tuple[str, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.8))
    for ax, (task, metric) in zip(axes, panels, strict=False):
        for method, marker in zip(METHODS, "os^v*", strict=True):
            sel = sorted((r.dims, r.score) for r in results if (r.task, r.metric, r.method) == (task, metric, method))
            if method == "dense" and sel:
                ax.axhline(sel[0][1], color="gray", linestyle="--", label="dense")
            elif sel:
                ax.plot(*zip(*sel, strict=True), marker=marker, label=method)
        _log_ticks(ax, sorted({r.dims for r in results if r.method != "dense"}))
        ax.set(title=f"{task}: {metric}", xlabel="active dims k / MRL dims")
    ax = axes[-1]
    for task, method in sorted({(r.task, r.method) for r in results if r.dead_ratio is not None}):
        sel = sorted({(r.dims, float(r.dead_ratio or 0)) for r in results if (r.task, r.method) == (task, method)})
        ax.plot(*zip(*sel, strict=True), marker="o", label=f"{task} {method}")
    _log_ticks(ax, sorted({r.dims for r in results if r.dead_ratio is not None}))
    ax.set(title="dead-latent ratio", xlabel="k")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_ticks(ax: Any, ticks: list[int]) -> None:
    """Log-scaled x axis labelled with the k / dims values themselves."""
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()


def read_results(path: Path) -> list[Result]:
    """Results back from a results.csv (to redraw the reports without recomputing)."""
    with open(path, newline="") as f:
        return [
            Result(r["task"], r["metric"], r["method"], int(r["dims"]), float(r["score"]),
                   float(r["dead_ratio"]) if r["dead_ratio"] else None)
            for r in csv.DictReader(f)
        ]  # fmt: skip
