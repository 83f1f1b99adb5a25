import itertools

import numpy as np
import pytest
import torch

from csrv2_vdb.errors import InvalidEmbeddingError
from csrv2_vdb.training.losses import balance_loss, nmse, reconstruction_losses
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
    first, _ = reconstruction_losses(head, x, 2)
    assert set(first) == {"k", "4k"}  # nothing is dead yet
    for _ in range(3):
        losses, _ = reconstruction_losses(head, x, 2)
    assert set(losses) == {"k", "4k", "aux"} and torch.isfinite(losses["aux"])
    assert float(nmse(x.mean(0, keepdim=True).expand_as(x), x)) == pytest.approx(1.0)


def test_balance_term_is_one_for_even_use_and_h_for_one_latent():
    values = torch.ones(8, 2)
    even = torch.arange(16).reshape(8, 2)  # 16 latents, each used once
    assert float(balance_loss(values, even, 16)) == pytest.approx(1.0)
    assert float(balance_loss(values, torch.zeros(8, 2, dtype=torch.long), 16)) == pytest.approx(16.0)


def test_balance_coef_evens_out_latent_use():
    """A head fitted with the balance term spreads codes over more latents: fewer postings per query."""
    from csrv2_vdb.benchmarks.speed.corpus import latent_usage

    x = _low_rank(n=1500, rank=4)  # few directions: plain reconstruction piles codes on a few latents
    config = HeadTrainConfig(k=2, hidden_dim=128, k_aux=32, lr=1e-3, epochs=4, batch_size=128)
    used = {}
    for coef in (0.0, 0.3):
        result = train_head(x, HeadTrainConfig(**{**config.__dict__, "balance_coef": coef}), progress=False)
        codes = result.head.encode(x, 2)
        used[coef] = latent_usage(codes, codes[:300])["postings_per_query"]
        assert ("balance" in result.epoch_losses[-1]) == (coef > 0)
    assert used[0.3] < 0.8 * used[0.0], used


def test_nan_training_data_is_rejected():
    x = _low_rank(n=10)
    x[2, 3] = np.nan
    with pytest.raises(InvalidEmbeddingError):
        train_head(x, progress=False)


def test_contrastive_losses_prefer_codes_that_agree_with_labels():
    from csrv2_vdb.training.losses import inbatch_contrastive, label_contrastive

    labels = torch.tensor([0, 0, 1, 1])
    aligned = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]])
    crossed = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    assert label_contrastive(aligned, aligned, labels) < label_contrastive(crossed, crossed, labels)
    spread = torch.eye(4)
    assert inbatch_contrastive(spread, spread) < inbatch_contrastive(aligned, aligned)
    # hand-checked: 4 orthogonal codes, tau 0.2 -> each row's positive e^5 against 6 negatives of e^0
    expected = -np.log(np.exp(5) / (np.exp(5) + 6))
    assert float(inbatch_contrastive(spread, spread)) == pytest.approx(expected, rel=1e-5)


def test_k_annealing_is_linear_then_flat():
    from csrv2_vdb.training.schedule import annealed_k

    ks = [annealed_k(s, 100, 2, 64) for s in range(100)]
    assert ks[0] == 64 and ks[35] == round(64 * 0.5 + 2 * 0.5) and ks[69] < 4 and set(ks[70:]) == {2}
    assert all(a >= b for a, b in itertools.pairwise(ks))
    assert annealed_k(0, 100, 8, 64, hidden=128) == 32  # k0 <= h/4
    assert annealed_k(0, 100, 8, None) == 8


