"""`SparseHead`: the top-k sparse autoencoder that turns a dense embedding into a k-sparse code.

    pre   = W (x - b_pre) + b_lat          W: (h, d), h = 4d by default
    z     = ReLU(TopK(pre, k))             top-k on the signed pre-activations, then ReLU
    x_hat = W^T z + b_pre                  tied decoder

The weights are stored in the layout of sentence-transformers' `SparseAutoEncoder` module
(config.json + model.safetensors with `decoder.linear.weight`, `pre_bias`, `latent_bias`,
`stats_last_nonzero`), so a head saved here drops into a SparseEncoder and the reverse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from csrv2_vdb.errors import (
    DataNotFoundError,
    DimensionMismatchError,
    HeadLoadError,
    InvalidEmbeddingError,
    InvalidKError,
)
from csrv2_vdb.sparse import SparseBatch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Latents with top-k value below this do not count as firing (the reference code's threshold).
FIRE_EPS = 1e-5


@dataclass
class HeadOutput:
    """What one training forward gives: the top-k code (values largest first, their latents), the
    reconstruction and the pre-activations it came from."""

    values: torch.Tensor
    indices: torch.Tensor
    recon: torch.Tensor
    pre: torch.Tensor

    @property
    def latents(self) -> torch.Tensor:
        """The code as a dense (n, h) tensor (for the contrastive losses)."""
        return torch.zeros_like(self.pre).scatter(-1, self.indices, self.values)


class SparseHead(nn.Module):
    """Top-k sparse autoencoder with a tied decoder (CSR / CSRv2 head)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int | None = None,
        k: int = 32,
        k_aux: int = 1024,
        normalize: bool = False,
        dead_threshold: int = 30,
    ) -> None:
        super().__init__()
        hidden_dim = hidden_dim or 4 * input_dim
        if not 1 <= k <= hidden_dim:
            raise InvalidKError(f"k={k} must be between 1 and hidden_dim={hidden_dim}")
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.k = k
        self.k_aux = min(k_aux, hidden_dim // 2)
        self.normalize = normalize
        self.dead_threshold = dead_threshold
        self.pre_bias = nn.Parameter(torch.zeros(input_dim))
        self.encoder = nn.Linear(input_dim, hidden_dim, bias=False)
        self.latent_bias = nn.Parameter(torch.zeros(hidden_dim))
        # Calls to top_k since each latent last fired; drives the aux (dead-latent) loss.
        self.stats_last_nonzero: torch.Tensor
        self.register_buffer("stats_last_nonzero", torch.zeros(hidden_dim, dtype=torch.long))

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        """The sentence-transformers SparseAutoEncoder config keys, nothing else."""
        return {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "k": self.k,
            "k_aux": self.k_aux,
            "normalize": self.normalize,
            "dead_threshold": self.dead_threshold,
        }

    def check_k(self, k: int) -> int:
        """k as an int in [1, hidden_dim]; 0, 2.5 or True are refused, never read as "the default"."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise InvalidKError(f"k must be an integer, got {type(k).__name__} {k!r}")
        if not 1 <= k <= self.hidden_dim:
            raise InvalidKError(
                f"k={k} is not possible for a head with {self.hidden_dim} latents; choose 1 <= k <= {self.hidden_dim}"
            )
        return k

    # ----------------------------------------------------------------- forward
    def pre_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """pre = W(x - b_pre) + b_lat, with optional per-sample standardisation first."""
        info: dict[str, torch.Tensor] = {}
        if self.normalize:
            mu = x.mean(dim=-1, keepdim=True)
            std = (x - mu).std(dim=-1, keepdim=True)
            x = (x - mu) / (std + 1e-5)
            info = {"mu": mu, "std": std}
        return F.linear(x - self.pre_bias, self.encoder.weight, self.latent_bias), info

    def top_k(self, pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ReLU(TopK(pre, k)) as (values, latents) of shape (n, k), largest first; in training, also updates the
        dead-latent counters."""
        vals, idx = torch.topk(pre, k, dim=-1)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                fired = torch.zeros_like(self.stats_last_nonzero)
                fired[idx[vals > FIRE_EPS]] = 1
                self.stats_last_nonzero *= 1 - fired
                self.stats_last_nonzero += 1
        return F.relu(vals), idx

    def aux_latents(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k_aux among latents dead for more than `dead_threshold` calls, as (values, latents)."""
        dead = self.stats_last_nonzero > self.dead_threshold
        k = max(1, min(self.k_aux, int(dead.sum())))
        vals, idx = torch.topk(pre.masked_fill(~dead, float("-inf")), k, dim=-1)
        return F.relu(vals).nan_to_num(0.0), idx

    def decode(
        self, values: torch.Tensor, indices: torch.Tensor, info: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x_hat = W^T z + b_pre for the sparse code z = (values, latents): a sum of k decoder rows per sample
        (an embedding bag: O(k d) per row instead of O(h d)); undoes the standardisation when `normalize` is on."""
        n, k = indices.shape
        offsets = torch.arange(0, n * k, k, device=indices.device)
        out = F.embedding_bag(
            indices.reshape(-1), self.encoder.weight, offsets, mode="sum", per_sample_weights=values.reshape(-1)
        )
        out = out + self.pre_bias
        if info:
            out = out * info["std"] + info["mu"]
        return out

    def forward(self, x: torch.Tensor, k: int | None = None) -> HeadOutput:
        pre, info = self.pre_activations(x)
        values, indices = self.top_k(pre, self.check_k(self.k if k is None else k))
        return HeadOutput(values, indices, self.decode(values, indices, info), pre)

    # --------------------------------------------------------------- inference
    def encode(self, x: np.ndarray | torch.Tensor, k: int | None = None) -> SparseBatch:
        """Dense (n, d) embeddings -> SparseBatch of width k (ReLU may leave fewer active)."""
        k = int(self.check_k(self.k if k is None else k))
        xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        if xt.ndim != 2 or xt.shape[1] != self.input_dim:
            raise DimensionMismatchError(
                f"the head expects (n, {self.input_dim}) embeddings, got {tuple(xt.shape)}; "
                "was it trained on a different backbone?"
            )
        if not torch.isfinite(xt).all():
            row = int(torch.nonzero(~torch.isfinite(xt).all(dim=1))[0, 0])
            raise InvalidEmbeddingError(f"embedding row {row} holds NaN or inf; fix the input before encoding")
        with torch.inference_mode():
            pre, _ = self.pre_activations(xt.to(self.encoder.weight.device))
            vals, idx = torch.topk(pre, k, dim=-1)
            vals = F.relu(vals)
        return SparseBatch(idx.cpu().numpy(), vals.cpu().numpy(), self.hidden_dim)

    # -------------------------------------------------------------- save/load
    def save(self, directory: str | Path) -> Path:
        """Write config.json + model.safetensors (sentence-transformers SparseAutoEncoder layout)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config(), indent=4))
        tensors = {
            "decoder.linear.weight": self.encoder.weight.detach().cpu().contiguous(),
            "pre_bias": self.pre_bias.detach().cpu().contiguous(),
            "latent_bias": self.latent_bias.detach().cpu().contiguous(),
            "stats_last_nonzero": self.stats_last_nonzero.detach().cpu().contiguous(),
        }
        # The metadata names the tied alias exactly as safetensors.save_model records it.
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"encoder.weight": "decoder.linear.weight"})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SparseHead:
        """Load a head directory, or find the SparseAutoEncoder module inside a SparseEncoder directory.

        Nothing is allocated before the config and the weights file's header agree (a config claiming 2**28
        latents beside a small weights file is refused, not allocated); reads are bounded, weights must be
        finite, and every error names the file."""
        directory = _module_dir(Path(directory))
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        config = _read_config(config_path)
        shapes = _weight_shapes(weights_path)
        input_dim, hidden_dim = config.get("input_dim"), config.get("hidden_dim") or 4 * int(config.get("input_dim", 0))
        expected = {"weight": (hidden_dim, input_dim), "pre_bias": (input_dim,), "latent_bias": (hidden_dim,)}
        names = {"weight": ("encoder.weight", "decoder.linear.weight"), "pre_bias": ("pre_bias",),
                 "latent_bias": ("latent_bias",)}  # fmt: skip
        stored: dict[str, str] = {}
        for name, shape in expected.items():
            key = next((k for k in names[name] if k in shapes), None)
            if key is None or shapes[key] != shape:
                got = "missing" if key is None else f"shape {shapes[key]}"
                raise HeadLoadError(f"{weights_path}: {name} should have shape {shape} per {config_path} ({got})")
            stored[name] = key
        try:
            head = cls(**{key: config[key] for key in _CONFIG_KEYS if key in config})
        except (ValueError, TypeError) as exc:
            raise HeadLoadError(f"{config_path} is not a head config ({exc})") from None
        from safetensors import safe_open

        with safe_open(str(weights_path), "pt") as f:
            tensors = {name: f.get_tensor(key) for name, key in stored.items()}
            extra = f.get_tensor("stats_last_nonzero") if "stats_last_nonzero" in shapes else None
        for name, tensor in tensors.items():
            if not torch.isfinite(tensor).all():
                raise HeadLoadError(
                    f"{weights_path}: {name} holds NaN or inf; the head is damaged, fit or copy it again"
                )
        head.encoder.weight.data.copy_(tensors["weight"])
        head.pre_bias.data.copy_(tensors["pre_bias"])
        head.latent_bias.data.copy_(tensors["latent_bias"])
        if extra is not None and tuple(extra.shape) == (head.hidden_dim,):
            head.stats_last_nonzero.copy_(extra)
        return head.eval()

    def fingerprint(self) -> str:
        """SHA-256 of the config and weights: names this exact head (checkpoints, caches)."""
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for tensor in (self.encoder.weight, self.pre_bias, self.latent_bias):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


_CONFIG_KEYS = ("input_dim", "hidden_dim", "k", "k_aux", "normalize", "dead_threshold")
MAX_CONFIG_BYTES = 1 << 20


def _read_config(path: Path) -> dict[str, Any]:
    """A head's config.json: a regular file of at most 1 MiB holding an object with positive integer dims."""
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file" if path.exists() else "missing"
        raise HeadLoadError(f"{path} is {what}; a head directory holds config.json and {WEIGHTS_NAME}")
    with open(path, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise HeadLoadError(f"{path} is over {MAX_CONFIG_BYTES} bytes; a head config is a few hundred")
    try:
        config = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HeadLoadError(
            f"{path} is not a head config ({exc}); it needs at least input_dim (and hidden_dim, k)"
        ) from None
    if not isinstance(config, dict) or "input_dim" not in config:
        raise HeadLoadError(f"{path} is not a head config: it needs at least input_dim (and hidden_dim, k)")
    for key in ("input_dim", "hidden_dim", "k"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise HeadLoadError(f"{path}: {key} must be a positive integer, got {value!r}")
    return config


def _weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file declares in its header (nothing is loaded)."""
    if not path.is_file():
        raise HeadLoadError(
            f"{path} is {'missing' if not path.exists() else 'not a regular file'}; copy the head again"
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own SafetensorError on a cut or foreign file
        raise HeadLoadError(f"{path} is not a readable safetensors file ({exc}); copy it again") from None


# Heads shipped with the package, each with a card.json (domain, training data, measured quality); see
# heads/README.md. The default was trained on general text (software descriptions, short requests), the others
# on one task each; every one is best near its own data (docs/quality.md).
PRETRAINED_DIR = Path(__file__).parent / "heads"
DEFAULT_HEAD = "minilm-general-csrv2"
CARD_NAME = "card.json"


def pretrained_heads() -> list[str]:
    """Names of the heads shipped in the package."""
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_NAME).exists())


def head_card(name: str) -> dict[str, Any]:
    """A shipped head's card: its domain, what it was trained on, and its measured quality."""
    path = _shipped(name) / CARD_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def pretrained_head(name: str | None = None) -> SparseHead:
    """A shipped head by name, e.g. "minilm-medical-csrv2-k8"; no name gives the general default head."""
    return SparseHead.load(_shipped(name or DEFAULT_HEAD))


def resolve_head(head: str | Path | None) -> SparseHead:
    """A head from a directory, a shipped head's name, or (None) the general default head."""
    if head is None:
        return pretrained_head()
    if Path(head).exists():
        return SparseHead.load(head)
    if str(head) in pretrained_heads():
        return pretrained_head(str(head))
    raise DataNotFoundError(
        f"{str(head)!r} is neither a head directory nor a shipped head; shipped: {pretrained_heads()}"
    )


def _shipped(name: str) -> Path:
    if name not in pretrained_heads():
        raise DataNotFoundError(f"no shipped head {name!r}; shipped: {pretrained_heads()}")
    return PRETRAINED_DIR / name


def _module_dir(directory: Path) -> Path:
    """A head directory as is; for a full SparseEncoder directory, its SparseAutoEncoder module."""
    modules_file = directory / "modules.json"
    if modules_file.exists():
        for module in json.loads(modules_file.read_text()):
            if module.get("type", "").endswith("SparseAutoEncoder"):
                return directory / module["path"]
    elif (directory / WEIGHTS_NAME).exists() and (directory / CONFIG_NAME).exists():
        return directory
    raise DataNotFoundError(
        f"{directory} is neither a head directory (config.json + model.safetensors) "
        "nor a SparseEncoder directory with a SparseAutoEncoder module"
    )
