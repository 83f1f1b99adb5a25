"""Plain head training on cached, frozen-backbone embeddings (the CSR recipe without contrastive terms)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from csrv2_vdb.errors import InvalidEmbeddingError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.training.losses import reconstruction_losses


@dataclass
class HeadTrainConfig:
    """Defaults from the CSR/CSRv2 reference code (Adam eps 6.25e-10, lr 1e-4, batch 128, 10 epochs)."""

    k: int = 32
    hidden_dim: int | None = None
    k_aux: int = 1024
    dead_threshold: int = 30
    aux_coef: float = 0.1
    lr: float = 1e-4
    batch_size: int = 128
    epochs: int = 10
    seed: int = 1227


@dataclass
class TrainResult:
    """The trained head and, per epoch, the mean of each loss term (k, 4k, aux)."""

    head: SparseHead
    config: HeadTrainConfig
    epoch_losses: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict:
        return {"config": asdict(self.config), "epoch_losses": self.epoch_losses}


def train_head(embeddings: np.ndarray, config: HeadTrainConfig | None = None, progress: bool = True) -> TrainResult:
    """Train a SparseHead to reconstruct (n, d) unit-norm embeddings at k active latents."""
    config = config or HeadTrainConfig()
    x_all = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    if x_all.ndim != 2 or len(x_all) == 0:
        raise InvalidEmbeddingError(f"training needs an (n, d) array with n > 0, got {tuple(x_all.shape)}")
    if not torch.isfinite(x_all).all():
        raise InvalidEmbeddingError("training embeddings hold NaN or inf")
    torch.manual_seed(config.seed)
    head = SparseHead(
        x_all.shape[1], config.hidden_dim, k=config.k, k_aux=config.k_aux, dead_threshold=config.dead_threshold
    ).train()
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, eps=6.25e-10)
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult(head, config)
    steps_per_epoch = -(-len(x_all) // config.batch_size)
    bar = tqdm(
        total=config.epochs * steps_per_epoch, desc=f"train head k={config.k}", disable=not progress, mininterval=0.5
    )
    for _ in range(config.epochs):
        totals: dict[str, float] = {}
        for batch in torch.randperm(len(x_all), generator=generator).split(config.batch_size):
            losses = reconstruction_losses(head, x_all[batch], config.k, config.aux_coef)
            loss = sum(losses.values(), torch.zeros(()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            terms = {name: float(v.detach()) for name, v in losses.items()}
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value * len(batch)
            bar.set_postfix({name: f"{v:.4f}" for name, v in terms.items()}, refresh=False)
            bar.update()
        result.epoch_losses.append({name: v / len(x_all) for name, v in totals.items()})
    bar.close()
    head.eval()
    return result
