"""ADORE's LambdaRank loss: RankNet pairs weighted by the change in MRR (Zhan et al., "Optimizing Dense
Retrieval Model Training with Hard Negatives", SIGIR 2021; official ``jingtaozhan/DRhard``,
``adore/train.py``, ``train``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Loss
from .registry import register


@register("lambdarank")
class LambdaRankLoss(Loss):
    """Every (labelled positive, negative) pair of an anchor's retrieved list, RankNet-weighted by delta-MRR.

    The sampler passes ``rank`` (side information, ``[B, M]`` long): each candidate's 1-based position in
    the anchor's retrieved list, labelled positives included at their place and, when not retrieved,
    appended after it; 0 outside the list. With ``u(r) = 1/r`` for ``r <= metric_cut`` and 0 beyond, each
    pair (positive ``p``, negative ``n``) of the list costs ``softplus(-sigma (s_p - s_n))`` weighted by
    ``|u(r_p) - u(r_n)|``; the anchor's loss is their sum divided by the number of such pairs (the official
    code sums both orientations of each pair and divides by twice that). The largest weight falls on a
    negative ranked above the positive near the top: a false negative ranked first is pushed hardest.

    Shapes: ``neg [B, K]``, ``valid [B, K]`` (false on labelled positives), ``pos [B]``, ``rank [B, K]`` ->
    ``[B]``. Needs ``rank``; the trainer calls it on the whole pool (``neg_idx=None``).

    Args:
        sigma: the RankNet slope on the scores (1.0, the official value on dot products).
        metric_cut: positions beyond it count 0 in ``u`` (200, the official passage setting).
        reduction: over anchors.
    """

    ACCEPTS = REQUIRES = ("rank",)

    def __init__(self, sigma: float = 1.0, metric_cut: int = 200, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if sigma <= 0:
            raise ValueError(f"{self.name}: 'sigma' must be > 0, got {sigma}")
        if int(metric_cut) < 1:
            raise ValueError(f"{self.name}: 'metric_cut' must be >= 1, got {metric_cut}")
        self.sigma, self.metric_cut = float(sigma), int(metric_cut)

    def _utility(self, rank: torch.Tensor) -> torch.Tensor:
        """``u(r) = 1/r`` within the metric cut, 0 beyond it and outside the list (``[B, K]`` float64)."""
        listed = (rank > 0) & (rank <= self.metric_cut)
        return torch.where(listed, 1.0 / rank.clamp_min(1).double(), torch.zeros((), dtype=torch.float64))

    def per_anchor(self, neg, valid, pos, *, rank):
        listed = rank > 0
        is_pos, is_neg = listed & ~valid, listed & valid
        width = max(int(is_pos.sum(dim=1).max()) if is_pos.numel() else 0, 1)
        # each row's labelled positives in the list, padded: [B, P] slots and a mask
        order = is_pos.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :width]
        has = is_pos.gather(1, order)
        u = self._utility(rank)
        s_p, u_p = neg.gather(1, order), u.gather(1, order)  # [B, P]
        w = (u_p[:, :, None] - u[:, None, :]).abs().to(neg.dtype)  # [B, P, K]
        w = w * (has[:, :, None] & is_neg[:, None, :])
        cost = F.softplus(-self.sigma * (s_p[:, :, None] - neg[:, None, :]))
        n_pairs = (is_pos.sum(dim=1) * is_neg.sum(dim=1)).clamp_min(1).to(neg.dtype)
        return (cost * w).sum(dim=(1, 2)) / n_pairs
