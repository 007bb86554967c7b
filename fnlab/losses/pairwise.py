"""STAR's pairwise logistic loss (Zhan et al., "Optimizing Dense Retrieval Model Training with Hard
Negatives", SIGIR 2021; official ``jingtaozhan/DRhard``, ``model.py``, ``inbatch_train``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Loss
from .registry import register


@register("pairwise_logistic")
class PairwiseLogisticLoss(Loss):
    """``log(1 + e^{(s - s+)/t})`` for every (anchor, negative) pair, averaged over all valid pairs of the call.

    STAR scores each query against its positive and one negative at a time: the two-way softmax
    ``-log softmax([s+, s])[0] = softplus(s - s+)``. The official code sums it over every valid pair of the
    batch (in-batch positives of other queries and the hard negatives shared across the batch, pairs whose
    document is labelled relevant to the query masked) and divides by the number of valid pairs; here a row
    returns its share, ``sum_j softplus((s_ij - s_i+)/t) * B / N`` with ``N`` the valid pairs of the call, so
    that the sum over anchors divided by ``B`` (the trainer) or ``reduction="mean"`` gives that global mean.
    Official scores are raw dot products (``t = 1``); fnlab's are cosines, on which ``t = 1`` weighs hard and
    easy negatives alike (``sigmoid(s - s+)`` between 0.12 and 0.88).

    Shapes: ``neg [B, K]``, ``valid [B, K]``, ``pos [B]`` -> ``[B]``.

    Args:
        temperature: ``t`` (1.0, the official scale).
        reduction: over anchors.

    Example:
        >>> loss = PairwiseLogisticLoss(reduction="sum")
        >>> sims = torch.tensor([[0.9, 0.4]]); mask = torch.tensor([[True, False]])
        >>> round(float(loss(sims, sims[:, 0], mask)), 4)  # log(1 + e^{0.4 - 0.9})
        0.4741
    """

    def __init__(self, temperature: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: 'temperature' must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def per_anchor(self, neg: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        pairs = F.softplus((neg - pos[:, None]) / self.temperature) * valid
        n = valid.sum().clamp_min(1).to(neg.dtype)
        return pairs.sum(dim=1) * (neg.shape[0] / n)
