"""Range / margin mining, as sentence-transformers' ``mine_hard_negatives`` (``sentence_transformers.util``)."""

from __future__ import annotations

import torch

from .base import Sampler, rank_among_allowed
from .registry import register
from .shortfall import ShortfallCounter


def relative_cut(pos: torch.Tensor, relative_margin: float) -> torch.Tensor:
    """The relative-margin ceiling ``s+ - |s+| r``: candidates above it are dropped (any shape)."""
    return pos - pos.abs() * relative_margin


@register("range")
class RangeSampler(ShortfallCounter, Sampler):
    """Eligible candidates by rank window, score bounds and margins; "top" or "random".

    A candidate (never a labelled positive) is eligible when all hold:

    * its rank among the non-positive candidates (0 = most similar) lies in
      ``[range_min, range_max)`` (``range_max=None``: no upper bound);
    * ``min_score <= s <= max_score`` where set;
    * absolute margin ``margin``: dropped if ``s + margin > s+``;
    * relative margin ``relative_margin``: dropped if ``s > s+ - |s+| * relative_margin``. This is the form
      sentence-transformers uses since its issue #3819 (PRs #3820, #3821): the older ``s+ * (1 - r)`` moves the
      cut *above* a negative ``s+`` and lets closer negatives through (``s+ = -0.50``, ``r = 0.05``: the old
      cut -0.475 keeps a negative at -0.49; the fixed cut -0.525 drops it).

    ``strategy="top"`` puts weight 1 on the ``num_negatives`` most similar eligible
    candidates; ``"random"`` puts weight 1 on every eligible candidate. A row with none
    eligible falls back to its hardest non-positive. Rows left with fewer eligible candidates than asked
    (``num_negatives`` for "top", the draw's ``k`` for "random") are counted in the epoch's
    ``too_few_negatives`` (:mod:`fnlab.samplers.shortfall`).

    **Defaults: a rank band below the positive.** ``range_min=10, range_max=50, margin=0,
    strategy="random"``: skip the 10 most similar candidates (where false negatives crowd),
    draw uniformly among ranks 10..49, and never take a candidate scored above the labelled
    positive. These are the settings sentence-transformers' maintainers used to mine the
    published hard-negative sets (e.g. ``tomaarsen/natural-questions-hard-negatives``: "we skip
    the 10 most similar samples", "only look at the top 50", margin 0, random sampling), so
    ``range`` at its defaults is that miner, not ``hardest`` (``range_min=0, range_max=None,
    margin=None, strategy="top"`` gives ``hardest``).

    Args:
        range_min, range_max: rank window (defaults 10 and 50; ``range_max=None``: no bound).
        min_score, max_score: similarity bounds (None = off).
        margin: absolute margin (default 0: below the positive; None = off).
        relative_margin: relative margin in [0, 1) (None = off).
        strategy: ``"random"`` (default) or ``"top"``.
        num_negatives: weighted candidates per row for ``"top"`` (1).
    """


    def __init__(self, range_min: int = 10, range_max: int | None = 50, min_score: float | None = None,
                 max_score: float | None = None, margin: float | None = 0.0,
                 relative_margin: float | None = None, strategy: str = "random", num_negatives: int = 1) -> None:
        if strategy not in ("top", "random"):
            raise ValueError(f"range: 'strategy' must be 'top' or 'random', got {strategy!r}")
        if int(range_min) < 0 or (range_max is not None and int(range_max) <= int(range_min)):
            raise ValueError(f"range: need 0 <= range_min < range_max, got {range_min}, {range_max}")
        if relative_margin is not None and not 0 <= relative_margin < 1:
            raise ValueError(f"range: 'relative_margin' must lie in [0, 1), got {relative_margin}")
        if int(num_negatives) < 1:
            raise ValueError(f"range: 'num_negatives' must be >= 1, got {num_negatives}")
        self.range_min = int(range_min)
        self.range_max = None if range_max is None else int(range_max)
        self.min_score, self.max_score = min_score, max_score
        self.margin, self.relative_margin = margin, relative_margin
        self.strategy, self.num_negatives = strategy, int(num_negatives)

    def eligible(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
        """``[B, M]`` bool: candidates passing the window, score bounds and margins."""
        ranks = rank_among_allowed(sims, positive_mask)
        ok = ~positive_mask & (ranks >= self.range_min)
        if self.range_max is not None:
            ok &= ranks < self.range_max
        p = pos_sims[:, None]
        if self.min_score is not None:
            ok &= sims >= self.min_score
        if self.max_score is not None:
            ok &= sims <= self.max_score
        if self.margin is not None:
            ok &= ~(sims + self.margin > p)
        if self.relative_margin is not None:
            ok &= ~(sims > relative_cut(p, self.relative_margin))
        return ok

    def asked(self, k: int) -> int:
        return self.num_negatives if self.strategy == "top" else int(k)

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        ok = self.eligible(sims, pos_sims, positive_mask)
        self.note_eligible(ok.sum(dim=1))
        if self.strategy == "random":
            return ok.to(sims.dtype)
        # "top": the num_negatives most similar eligible candidates.
        ranks = rank_among_allowed(sims, ~ok)
        return (ok & (ranks < self.num_negatives)).to(sims.dtype)
