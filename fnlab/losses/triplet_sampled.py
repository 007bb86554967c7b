"""Triplet loss on the negatives a sampler picked (FNE, Li et al., ACM MM 2023, Eq. 6)."""

from __future__ import annotations

from .base import Loss
from .registry import ParamSpec, register


@register("triplet_sampled")
class SampledTripletLoss(Loss):
    """Mean over the ``k`` picked negatives of ``[margin - s+ + s]_+``; needs ``neg_idx``.

    With ``k = 1`` this is FNE's ``HardTripletLoss`` after ``cost.gather(1, index)``: picked
    labelled positives contribute 0, as the official code's masked cost does.

    Args:
        margin: 0.2.
        reduction: over anchors.
    """

    PARAMS = (ParamSpec("margin", 0.2, 0.0, 1.0, "hinge margin"),)
    needs_indices = True

    def __init__(self, margin: float = 0.2, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = float(margin)

    def per_anchor(self, neg, valid, pos):
        h = (self.margin - pos[:, None] + neg).clamp(min=0) * valid
        return h.mean(dim=1)
