"""Where a sparse index's time goes: how evenly the codes fill the latents' posting lists, and what a query reads.

An exact inverted-index search reads, for each latent of the query, that latent's posting list: a query costs
the sum of its latents' document frequencies. With per-latent document frequencies df over n documents, a
query whose latents are drawn like a document's reads on average sum_j (df_j / n) * df_j postings; at N
documents of the same kind, N / n times that (`postings_per_query`). Latents that never fire are dead (wasted
width); hot latents (here: more than HOT_FACTOR times their even share of postings) make every query that uses
them read a long list. The per-engine latency that follows is read off p50 measured at 1M documents against
postings per query (docs/benchmarks/retrieval-1m.json, 2026-11-22, 2 cores: k = 2 ... 64), interpolated in
log-log; outside the measured range it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrv2_vdb.labels import LatentLabels

HOT_FACTOR = 10.0
# (postings per query, p50 ms) at 1M documents, `csrv2-vdb bench retrieval --n 1000000`
MEASURED_P50: dict[str, tuple[tuple[float, float], ...]] = {
    "qdrant-edge": ((14996, 0.709), (43174, 0.853), (125530, 1.43), (397400, 3.37), (1307777, 6.20),
                    (4431382, 6.80)),
    "milvus-lite": ((14996, 2.00), (43174, 1.94), (125530, 3.06), (397400, 5.84), (1307777, 20.0),
                    (4431382, 74.3)),
    "numpy (scipy)": ((14996, 0.439), (43174, 0.767), (125530, 2.02), (397400, 5.59), (1307777, 14.3),
                      (4431382, 25.5)),
}  # fmt: skip


@dataclass
class LatentUsage:
    """Document frequency of every latent over `documents` texts, and what follows from it."""

    df: np.ndarray  # documents each latent fires on (length: the head's width)
    documents: int

    @classmethod
    def from_labels(cls, labels: LatentLabels) -> LatentUsage:
        df = np.zeros(labels.hidden_dim)
        for lab in labels.labels.values():
            df[lab.latent] = lab.df
        return cls(df, labels.documents)

    @property
    def dead(self) -> int:
        return int((self.df == 0).sum())

    @property
    def hot(self) -> list[int]:
        """Latents holding more than HOT_FACTOR times their even share of the postings, most used first."""
        even = self.df.sum() / len(self.df)
        hot = np.flatnonzero(self.df > HOT_FACTOR * even)
        return [int(j) for j in hot[np.argsort(-self.df[hot])]]

    @property
    def top1pct_share(self) -> float:
        """Share of all postings held by the 1 % most used latents."""
        top = np.sort(self.df)[::-1][: max(1, len(self.df) // 100)]
        return float(top.sum() / max(self.df.sum(), 1.0))

    def postings_per_query(self, n: int | None = None) -> float:
        """Postings an exact inverted-index search reads per document-like query at n documents (default: the
        documents counted)."""
        per_doc = float((self.df**2).sum() / max(self.documents, 1) ** 2)  # at one document: E[sum df_j / n]
        return per_doc * (n if n is not None else self.documents)

    def lines(self, collection_size: int | None = None, labels: LatentLabels | None = None) -> list[str]:
        """The report `heads show` and `check` print."""
        width, hot = len(self.df), self.hot
        out = [f"latent usage over {self.documents:,} texts: {width - self.dead:,} of {width:,} latents fire, "
               f"{self.dead:,} dead; the top 1 % hold {self.top1pct_share:.1%} of the postings"]  # fmt: skip
        if hot:
            named = ", ".join(f"{j} ({self.df[j] / self.documents:.1%}"
                              + (f" {labels.label(j)!r})" if labels else ")") for j in hot[:5])  # fmt: skip
            out.append(f"hot latents (over {HOT_FACTOR:g}x their even share): {len(hot)}, e.g. {named}")
        else:
            out.append("hot latents: none")
        sizes = ([collection_size] if collection_size else []) + [1_000_000, 10_000_000]
        out.append("postings read per query (documents as queries) and the p50 that follows, per engine:")
        for n in sizes:
            postings = self.postings_per_query(n)
            cost = ", ".join(f"{engine} {_p50(points, postings)}" for engine, points in MEASURED_P50.items())
            out.append(f"  at {n:>12,} documents: {postings:>14,.0f} postings; {cost}")
        return out

    def plot(self, path: Path) -> Path:
        """Sorted document frequency per latent, log scale: the skew at a glance."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ordered = np.sort(self.df)[::-1]
        ax.plot(np.arange(1, len(ordered) + 1), np.maximum(ordered, 0.5), lw=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("latent, most used first")
        ax.set_ylabel(f"documents it fires on (of {self.documents:,})")
        ax.axhline(self.df.sum() / len(self.df), color="grey", ls="--", lw=1, label="even share")
        ax.set_title(f"latent usage: {self.dead:,} dead, top 1 % hold {self.top1pct_share:.0%} of postings")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _p50(points: tuple[tuple[float, float], ...], postings: float) -> str:
    """p50 at `postings`, interpolated in log-log between measured points ("beyond measured" outside them)."""
    xs, ys = np.log([p for p, _ in points]), np.log([ms for _, ms in points])
    x = np.log(max(postings, 1.0))
    if x < xs[0]:
        return f"<= {points[0][1]:.2g} ms"
    if x > xs[-1]:
        return f">= {points[-1][1]:.2g} ms (beyond measured)"
    return f"{float(np.exp(np.interp(x, xs, ys))):.2g} ms"
