"""Debiased contrastive loss (Chuang et al., "Debiased Contrastive Learning", NeurIPS 2020)."""

from __future__ import annotations

from .base import Loss, debiased_loss, masked_logsumexp
from .registry import register


@register("dcl")
class DCLLoss(Loss):
    """DCL corrects the negative term for the share ``tau+`` of false negatives it expects.

    With ``N`` negatives per anchor (non-positives of the pool, or the picked ones),
    ``Ng = max((sum_neg e^{s/t} - tau+ N e^{s+/t}) / (1 - tau+), N e^{-1/t})`` and the loss is
    ``-log(e^{s+/t} / (e^{s+/t} + Ng))``. Computed with a per-row shift for stability.

    Args:
        temperature: t (0.07).
        tau_plus: class prior tau+ (0.1).
        reduction: over anchors.
    """


    def __init__(self, temperature: float = 0.07, tau_plus: float = 0.1, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: 'temperature' must be > 0, got {temperature}")
        if not 0 <= tau_plus < 1:
            raise ValueError(f"{self.name}: 'tau_plus' must lie in [0, 1), got {tau_plus}")
        self.temperature, self.tau_plus = float(temperature), float(tau_plus)

    def per_anchor(self, neg, valid, pos):
        n = valid.sum(dim=1).to(neg.dtype)
        return debiased_loss(pos / self.temperature, masked_logsumexp(neg / self.temperature, valid), n,
                             self.temperature, self.tau_plus)
