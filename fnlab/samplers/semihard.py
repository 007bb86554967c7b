"""Semi-hard negatives (FaceNet, Schroff et al., CVPR 2015)."""

from __future__ import annotations

import torch

from .base import Sampler
from .registry import register


def semihard_mask(sims: torch.Tensor, pos_sims: torch.Tensor, margin: float) -> torch.Tensor:
    """``[B, M]`` bool: each anchor's semi-hard candidates, ``s+ - margin < s < s+`` (``pos_sims [B]``)."""
    p = pos_sims[:, None]
    return (sims > p - margin) & (sims < p)


def below_semihard_mask(sims: torch.Tensor, pos_sims: torch.Tensor, margin: float) -> torch.Tensor:
    """``[B, M]`` bool: the candidates below each anchor's semi-hard window, ``s <= s+ - margin`` (where a row
    whose window is empty falls back: never above the positive)."""
    return sims <= pos_sims[:, None] - margin


@register("semihard")
class SemiHardSampler(Sampler):
    """Weight 1 on negatives less similar than the positive but inside the margin.

    Eligible: ``s+ - margin < s < s+``. A row with no eligible candidate falls back to its
    hardest non-positive (the base-class fallback).

    Args:
        margin: the triplet margin (0.2 as in VSE++).
    """


    def __init__(self, margin: float = 0.2) -> None:
        if margin < 0:
            raise ValueError(f"semihard: 'margin' must be >= 0, got {margin}")
        self.margin = float(margin)

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return semihard_mask(sims, pos_sims, self.margin).to(sims.dtype)
