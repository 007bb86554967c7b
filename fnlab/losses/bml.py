"""ClusterNS's loss: InfoNCE plus the bidirectional margin loss on suspected false negatives (Deng et al.,
"Clustering-Aware Negative Sampling for Unsupervised Sentence Representation", Findings of ACL 2023;
official ``djz233/ClusterNS``, ``simcse/models.py``, ``cl_forward`` and ``kmeans_cluster.false_negative_loss``)."""

from __future__ import annotations

import torch

from .base import Loss, masked_logsumexp
from .registry import register


@register("infonce_bml")
class InfoNCEBMLLoss(Loss):
    """InfoNCE over the negatives, plus ``bml_weight`` times the bidirectional margin loss (BML) on ``fn_mask``.

    With ``F [B, K]`` the sampler's suspected false negatives (side information ``fn_mask``; none: plain
    InfoNCE) and ``delta_ij = (s_ij - s_i+) F_ij``, the BML term of anchor ``i`` is
    ``(1/B) sum_j [relu(delta_ij + alpha) + relu(-delta_ij - beta)]`` over the ``B`` in-batch candidates, so a
    flagged candidate is held in the band ``-beta < s - s+ < -alpha`` below the positive; an unflagged one adds
    the constant ``alpha`` (no gradient), exactly as the official mean over the ``B x B`` matrix does. Flagged
    candidates stay in the InfoNCE denominator: ClusterNS does not eliminate them.

    Shapes: ``neg [B, K]``, ``valid [B, K]``, ``pos [B]``, ``fn_mask [B, K]`` bool -> ``[B]``.

    Args:
        temperature: InfoNCE temperature (0.05, SimCSE's and ClusterNS's).
        alpha, beta: the band (0.2, 0.5: the non-prompt defaults).
        bml_weight: weight of the BML term (1e-4).
        reduction: over anchors.
    """

    ACCEPTS = ("fn_mask",)

    def __init__(self, temperature: float = 0.05, alpha: float = 0.2, beta: float = 0.5, bml_weight: float = 1e-4,
                 reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: 'temperature' must be > 0, got {temperature}")
        if bml_weight < 0:
            raise ValueError(f"{self.name}: 'bml_weight' must be >= 0, got {bml_weight}")
        self.temperature, self.alpha, self.beta = float(temperature), float(alpha), float(beta)
        self.bml_weight = float(bml_weight)

    def bml(self, neg: torch.Tensor, pos: torch.Tensor, fn_mask: torch.Tensor) -> torch.Tensor:
        """``[B]`` the BML term of each anchor (class docstring)."""
        delta = (neg - pos[:, None]) * fn_mask
        terms = torch.relu(delta + self.alpha) + torch.relu(-delta - self.beta)
        flagged = (terms * fn_mask).sum(dim=1)
        unflagged = (neg.shape[0] - fn_mask.sum(dim=1)).to(neg.dtype)  # each adds relu(alpha) + relu(-beta)
        return (flagged + unflagged * (max(self.alpha, 0.0) + max(-self.beta, 0.0))) / neg.shape[0]

    def per_anchor(self, neg, valid, pos, *, fn_mask=None):
        lp = pos / self.temperature
        out = torch.logaddexp(lp, masked_logsumexp(neg / self.temperature, valid)) - lp
        if fn_mask is not None and self.bml_weight > 0:
            out = out + self.bml_weight * self.bml(neg, pos, fn_mask)
        return out
