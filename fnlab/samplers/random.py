"""Uniform sampling over the non-positive candidates."""

from __future__ import annotations

import torch

from .base import Sampler
from .registry import register


@register("random")
class RandomSampler(Sampler):
    """Every non-positive candidate gets weight 1 (the easy baseline).

    Example:
        >>> s = RandomSampler()
        >>> w = s.weights(torch.rand(2, 5), torch.ones(2), torch.eye(2, 5, dtype=torch.bool))
        >>> bool((w[torch.eye(2, 5, dtype=torch.bool)] == 0).all())
        True
    """

    def __init__(self) -> None:
        pass

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return torch.ones_like(sims)
