"""CET's corrected ranking loss (Cai et al., "Hard Negatives or False Negatives: Correcting Pooling Bias in Training
Neural Ranking Models", CIKM 2022; no official code: reconstructed, ``docs/METHODS.md``). The weights and the
observation model come from the ``cet`` sampler (:class:`fnlab.samplers.cet.CETSampler`)."""

from __future__ import annotations

import torch

from .base import Loss
from .registry import register


@register("cet")
class CETLoss(Loss):
    """InfoNCE whose negatives count by the sampler's ``neg_weight`` (``P(r = 0 | y = 0)``), plus the observation
    model's negative log-likelihood the sampler passes (``obs_nll``, summed over the row; its gradient reaches only the
    sampler's relevance and selection models):

    ``L = -log(e^{s+/t} / (e^{s+/t} + sum_j w_j e^{s_j/t})) + sum_j obs_nll_j``.

    Shapes: ``neg [B, K]``, ``valid [B, K]``, ``pos [B]``, ``neg_weight [B, K]``, ``obs_nll [B, K]`` -> ``[B]``.

    Args:
        temperature: ``t`` (0.07).
        reduction: over anchors.
    """

    ACCEPTS = ("neg_weight", "obs_nll")
    REQUIRES = ("neg_weight", "obs_nll")

    def __init__(self, temperature: float = 0.07, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: 'temperature' must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def per_anchor(self, neg, valid, pos, *, neg_weight=None, obs_nll=None):
        lp = pos / self.temperature
        w = torch.ones_like(neg) if neg_weight is None else neg_weight.detach()
        logits = (neg / self.temperature + torch.log(w.clamp_min(1e-12))).masked_fill(~valid, float("-inf"))
        out = torch.logaddexp(lp, torch.logsumexp(logits, dim=1)) - lp
        return out if obs_nll is None else out + obs_nll.sum(dim=1)
