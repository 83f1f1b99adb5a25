"""Losses of the sparse head: reconstruction (k + 4k/8 + aux) and the two contrastive terms.

- Reconstruction: MSE at k, MSE of a separate top-4k of fresh pre-activations / 8, and c_aux * NMSE of
  the residual reconstructed by latents that have not fired for `dead_threshold` calls (this revives
  dead latents; the term is left out while no latent is dead).
- CSR: in-batch contrastive loss on L2-normalised sparse codes, positives = the same sample.
- CSRv2: supervised contrastive loss, positives = every other sample with the same label.
- Balance (opt-in, `balance_coef`): the load-balancing term of Switch Transformers (Fedus et al. 2021,
  eq. 4: h * sum_j f_j P_j) over latents: f_j the share of the batch's top-k slots latent j fills, P_j its
  share of the code mass. It is 1 when latents are used evenly and h when one takes everything; postings
  read per query grow with sum_j f_j^2, so lowering it shortens the lists a query walks.
Both contrastive terms use the reference code's "sum inside the log" form with tau = 0.2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from csrv2_vdb.head import HeadOutput, SparseHead


def nmse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE normalised by the MSE of predicting the batch mean (scale-free)."""
    baseline = F.mse_loss(target.mean(dim=0, keepdim=True).expand_as(target), target)
    return F.mse_loss(recon, target) / baseline


def reconstruction_losses(
    head: SparseHead, x: torch.Tensor, k: int, aux_coef: float = 0.1, extra_ks: Sequence[int] = ()
) -> tuple[dict[str, torch.Tensor], HeadOutput]:
    """The weighted reconstruction terms for one batch, and the top-k output they came from.

    One top-4k serves every term: its first k entries are the top-k code (counted for dead latents), and
    each of `extra_ks` adds the MSE of its own prefix, averaged with the k term (one head for many k).
    """
    pre, info = head.pre_activations(x)
    k4 = min(4 * k, head.hidden_dim)
    vals4, idx4 = torch.topk(pre, min(max([k4, *extra_ks]), head.hidden_dim), dim=-1)
    relu4 = F.relu(vals4)
    values, indices = head.top_k(pre, k)
    out_k = HeadOutput(values, indices, head.decode(values, indices, info), pre)
    mse_k = F.mse_loss(out_k.recon, x)
    for extra in extra_ks:
        mse_k = mse_k + F.mse_loss(head.decode(relu4[:, :extra], idx4[:, :extra], info), x)
    losses = {"k": mse_k / (1 + len(extra_ks)), "4k": F.mse_loss(head.decode(relu4[:, :k4], idx4[:, :k4], info), x) / 8}
    if aux_coef > 0 and bool((head.stats_last_nonzero > head.dead_threshold).any()):
        aux_values, aux_indices = head.aux_latents(pre)
        residual = x - out_k.recon.detach() + head.pre_bias.detach()
        losses["aux"] = aux_coef * nmse(head.decode(aux_values, aux_indices), residual).nan_to_num(0.0)
    return losses, out_k


def balance_loss(values: torch.Tensor, indices: torch.Tensor, hidden_dim: int) -> torch.Tensor:
    """h * sum_j f_j P_j over a batch of top-k codes (1: even use); gradients flow through P (the values)."""
    flat = indices.reshape(-1)
    share = torch.bincount(flat, minlength=hidden_dim).to(values.dtype) / max(flat.numel(), 1)
    mass = torch.zeros(hidden_dim, dtype=values.dtype).index_add(0, flat, values.reshape(-1))
    return hidden_dim * (share * mass / mass.sum().clamp_min(1e-12)).sum()


def _contrastive(z: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """-mean log(sum_pos / (sum_pos + sum_neg)) over the rows of z, with z the two views stacked."""
    z = F.normalize(z, dim=-1)
    sim = torch.exp(z @ z.T / tau)
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    pos = (sim * (positives & ~self_mask)).sum(dim=1).clamp(min=1e-8)
    neg = (sim * ~positives).sum(dim=1).clamp(min=1e-8)
    return -torch.log(pos / (pos + neg)).mean()


def inbatch_contrastive(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """CSR: each sample's positive is its other view; every other sample is a negative."""
    ids = torch.arange(len(z1), device=z1.device).repeat(2)
    return _contrastive(torch.cat([z1, z2]), ids[:, None] == ids[None, :], tau)


def label_contrastive(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """CSRv2: positives are all samples (and views) with the same label; the rest are negatives."""
    y = labels.repeat(2)
    return _contrastive(torch.cat([z1, z2]), y[:, None] == y[None, :], tau)
