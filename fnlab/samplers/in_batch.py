"""Every in-batch candidate, no draw and no queue: the CLIP / SimCLR in-batch setting (Radford et al., 2021;
Chen et al., 2020), the pool for losses defined over all negatives (InfoNCE, ASL) or over none (W-MSE)."""

from __future__ import annotations

import torch

from .base import Sampler
from .registry import register


@register("in_batch")
class InBatchSampler(Sampler):
    """The loss sees the whole online batch (``num_picks`` is ``None``): each anchor against every other pair of
    the batch, labelled positives left out; no momentum queue, hence no warm-up. With ``infonce`` (its default
    loss) this is the symmetric CLIP loss; with ``asl`` the asymmetric loss on every in-batch pair; with ``wmse``
    no negatives at all (the sampler is never called: W-MSE works on the embeddings).

    :meth:`weights` is uniform over the non-positives (the loss's whole-pool view).
    """

    uses_queue = False

    def __init__(self) -> None:
        pass

    def num_picks(self, k: int) -> int | None:
        return None

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return torch.ones_like(sims)
