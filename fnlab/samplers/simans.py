"""SimANS: ambiguous-negative sampling (Zhou et al., EMNLP 2022)."""

from __future__ import annotations

import torch

from .base import Sampler, topk_mask
from .registry import register


def simans_weights(sims: torch.Tensor, pos_sims: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """``exp(-a (s - s+ - b)^2)`` elementwise; ``sims [B, M]``, ``pos_sims [B]``."""
    return torch.exp(-a * (sims - pos_sims[:, None] - b) ** 2)


@register("simans")
class SimANSSampler(Sampler):
    """SimANS weights ``exp(-a (s - s+ - b)^2)`` over each row's ``top_k`` candidates.

    Sign convention: fnlab writes the bias as ``s - s+ - b``, so the weight peaks at
    ``s = s+ + b`` (a positive ``b`` favours negatives *more* similar than the positive).
    The official SimANS code writes ``s - s+ + b``: its ``b`` is fnlab's ``-b``. With the
    default ``b = 0`` both agree.

    Args:
        a: sharpness (0.5; FNE's tau).
        b: bias, see the sign convention above.
        top_k: only the ``top_k`` most similar non-positive candidates get weight (100).
    """


    def __init__(self, a: float = 0.5, b: float = 0.0, top_k: int = 100) -> None:
        if a < 0:
            raise ValueError(f"simans: 'a' must be >= 0, got {a}")
        if int(top_k) < 1:
            raise ValueError(f"simans: 'top_k' must be >= 1, got {top_k}")
        self.a, self.b, self.top_k = float(a), float(b), int(top_k)

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        w = simans_weights(sims, pos_sims, self.a, self.b)
        return w * topk_mask(sims, positive_mask, self.top_k)
