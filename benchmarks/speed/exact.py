"""Exact top-k without an engine: the ground truth for recall, and the baseline every engine is timed against.

Sparse codes are kept as the transpose of the (docs x latents) matrix in CSR form, which is an inverted
index (one row of document ids per latent). `search` multiplies queries into it with scipy, whose sparse
product also sweeps an O(n_docs) workspace per query; `search_accumulate` adds each posting list into a
reused score array and reads back only the documents it touched, so a query costs O(postings touched).
Dense vectors are a plain (n, d) matrix scanned with one matrix product.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from csrv2_vdb.sparse import SparseBatch


class ExactIndex:
    """Brute-force inner-product search over SparseBatch codes (scipy) or dense rows (numpy)."""

    def __init__(self, docs: SparseBatch | np.ndarray) -> None:
        self.sparse = isinstance(docs, SparseBatch)
        if isinstance(docs, SparseBatch):
            self._postings = sp.csr_matrix(docs.to_scipy().T)
            self.n = len(docs)
            self._scores = np.zeros(self.n, dtype=np.float32)  # accumulator, all zero between queries
        else:
            self._matrix = np.ascontiguousarray(docs, dtype=np.float32)
            self.n = len(self._matrix)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds in memory (values, ids, offsets; or the dense matrix)."""
        if self.sparse:
            p = self._postings
            return int(p.data.nbytes + p.indices.nbytes + p.indptr.nbytes)
        return int(self._matrix.nbytes)

    def search(
        self, queries: SparseBatch | np.ndarray, limit: int = 10, chunk: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), each (n_queries, limit), best first; -1 / -inf pad rows with fewer matches."""
        n = len(queries)
        ids = np.full((n, limit), -1, dtype=np.int64)
        scores = np.full((n, limit), -np.inf, dtype=np.float32)
        for start in range(0, n, chunk):
            block = queries[start : start + chunk]
            if isinstance(block, SparseBatch):
                # (q x latents) @ (latents x docs): only the query's posting lists are read.
                product = sp.csr_matrix(block.to_scipy() @ self._postings)
                for r in range(product.shape[0]):
                    lo, hi = product.indptr[r], product.indptr[r + 1]
                    found, values = product.indices[lo:hi], product.data[lo:hi]
                    keep = values > 0  # no shared latent, no match (as in the engines)
                    _top(found[keep], values[keep], limit, ids[start + r], scores[start + r])
            else:
                product = np.asarray(block, dtype=np.float32) @ self._matrix.T
                for r, row in enumerate(product):
                    _top(np.arange(self.n), row, limit, ids[start + r], scores[start + r])
        return ids, scores

    def search_accumulate(self, queries: SparseBatch, limit: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Like `search` for sparse queries, touching only the query latents' posting lists."""
        ids = np.full((len(queries), limit), -1, dtype=np.int64)
        scores = np.full((len(queries), limit), -np.inf, dtype=np.float32)
        postings, acc = self._postings, self._scores
        for r in range(len(queries)):
            active = queries.values[r] > 0
            touched = []
            for latent, weight in zip(queries.indices[r][active], queries.values[r][active], strict=True):
                lo, hi = postings.indptr[latent], postings.indptr[latent + 1]
                docs = postings.indices[lo:hi]
                acc[docs] += weight * postings.data[lo:hi]  # ids are unique within one posting list
                touched.append(docs)
            if not touched:
                continue
            found = np.concatenate(touched)
            # A document sits in at most len(touched) lists: the best limit * len(touched) entries hold the
            # best `limit` distinct documents; drop the repeats among those few.
            best = (
                found
                if len(found) <= limit * len(touched)
                else found[np.argpartition(-acc[found], limit * len(touched) - 1)[: limit * len(touched)]]
            )
            best = np.unique(best)
            _top(best, acc[best], limit, ids[r], scores[r])
            acc[found] = 0.0
        return ids, scores


def _top(candidates: np.ndarray, values: np.ndarray, limit: int, ids_out: np.ndarray, scores_out: np.ndarray) -> None:
    """Write the `limit` best (candidate, value) pairs, best first, into the output rows."""
    if len(values) > limit:
        part = np.argpartition(-values, limit - 1)[:limit]
        candidates, values = candidates[part], values[part]
    order = np.argsort(-values, kind="stable")
    ids_out[: len(order)] = candidates[order]
    scores_out[: len(order)] = values[order]


def recall_at(
    found_ids: list[list[int]], found_scores: list[list[float]], exact_ids: np.ndarray, exact_scores: np.ndarray
) -> float:
    """Mean recall@limit of engine results against exact ones, counting ties at the cut as hits.

    A returned document counts when it is in the exact top list, or when its (exactly computed) score is
    no lower than the exact list's last score: with thousands of near-identical short codes, which of
    the tied documents an engine returns is arbitrary.
    """
    limit = exact_ids.shape[1]
    total, counted = 0.0, 0
    for got, got_scores, want, want_scores in zip(found_ids, found_scores, exact_ids, exact_scores, strict=True):
        valid = want >= 0
        if not valid.any():
            continue
        cut = float(want_scores[valid][-1])
        tol = 1e-5 * max(1.0, abs(cut))
        wanted = set(want[valid].tolist())
        hits = sum(1 for i, s in zip(got[:limit], got_scores[:limit], strict=True) if i in wanted or s >= cut - tol)
        total += min(hits, int(valid.sum())) / int(valid.sum())
        counted += 1
    return total / max(1, counted)
