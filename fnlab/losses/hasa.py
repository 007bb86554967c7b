"""HaSa's loss: hardness-weighted InfoNCE whose negative mass is debiased by structural false-negative proxies
(Zhang, Zhang and Molybog, "HaSa: Hardness and Structure-Aware Contrastive Knowledge Graph Embedding", WWW 2024;
official ``honggen-zhang/HaSa-CKGE``, ``loss.py`` ``InBatch_hard_loss.forward`` and ``negative_sample.py``
``NegativeSampleHard.neg_sampling`` for the weights)."""

from __future__ import annotations

import torch

from .base import Loss
from .registry import register


def _row_softmax(s: torch.Tensor, keep: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """HaSa's weights: ``softmax_j(s_j / ||s_row||_2)`` over ``keep`` (0 elsewhere), the row's norm taken over the kept
    entries (plus ``extra [B]``, the positive's score, as the official normalises the whole score row)."""
    sq = (s * s * keep).sum(dim=1)
    if extra is not None:
        sq = sq + extra * extra
    norm = sq.sqrt().clamp_min(1e-12)[:, None]
    logits = (s / norm).masked_fill(~keep, float("-inf"))
    w = torch.softmax(logits, dim=1)
    return torch.nan_to_num(w, nan=0.0)


@register("hasa")
class HaSaLoss(Loss):
    """HaSa's ``InBatch_hard_loss`` on a pool's similarities (logits ``x = s / t``):

    ``g = sum_j w_j e^{x_j} - tau sum_f v_f e^{x_f}``, replaced by 1 where it is not positive (the official
    ``F.threshold(., 0, 1)``), and ``L = -log(e^{x+ - margin} / (e^{x+ - margin} + N / (1 - tau) g))``, with

    * ``w_j = softmax_j(s_j / ||s_row||)`` over the anchor's negatives (the official ``prob``: the row of scores
      L2-normalised, then a softmax; near-uniform at pool sizes, since the row norm grows with ``sqrt(K)``);
    * ``f`` the anchor's structural false-negative proxies (side information ``fn_mask``: the ``hasa`` sampler flags
      near-copies of the anchor's positive and candidates whose labelled partners resemble the anchor), and
      ``v_f = softmax_f(s_f / ||s_F||)`` over them (the official ``f_prob``). A proxy stays in the pool, as a
      hard negative the official code picked as a proxy does, so its net gradient is ``N (w_f - tau v_f) e^{x_f}``
      over the denominator: attracted once ``tau v_f > w_f``;
    * ``N``: ``n_neg`` when set (the official code takes ``v_h_t.shape[1]``, the *embedding width*, 500 there; set
      ``n_neg`` to reproduce it), otherwise the anchor's number of negatives (fnlab's choice: with uniform weights
      ``N sum_j w_j e^{x_j}`` is then the InfoNCE denominator's sum);
    * all weights computed without gradient, as the official code computes them in eval mode from the bank.

    With ``tau = 0`` it is the weighted InfoNCE ``-log(e^{x+ - m} / (e^{x+ - m} + N sum_j w_j e^{x_j}))``.

    Shapes: ``neg [B, K]``, ``valid [B, K]``, ``pos [B]``, ``fn_mask [B, K]`` bool -> ``[B]``.

    Args:
        temperature: ``t`` (0.07; the official scores are raw dot products).
        tau: weight of the proxies' mass (1e-4, the official FB15k-237 default; 2e-5 on WN18RR).
        margin: subtracted from the positive's logit (1.0, the official ``fill_diagonal_(1)``).
        n_neg: ``N`` (``None``: the anchor's number of negatives).
        reduction: over anchors.
    """

    ACCEPTS = ("fn_mask",)

    def __init__(self, temperature: float = 0.07, tau: float = 1e-4, margin: float = 1.0, n_neg: int | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: 'temperature' must be > 0, got {temperature}")
        if not 0 <= tau < 1:
            raise ValueError(f"{self.name}: 'tau' must lie in [0, 1), got {tau}")
        if n_neg is not None and int(n_neg) < 1:
            raise ValueError(f"{self.name}: 'n_neg' must be >= 1 or None, got {n_neg}")
        self.temperature, self.tau, self.margin = float(temperature), float(tau), float(margin)
        self.n_neg = None if n_neg is None else int(n_neg)

    def weights(self, neg: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor,
                fn_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w [B, K], v [B, K])``: the negatives' hardness weights and the proxies' weights (detached)."""
        s = neg.detach()
        w = _row_softmax(s, valid, pos.detach())
        proxies = torch.zeros_like(valid) if fn_mask is None else fn_mask & valid
        return w, _row_softmax(s, proxies)

    def per_anchor(self, neg, valid, pos, *, fn_mask=None):
        t = self.temperature
        w, v = self.weights(neg, valid, pos, fn_mask)
        x = neg / t
        xp = pos / t - self.margin
        c = torch.maximum(xp, x.masked_fill(~valid, float("-inf")).amax(dim=1)).detach()
        c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
        e = torch.exp((x - c[:, None]).masked_fill(~valid, float("-inf")))
        g = (w * e).sum(dim=1) - self.tau * (v * e).sum(dim=1)  # e^{-c} times the official de
        g = torch.where(g > 0, g, torch.exp(-c))  # the official threshold: de <= 0 becomes 1
        n = valid.sum(dim=1).to(neg.dtype) if self.n_neg is None else torch.full_like(pos, float(self.n_neg))
        return torch.log(torch.exp(xp - c) + n / (1 - self.tau) * g) - (xp - c)
