"""Hard contrastive loss (Robinson et al., "Contrastive Learning with Hard Negative Samples", ICLR 2021)."""

from __future__ import annotations

import torch

from .base import debiased_loss, masked_logsumexp
from .dcl import DCLLoss
from .registry import register


@register("hcl")
class HCLLoss(DCLLoss):
    """DCL with the negative term reweighted towards hard negatives.

    ``sum_neg e^{s/t}`` becomes ``sum_neg w e^{s/t} / mean_neg(w)`` with ``w = e^{beta s/t}``;
    the rest is DCL (``beta = 0`` gives DCL exactly).

    Args:
        temperature: t (0.07).
        tau_plus: class prior tau+ (0.1).
        beta: hardness (1.0).
        reduction: over anchors.
    """


    def __init__(self, temperature: float = 0.07, tau_plus: float = 0.1, beta: float = 1.0,
                 reduction: str = "mean") -> None:
        super().__init__(temperature, tau_plus, reduction)
        if beta < 0:
            raise ValueError(f"hcl: 'beta' must be >= 0, got {beta}")
        self.beta = float(beta)

    def per_anchor(self, neg, valid, pos):
        t = self.temperature
        n = valid.sum(dim=1).to(neg.dtype)
        x = neg / t
        # log(sum w e^x / mean w) = LSE((1 + beta) x) - LSE(beta x) + log N
        log_rw = masked_logsumexp((1 + self.beta) * x, valid) - masked_logsumexp(self.beta * x, valid) + torch.log(n)
        log_rw = torch.where(n > 0, log_rw, torch.full_like(log_rw, float("-inf")))
        return debiased_loss(pos / t, log_rw, n, t, self.tau_plus)
