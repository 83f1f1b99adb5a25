"""Drift: do documents added after a head was fitted code as well as the ones it was fitted on?

A head fitted on a collection's documents is measured on them when it is fitted (`code_fidelity`: relative
reconstruction error of the embeddings from their codes, and recall@10 of code search against dense search
among the documents, each document a query), and its latent usage is kept with its labels. `check --input
NEW` measures the new documents the same way and compares. The fit's figures are in-sample: they are roughly
what a refit on the new documents would give them, so the gap is what a refit would recover. On a small
corpus the head gives many documents a latent of their own (h = 1,536 latents for 1,455 medical chunks), and
even documents of the same kind code worse than the fitted ones until a refit includes them. A refit is
suggested when recall@10 falls by more than RECALL_DROP, reconstruction error grows by more than
ERROR_GROWTH (relative), or more than HOT_NEW latents are hot among the new documents that were not at fit
(an unseen topic piling onto a few latents). The share of new postings on latents the fit never used is
reported too, not a reason by itself. Measured (docs/quality.md, "Drift"): planted topics, new texts of the
fitted topics: error +11 %, 0 newly hot (no refit); two unseen topics: +192 %, 37 newly hot (refit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from csrv2_vdb.diagnostics import LatentUsage
from csrv2_vdb.head import SparseHead

RECALL_DROP = 0.05
ERROR_GROWTH = 0.25
HOT_NEW = 10
SAMPLE = 2000  # rows measured (seeded sample)
QUERIES = 200  # of which asked as queries


def code_fidelity(head: SparseHead, k: int, x: np.ndarray, seed: int = 0) -> dict[str, float]:
    """On at most SAMPLE rows of embeddings `x`: relative reconstruction error (mean ||x - x_hat||^2 / ||x||^2)
    and recall@10 of code search against cosine search over the same rows (QUERIES rows as queries, each
    excluded from its own answers)."""
    rows = np.asarray(x, dtype=np.float32)
    if len(rows) > SAMPLE:
        rows = rows[np.sort(np.random.default_rng(seed).permutation(len(rows))[:SAMPLE])]
    with torch.inference_mode():
        out = head(torch.as_tensor(rows), k)
    x_hat = out.recon.numpy()
    error = float(np.mean(((rows - x_hat) ** 2).sum(1) / np.maximum((rows**2).sum(1), 1e-12)))
    codes = head.encode(rows, k).normalized().to_scipy()
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    asked = min(QUERIES, len(rows))
    sparse = (codes[:asked] @ codes.T).toarray()
    dense = unit[:asked] @ unit.T
    for scores in (sparse, dense):
        scores[np.arange(asked), np.arange(asked)] = -np.inf  # a document is not its own neighbour
    top = min(10, len(rows) - 1)
    recall = np.mean([
        len(set(np.argsort(-sparse[i])[:top]) & set(np.argsort(-dense[i])[:top])) / top for i in range(asked)
    ]) if top > 0 else 0.0  # fmt: skip
    return {"rows": float(len(rows)), "reconstruction_error": error, "recall_at_10": float(recall)}


@dataclass
class DriftReport:
    """The fit's figures beside the new documents', and whether a refit would pay."""

    fit: dict[str, float]
    new: dict[str, float]
    dead_at_fit_share: float  # share of the new documents' postings on latents the fit's documents never used
    hot_new: list[int]  # latents hot among the new documents that were not hot at fit
    reasons: list[str]

    @property
    def refit(self) -> bool:
        return bool(self.reasons)

    def lines(self) -> list[str]:
        out = [
            f"drift: {int(self.new['rows']):,} new documents against the {int(self.fit['rows']):,} the head was "
            "fitted on (in-sample: about what a refit would give the new ones)",
            f"  recall@10 of code search against dense: fit {self.fit['recall_at_10']:.3f}, "
            f"new {self.new['recall_at_10']:.3f}",
            f"  reconstruction error (relative): fit {self.fit['reconstruction_error']:.4f}, "
            f"new {self.new['reconstruction_error']:.4f}",
            f"  postings on latents the fit never used: {self.dead_at_fit_share:.1%}; newly hot latents: "
            f"{len(self.hot_new)}" + (f" (e.g. {self.hot_new[:5]})" if self.hot_new else ""),
        ]
        if self.refit:
            out.append("a refit would pay: " + "; ".join(self.reasons) + " (csrv2-vdb refit --store ... "
                       "--collection ...: a new head on the current documents, switched to in one write)")  # fmt: skip
        else:
            out.append("no refit needed: the new documents code as well as the fitted ones")
        return out


def drift_report(fit: dict[str, Any], fit_usage: LatentUsage, new: dict[str, float], new_df: np.ndarray) -> DriftReport:
    """Compare the new documents (their `code_fidelity` and per-latent document frequency) with the fit's."""
    total = float(new_df.sum())
    dead_share = float(new_df[fit_usage.df == 0].sum() / total) if total else 0.0
    new_usage = LatentUsage(np.asarray(new_df, dtype=np.float64), int(new["rows"]))
    hot_new = [j for j in new_usage.hot if j not in set(fit_usage.hot)]
    reasons = []
    if fit["recall_at_10"] - new["recall_at_10"] > RECALL_DROP:
        reasons.append(f"recall@10 fell by {fit['recall_at_10'] - new['recall_at_10']:.3f} (> {RECALL_DROP})")
    if new["reconstruction_error"] > (1 + ERROR_GROWTH) * fit["reconstruction_error"]:
        growth = new["reconstruction_error"] / max(fit["reconstruction_error"], 1e-12) - 1
        reasons.append(f"reconstruction error grew {growth:.0%} (> {ERROR_GROWTH:.0%})")
    if len(hot_new) > HOT_NEW:
        reasons.append(f"{len(hot_new)} latents are hot among the new documents that were not at fit (> {HOT_NEW})")
    return DriftReport({k: float(v) for k, v in fit.items()}, new, dead_share, hot_new, reasons)
