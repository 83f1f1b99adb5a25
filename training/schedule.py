"""CSRv2's progressive k-annealing: k falls linearly from k0 to the target over the first share of steps."""

from __future__ import annotations


def annealed_k(step: int, total_steps: int, k_final: int, k0: int | None, ratio: float = 0.7, hidden: int = 0) -> int:
    """k at an optimizer step: round(k0 (1 - t) + k_final t) with t = step / (ratio * total), then k_final.

    k0 is clamped to [k_final, hidden // 4] (so that 4 k0 latents exist) as in the reference code;
    k0 = None turns annealing off.
    """
    if k0 is None:
        return k_final
    if hidden:
        k0 = min(k0, hidden // 4)
    k0 = max(k0, k_final)
    decay_steps = int(total_steps * ratio)
    if step >= decay_steps or decay_steps == 0:
        return k_final
    t = step / decay_steps
    return round(k0 * (1 - t) + k_final * t)
