"""ClusterNS: clustering-aware negatives (Deng et al., "Clustering-Aware Negative Sampling for Unsupervised
Sentence Representation", Findings of ACL 2023; official ``djz233/ClusterNS``, ``simcse/models.py``:
``cl_forward`` and class ``kmeans_cluster``)."""

from __future__ import annotations

import torch

from fnlab.retrieval.hooks import EpochContext, PoolExtension, SampleContext

from .base import Sampler
from .registry import register


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def farthest_point_init(x: torch.Tensor, k: int, first: int, *, chain: bool = False) -> torch.Tensor:
    """``[k, d]`` initial centroids from the rows of ``x [B, d]``, starting at row ``first``.

    ``chain=False`` (fnlab's default): each next centroid is the row least similar (cosine) to its most
    similar chosen centroid (greedy k-center). ``chain=True``: the official code's chain, the row least similar
    to the *last* chosen one (chosen rows excluded); it can return to a cluster it left two steps before, and
    on planted, well separated clusters it covered fewer clusters than ``k`` in every trial we ran.
    """
    xs = unit_rows(x)
    cos = xs @ xs.T
    chosen = [int(first)]
    closest = cos[first].clone()  # each row's similarity to its most similar chosen centroid
    for _ in range(1, k):
        scores = cos[chosen[-1]].clone() if chain else closest.clone()
        scores[chosen] = float("inf")
        nxt = int(scores.argmin())
        chosen.append(nxt)
        closest = torch.maximum(closest, cos[nxt])
    return x[chosen].clone()


