import numpy as np
import pytest
import torch

from csrv2_vdb.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidKError
from csrv2_vdb.head import SparseHead


def _head(seed: int = 0, **kw) -> SparseHead:
    torch.manual_seed(seed)
    head = SparseHead(16, 64, k=4, k_aux=8, **kw)
    with torch.no_grad():
        head.latent_bias.normal_(0, 0.1)
        head.pre_bias.normal_(0, 0.1)
    return head.eval()


def _x(n: int = 10, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_encode_is_relu_of_top_k_preactivations():
    head, x = _head(), _x()
    batch = head.encode(x, k=4)
    pre = (torch.tensor(x) - head.pre_bias) @ head.encoder.weight.T + head.latent_bias
    expected = torch.zeros_like(pre)
    vals, idx = pre.topk(4, dim=1)
    expected.scatter_(1, idx, vals.relu())
    np.testing.assert_allclose(batch.to_dense(), expected.detach().numpy(), atol=1e-6)
    assert batch.dim == 64 and batch.width == 4


def test_lower_k_is_a_prefix_of_higher_k():
    head, x = _head(), _x()
    small, big = head.encode(x, k=2), head.encode(x, k=8)
    np.testing.assert_allclose(big.top(2).to_dense(), small.to_dense(), atol=1e-6)


def test_bad_inputs_raise_specific_errors():
    head = _head()
    with pytest.raises(InvalidKError, match="k=65"):
        head.encode(_x(), k=65)
    with pytest.raises(InvalidKError):
        SparseHead(16, 64, k=100)
    with pytest.raises(DimensionMismatchError, match="expects"):
        head.encode(_x(d=8))
    bad = _x()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidEmbeddingError, match="row 3"):
        head.encode(bad)


@pytest.mark.parametrize("normalize", [False, True])
def test_save_load_round_trip(tmp_path, normalize):
    head = _head(normalize=normalize)
    head.stats_last_nonzero += 7
    head.save(tmp_path / "h")
    loaded = SparseHead.load(tmp_path / "h")
    assert loaded.config() == head.config()
    np.testing.assert_array_equal(loaded.encode(_x()).to_dense(), head.encode(_x()).to_dense())
    assert torch.equal(loaded.stats_last_nonzero, head.stats_last_nonzero)


def test_load_missing_dir_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        SparseHead.load(tmp_path)


def test_decode_inverts_with_tied_weights():
    head = _head()
    x = torch.tensor(_x())
    out = head(x, k=64)  # all latents: reconstruction is W^T relu(W(x - b) + c) + b
    pre = (x - head.pre_bias) @ head.encoder.weight.T + head.latent_bias
    np.testing.assert_allclose(
        out.recon.detach().numpy(), (pre.relu() @ head.encoder.weight + head.pre_bias).detach().numpy(), atol=1e-5
    )


def test_dead_latent_counters_follow_firing():
    head = _head().train()
    x = torch.tensor(_x(n=32))
    head(x, k=1)
    head(x, k=1)
    codes = head.encode(x.numpy(), k=1)
    fired = np.zeros(64, dtype=bool)
    fired[codes.indices[codes.values > 1e-5]] = True
    counters = head.stats_last_nonzero.numpy()
    assert fired.any() and not fired.all()
    assert (counters[fired] == 1).all() and (counters[~fired] == 2).all()


def test_shipped_heads_load_and_encode():
    from csrv2_vdb.head import pretrained_head, pretrained_heads

    assert pretrained_heads() == ["minilm-banking77-csrv2-k8", "minilm-general-csrv2", "minilm-general-csrv2-v1",
                                  "minilm-medical-csrv2-k8"]  # fmt: skip
    assert pretrained_head().fingerprint() != pretrained_head("minilm-general-csrv2-v1").fingerprint()
    head = pretrained_head("minilm-medical-csrv2-k8")
    assert head.config()["input_dim"] == 384 and head.k == 8
    codes = head.encode(_x(d=384), k=2)
    assert codes.dim == 1536 and (codes.nnz <= 2).all()
    with pytest.raises(FileNotFoundError, match="shipped"):
        pretrained_head("nope")
