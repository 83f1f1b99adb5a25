import numpy as np
import pytest
import scipy.sparse as sp
import torch

from csrv2_vdb.errors import InvalidKError, InvalidSparseBatchError
from csrv2_vdb.sparse import SparseBatch
from tests.conftest import random_sparse


def test_rows_drop_padding_and_sort_indices():
    batch = SparseBatch(np.array([[7, 2, 0], [5, 0, 0]]), np.array([[0.5, 1.5, 0.0], [2.0, 0.0, 0.0]]), dim=10)
    assert list(batch.rows()) == [([2, 7], [1.5, 0.5]), ([5], [2.0])]
    assert batch.nnz.tolist() == [2, 1]
    assert batch.indices.dtype == np.int32 and batch.values.dtype == np.float32


@pytest.mark.parametrize("convert", ["scipy", "torch", "dicts", "dense", "rows"])
def test_conversions_round_trip(convert):
    batch = random_sparse(50, 300, 6, seed=1)
    back = {
        "scipy": lambda: SparseBatch.from_scipy(batch.to_scipy()),
        "torch": lambda: SparseBatch.from_torch(batch.to_torch()),
        "dicts": lambda: SparseBatch.from_dicts(batch.to_dicts(), batch.dim),
        "dense": lambda: SparseBatch.from_dense(batch.to_dense()),
        "rows": lambda: SparseBatch.from_rows(list(batch.rows()), batch.dim),
    }[convert]()
    np.testing.assert_array_equal(back.to_dense(), batch.to_dense())
    assert back.dim == batch.dim


def test_scipy_and_torch_agree_with_dense():
    batch = random_sparse(5, 40, 3)
    dense = batch.to_dense()
    np.testing.assert_array_equal(batch.to_scipy().toarray(), dense)
    np.testing.assert_array_equal(batch.to_torch().to_dense().numpy(), dense)
    assert isinstance(batch.to_scipy(), sp.csr_matrix)
    assert batch.to_torch().layout == torch.sparse_coo


def test_feature_maps_use_decimal_string_keys():
    batch = SparseBatch(np.array([[3, 11]]), np.array([[0.25, 1.0]]), dim=20)
    assert batch.to_feature_maps() == [{"3": 0.25, "11": 1.0}]


def test_dot_matches_dense_product():
    a, b = random_sparse(20, 100, 4, seed=2), random_sparse(30, 100, 5, seed=3)
    np.testing.assert_allclose(a.dot(b), a.to_dense() @ b.to_dense().T, rtol=1e-6)


def test_top_keeps_largest_values():
    batch = SparseBatch(np.array([[1, 2, 3]]), np.array([[0.1, 0.9, 0.5]]), dim=5)
    assert list(batch.top(2).rows()) == [([2, 3], [pytest.approx(0.9), 0.5])]
    assert batch.top(10) is batch
    with pytest.raises(InvalidKError):
        batch.top(0)


def test_concat_pads_to_widest():
    out = SparseBatch.concat([random_sparse(2, 50, 2), random_sparse(3, 50, 4, seed=1)])
    assert len(out) == 5 and out.width == 4 and out.nnz.tolist() == [2, 2, 4, 4, 4]
    with pytest.raises(InvalidSparseBatchError, match="different dims"):
        SparseBatch.concat([random_sparse(1, 50, 2), random_sparse(1, 60, 2)])


@pytest.mark.parametrize(
    ("indices", "values", "message"),
    [
        ([[1, 2]], [[np.nan, 1.0]], "NaN"),
        ([[1, 2]], [[np.inf, 1.0]], "NaN or infinite"),
        ([[1, 10]], [[1.0, 1.0]], "outside"),
        ([[-1, 2]], [[1.0, 1.0]], "outside"),
        ([[3, 3]], [[1.0, 2.0]], "twice"),
        ([[1, 2, 3]], [[1.0, 2.0]], "same shape"),
    ],
)
def test_validation_names_the_problem(indices, values, message):
    with pytest.raises(InvalidSparseBatchError, match=message):
        SparseBatch(np.array(indices), np.array(values), dim=10)


def test_padding_may_repeat_index_zero():
    batch = SparseBatch(np.array([[4, 0, 0]]), np.array([[1.0, 0.0, 0.0]]), dim=10)
    assert batch.nnz.tolist() == [1]
