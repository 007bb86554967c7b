"""HaSa's structural false-negative proxies on a training pool (Zhang, Zhang and Molybog, "HaSa: Hardness and
Structure-Aware Contrastive Knowledge Graph Embedding", WWW 2024; official ``honggen-zhang/HaSa-CKGE``,
``negative_sample.py`` ``NegativeSampleHard.neg_sampling``). The loss is :class:`fnlab.losses.hasa.HaSaLoss`."""

from __future__ import annotations

import torch

from .base import Sampler
from .registry import register


def structural_scores(ctx, positive_mask: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` each slot's structural resemblance to the anchor: the larger of

    * the slot's candidate against the anchor's labelled positive in the candidate space (a near-copy of the
      positive: ``cand[j] . cand[p]``, ``p`` the anchor's first positive slot), and
    * the slot's labelled partner against the anchor in the anchor space (``partner[j] . anchor``: the
      candidate's own labelled query resembles this anchor).

    Both are the pool's features (the training context, ``SampleContext.has_pool``)."""
    first = positive_mask.to(torch.int8).argmax(dim=1)
    has_pos = positive_mask.any(dim=1)
    near_copy = ctx.candidates[first] @ ctx.candidates.T
    near_copy = near_copy.masked_fill(~has_pos[:, None], float("-inf"))
    partner = ctx.anchors @ ctx.partners.T
    partner = partner.masked_fill(ctx.partner_ids[None, :] == ctx.anchor_ids[:, None], float("-inf"))
    return torch.maximum(near_copy, partner)


@register("hasa")
class HaSaSampler(Sampler):
    """The whole pool (batch and queue) for HaSa's loss, with each anchor's structural false-negative proxies
    flagged (side information ``fn_mask``).

    HaSa's proxies are a head entity's neighbours within two hops of the training graph, preferring those among
    its hard negatives, ``false_negative_size = 3`` of them. An image-caption pool has no such graph beyond the
    labelled pairs; its structural analogue is what the pairs make transitive: a candidate that is a near-copy of
    the anchor's labelled positive, or one whose labelled partner resembles the anchor (:func:`structural_scores`).
    An anchor's proxies are its ``n_proxies`` non-positive slots of highest structural score at or above
    ``min_similarity`` (a structural neighbour, not any similar candidate; the official code always fills its
    three, from random two-hop neighbours where needed).

    Args:
        n_proxies: proxies per anchor (3, the official ``false_negative_size``).
        min_similarity: the structural score a proxy needs (0.9, cosine within one modality).
    """

    PROVIDES = ("fn_mask",)

    def __init__(self, n_proxies: int = 3, min_similarity: float = 0.9) -> None:
        if int(n_proxies) < 1:
            raise ValueError(f"hasa: 'n_proxies' must be >= 1, got {n_proxies}")
        self.n_proxies, self.min_similarity = int(n_proxies), float(min_similarity)
        self._flagged = self._rows = 0

    def proxies(self, positive_mask: torch.Tensor, ctx) -> torch.Tensor:
        """``[B, M]`` bool: each anchor's proxies (none outside training, where the pool's features are absent)."""
        if not ctx.has_pool:
            return torch.zeros_like(positive_mask)
        z = structural_scores(ctx, positive_mask)
        z = z.masked_fill(positive_mask | (ctx.candidate_ids < 0)[None, :], float("-inf"))
        k = min(self.n_proxies, z.shape[1])
        top = z.topk(k, dim=1)
        out = torch.zeros_like(positive_mask)
        out.scatter_(1, top.indices, top.values >= self.min_similarity)
        return out

    def side_info(self, sims, pos_sims, positive_mask, ctx):
        fn = self.proxies(positive_mask, ctx)
        self._flagged += int(fn.sum())
        self._rows += fn.shape[0]
        return {"fn_mask": fn}

    def num_picks(self, k: int) -> int | None:
        return None  # HaSa's loss runs over the whole pool

    def start_epoch(self, epoch) -> None:
        self._flagged = self._rows = 0

    def epoch_metrics(self) -> dict[str, float]:
        """``hasa_proxies``: proxies flagged per anchor and step."""
        return {"hasa_proxies": self._flagged / self._rows if self._rows else 0.0}

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return torch.ones_like(sims)  # every candidate of the pool is a negative of the loss