@register("clusterns")
class ClusterNSSampler(Sampler):
    """Momentum k-means over the anchors: same-cluster in-batch items flagged as false negatives, the
    second-nearest centroid as a hard negative; the loss sees the whole batch.

    Per direction (its anchors' own space), on the detached online anchors of each step:

    * **Start**: once the mean in-batch cosine (every image-caption pair of the batch, as the official mean of
      the ``B x B`` matrix) falls to ``kmean_cosine`` or below, ``k`` centroids are initialised from the batch
      (:func:`farthest_point_init`; that step adds nothing else, as in the official code).
    * **Every later step**: each anchor joins its most similar centroid (cosine); centroids move by momentum,
      ``C <- lr * sum(members) + (1 - lr) * C`` (the official ``kmeans_optim="momentum"``: the *sum* of the
      members; a centroid without members stays).
    * **Hard negatives**: each anchor's second most similar centroid (after the update), unit-normalised, joins
      the pool as a synthetic candidate, every anchor seeing all of them (the official code appends the ``B``
      centroid rows to the logits with bias ``hard_negative_weight = 0``).
    * **False negatives** (:meth:`side_info`, ``fn_mask``): batch slot ``j`` is flagged for anchor ``i != j``
      when their anchors share a cluster (slot ``j`` holds anchor ``j``'s pair). They stay negatives; the loss
      (``infonce_bml``) holds them in a band below the positive.

    Defaults follow the official non-prompt recipe (``k = 128`` at 512 anchors a step, ``kmeans_lr = 1e-3``,
    ``kmean_cosine = 0.4``), ``k`` scaled to fnlab's batch of 128 (``k <= B`` is required).

    Args:
        k: clusters (32).
        kmeans_lr: centroid momentum (1e-3).
        kmean_cosine: start when the batch's mean cosine falls to this (0.4).
        init: ``"farthest"`` (greedy k-center) or ``"chain"`` (the official chain, :func:`farthest_point_init`).
        seed: the first centroid's row.
    """

    uses_queue = False
    PROVIDES = ("fn_mask",)

    def __init__(self, k: int = 32, kmeans_lr: float = 1e-3, kmean_cosine: float = 0.4, init: str = "farthest",
                 seed: int = 0) -> None:
        if int(k) < 2:
            raise ValueError(f"clusterns: 'k' must be >= 2, got {k}")
        if not 0 < kmeans_lr <= 1:
            raise ValueError(f"clusterns: 'kmeans_lr' must lie in (0, 1], got {kmeans_lr}")
        if init not in ("farthest", "chain"):
            raise ValueError(f"clusterns: 'init' must be 'farthest' or 'chain', got {init!r}")
        self.k, self.kmeans_lr, self.kmean_cosine = int(k), float(kmeans_lr), float(kmean_cosine)
        self.init, self.seed = init, int(seed)
        self.centroids: dict[str, torch.Tensor] = {}
        self._gen = torch.Generator().manual_seed(self.seed)
        self._mean_cos = float("inf")
        self._fn: torch.Tensor | None = None
        self._steps = self._active = 0
        self._flagged = 0.0

    # ------------------------------------------------------------------ k-means
    def start(self, x: torch.Tensor, direction: str) -> None:
        """Initialise ``direction``'s centroids from the anchors ``x [B, d]``."""
        if self.k > x.shape[0]:
            raise ValueError(f"clusterns: k = {self.k} clusters need at least that many anchors a step, "
                             f"got a batch of {x.shape[0]}")
        first = int(torch.randint(x.shape[0], (1,), generator=self._gen))
        self.centroids[direction] = farthest_point_init(x.detach(), self.k, first, chain=self.init == "chain")

    def assign(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """``[B, k]`` cosine of each anchor to each centroid."""
        c = self.centroids[direction].to(x)
        return unit_rows(x) @ unit_rows(c).T

    def update(self, x: torch.Tensor, direction: str) -> None:
        """One momentum step of ``direction``'s centroids on the anchors ``x [B, d]``."""
        c = self.centroids[direction].to(x)
        members = torch.nn.functional.one_hot(self.assign(x, direction).argmax(dim=1), self.k).to(x.dtype).T
        summed = members @ x  # [k, d]: the sum of each centroid's members
        empty = members.sum(dim=1) == 0
        summed[empty] = c[empty]
        self.centroids[direction] = self.kmeans_lr * summed + (1 - self.kmeans_lr) * c

    def same_cluster(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """``[B, B]`` bool: anchors ``i != j`` in the same cluster (the official ``mask_false_negative``)."""
        c = self.assign(x, direction).argmax(dim=1)
        same = c[:, None] == c[None, :]
        return same & ~torch.eye(len(c), dtype=torch.bool, device=x.device)

    def hard_negatives(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """``[B, d]`` each anchor's second most similar centroid, unit-normalised (``provide_hard_negative``)."""
        second = self.assign(x, direction).topk(2, dim=1).indices[:, 1]
        return unit_rows(self.centroids[direction].to(x)[second])

    # ------------------------------------------------------------------ hooks
    def start_epoch(self, epoch: EpochContext) -> None:
        self._steps = self._active = 0
        self._flagged = 0.0

    def observe(self, batch_scores: torch.Tensor, ids: torch.Tensor) -> None:
        self._mean_cos = float(batch_scores.mean())
        self._steps += 1

    def extend_pool(self, ctx: SampleContext, epoch: EpochContext) -> PoolExtension | None:
        d, x = ctx.direction, ctx.anchors.detach()
        self._fn = None
        if d not in self.centroids:
            if self._mean_cos <= self.kmean_cosine:
                self.start(x, d)
            return None
        self.update(x, d)
        self._fn = self.same_cluster(x, d)
        self._active += d == "t2i"
        self._flagged += float(self._fn.sum(dim=1).float().mean()) / 2
        return PoolExtension(torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device),
                             features=self.hard_negatives(x, d))

    def side_info(self, sims, pos_sims, positive_mask, ctx):
        if self._fn is None:
            return {}
        b = self._fn.shape[0]
        fn = torch.zeros_like(positive_mask)
        fn[:, :b] = self._fn  # batch slot j holds anchor j's pair
        return {"fn_mask": fn & ~positive_mask}

    def num_picks(self, k: int) -> int | None:
        return None  # InfoNCE over the whole batch (and the centroid negatives)

    def epoch_metrics(self) -> dict[str, float]:
        """``clusterns_active``: share of the epoch's steps that clustered; ``clusterns_flagged``: suspected false
        negatives per anchor and step."""
        return {"clusterns_active": self._active / self._steps if self._steps else 0.0,
                "clusterns_flagged": self._flagged / self._active if self._active else 0.0}

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return torch.ones_like(sims)  # every in-batch candidate is a negative of the loss
