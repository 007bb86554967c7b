"""InfoNCE (van den Oord et al., 2018; CLIP-style contrastive loss, one direction)."""

from __future__ import annotations

import torch

from .base import Loss, masked_logsumexp
from .registry import register


@register("infonce")
class InfoNCELoss(Loss):
    """``-log(e^{s+/t} / (e^{s+/t} + sum_neg e^{s/t}))`` per anchor.

    Other labelled positives in the pool (e.g. queue entries of the same item) are left out of
    the denominator.

    Args:
        temperature: t (0.07).
        reduction: over anchors.
    """


    def __init__(self, temperature: float = 0.07, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"infonce: 'temperature' must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def per_anchor(self, neg, valid, pos):
        lp = pos / self.temperature
        ln = masked_logsumexp(neg / self.temperature, valid)
        return torch.logaddexp(lp, ln) - lp
