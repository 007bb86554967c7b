"""Triplet (hinge) loss, sum or max-violation (VSE++, Faghri et al., BMVC 2018)."""

from __future__ import annotations

import torch  # noqa: F401  (used in the docstring example)

from .base import Loss
from .registry import ParamSpec, register


@register("triplet")
class TripletLoss(Loss):
    """Hinge ``[margin - s+ + s]_+`` over each anchor's negatives.

    ``mode="max"``: the most violating negative only (VSE++ max-violation; with the whole
    batch as pool, the official FNE ``TripletLoss`` is this summed over both directions,
    i.e. ``reduction="sum"``). ``mode="sum"``: the sum over all negatives (VSE0).

    Args:
        margin: 0.2.
        mode: ``"max"`` or ``"sum"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over anchors.

    Example:
        >>> loss = TripletLoss()
        >>> sims = torch.tensor([[0.9, 0.8, 0.1]]); mask = torch.tensor([[True, False, False]])
        >>> round(float(loss(sims, sims[:, 0], mask)), 4)
        0.1
    """

    PARAMS = (ParamSpec("margin", 0.2, 0.0, 1.0, "hinge margin"),)

    def __init__(self, margin: float = 0.2, mode: str = "max", reduction: str = "mean") -> None:
        super().__init__(reduction)
        if mode not in ("max", "sum"):
            raise ValueError(f"triplet: 'mode' must be 'max' or 'sum', got {mode!r}")
        self.margin, self.mode = float(margin), mode

    def per_anchor(self, neg, valid, pos):
        h = (self.margin - pos[:, None] + neg).clamp(min=0) * valid
        if self.mode == "sum":
            return h.sum(dim=1)
        return h.max(dim=1).values if h.shape[1] else h.sum(dim=1)
