"""Synthetic corpora with the statistics of real embeddings, and the latent-usage skew of their codes.

Real MiniLM embeddings of the shared medical corpus give a mean and covariance (per topic cluster);
a Gaussian (mixture) with those moments, normalised to unit length like the backbone's output, yields
as many document and query vectors as a benchmark needs. A trained head turns them into codes, so
posting lists are about as unevenly filled as with real text (measured by `latent_usage`, for
synthetic and real codes alike). `fill_repeated` scales real codes up to a benchmark's size instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import cached_embed
from csrv2_vdb.benchmarks.datasets import chunk_words, load_corpus
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import SparseStore


@dataclass(frozen=True)
class EmbeddingModel:
    """A Gaussian mixture fitted to real embeddings; samples are unit rows like the backbone's output.

    With one component this is a single Gaussian with the data's mean and covariance. With more, k-means
    centres carry the topic structure and one pooled covariance the spread around them (the mixture's
    overall mean and covariance still match the data's); codes of such samples fill posting lists about
    as unevenly as codes of real text do (`latent_usage`), where a single Gaussian overstates the skew.
    """

    means: np.ndarray  # (components, d)
    weights: np.ndarray  # (components,)
    factor: np.ndarray  # lower Cholesky factor of the (pooled within-component) covariance

    @classmethod
    def fit(cls, embeddings: np.ndarray, components: int = 1, seed: int = 0) -> EmbeddingModel:
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or len(x) <= components:
            raise InvalidArgumentError(f"need an (n > {components}, d) array of embeddings to fit, got shape {x.shape}")
        if components == 1:
            labels, means = np.zeros(len(x), dtype=int), x.mean(axis=0, keepdims=True)
        else:
            km = KMeans(components, n_init=1, random_state=seed).fit(x)
            labels, means = km.labels_, km.cluster_centers_
        residual = x - means[labels]
        cov = np.cov(residual, rowvar=False) + 1e-6 * np.eye(x.shape[1])  # ridge keeps it positive definite
        weights = np.bincount(labels, minlength=components) / len(x)
        return cls(means, weights, np.linalg.cholesky(cov))

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        """n unit-length float32 rows; the same (n, seed) always gives the same rows."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            centre = self.means[rng.choice(len(self.weights), stop - start, p=self.weights)]
            rows = centre + rng.standard_normal((stop - start, self.dim)) @ self.factor.T
            out[start:stop] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return out


def real_embeddings(backbone: Backbone, data_dir: Path, cache_dir: Path, max_chunks: int | None = None) -> np.ndarray:
    """MiniLM document embeddings of the shared medical corpus's 150-word chunks (cached on disk)."""
    chunks = chunk_words(load_corpus(data_dir), prefix="medical")[:max_chunks]
    return cached_embed(backbone, [c.text for c in chunks], "document", cache_dir)


def encode_chunked(head: SparseHead, x: np.ndarray, k: int, chunk: int = 50_000) -> SparseBatch:
    """head.encode over row chunks, so a million rows never hold a (n, hidden) matrix at once."""
    return SparseBatch.concat([head.encode(x[i : i + chunk], k) for i in range(0, len(x), chunk)])


def latent_usage(docs: SparseBatch, queries: SparseBatch) -> dict[str, float]:
    """How unevenly codes fill the posting lists, and what that costs a query.

    postings_per_query: documents an exact inverted-index search touches per query (the sum of the
    query's latents' list lengths); skew: that number over what evenly used latents would give.
    """
    active = docs.values > 0
    df = np.bincount(docs.indices[active], minlength=docs.dim).astype(np.float64)
    top = np.sort(df)[::-1][: max(1, docs.dim // 100)]
    q_active = queries.values > 0
    touched = np.where(q_active, df[queries.indices], 0.0).sum(axis=1)
    uniform = q_active.sum(axis=1) * active.sum() / docs.dim
    return {
        "dead_latents": float((df == 0).mean()),
        "top1pct_postings_share": float(top.sum() / df.sum()),
        "postings_per_query": float(touched.mean()),
        "skew": float(touched.mean() / uniform.mean()),
    }


def even_codes(codes: SparseBatch, seed: int) -> SparseBatch:
    """The same values on latents drawn uniformly at random (distinct within a row): a control with the
    codes' sizes and score distribution but evenly filled posting lists."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, codes.dim, codes.indices.shape)
    while True:
        ordered = np.sort(indices, axis=1)
        clash = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not clash.any():
            return SparseBatch(indices.astype(np.int32), codes.values.copy(), codes.dim)
        indices[clash] = rng.integers(0, codes.dim, (int(clash.sum()), codes.width))


def fill_repeated(
    store: SparseStore, name: str, vectors: SparseBatch | np.ndarray, n: int, batch: int = 20_000,
    payload: Callable[[int], dict[str, Any]] | None = None,
) -> None:  # fmt: skip
    """Upsert `n` points into `name`: `vectors` (codes or dense rows) repeated under the ids 0..n-1 (real codes at
    a benchmark's size, with their latent distribution and so their posting lengths); `payload(i)` for point i."""
    for start in range(0, n, batch):
        ids = np.arange(start, min(start + batch, n))
        payloads = [payload(int(i)) for i in ids] if payload else None
        store.upsert(name, [str(i) for i in ids], vectors[ids % len(vectors)], payloads=payloads)
