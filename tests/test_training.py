import numpy as np
import pytest
import torch

from csrv2_vdb.errors import InvalidEmbeddingError
from csrv2_vdb.training.losses import nmse, reconstruction_losses
from csrv2_vdb.training.trainer import HeadTrainConfig, train_head


def _low_rank(n: int = 2000, d: int = 64, rank: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recon_error(head, x: np.ndarray, k: int) -> float:
    with torch.no_grad():
        out = head.eval()(torch.tensor(x), k)
    return float(((out.recon - torch.tensor(x)) ** 2).sum(1).mean())


def test_training_reduces_reconstruction_error():
    x = _low_rank()
    config = HeadTrainConfig(k=4, hidden_dim=256, k_aux=64, lr=1e-3, epochs=8, batch_size=128)
    untrained = train_head(x, HeadTrainConfig(**{**config.__dict__, "epochs": 0}), progress=False).head
    result = train_head(x, config, progress=False)
    assert _recon_error(result.head, x, 4) < 0.5 * _recon_error(untrained, x, 4)
    assert len(result.epoch_losses) == 8 and result.epoch_losses[-1]["k"] < 0.5 * result.epoch_losses[0]["k"]


def test_training_is_repeatable_with_a_seed():
    x = _low_rank(n=500)
    config = HeadTrainConfig(k=4, hidden_dim=128, k_aux=32, lr=1e-3, epochs=2)
    a = train_head(x, config, progress=False).head
    b = train_head(x, config, progress=False).head
    assert torch.equal(a.encoder.weight, b.encoder.weight)


def test_losses_have_the_three_terms_and_aux_needs_dead_latents():
    x = torch.tensor(_low_rank(n=64))
    from csrv2_vdb.head import SparseHead

    head = SparseHead(64, 256, k=2, k_aux=32, dead_threshold=2).train()
    first = reconstruction_losses(head, x, 2)
    assert set(first) == {"k", "4k"}  # nothing is dead yet
    for _ in range(3):
        losses = reconstruction_losses(head, x, 2)
    assert set(losses) == {"k", "4k", "aux"} and torch.isfinite(losses["aux"])
    assert float(nmse(x.mean(0, keepdim=True).expand_as(x), x)) == pytest.approx(1.0)


def test_nan_training_data_is_rejected():
    x = _low_rank(n=10)
    x[2, 3] = np.nan
    with pytest.raises(InvalidEmbeddingError):
        train_head(x, progress=False)
