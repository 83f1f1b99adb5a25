"""Label sources for CSRv2's supervised contrastive loss, and a batch sampler that keeps positives together.

Labels are integers per training row; rows that share a label are positives of each other.
- classification / clustering: the class;
- retrieval: a query and its relevant documents share a label; a document relevant to several
  queries appears once per query (as in the CSRv2 reference), every other row has a label of its own;
- STS: the two sentences of a pair scored >= threshold share a label, again one row per pair.
Groups are never merged transitively: with overlapping chunks that would fuse most of a corpus into
one label (seen on GraphRAG-Bench medical: 1,449 of 2,316 rows) and collapse the codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from csrv2_vdb.errors import InvalidArgumentError


def classification_labels(classes: Sequence[str]) -> np.ndarray:
    """Class names -> integer labels (sorted names, so the mapping is stable)."""
    names = {name: i for i, name in enumerate(sorted(set(classes)))}
    return np.array([names[c] for c in classes], dtype=np.int64)


def group_rows(n: int, groups: Iterable[Iterable[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (indices into 0..n-1) and labels: each group's members share a fresh label, an item
    in several groups is repeated once per group, and items in no group get one row with a label of their own."""
    rows: list[int] = []
    labels: list[int] = []
    grouped: set[int] = set()
    for label, group in enumerate(groups):
        members = list(dict.fromkeys(group))
        rows += members
        labels += [label] * len(members)
        grouped.update(members)
    singles = [i for i in range(n) if i not in grouped]
    first = (max(labels) + 1) if labels else 0
    rows += singles
    labels += range(first, first + len(singles))
    return np.array(rows, dtype=np.int64), np.array(labels, dtype=np.int64)


def retrieval_rows(n_queries: int, n_docs: int, qrels: dict[int, Iterable[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels over the items [queries..., docs...]: query q with each of its relevant docs."""
    return group_rows(n_queries + n_docs, ([q, *(n_queries + d for d in docs)] for q, docs in qrels.items()))


def sts_rows(n: int, pairs: Iterable[tuple[int, int, float]], threshold: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Sentences i and j of each pair scored >= threshold (default 3 on the 0-5 scale) share a label."""
    return group_rows(n, ([i, j] for i, j, score in pairs if score >= threshold))


class LabelBatchSampler:
    """Batches in which rows of one label come in groups of `per_label`, so every batch holds positives.

    Each epoch cuts every label's (shuffled) rows into groups of `per_label`; the groups and the rows
    left over are shuffled as units and packed into batches without splitting a group.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, per_label: int = 2, seed: int = 0) -> None:
        if batch_size < per_label:
            raise InvalidArgumentError(f"batch_size {batch_size} must be at least per_label {per_label}")
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
