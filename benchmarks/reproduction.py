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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import fingerprint
from csrv2_vdb.benchmarks.metrics import dead_latent_ratio
from csrv2_vdb.benchmarks.reports import log_ticks, pyplot, write_csv
from csrv2_vdb.benchmarks.tasks import Task, Transform, banking_task, medical_task, trained_head
from csrv2_vdb.encoder import mrl_truncate
from csrv2_vdb.training.mrl import MatryoshkaProjection, MRLConfig, train_matryoshka
from csrv2_vdb.training.trainer import HeadTrainConfig


@dataclass
class Result:
    task: str
    metric: str
    method: str
    dims: int
    score: float
    dead_ratio: float | None = None


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
        projection = trained_projection(task, cache)
        for m in dims:
            record("MRL", m, partial(mrl_truncate, dims=m))
            record("MRL-trained", m, partial(projection.transform, dims=m))
        record("dense", backbone.dim, lambda x: x)
    write_reports(results, out_dir)
    console.print(f"wrote {out_dir}/results.csv, results.md, results.png")
    return results


def trained_projection(task: Task, cache: Path) -> MatryoshkaProjection:
    config = MRLConfig()
    directory = cache / "heads" / f"{task.name}-matryoshka-{fingerprint(config, task.train_x, task.train_y)}"
    if (directory / "model.safetensors").exists():
        return MatryoshkaProjection.load(directory)
    projection, _ = train_matryoshka(task.train_x, task.train_y, config)
    projection.save(directory)
    return projection


METHODS = ("CSRv2", "CSR", "MRL", "MRL-trained", "dense")


def write_reports(results: list[Result], out_dir: Path) -> None:
    write_csv(results, out_dir / "results.csv")
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
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 3.8))
    for ax, (task, metric) in zip(axes, panels, strict=False):
        for method, marker in zip(METHODS, "os^v*", strict=True):
            sel = sorted((r.dims, r.score) for r in results if (r.task, r.metric, r.method) == (task, metric, method))
            if method == "dense" and sel:
                ax.axhline(sel[0][1], color="gray", linestyle="--", label="dense")
            elif sel:
                ax.plot(*zip(*sel, strict=True), marker=marker, label=method)
        log_ticks(ax, sorted({r.dims for r in results if r.method != "dense"}))
        ax.set(title=f"{task}: {metric}", xlabel="active dims k / MRL dims")
    ax = axes[-1]
    for task, method in sorted({(r.task, r.method) for r in results if r.dead_ratio is not None}):
        sel = sorted({(r.dims, float(r.dead_ratio or 0)) for r in results if (r.task, r.method) == (task, method)})
        ax.plot(*zip(*sel, strict=True), marker="o", label=f"{task} {method}")
    log_ticks(ax, sorted({r.dims for r in results if r.dead_ratio is not None}))
    ax.set(title="dead-latent ratio", xlabel="k")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_results(path: Path) -> list[Result]:
    """Results back from a results.csv (to redraw the reports without recomputing)."""
    with open(path, newline="") as f:
        return [
            Result(r["task"], r["metric"], r["method"], int(r["dims"]), float(r["score"]),
                   float(r["dead_ratio"]) if r["dead_ratio"] else None)
            for r in csv.DictReader(f)
        ]  # fmt: skip
