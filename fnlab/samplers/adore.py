"""ADORE: dynamic hard negatives from the current query encoder against a frozen document index (Zhan et al.,
"Optimizing Dense Retrieval Model Training with Hard Negatives", SIGIR 2021; official ``jingtaozhan/DRhard``,
``adore/train.py``, ``train`` and ``load_index``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from fnlab.retrieval.hooks import EpochContext, PoolExtension, SampleContext

from .base import Sampler
from .registry import register


def retrieved_ranks(retrieved: torch.Tensor, positives: sp.csr_matrix, columns: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` long: each candidate's 1-based position in its anchor's retrieved list, 0 outside it.

    ``retrieved [B, K]`` candidate ids in retrieved order (-1 padding at the end); ``positives``: a csr
    ``[B, n_candidates]`` of each anchor's labelled candidates, those not retrieved appended after its list
    in id order, as the official code appends them; ``columns [M]``: the sorted candidate ids of the slots.
    """
    b, k = retrieved.shape
    dev = retrieved.device
    rank = torch.zeros((b, columns.numel()), dtype=torch.long, device=dev)
    found = retrieved >= 0
    rows = torch.arange(b, device=dev)[:, None].expand(b, k)
    position = torch.arange(1, k + 1, device=dev)[None, :].expand(b, k)
    rank[rows[found], torch.searchsorted(columns, retrieved[found])] = position[found]
    prow = torch.from_numpy(np.repeat(np.arange(b), np.diff(positives.indptr))).to(dev)
    pcol = torch.searchsorted(columns, torch.from_numpy(positives.indices.astype(np.int64)).to(dev))
    missing = rank[prow, pcol] == 0
    mrow, mcol = prow[missing], pcol[missing]  # rows ascending (csr order)
    if mrow.numel():
        within = torch.arange(mrow.numel(), device=dev) - torch.searchsorted(mrow, mrow)
        rank[mrow, mcol] = found.sum(dim=1)[mrow] + 1 + within
    return rank


@register("adore")
class ADORESampler(Sampler):
    """Each step, the current query encoder searches a frozen candidate index for its ``top_k``; the loss
    (``lambdarank``) sees each anchor's list with the positions, and only the query side trains.

    * **Frozen index**: built from the online encoder's candidate side at the first step after the warm-up
      and never rebuilt. ADORE samples text-to-image only (``directions``): caption anchors query images, so
      no gradient ever reaches the image encoder, whose embeddings therefore stay exactly those of the index
      (the official code fixes the document embeddings of a trained STAR model and trains only the query
      encoder). The warm-up (VSE++ over both sides) plays the part of the model ADORE starts from.
    * **Each step** (:meth:`extend_pool`): the online (detached) anchors search the index for their
      ``top_k``; the union of those candidates and every anchor's labelled positives becomes the pool, with
      the index's embeddings as features (no gradient). A positive the search missed is appended after its
      anchor's list.
    * :meth:`side_info` passes ``rank``: each slot's 1-based position in its anchor's list (0 outside it), what
      the LambdaRank loss weighs pairs by, and ``neg_mask = rank > 0``: an anchor's negatives are its own list.

    Outside training (the app's playground) :meth:`weights` is the push the loss puts on each candidate: for a
    negative ``n`` among the ``top_k`` by similarity, ``sum_p |1/r_p - 1/r_n| sigmoid(s_n - s_p)`` over the
    anchor's labelled positives ``p`` (the loss's gradient on ``s_n``, up to its normalisation).

    Args:
        top_k: candidates retrieved per anchor and step (200, ``neg_topk``).
        metric_cut: the weights' cut for the playground view (200; training uses the loss's own).
    """

    needs_warmup = True
    uses_queue = False
    directions = ("t2i",)
    PROVIDES = ("rank", "neg_mask")

    def __init__(self, top_k: int = 200, metric_cut: int = 200) -> None:
        if int(top_k) < 1 or int(metric_cut) < 1:
            raise ValueError(f"adore: 'top_k' and 'metric_cut' must be >= 1, got {top_k}, {metric_cut}")
        self.top_k, self.metric_cut = int(top_k), int(metric_cut)
        self._rank: torch.Tensor | None = None

    def extend_pool(self, ctx: SampleContext, epoch: EpochContext) -> PoolExtension | None:
        index = epoch.index(ctx.candidate_side, which="online")  # built once: refresh_every None
        _, retrieved = index.search(ctx.anchors, self.top_k)
        labels = epoch.positives(ctx.direction)[ctx.anchor_ids.cpu().numpy()].tocsr()
        labels.sort_indices()
        retrieved = retrieved.to(ctx.anchors.device)
        extra = torch.from_numpy(labels.indices.astype(np.int64)).to(retrieved.device)
        columns = torch.unique(torch.cat([retrieved[retrieved >= 0], extra]))  # sorted
        self._rank = retrieved_ranks(retrieved, labels, columns)
        return PoolExtension(columns, index=index, replace=True)

    def side_info(self, sims, pos_sims, positive_mask, ctx):
        if self._rank is None or self._rank.shape != sims.shape:
            raise RuntimeError("adore: side_info comes after extend_pool in the same step")
        return {"rank": self._rank, "neg_mask": self._rank > 0}  # an anchor's negatives: its own list

    def num_picks(self, k: int) -> int | None:
        return None  # the loss sees each anchor's whole list

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        order = sims.argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(1, sims.shape[1] + 1, device=sims.device).expand_as(order))
        u = torch.where(rank <= min(self.top_k, self.metric_cut), 1.0 / rank.to(sims.dtype), 0.0)
        listed = (rank <= self.top_k) & ~positive_mask
        width = max(int(positive_mask.sum(dim=1).max()), 1)  # each row's positives, padded: [B, P]
        pos_cols = positive_mask.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :width]
        has = positive_mask.gather(1, pos_cols)
        u_p, s_p = u.gather(1, pos_cols), sims.gather(1, pos_cols)
        push = (u[:, None, :] - u_p[:, :, None]).abs() * torch.sigmoid(sims[:, None, :] - s_p[:, :, None])
        return (push * has[:, :, None]).sum(dim=1) * listed
