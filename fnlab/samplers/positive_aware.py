"""Positive-aware hard-negative mining (NV-Retriever, Moreira et al., 2024), as presets of ``range``."""

from __future__ import annotations

from .base import Sampler
from .range import RangeSampler
from .registry import register
from .shortfall import ShortfallCounter


@register("positive_aware")
class PositiveAwareSampler(ShortfallCounter, Sampler):
    """Drop candidates too close to the positive, then weight 1 on the top-k of the rest.

    ``mode="perc"`` ("TopK-PercPos"): drop ``s > s+ - |s+| (1 - perc)``, which is NV-Retriever's
    ``perc * s+`` for ``s+ >= 0`` and stays below the positive when ``s+ < 0`` (the sign fix of
    sentence-transformers #3819/#3821, :func:`fnlab.samplers.range.relative_cut`).
    ``mode="margin"`` ("TopK-MarginPos"): drop ``s > s+ - margin``.
    Ranking for the top-k counts only kept candidates. A row where every candidate is dropped
    falls back to its hardest non-positive (base-class fallback); rows left with fewer than ``top_k``
    are counted in the epoch's ``too_few_negatives``.

    This is a preset of :class:`~fnlab.samplers.range.RangeSampler` (:meth:`as_range` returns it):
    no rank window, ``strategy="top"``, ``num_negatives=top_k``, and ``relative_margin = 1 - perc``
    (perc mode) or ``margin`` (margin mode). At the defaults it differs from ``range``'s defaults
    (ranks 10..49 below the positive, drawn uniformly) and from ``hardest`` (top 1): it keeps the
    10 hardest candidates under 95% of the positive's score.

    Args:
        mode: ``"perc"`` or ``"margin"``.
        perc: the TopK-PercPos ceiling (0.95).
        margin: the TopK-MarginPos margin (0.05).
        top_k: kept hard negatives per anchor (10).
    """


    def __init__(self, mode: str = "perc", perc: float = 0.95, margin: float = 0.05, top_k: int = 10) -> None:
        if mode not in ("perc", "margin"):
            raise ValueError(f"positive_aware: 'mode' must be 'perc' or 'margin', got {mode!r}")
        if int(top_k) < 1:
            raise ValueError(f"positive_aware: 'top_k' must be >= 1, got {top_k}")
        if mode == "perc" and not 0.0 < float(perc) <= 1.0:
            raise ValueError(f"positive_aware: 'perc' must lie in (0, 1], got {perc}")
        self.mode, self.perc, self.margin, self.top_k = mode, float(perc), float(margin), int(top_k)
        self._range = self.as_range()

    def as_range(self) -> RangeSampler:
        """The equivalent :class:`RangeSampler`."""
        window = dict(range_min=0, range_max=None, strategy="top", num_negatives=self.top_k)
        if self.mode == "perc":
            return RangeSampler(**window, margin=None, relative_margin=1.0 - self.perc)
        return RangeSampler(**window, margin=self.margin, relative_margin=None)

    def asked(self, k: int) -> int:
        return self.top_k

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        w = self._range._weights(sims, pos_sims, positive_mask, ctx)
        self.note_eligible(self._range._eligible)
        return w
