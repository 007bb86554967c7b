"""Counting queries left with too few negatives after a filter (sentence-transformers' ``mine_hard_negatives``
reports how many anchors got fewer than ``num_negatives``; its PR #3504 fixed a 15x over-count of that number).

A sampler whose rank window, score bounds, margins or veto can leave an anchor fewer eligible candidates than
it was asked for mixes in :class:`ShortfallCounter`: its ``_weights`` calls :meth:`ShortfallCounter.note_eligible`
with each row's eligible count, and every :meth:`~fnlab.samplers.base.Sampler.sample` call compares those counts
with the number asked (the draw's ``k``, or the sampler's own keep count for "top" strategies). The epoch's
metrics then hold ``too_few_negatives`` (anchor rows, summed over the epoch's steps and directions) and
``too_few_negatives_rate`` (their share of the rows sampled). The base class still fills such a row: with
replacement from what is left, or, when nothing is left, with its fallback.
"""

from __future__ import annotations

import torch

__all__ = ["ShortfallCounter"]


class ShortfallCounter:
    """Mixin for :class:`~fnlab.samplers.base.Sampler` subclasses (module docstring). Put it first in the bases."""

    _eligible: torch.Tensor | None = None
    _short_rows = 0
    _sampled_rows = 0

    def note_eligible(self, counts: torch.Tensor) -> None:
        """Record ``[B]`` eligible candidates per row of the call being computed."""
        self._eligible = counts.detach()

    def asked(self, k: int) -> int:
        """How many negatives a row was asked for, given the draw's ``k`` (override for "top" strategies)."""
        return int(k)

    def sample(self, sims, pos_sims, positive_mask, k=1, generator=None, ctx=None, **fields):
        self._eligible = None
        out = super().sample(sims, pos_sims, positive_mask, k=k, generator=generator, ctx=ctx, **fields)
        if self._eligible is not None:
            self._short_rows += int((self._eligible < self.asked(k)).sum())
            self._sampled_rows += int(self._eligible.numel())
        return out

    def start_epoch(self, epoch) -> None:
        self._short_rows = self._sampled_rows = 0
        super().start_epoch(epoch)

    def epoch_metrics(self) -> dict[str, float]:
        """``too_few_negatives`` (rows) and ``too_few_negatives_rate`` (their share) since the epoch began."""
        out = dict(super().epoch_metrics())
        out["too_few_negatives"] = float(self._short_rows)
        out["too_few_negatives_rate"] = self._short_rows / self._sampled_rows if self._sampled_rows else 0.0
        return out
