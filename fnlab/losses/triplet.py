"""Triplet (hinge) loss: the one "triplet" of fnlab (VSE++, Faghri et al., BMVC 2018; FNE, Li et al.,
ACM MM 2023, Eq. 6).

The same loss serves the VSE++ warm-up (every in-batch negative, ``mode="sum"`` or the
max-violation ``mode="max"``) and training on the negatives a sampler picked (``neg_idx``,
``mode="mean"`` over the ``k`` picks: with ``k = 1`` it is FNE's ``HardTripletLoss`` after
``cost.gather(1, index)``; a picked labelled positive contributes 0, as the official masked cost does).
"""

from __future__ import annotations

import torch

from .base import Loss
from .registry import register

MODES = ("max", "sum", "mean")


@register("triplet")
class TripletLoss(Loss):
    """Hinge ``[margin - s+ + s]_+`` over each anchor's negatives (picked ones, or the whole pool).

    ``mode="max"``: the most violating negative only (VSE++ max-violation; with the batch as pool,
    the official FNE ``TripletLoss`` is this summed over both directions, ``reduction="sum"``).
    ``mode="sum"``: the sum over the negatives (VSE0). ``mode="mean"``: their mean.

    Args:
        margin: 0.2.
        mode: ``"max"``, ``"sum"`` or ``"mean"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over anchors.

    Example:
        >>> loss = TripletLoss()
        >>> sims = torch.tensor([[0.9, 0.8, 0.1]]); mask = torch.tensor([[True, False, False]])
        >>> round(float(loss(sims, sims[:, 0], mask)), 4)
        0.1
    """


    def __init__(self, margin: float = 0.2, mode: str = "max", reduction: str = "mean") -> None:
        super().__init__(reduction)
        if mode not in MODES:
            raise ValueError(f"triplet: 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
        self.margin, self.mode = float(margin), mode

    def per_anchor(self, neg: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        h = (self.margin - pos[:, None] + neg).clamp(min=0) * valid
        if self.mode == "sum":
            return h.sum(dim=1)
        if self.mode == "mean":
            return h.mean(dim=1) if h.shape[1] else h.sum(dim=1)
        return h.max(dim=1).values if h.shape[1] else h.sum(dim=1)

    def in_batch(self, scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Both directions over an in-batch score matrix ``scores [B, B]`` (image ``i`` . caption ``j``,
        pair ``(i, i)`` labelled); entries sharing the anchor's item id ``ids [B]`` are not negatives."""
        same = ids[:, None] == ids[None, :]
        d = scores.diagonal()
        return self(scores, d, same) + self(scores.T, d, same.T)
