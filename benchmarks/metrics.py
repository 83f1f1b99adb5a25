"""Task metrics on sparse codes and dense embeddings, computed with scikit-learn.

Every function takes features as a SparseBatch (codes) or an (n, d) array (dense / MRL); rows are
L2-normalised first, so sparse and dense are compared under the same (cosine) geometry.
- classification: accuracy of a logistic regression trained on the train split's features;
- clustering: V-measure of MiniBatchKMeans with as many clusters as classes (mean over seeds);
- retrieval: nDCG@10 (sklearn's ndcg_score, binary relevance) and recall@10 of cosine ranking;
- dead-latent ratio: share of the h latents that fire on no row of an evaluation set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import MiniBatchKMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ndcg_score, v_measure_score
from sklearn.preprocessing import normalize

from csrv2_vdb.sparse import SparseBatch

Features = SparseBatch | np.ndarray


def as_matrix(features: Features) -> sp.csr_matrix | np.ndarray:
    """Row-normalised scipy CSR (codes) or dense array."""
    matrix = features.to_scipy() if isinstance(features, SparseBatch) else np.asarray(features, dtype=np.float32)
    return normalize(matrix)


def classification_accuracy(train: Features, y_train: np.ndarray, test: Features, y_test: np.ndarray) -> float:
    model = LogisticRegression(max_iter=1000)
    model.fit(as_matrix(train), y_train)
    return float((model.predict(as_matrix(test)) == y_test).mean())


def clustering_v_measure(features: Features, labels: np.ndarray, seeds: int = 3) -> float:
    matrix = as_matrix(features)
    n_clusters = len(np.unique(labels))
    scores = []
    for seed in range(seeds):
        km = MiniBatchKMeans(n_clusters=n_clusters, batch_size=1024, n_init="auto", random_state=seed)
        scores.append(v_measure_score(labels, km.fit_predict(matrix)))
    return float(np.mean(scores))


def retrieval_metrics(
    queries: Features, docs: Features, qrels: dict[int, set[int]], k: int = 10, cosine: bool = True
) -> dict[str, float]:
    """nDCG@k and recall@k of cosine ranking (or, `cosine=False`, of the dot product with the documents' own
    norms, as an engine ranks stored codes); qrels maps query row -> relevant doc rows."""
    rows = sorted(qrels)
    q = as_matrix(queries)  # a query's norm never changes its ranking
    if cosine:
        d = as_matrix(docs)
    else:
        d = docs.to_scipy() if isinstance(docs, SparseBatch) else np.asarray(docs, dtype=np.float32)
    scores = q[rows] @ d.T
    scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
    relevance = np.zeros_like(scores)
    for i, row in enumerate(rows):
        relevance[i, list(qrels[row])] = 1.0
    # Ties (e.g. all-zero scores of codes that share no latent) are broken against the relevant documents.
    scores = scores - 1e-9 * relevance
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(relevance, top, axis=1).sum(axis=1)
    return {
        f"ndcg@{k}": float(ndcg_score(relevance, scores, k=k)),
        f"recall@{k}": float(np.mean(hits / relevance.sum(axis=1))),
    }


def dead_latent_ratio(codes: SparseBatch) -> float:
    """Share of latents that are active in no row."""
    active = np.zeros(codes.dim, dtype=bool)
    active[codes.indices[codes.values > 0]] = True
    return float(1.0 - active.mean())
