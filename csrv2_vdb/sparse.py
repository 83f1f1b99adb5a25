"""`SparseBatch`: the one type for k-sparse vectors, with its conversions and validation.

A batch of n rows holds at most k (index, value) pairs per row as two (n, k) arrays, int32 and
float32. Unused slots are padding with value 0 (and index 0); zeros are never written to an engine.
Every other format (scipy CSR, torch sparse, dicts, engine payloads) is a conversion from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from csrv2_vdb.errors import InvalidKError, InvalidSparseBatchError

if TYPE_CHECKING:
    import torch

# Qdrant and Milvus keep indices as uint32 and Milvus reserves 2**32 - 1; int32 is our storage type.
MAX_DIM = 2**31 - 1


@dataclass(frozen=True)
class SparseBatch:
    """n k-sparse rows over `dim` latent dimensions; padding slots carry value 0."""

    indices: np.ndarray
    values: np.ndarray
    dim: int

    def __post_init__(self) -> None:
        indices = np.asarray(self.indices)
        values = np.asarray(self.values)
        if indices.ndim != 2 or values.shape != indices.shape:
            raise InvalidSparseBatchError(
                f"indices and values must be two (n, k) arrays of the same shape; "
                f"got {indices.shape} and {values.shape}"
            )
        if isinstance(self.dim, bool) or not isinstance(self.dim, int | np.integer) or not 0 < self.dim <= MAX_DIM:
            raise InvalidSparseBatchError(f"dim must be an integer in [1, {MAX_DIM}], got {self.dim!r}")
        object.__setattr__(self, "dim", int(self.dim))
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise InvalidSparseBatchError(f"indices must be integers, got dtype {indices.dtype}")
        if values.size and not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
            raise InvalidSparseBatchError(f"values must be real numbers, got dtype {values.dtype}")
        # Checked on the caller's arrays, before the cast: int32 would wrap 2**32 + 5 to 5, float32 turn 1e39 to inf.
        _check_values(values)
        _check_indices(indices, values != 0, self.dim)
        object.__setattr__(self, "indices", np.ascontiguousarray(indices, dtype=np.int32))
        object.__setattr__(self, "values", np.ascontiguousarray(values, dtype=np.float32))
        self._check_duplicates()

    def _check_duplicates(self) -> None:
        active = self.values != 0
        if self.width > 1 and active.any():
            # Sort each row's active indices (padding pushed to the end as -1) and compare neighbours.
            keyed = np.where(active, self.indices, -1)
            keyed = np.sort(keyed, axis=1)
            dup = (keyed[:, 1:] == keyed[:, :-1]) & (keyed[:, 1:] >= 0)
            if dup.any():
                row, col = (int(v) for v in np.argwhere(dup)[0])
                raise InvalidSparseBatchError(
                    f"row {row} holds index {int(keyed[row, col])} twice; each latent may appear once per row"
                )

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def width(self) -> int:
        """Slots per row (the arrays' second dimension), an upper bound on the active dims of a row.

        `k` means active dims everywhere else (encoders, heads, the CLI); here the arrays may be wider than
        a row's active entries (padding), so the slot count has its own name.
        """
        return int(self.indices.shape[1])

    @property
    def k(self) -> int:
        """Deprecated name of `width` (kept for code written against 0.1)."""
        return self.width

    @property
    def nnz(self) -> np.ndarray:
        """Active (non-zero) entries per row."""
        return np.count_nonzero(self.values, axis=1)

    def __getitem__(self, rows: slice | Sequence[int] | np.ndarray) -> SparseBatch:
        return SparseBatch(self.indices[rows], self.values[rows], self.dim)

    @classmethod
    def concat(cls, batches: Sequence[SparseBatch]) -> SparseBatch:
        """Stack batches of the same dim; narrower rows are zero-padded to the widest k."""
        if not batches:
            raise InvalidSparseBatchError("concat needs at least one batch")
        dims = {b.dim for b in batches}
        if len(dims) != 1:
            raise InvalidSparseBatchError(f"cannot concat batches of different dims {sorted(dims)}")
        width = max(b.width for b in batches)
        pad = [((0, 0), (0, width - b.width)) for b in batches]
        return cls(
            np.concatenate([np.pad(b.indices, p) for b, p in zip(batches, pad, strict=True)]),
            np.concatenate([np.pad(b.values, p) for b, p in zip(batches, pad, strict=True)]),
            dims.pop(),
        )

    def top(self, k: int) -> SparseBatch:
        """Keep the k largest values of each row (adaptive k at query time)."""
        if k < 1:
            raise InvalidKError(f"k must be at least 1, got {k}")
        if k >= self.width:
            return self
        # Active entries first, largest value first; padding last, so a negative value outranks no padding.
        keyed = np.where(self.values != 0, -self.values.astype(np.float64), np.inf)
        order = np.argsort(keyed, axis=1, kind="stable")[:, :k]
        return SparseBatch(
            np.take_along_axis(self.indices, order, 1), np.take_along_axis(self.values, order, 1), self.dim
        )

    def normalized(self) -> SparseBatch:
        """Each row scaled to unit L2 norm (all-zero rows stay zero): dot products become cosines."""
        norms = np.linalg.norm(self.values.astype(np.float64), axis=1, keepdims=True)
        values = (self.values / np.where(norms > 0, norms, 1.0)).astype(self.values.dtype)
        return SparseBatch(self.indices, values, self.dim)

    # ------------------------------------------------------------ conversions
    def rows(self) -> Iterator[tuple[list[int], list[float]]]:
        """Each row as (sorted indices, values) without padding: the form every engine takes."""
        # One vectorised sort for the whole batch: padding (value 0) goes last, then ascending index.
        keyed = np.where(self.values != 0, self.indices.astype(np.int64), np.iinfo(np.int64).max)
        order = np.argsort(keyed, axis=1, kind="stable")
        indices = np.take_along_axis(self.indices, order, 1).tolist()
        values = np.take_along_axis(self.values, order, 1).tolist()
        for idx, val, n in zip(indices, values, self.nnz.tolist(), strict=True):
            yield idx[:n], val[:n]

    def to_dicts(self) -> list[dict[int, float]]:
        """Rows as {index: value} (Milvus rows, LlamaIndex sparse embeddings)."""
        return [dict(zip(i, v, strict=True)) for i, v in self.rows()]

    @classmethod
    def from_dicts(cls, rows: Sequence[Mapping[int, float]], dim: int) -> SparseBatch:
        return cls.from_rows([(list(r.keys()), list(r.values())) for r in rows], dim)

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[Sequence[int], Sequence[float]]], dim: int) -> SparseBatch:
        """Build from per-row (indices, values) lists of any lengths."""
        width = max((len(i) for i, _ in rows), default=0)
        indices = np.zeros((len(rows), max(width, 1)), dtype=np.int64)
        values = np.zeros((len(rows), max(width, 1)), dtype=np.float64)
        for r, (i, v) in enumerate(rows):
            if len(i) != len(v):
                raise InvalidSparseBatchError(f"row {r}: {len(i)} indices but {len(v)} values")
            try:
                indices[r, : len(i)] = i
                values[r, : len(v)] = v
            except (OverflowError, ValueError, TypeError) as exc:
                raise InvalidSparseBatchError(f"row {r}: indices must be integers and values numbers ({exc})") from None
        return cls(indices, values, dim)

    def to_scipy(self) -> sp.csr_matrix:
        """(n, dim) scipy CSR matrix; padding dropped."""
        keep = self.values != 0
        rows = np.broadcast_to(np.arange(len(self))[:, None], self.indices.shape)[keep]
        return sp.csr_matrix(
            (self.values[keep], (rows, self.indices[keep])), shape=(len(self), self.dim), dtype=np.float32
        )

    @classmethod
    def from_scipy(cls, matrix: sp.spmatrix | sp.sparray) -> SparseBatch:
        csr = sp.csr_matrix(matrix)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        n, dim = csr.shape
        counts = np.diff(csr.indptr)
        width = max(int(counts.max()) if n else 0, 1)
        indices = np.zeros((n, width), dtype=np.int64)
        values = np.zeros((n, width), dtype=np.float64)
        cols = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], counts)
        rows = np.repeat(np.arange(n), counts)
        indices[rows, cols] = csr.indices
        values[rows, cols] = csr.data
        return cls(indices, values, dim)

    def to_dense(self) -> np.ndarray:
        """(n, dim) float32 array. Only for small dims or few rows."""
        # Through scipy, which drops the padding: a padding slot (index 0) must never overwrite a real latent 0.
        return np.asarray(self.to_scipy().toarray(), dtype=np.float32)

    @classmethod
    def from_dense(cls, dense: np.ndarray, k: int | None = None) -> SparseBatch:
        """From an (n, dim) array holding at most k non-zeros per row (k defaults to the max)."""
        dense = np.asarray(dense)
        if dense.ndim != 2:
            raise InvalidSparseBatchError(f"expected an (n, dim) array, got shape {dense.shape}")
        _check_values(dense)  # before the float32 cast, and before argsort could rank a NaN as a value
        dense = dense.astype(np.float32)
        width = k if k is not None else max(int(np.count_nonzero(dense, axis=1).max(initial=0)), 1)
        if width > dense.shape[1]:
            raise InvalidKError(f"k={width} is larger than the dimension {dense.shape[1]}")
        order = np.argsort(-np.abs(dense), axis=1, kind="stable")[:, :width]
        return cls(order, np.take_along_axis(dense, order, 1), dense.shape[1])

    def to_torch(self) -> torch.Tensor:
        """(n, dim) torch sparse COO tensor (the sentence-transformers SparseEncoder output type)."""
        import torch

        coo = self.to_scipy().tocoo()
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        return torch.sparse_coo_tensor(
            idx, torch.from_numpy(coo.data), size=coo.shape, check_invariants=True
        ).coalesce()

    @classmethod
    def from_torch(cls, tensor: torch.Tensor, k: int | None = None) -> SparseBatch:
        """From a torch sparse (COO/CSR) or dense (n, dim) tensor."""
        import torch

        dense = tensor if tensor.layout == torch.strided else tensor.to_dense()
        return cls.from_dense(dense.detach().cpu().float().numpy(), k)

    def to_feature_maps(self) -> list[dict[str, float]]:
        """Rows as {"<index>": value}: Elasticsearch sparse_vector / rank_features documents."""
        return [{str(i): v for i, v in zip(ix, vs, strict=True)} for ix, vs in self.rows()]

    def dot(self, other: SparseBatch) -> np.ndarray:
        """Exact (n, m) dot products between two batches (the brute-force reference)."""
        if other.dim != self.dim:
            raise InvalidSparseBatchError(f"dims differ: {self.dim} vs {other.dim}")
        return np.asarray((self.to_scipy() @ other.to_scipy().T).toarray(), dtype=np.float32)


_F32_MAX = float(np.finfo(np.float32).max)


def _check_values(values: np.ndarray) -> None:
    """Finite values that float32 can hold (so the cast neither overflows to inf nor hides a NaN)."""
    if not values.size:
        return
    as_float = values.astype(np.float64)
    bad = ~np.isfinite(as_float) | (np.abs(as_float) > _F32_MAX)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidSparseBatchError(
            f"row {row} holds a NaN or infinite value ({float(values[row, col])!r}, or beyond float32's range); "
            "check the dense input for NaN before encoding"
        )


def _check_indices(indices: np.ndarray, active: np.ndarray, dim: int) -> None:
    """Every active index inside [0, dim), compared at the caller's integer width."""
    if not indices.size:
        return
    wide = indices.astype(np.int64)  # uint64 beyond 2**63 wraps negative: still out of range
    out = active & ((wide < 0) | (wide >= dim))
    if out.any():
        row, col = (int(v) for v in np.argwhere(out)[0])
        raise InvalidSparseBatchError(f"row {row}: index {int(indices[row, col])} is outside [0, {dim})")
