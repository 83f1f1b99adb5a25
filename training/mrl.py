"""A trained Matryoshka projection: the fair MRL baseline for a backbone not trained with Matryoshka loss.

A d x d linear map P (initialised to the identity, i.e. plain truncation) is trained so that every
prefix of normalise(P x) of length m in `dims` is a good embedding on its own: the loss is the sum
over m of the supervised contrastive loss (the same labels CSRv2 uses) on the normalised prefix.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from csrv2_vdb.encoder import mrl_truncate
from csrv2_vdb.training.labels import LabelBatchSampler
from csrv2_vdb.training.losses import inbatch_contrastive, label_contrastive


@dataclass
class MRLConfig:
    dims: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64, 128, 256])
    tau: float = 0.05  # MultipleNegativesRanking's scale 20
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 5
    seed: int = 1227


class MatryoshkaProjection(torch.nn.Module):
    """x -> normalise(P x); truncating the output to m dims and re-normalising gives the m-dim embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim, bias=False)
        torch.nn.init.eye_(self.linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x), dim=-1)

    def transform(self, x: np.ndarray, dims: int) -> np.ndarray:
        """Projected, truncated to `dims` and re-normalised (what an MRL collection stores)."""
        with torch.inference_mode():
            projected = self(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()
        return mrl_truncate(projected, dims)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.linear.weight.detach().contiguous()}, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps({"dim": self.linear.in_features}))

    @classmethod
    def load(cls, directory: str | Path) -> MatryoshkaProjection:
        directory = Path(directory)
        projection = cls(json.loads((directory / "config.json").read_text())["dim"])
        projection.linear.weight.data.copy_(load_file(str(directory / "model.safetensors"))["weight"])
        return projection.eval()


def train_matryoshka(
    embeddings: np.ndarray, labels: np.ndarray | None, config: MRLConfig | None = None, progress: bool = True
) -> tuple[MatryoshkaProjection, dict]:
    """Train the projection; without labels each row is its own class (in-batch contrastive)."""
    config = config or MRLConfig()
    x_all = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    torch.manual_seed(config.seed)
    projection = MatryoshkaProjection(x_all.shape[1]).train()
    optimizer = torch.optim.Adam(projection.parameters(), lr=config.lr)
    dims = [m for m in config.dims if m <= x_all.shape[1]]
    history = []
    bar = tqdm(range(config.epochs), desc="train matryoshka", disable=not progress)
    for epoch in bar:
        if labels is not None:
            batches = list(LabelBatchSampler(labels, config.batch_size, seed=config.seed * 1000 + epoch))
        else:
            order = np.random.default_rng(config.seed * 1000 + epoch).permutation(len(x_all))
            batches = np.array_split(order, -(-len(x_all) // config.batch_size))
        total = 0.0
        for batch in batches:
            z = projection(x_all[torch.as_tensor(batch)])
            terms = []
            for m in dims:
                prefix = z[:, :m]
                if labels is not None:
                    y = torch.as_tensor(labels[batch])
                    terms.append(label_contrastive(prefix, prefix, y, config.tau))
                else:
                    terms.append(inbatch_contrastive(prefix, prefix, config.tau))
            loss = torch.stack(terms).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) / len(batches)
        history.append(total)
        bar.set_postfix(loss=f"{total:.4f}")
    return projection.eval(), {"config": asdict(config), "epoch_losses": history}
