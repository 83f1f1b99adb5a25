"""Reconstruction losses of the top-k head: L_k + L_4k / 8 + c_aux * NMSE(aux).

The 4k term is a separate top-4k of fresh pre-activations; the aux term asks the latents that have
not fired for `dead_threshold` calls to reconstruct the residual the top-k code left (this revives
dead latents; it is left out while no latent is dead). Defaults follow the CSR/CSRv2 reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from csrv2_vdb.head import SparseHead


def nmse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE normalised by the MSE of predicting the batch mean (scale-free)."""
    baseline = F.mse_loss(target.mean(dim=0, keepdim=True).expand_as(target), target)
    return F.mse_loss(recon, target) / baseline


def reconstruction_losses(head: SparseHead, x: torch.Tensor, k: int, aux_coef: float = 0.1) -> dict[str, torch.Tensor]:
    """The three weighted terms for one batch; their sum is the loss to minimise."""
    out_k = head(x, k)
    out_4k = head(x, min(4 * k, head.hidden_dim))
    losses = {"k": F.mse_loss(out_k.recon, x), "4k": F.mse_loss(out_4k.recon, x) / 8}
    if aux_coef > 0 and bool((head.stats_last_nonzero > head.dead_threshold).any()):
        z_aux = head.aux_latents(out_k.pre)
        residual = x - out_k.recon.detach() + head.pre_bias.detach()
        losses["aux"] = aux_coef * nmse(head.decode(z_aux), residual).nan_to_num(0.0)
    return losses
