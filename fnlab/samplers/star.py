"""STAR: static hard negatives mined once (Zhan et al., "Optimizing Dense Retrieval Model Training with Hard
Negatives", SIGIR 2021; official ``jingtaozhan/DRhard``: ``star/prepare_hardneg.py``, ``dataset.py``
``TrainInbatchWithHardDataset``, ``model.py`` ``inbatch_train``)."""

from __future__ import annotations

import torch

from fnlab.retrieval.hooks import EpochContext, PoolExtension, SampleContext

from .base import Sampler, topk_mask
from .registry import register


@register("star")
class STARSampler(Sampler):
    """Each anchor's ``top_k`` hardest candidates, mined once after the warm-up and then fixed; each step one
    of them per anchor joins the pool, shared across the batch.

    * **Mining** (:meth:`start_epoch`, the first epoch after the warm-up, both directions): the online encoder
      (the warmed-up model; STAR uses no queue) encodes every training anchor and searches the corpus index of
      the other side for its ``top_k`` most similar candidates, labelled positives left out (the official code
      retrieves the top ``top_k + 10`` and drops the labelled ones). The lists never change afterwards.
    * **Each step** (:meth:`extend_pool`): every anchor draws ``hard_num`` of its list uniformly; the drawn
      candidates are encoded by the online encoder (with gradients, as the official document encoder encodes
      them) and appended to the pool, where every anchor of the batch sees them all.
    * **Loss**: the whole pool (``num_picks`` is ``None``): the in-batch positives of the other anchors as
      random negatives and the drawn hard negatives, pairs labelled relevant masked, under the pairwise
      logistic loss (``pairwise_logistic``, the default).

    Outside training (the app's playground) :meth:`weights` is uniform over the ``top_k`` hardest
    non-positives: the distribution of a step's draw where the current ranking is the mined one.

    Args:
        top_k: the mined list's length (200).
        hard_num: hard negatives drawn per anchor and step (1).
    """

    needs_warmup = True
    uses_queue = False

    def __init__(self, top_k: int = 200, hard_num: int = 1) -> None:
        if int(top_k) < 1 or int(hard_num) < 1:
            raise ValueError(f"star: 'top_k' and 'hard_num' must be >= 1, got {top_k}, {hard_num}")
        self.top_k, self.hard_num = int(top_k), int(hard_num)
        self.mined: dict[str, torch.Tensor] = {}  # direction -> [n_anchor, top_k] candidate ids, -1 padded

    def start_epoch(self, epoch: EpochContext) -> None:
        """Mine the lists at the first epoch after the warm-up; keep them for the rest of the run."""
        if epoch.warmup or self.mined:
            return
        for direction in ("i2t", "t2i"):
            self.mined[direction] = self.mine(epoch, direction)

    def mine(self, epoch: EpochContext, direction: str) -> torch.Tensor:
        """``[n_anchor, top_k]`` each training anchor's hardest non-positive candidates (-1 padded)."""
        anchor_side, cand_side = ("a", "b") if direction == "i2t" else ("b", "a")
        anchors = epoch.encode("train", anchor_side, which="online")
        _, ids = epoch.index(cand_side, which="online").search(anchors, self.top_k,
                                                                exclude=epoch.positives(direction))
        return ids

    def extend_pool(self, ctx: SampleContext, epoch: EpochContext) -> PoolExtension | None:
        lists = self.mined.get(ctx.direction)
        if lists is None:
            return None
        mine = lists.to(ctx.anchor_ids.device)[ctx.anchor_ids]  # [B, top_k]
        n = (mine >= 0).sum(dim=1, keepdim=True)
        if not bool((n > 0).any()):
            return None
        u = torch.rand((mine.shape[0], self.hard_num), generator=epoch.generator, device=mine.device)
        drawn = mine.gather(1, (u * n.clamp_min(1)).long().clamp_max(mine.shape[1] - 1))  # uniform over each list
        has = (n > 0).expand_as(drawn)
        owners = torch.arange(drawn.shape[0], device=drawn.device)[:, None].expand_as(drawn)
        return PoolExtension(drawn[has], owners=owners[has])  # shared by the batch; owners for the metric

    def num_picks(self, k: int) -> int | None:
        return None  # the loss sees the whole pool

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return topk_mask(sims, positive_mask, self.top_k).to(sims.dtype)
