"""Positive-aware hard-negative mining (NV-Retriever, Moreira et al., 2024)."""

from __future__ import annotations

from .base import Sampler, topk_mask
from .registry import ParamSpec, register


@register("positive_aware")
class PositiveAwareSampler(Sampler):
    """Drop candidates too close to the positive, then weight 1 on the top-k of the rest.

    ``mode="perc"`` ("TopK-PercPos"): drop ``s > perc * s+``.
    ``mode="margin"`` ("TopK-MarginPos"): drop ``s > s+ - margin``.
    Ranking for the top-k counts only kept candidates. Note that ``perc * s+`` is the
    NV-Retriever formula and assumes ``s+ > 0``. A row where every candidate is dropped
    falls back to its hardest non-positive (base-class fallback).

    Args:
        mode: ``"perc"`` or ``"margin"``.
        perc: the TopK-PercPos ceiling (0.95).
        margin: the TopK-MarginPos margin (0.05).
        top_k: kept hard negatives per anchor (10).
    """

    PARAMS = (
        ParamSpec("perc", 0.95, 0.5, 1.0, "TopK-PercPos: drop s > perc * s+"),
        ParamSpec("margin", 0.05, 0.0, 0.5, "TopK-MarginPos: drop s > s+ - margin"),
        ParamSpec("top_k", 10, 1, 200, "hard negatives kept per anchor", integer=True),
    )

    def __init__(self, mode: str = "perc", perc: float = 0.95, margin: float = 0.05, top_k: int = 10) -> None:
        if mode not in ("perc", "margin"):
            raise ValueError(f"positive_aware: 'mode' must be 'perc' or 'margin', got {mode!r}")
        if int(top_k) < 1:
            raise ValueError(f"positive_aware: 'top_k' must be >= 1, got {top_k}")
        self.mode, self.perc, self.margin, self.top_k = mode, float(perc), float(margin), int(top_k)

    def _dropped(self, sims, pos_sims):
        p = pos_sims[:, None]
        if self.mode == "perc":
            return sims > self.perc * p
        return sims > p - self.margin

    def _weights(self, sims, pos_sims, positive_mask, **context):
        blocked = positive_mask | self._dropped(sims, pos_sims)
        return topk_mask(sims, blocked, self.top_k).to(sims.dtype)