def test_label_sources():
    from csrv2_vdb.training.labels import classification_labels, retrieval_rows, sts_rows

    assert classification_labels(["b", "a", "b"]).tolist() == [1, 0, 1]
    rows, y = retrieval_rows(2, 4, {0: [1, 2], 1: [2]})  # items: q0 q1 d0 d1 d2 d3
    pairs = sorted(zip(rows.tolist(), y.tolist(), strict=True))
    # q0 with d1, d2; q1 with d2 (d2 repeated, not merging the two queries); d0, d3 alone
    assert [r for r, _ in pairs] == [0, 1, 2, 3, 4, 4, 5]
    label = dict(pairs[:2])
    assert {lab for r, lab in pairs if r in (3, 4) and lab == label[0]} == {label[0]}
    assert label[0] != label[1] and len(set(y.tolist())) == 4
    rows, z = sts_rows(4, [(0, 1, 4.2), (2, 3, 1.0)])
    by_row = dict(zip(rows.tolist(), z.tolist(), strict=True))
    assert by_row[0] == by_row[1] and by_row[2] != by_row[3]


def test_label_batches_always_hold_positives():
    from csrv2_vdb.training.labels import LabelBatchSampler

    labels = np.repeat(np.arange(50), 4)[:190]
    batches = list(LabelBatchSampler(labels, batch_size=16, seed=3))
    assert sorted(np.concatenate(batches).tolist()) == list(range(190))
    for batch in batches:
        assert len(batch) <= 16
        _, counts = np.unique(labels[batch], return_counts=True)
        assert counts.max() >= 2


def test_resumed_training_equals_uninterrupted(tmp_path):
    x = _low_rank(n=600)
    labels = np.repeat(np.arange(100), 6)
    config = HeadTrainConfig(method="csrv2", k=4, hidden_dim=128, k_aux=32, lr=1e-3, epochs=3, batch_size=64)
    straight = train_head(x, config, labels, progress=False).head
    partial = train_head(x, config, labels, checkpoint_dir=tmp_path, max_steps=13, progress=False)
    assert partial.steps == 13
    resumed = train_head(x, config, labels, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert resumed.steps == straight_steps(x, config, labels)
    assert torch.allclose(resumed.head.encoder.weight, straight.encoder.weight, atol=1e-6)
    with pytest.raises(ValueError, match="another config"):
        train_head(x, HeadTrainConfig(k=8), checkpoint_dir=tmp_path, resume=True, progress=False)


def straight_steps(x, config, labels) -> int:
    from csrv2_vdb.training.trainer import _epoch_batches

    return config.epochs * len(_epoch_batches(len(x), config, labels, 0))


def test_config_file_round_trip(tmp_path):
    config = HeadTrainConfig(method="csr", k=8)
    config.save(tmp_path / "c.json")
    assert HeadTrainConfig.load(tmp_path / "c.json", k=16, lr=None) == HeadTrainConfig(method="csr", k=16)
    (tmp_path / "bad.json").write_text('{"kk": 3}')
    with pytest.raises(ValueError, match="unknown config keys"):
        HeadTrainConfig.load(tmp_path / "bad.json")


def test_lora_finetune_changes_a_copy_and_saves_a_loadable_backbone(backbone, tmp_path):
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.training.finetune import FinetuneConfig, finetune_backbone, label_pairs

    texts = ["card not arrived", "where is my card", "exchange rate today", "what rate for euros"] * 4
    labels = [0, 0, 1, 1] * 4
    pairs = [(texts[i], texts[j]) for i, j in label_pairs(labels, 16)]
    assert all(labels[texts.index(a)] == labels[texts.index(b)] for a, b in pairs)
    before = backbone.embed(texts[:4])
    tuned = finetune_backbone(
        backbone, pairs, tmp_path / "tuned", FinetuneConfig(batch_size=8, lr=1e-3), progress=False
    )
    np.testing.assert_array_equal(backbone.embed(texts[:4]), before)  # the original is untouched
    after = Backbone(tmp_path / "tuned").embed(texts[:4])
    np.testing.assert_allclose(tuned.embed(texts[:4]), after, atol=1e-6)
    assert np.abs(after - before).max() > 1e-4
    assert (after[0] @ after[1]) - (after[0] @ after[2]) > (before[0] @ before[1]) - (before[0] @ before[2])
