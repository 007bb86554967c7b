"""False-negative cancellation (Huynh et al., "Boosting Contrastive Self-Supervised Learning with
False Negative Cancellation", WACV 2022)."""

from __future__ import annotations

import torch

from .base import Loss, masked_logsumexp
from .registry import register

MODES = ("elimination", "attraction")


@register("fnc")
class FNCLoss(Loss):
    """InfoNCE that cancels the likely false negatives among each anchor's negatives.

    For anchor ``i`` with labelled positive similarity ``s+`` and negatives ``N_i`` (the pool's
    candidates that are not labelled positives, or the picked ``neg_idx`` ones that are not),
    the suspected false negatives are ``F_i`` = the candidates in the top ``top_k`` of ``N_i``
    by similarity whose similarity exceeds ``threshold`` (strictly). Labelled positives are
    never ranked and never cancelled; they stay out of the loss as in ``infonce``. Ties at the
    k-th place are broken by ``torch.topk``. The selection takes no gradient.

    * ``mode="elimination"``: ``F_i`` leave the denominator,
      ``-log(e^{s+/t} / (e^{s+/t} + sum_{N_i \\ F_i} e^{s/t}))``.
    * ``mode="attraction"``: ``F_i`` become positives; with ``P_i = {s+} u F_i`` and the
      denominator over everything, ``Z_i = e^{s+/t} + sum_{N_i} e^{s/t}``, the loss is the
      average ``-(1 / |P_i|) sum_{p in P_i} log(e^{p/t} / Z_i)`` (Huynh et al., Eq. 4, a
      SupCon-style average of the log-likelihoods over the positive set).

    With ``F_i`` empty both modes equal InfoNCE. Huynh et al. find ``F_i`` by similarity to
    support views of the anchor; fnlab uses the anchor's own similarity row (top-k 10 and
    threshold 0.7 by default, ``docs/METHODS.md``).

    Shapes: ``sims [B, M]``, ``pos_sims [B]``, ``positive_mask [B, M]`` bool or ``None``,
    ``neg_idx [B, k]`` long or ``None``; returns a scalar, or ``[B]`` with ``reduction="none"``.

    Args:
        temperature: t (0.07).
        top_k: how many of the highest-scoring negatives may be cancelled (10).
        threshold: a candidate in the top-k is cancelled when its similarity exceeds this (0.7).
        mode: ``"elimination"`` or ``"attraction"``.
        reduction: over anchors.

    Raises:
        ValueError: a bad parameter, or bad input shapes (from :class:`Loss`).

    Example:
        >>> from fnlab.losses import InfoNCELoss
        >>> fnc = FNCLoss(temperature=1.0, top_k=1, threshold=0.5, reduction="none")
        >>> sims = torch.tensor([[0.9, 0.8, 0.1]]); mask = torch.tensor([[True, False, False]])
        >>> plain = InfoNCELoss(temperature=1.0, reduction="none")  # 0.8 is cancelled: as if absent
        >>> torch.allclose(fnc(sims, sims[:, 0], mask), plain(sims[:, [0, 2]], sims[:, 0], mask[:, [0, 2]]))
        True
    """


    def __init__(self, temperature: float = 0.07, top_k: int = 10, threshold: float = 0.7,
                 mode: str = "elimination", reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: 'temperature' must be > 0, got {temperature}")
        if int(top_k) != top_k or top_k < 0:
            raise ValueError(f"{self.name}: 'top_k' must be a non-negative integer, got {top_k}")
        if mode not in MODES:
            raise ValueError(f"{self.name}: 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
        self.temperature, self.top_k, self.threshold, self.mode = float(temperature), int(top_k), float(threshold), mode

    def false_negatives(self, neg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` bool: the cancelled candidates (valid, in the row's top-k, above the threshold)."""
        neg = neg.detach()
        fn = torch.zeros_like(valid)
        k = min(self.top_k, neg.shape[1])
        if k:
            top = neg.masked_fill(~valid, float("-inf")).topk(k, dim=1).indices
            fn.scatter_(1, top, True)
        return fn & valid & (neg > self.threshold)

    def per_anchor(self, neg, valid, pos):
        lp = pos / self.temperature
        logits = neg / self.temperature
        fn = self.false_negatives(neg, valid)
        if self.mode == "elimination":
            return torch.logaddexp(lp, masked_logsumexp(logits, valid & ~fn)) - lp
        log_z = torch.logaddexp(lp, masked_logsumexp(logits, valid))
        n_pos = 1 + fn.sum(dim=1).to(logits.dtype)
        return log_z - (lp + torch.where(fn, logits, torch.zeros_like(logits)).sum(dim=1)) / n_pos
