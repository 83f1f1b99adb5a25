"""Label sources for CSRv2's supervised contrastive loss, and a batch sampler that keeps positives together.

Labels are integers per training row; rows that share a label are positives of each other.
- classification / clustering: the class;
- retrieval: a query and its relevant documents share a label (merged transitively), every other row
  gets a label of its own;
- STS: the two sentences of a pair scored >= threshold share a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np


def classification_labels(classes: Sequence[str]) -> np.ndarray:
    """Class names -> integer labels (sorted names, so the mapping is stable)."""
    names = {name: i for i, name in enumerate(sorted(set(classes)))}
    return np.array([names[c] for c in classes], dtype=np.int64)


def grouped_labels(n: int, groups: Iterable[Iterable[int]]) -> np.ndarray:
    """Rows 0..n-1; rows in one group (and groups sharing a row) get one label; others their own."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for group in groups:
        members = list(group)
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    roots = [find(i) for i in range(n)]
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64)


def retrieval_labels(n_queries: int, n_docs: int, qrels: dict[int, Iterable[int]]) -> np.ndarray:
    """Labels for rows [queries..., docs...]: query q and its relevant docs d share a label."""
    groups = [[q, *(n_queries + d for d in docs)] for q, docs in qrels.items()]
    return grouped_labels(n_queries + n_docs, groups)


def sts_labels(n: int, pairs: Iterable[tuple[int, int, float]], threshold: float = 3.0) -> np.ndarray:
    """Sentences i and j of pairs scored >= threshold share a label (default 3 on the 0-5 STS scale)."""
    return grouped_labels(n, ([i, j] for i, j, score in pairs if score >= threshold))


class LabelBatchSampler:
    """Batches in which rows of one label come in groups of `per_label`, so every batch holds positives.

    Each epoch cuts every label's (shuffled) rows into groups of `per_label`; the groups and the rows
    left over are shuffled as units and packed into batches without splitting a group.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, per_label: int = 2, seed: int = 0) -> None:
        if batch_size < per_label:
            raise ValueError(f"batch_size {batch_size} must be at least per_label {per_label}")
        self.labels = np.asarray(labels)
        self.batch_size = batch_size
        self.per_label = per_label
        self.rng = np.random.default_rng(seed)

    def __iter__(self) -> Iterator[np.ndarray]:
        by_label: dict[int, list[int]] = {}
        for i in self.rng.permutation(len(self.labels)):
            by_label.setdefault(int(self.labels[i]), []).append(int(i))
        units: list[list[int]] = []
        for rows in by_label.values():
            full = len(rows) - len(rows) % self.per_label
            units += [rows[s : s + self.per_label] for s in range(0, full, self.per_label)]
            units += [[i] for i in rows[full:]]
        batch: list[int] = []
        for u in self.rng.permutation(len(units)):
            if len(batch) + len(units[u]) > self.batch_size:
                yield np.array(batch, dtype=np.int64)
                batch = []
            batch += units[u]
        if batch:
            yield np.array(batch, dtype=np.int64)
