"""The oracle sampler: uses ground truth to drop true false negatives (a teaching ceiling)."""

from __future__ import annotations

import torch

from .base import Sampler, topk_mask
from .registry import register
from .semihard import below_semihard_mask, semihard_mask
from .simans import simans_weights


@register("oracle")
class OracleSampler(Sampler):
    """Hardest or SimANS sampling that never picks a truly relevant candidate.

    The ground truth comes as ``relevant_mask`` (``[B, M]`` bool, true where the candidate
    truly matches the anchor, labelled or not), the :class:`~fnlab.retrieval.hooks.SampleContext` field
    (``weights(..., relevant_mask=rel)`` for short). Relevant candidates get weight 0; among the others:

    * ``base="hardest"`` (default): weight 1 on the most similar non-relevant candidate;
    * ``base="simans"``: SimANS weights ``exp(-a (s - s+ - b)^2)`` over the ``top_k`` most
      similar non-relevant candidates;
    * ``base="window"``: uniform over the anchor's ``top_k`` most similar non-positives (the window is
      chosen from the labels alone, as every sampler's is) with the relevant ones removed: the ceiling of
      any false-negative filter on that window (``bench/regime_map.py``);
    * ``base="semihard"``: uniform over the anchor's semi-hard negatives (``s+ - margin < s < s+``) with the
      relevant ones removed; where that leaves nothing, uniform over the non-relevant candidates below the band
      (``s <= s+ - margin``): the ceiling of a false-negative filter on semi-hard's window.

    A row whose candidates are all relevant falls back to its hardest non-positive (which
    is then a false negative): no better choice exists.

    Raises:
        ValueError: no relevance mask, or one of the wrong shape/device/dtype.
    """

    needs_relevance = True

    BASES = ("hardest", "simans", "window", "semihard")

    def __init__(self, base: str = "hardest", a: float = 0.5, b: float = 0.0, top_k: int = 100,
                 margin: float = 0.2) -> None:
        if base not in self.BASES:
            raise ValueError(f"oracle: 'base' must be one of {', '.join(self.BASES)}, got {base!r}")
        if margin < 0:
            raise ValueError(f"oracle: 'margin' must be >= 0, got {margin}")
        self.base, self.a, self.b, self.top_k, self.margin = base, float(a), float(b), int(top_k), float(margin)

    def _relevance(self, sims: torch.Tensor, rel: torch.Tensor | None) -> torch.Tensor:
        if rel is None:
            raise ValueError("oracle: needs 'relevant_mask' ([B, M] bool ground truth) passed to "
                             "weights()/sample()")
        if not isinstance(rel, torch.Tensor) or rel.dtype != torch.bool or rel.shape != sims.shape:
            got = tuple(rel.shape) if isinstance(rel, torch.Tensor) else type(rel).__name__
            raise ValueError(f"oracle: 'relevant_mask' must be a bool tensor of shape {tuple(sims.shape)}, got {got}")
        return rel.to(sims.device)

    def _blocked(self, sims, positive_mask, ctx):
        return positive_mask | self._relevance(sims, ctx.relevant_mask)

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        blocked = self._blocked(sims, positive_mask, ctx)
        if self.base == "hardest":
            return topk_mask(sims, blocked, 1).to(sims.dtype)
        if self.base == "window":
            return (topk_mask(sims, positive_mask, self.top_k) & ~blocked).to(sims.dtype)
        if self.base == "semihard":
            band = semihard_mask(sims, pos_sims, self.margin) & ~blocked
            below = below_semihard_mask(sims, pos_sims, self.margin) & ~blocked
            return torch.where(band.any(dim=1, keepdim=True), band, below).to(sims.dtype)
        return simans_weights(sims, pos_sims, self.a, self.b) * topk_mask(sims, blocked, self.top_k)
