"""Hardest negatives (VSE++ max-violation, Faghri et al., BMVC 2018)."""

from __future__ import annotations

import torch

from .base import Sampler, check_inputs, topk_mask
from .registry import register


@register("hardest")
class HardestSampler(Sampler):
    """Weight 1 on the ``top_k`` most similar non-positive candidates, 0 elsewhere.

    With ``top_k=1`` (default) this is VSE++'s max-violating negative, and :meth:`sample`
    returns the ``k`` hardest non-positives, most similar first (deterministic; the
    generator is not used; a row with fewer than ``k`` non-positives repeats its
    hardest). With ``top_k > 1`` it draws ``k`` of the ``top_k`` hardest
    uniformly (without replacement where possible).

    Args:
        top_k: how many of the hardest candidates share the weight.
    """


    def __init__(self, top_k: int = 1) -> None:
        if int(top_k) < 1:
            raise ValueError(f"hardest: 'top_k' must be >= 1, got {top_k}")
        self.top_k = int(top_k)

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return topk_mask(sims, positive_mask, self.top_k).to(sims.dtype)

    def sample(self, sims, pos_sims, positive_mask, k=1, generator=None, ctx=None, **fields):
        """``[B, k]``: the ``k`` hardest non-positives (``top_k == 1``) or ``k`` draws from the top_k."""
        if self.top_k > 1:
            return super().sample(sims, pos_sims, positive_mask, k=k, generator=generator, ctx=ctx, **fields)
        self._context(ctx, fields, sims)  # checks the context like every sampler
        if int(k) < 1:
            raise ValueError(f"{self.name}: 'k' must be >= 1, got {k}")
        with torch.no_grad():
            sims, pos_sims, positive_mask = check_inputs(sims, pos_sims, positive_mask, where=self.name)
            k = int(k)
            masked = sims.masked_fill(positive_mask, float("-inf"))
            vals, idx = masked.topk(min(k, sims.shape[1]), dim=1)
            if k > idx.shape[1]:
                pad = k - idx.shape[1]
                idx = torch.cat([idx, idx[:, :1].expand(-1, pad)], dim=1)
                vals = torch.cat([vals, vals[:, :1].expand(-1, pad)], dim=1)
            # rows with fewer than k non-positives repeat their hardest; rows with none take
            # their most similar candidate (a positive, as in Sampler.sample)
            first = torch.where(torch.isinf(vals[:, :1]), sims.argmax(dim=1, keepdim=True), idx[:, :1])
            return torch.where(torch.isinf(vals), first.expand_as(idx), idx)
