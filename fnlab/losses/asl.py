"""Asymmetric loss on (anchor, candidate) pairs (Ridnik et al., "Asymmetric Loss For Multi-Label Classification",
ICCV 2021; official ``Alibaba-MIIL/ASL``, ``src/loss_functions/losses.py``, class ``AsymmetricLoss``)."""

from __future__ import annotations

import torch

from .base import Loss
from .registry import register


def asymmetric_terms(x: torch.Tensor, positive: bool, *, gamma_pos: float, gamma_neg: float, clip: float,
                     eps: float, detach_focal: bool) -> torch.Tensor:
    """The official per-entry loss ``-[y L+ + (1 - y) L-]`` for logits ``x`` (any shape) that are all positives
    (``positive=True``) or all negatives.

    ``p = sigmoid(x)``; positives: ``-(1 - p)^{gamma+} log p``; negatives, with the probability margin
    ``p_m = max(p - clip, 0)`` (the code's ``xs_neg = min(1 - p + clip, 1)``): ``-p_m^{gamma-} log(1 - p_m)``.
    ``log`` arguments are clamped at ``eps`` and the focusing weight is computed without gradient when
    ``detach_focal`` (the official default).
    """
    p = torch.sigmoid(x)
    if positive:
        base, gamma = p, gamma_pos
    else:
        base, gamma = 1 - p, gamma_neg
        if clip is not None and clip > 0:
            base = (base + clip).clamp(max=1)
    loss = torch.log(base.clamp(min=eps))
    if gamma_pos > 0 or gamma_neg > 0:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_focal):
            weight = torch.pow(1 - base, gamma)
        loss = loss * weight
    return -loss


@register("asl")
class AsymmetricPairLoss(Loss):
    """ASL over every (anchor, candidate) pair as a binary problem: logit ``x = (s - b) / t``, target 1 on the
    anchor's labelled positive and 0 on its negatives; the anchor's loss is the official sum over its pairs.

    With ``gamma- = 4`` and the probability margin ``m = 0.05``, a negative with ``p <= m`` gets neither loss nor
    gradient, the push ``dL/dx`` peaks near ``p = 0.93`` (0.326) and falls to 0.016 at ``p = 0.999`` (focusing weights
    detached, as the official ``AsymmetricLoss``): a negative the model already scores far above the band (a
    confident false negative) is barely pushed, one in the band ``0.6 < p < 0.95`` is pushed most. ``t`` and ``b`` are
    fnlab's choice (the SigLIP-like ``t = 0.1``, ``b = 0.5``): cosines need a bias for ``p`` to span ``(0, 1)``.

    Shapes: ``neg [B, K]``, ``valid [B, K]``, ``pos [B]`` -> ``[B]``.

    Args:
        temperature: ``t`` (0.1).
        bias: ``b`` (0.5).
        gamma_pos, gamma_neg: focusing exponents (1, 4).
        clip: the probability margin ``m`` (0.05; 0 turns it off).
        eps: clamp of the log arguments (1e-8).
        focal: ``"detached"`` (focusing weights without gradient, the official default) or ``"in_graph"``
            (``AsymmetricLossOptimized``'s default: the push then peaks at 0.73 near ``p = 0.90``).
        reduction: over anchors.

    Example:
        >>> loss = AsymmetricPairLoss(reduction="sum")
        >>> sims = torch.tensor([[0.9, 0.1]]); mask = torch.tensor([[True, False]])
        >>> float(loss(sims, sims[:, 0], mask)) < 0.01  # a confident positive, a negative below the margin
        True
    """

    def __init__(self, temperature: float = 0.1, bias: float = 0.5, gamma_pos: float = 1.0, gamma_neg: float = 4.0,
                 clip: float = 0.05, eps: float = 1e-8, focal: str = "detached", reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: 'temperature' must be > 0, got {temperature}")
        if gamma_pos < 0 or gamma_neg < 0 or not 0 <= clip < 1:
            raise ValueError(f"{self.name}: need gamma_pos, gamma_neg >= 0 and 0 <= clip < 1, got "
                             f"{gamma_pos}, {gamma_neg}, {clip}")
        self.temperature, self.bias = float(temperature), float(bias)
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = float(gamma_pos), float(gamma_neg), float(clip), float(eps)
        if focal not in ("detached", "in_graph"):
            raise ValueError(f"{self.name}: 'focal' must be 'detached' or 'in_graph', got {focal!r}")
        self.focal = focal

    def logits(self, s: torch.Tensor) -> torch.Tensor:
        """``(s - b) / t``."""
        return (s - self.bias) / self.temperature

    def per_anchor(self, neg, valid, pos):
        kw = dict(gamma_pos=self.gamma_pos, gamma_neg=self.gamma_neg, clip=self.clip, eps=self.eps,
                  detach_focal=self.focal == "detached")
        neg_terms = asymmetric_terms(self.logits(neg), False, **kw) * valid
        return asymmetric_terms(self.logits(pos), True, **kw) + neg_terms.sum(dim=1)
