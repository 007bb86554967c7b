"""MoCo with hard-negative filtering (Hoang et al., "Enhancing Contrastive Learning with Efficient
Negative Sampling and Hard Negative Filtering", arXiv 2501.16360, 2025). No official code is public and only
the abstract and summaries were readable: reconstructed (``docs/METHODS.md``)."""

from __future__ import annotations

import torch

from .base import Sampler, check_inputs, topk_mask
from .registry import register


@register("moco_hnf")
class MoCoHNFSampler(Sampler):
    """The ``top_n`` queue (and batch) items most similar to each anchor are its negatives, all of them.

    The MoCo setting: a momentum key encoder fills a queue, and each anchor is contrasted with its key
    against the queue. The method keeps, per anchor, only the ``top_n`` most similar entries that are not
    labelled positives ("filtering" the easy ones) and trains InfoNCE on them (``infonce``, the default loss);
    the dual-view (symmetric) loss is fnlab's two directions, each encoder's online view against the other's
    momentum keys. It is the contrast case of the false-negative samplers: the most similar unlabelled entries
    are where false negatives sit (a near-copy of the anchor's item in the queue is picked first).

    :meth:`sample` returns the ``k`` most similar non-positives (the trainer asks for ``top_n``, see
    :meth:`num_picks`); :meth:`weights` is uniform over the ``top_n``.

    Args:
        top_n: negatives per anchor (16).
    """

    def __init__(self, top_n: int = 16) -> None:
        if int(top_n) < 1:
            raise ValueError(f"moco_hnf: 'top_n' must be >= 1, got {top_n}")
        self.top_n = int(top_n)

    def num_picks(self, k: int) -> int | None:
        return self.top_n  # every one of the top_n, whatever the run's num_negatives

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return topk_mask(sims, positive_mask, self.top_n).to(sims.dtype)

    def sample(self, sims, pos_sims, positive_mask, k=1, generator=None, ctx=None, **fields):
        """``[B, k]``: the ``k`` most similar non-positives, most similar first (no randomness; a row with fewer
        than ``k`` repeats its most similar)."""
        if int(k) < 1:
            raise ValueError(f"{self.name}: 'k' must be >= 1, got {k}")
        self._context(ctx, fields, sims)
        with torch.no_grad():
            sims, pos_sims, positive_mask = check_inputs(sims, pos_sims, positive_mask, where=self.name)
            masked = sims.masked_fill(positive_mask, float("-inf"))
            vals, idx = masked.topk(min(int(k), sims.shape[1]), dim=1)
            first = torch.where(torch.isinf(vals[:, :1]), sims.argmax(dim=1, keepdim=True), idx[:, :1])
            idx = torch.where(torch.isinf(vals), first.expand_as(idx), idx)
            if idx.shape[1] < int(k):
                idx = torch.cat([idx, first.expand(-1, int(k) - idx.shape[1])], dim=1)
            return idx
