"""Dynamic hard-negative mining as in Conan-embedding (Li et al., "Conan-embedding: General Text Embedding with
More and Better Negative Samples", arXiv 2408.15710, 2024). No official training code is public: the refresh
rule (every 100 steps, factor 1.15) is the paper's; the rest is reconstructed (``docs/METHODS.md``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from fnlab.retrieval.hooks import EpochContext, PoolExtension, SampleContext

from .base import Sampler
from .registry import register


def is_stale(s_now: torch.Tensor, s0: torch.Tensor, ratio: float = 1.15, abs_cap: float | None = None
             ) -> torch.Tensor:
    """Conan's rule: a cached hard negative is no longer hard when ``s_now * ratio < s0`` (and, with
    ``abs_cap``, ``|s_now| < abs_cap``). Elementwise over tensors of any shape."""
    stale = s_now * ratio < s0
    if abs_cap is not None:
        stale = stale & (s_now.abs() < abs_cap)
    return stale


@register("dynamic_hn")
class DynamicHardNegativeSampler(Sampler):
    """Each training anchor keeps ``n_hard`` hard negatives with the score each had when it was mined; every
    ``period`` steps the current model re-scores them and replaces the ones that are no longer hard.

    * **Mining** (first step after the warm-up): every training anchor's ``n_hard`` most similar candidates
      under the current (online) model, labelled positives left out, passing the ``filter``; each keeps its
      score ``s0``.
    * **Every step**: the batch's cached hard negatives join the pool, encoded by the online encoder with
      gradients (Conan's hard negatives go through the model); the loss (``infonce`` by default, Conan's
      retrieval loss) sees the whole pool: the batch, the momentum queue (what Conan gathers across GPUs)
      and the hard negatives.
    * **Refresh** (steps ``period``, ``2 period``, ...): the current model re-scores every cached pair; a
      negative with ``s_now * ratio < s0`` (:func:`is_stale`) is replaced by the anchor's most similar
      candidate that is not a labelled positive, not already cached and passes the ``filter``; its score
      becomes its ``s0``. The index is rebuilt from the current model at each refresh.
    * ``filter``: ``"none"`` (Conan: replacements move to ever harder candidates, so the false-negative rate
      can only rise), ``"positive_aware"`` (drop ``s > perc * s+``, NV-Retriever's TopK-PercPos) or
      ``"posterior"`` (drop candidates whose false-negative posterior, fitted on the run's validation split,
      is at least ``drop_above``).

    Args:
        period: steps between refreshes (100).
        ratio: the staleness factor (1.15).
        n_hard: hard negatives cached per anchor (1).
        filter: ``"none"``, ``"positive_aware"`` or ``"posterior"``.
        perc: the positive-aware ceiling (0.95).
        drop_above: the posterior filter's cut (0.5).
        abs_cap: also require ``|s_now| < abs_cap`` to replace (``None``: off; reported for Conan, unverified).
        depth: candidates searched per anchor for a replacement that passes the filter (50).
    """

    needs_warmup = True

    def __init__(self, period: int = 100, ratio: float = 1.15, n_hard: int = 1, filter: str = "none",
                 perc: float = 0.95, drop_above: float = 0.5, abs_cap: float | None = None, depth: int = 50) -> None:
        if int(period) < 1 or int(n_hard) < 1 or int(depth) < int(n_hard):
            raise ValueError(f"dynamic_hn: need period >= 1 and 1 <= n_hard <= depth, got {period}, {n_hard}, "
                             f"{depth}")
        if filter not in ("none", "positive_aware", "posterior"):
            raise ValueError(f"dynamic_hn: 'filter' must be none, positive_aware or posterior, got {filter!r}")
        if ratio <= 0:
            raise ValueError(f"dynamic_hn: 'ratio' must be > 0, got {ratio}")
        self.period, self.ratio, self.n_hard, self.filter = int(period), float(ratio), int(n_hard), filter
        self.perc, self.drop_above, self.abs_cap, self.depth = float(perc), float(drop_above), abs_cap, int(depth)
        self.hard: dict[str, torch.Tensor] = {}  # direction -> [n_anchor, n_hard] candidate ids (-1: none)
        self.s0: dict[str, torch.Tensor] = {}  # direction -> [n_anchor, n_hard] score when mined
        self._posterior: dict[str, Any] = {}
        self._checked: dict[str, int] = {}  # direction -> the step of its last refresh
        self.replaced = self.checks = 0

    # ------------------------------------------------------------------ mining
    def start_epoch(self, epoch: EpochContext) -> None:
        self.replaced = self.checks = 0
        self._posterior = {}

    def _scores(self, epoch: EpochContext, direction: str) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """The current model's anchors ``[n, d]``, the refreshed candidate index, and each anchor's best positive
        similarity ``[n]``."""
        anchor_side, cand_side = ("a", "b") if direction == "i2t" else ("b", "a")
        q = epoch.encode("train", anchor_side, which="online")
        index = epoch.index(cand_side, which="online")
        if index.built_at != epoch.step:
            index.refresh(epoch.step)
        labels = epoch.positives(direction).tocoo()
        cand = index.embeddings.to(q.device)
        rows, cols = torch.from_numpy(labels.row).long(), torch.from_numpy(labels.col).long()
        pos = torch.full((q.shape[0],), float("-inf"), device=q.device)
        pos = pos.scatter_reduce(0, rows.to(q.device), (q[rows] * cand[cols]).sum(1), reduce="amax")
        return q, index, pos

    def mine(self, q: torch.Tensor, index: Any, pos: torch.Tensor, exclude: Any, k: int, direction: str,
             epoch: EpochContext | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [n, k], scores [n, k])``: each query's ``k`` most similar candidates left after ``exclude``
        (sparse ``[n, n_candidates]``) that pass the filter; ``-1`` / ``-inf`` where fewer pass."""
        scores, ids = index.search(q, self.depth, exclude=exclude)
        scores, ids = scores.to(q.device), ids.to(q.device)
        keep = (ids >= 0) & self._passes(scores, pos, direction, epoch)
        order = (~keep).to(torch.int8).argsort(dim=1, stable=True)[:, :k]  # the kept ones, best first
        ids, scores, kept = ids.gather(1, order), scores.gather(1, order), keep.gather(1, order)
        return torch.where(kept, ids, -1), torch.where(kept, scores, float("-inf"))

    def _passes(self, scores: torch.Tensor, pos: torch.Tensor, direction: str, epoch: EpochContext | None
                ) -> torch.Tensor:
        if self.filter == "positive_aware":
            return ~(scores > self.perc * pos[:, None])
        if self.filter == "posterior":
            from fnlab.posterior import PairSignals, prob_false_negative

            if direction not in self._posterior:
                if epoch is None or epoch.fit_posterior is None:
                    raise RuntimeError("dynamic_hn: filter='posterior' needs the run's posterior fit")
                self._posterior[direction] = epoch.fit_posterior(direction=direction)
            p = prob_false_negative(self._posterior[direction],
                                    PairSignals(scores.double(), positive_similarity=pos.double()[:, None]))
            return torch.as_tensor(p, device=scores.device) < self.drop_above
        return torch.ones_like(scores, dtype=torch.bool)

    def refresh(self, epoch: EpochContext, direction: str) -> int:
        """Mine (first call) or re-score ``direction``'s cache and replace the stale entries; returns how many
        were replaced."""
        q, index, pos = self._scores(epoch, direction)
        labels = epoch.positives(direction)
        if direction not in self.hard:
            self.hard[direction], self.s0[direction] = self.mine(q, index, pos, labels, self.n_hard, direction, epoch)
            return 0
        hard, s0 = self.hard[direction], self.s0[direction]
        cand = index.embeddings.to(q.device)
        s_now = (q[:, None, :] * cand[hard.clamp_min(0)]).sum(-1)
        stale = (hard >= 0) & is_stale(s_now, s0, self.ratio, self.abs_cap) | (hard < 0)
        rows = stale.any(dim=1).nonzero(as_tuple=True)[0]
        if not rows.numel():
            return 0
        mine = hard[rows].cpu()
        r = torch.arange(rows.numel()).repeat_interleave(hard.shape[1])[mine.flatten() >= 0].numpy()
        cached = sp.csr_matrix((np.ones(r.size, dtype=bool), (r, mine.flatten()[mine.flatten() >= 0].numpy())),
                               shape=(rows.numel(), len(index)))
        exclude = (labels[rows.cpu().numpy()].astype(bool) + cached).astype(bool)  # positives and the cached ones
        fresh, fresh_s = self.mine(q[rows], index, pos[rows], exclude, self.n_hard, direction, epoch)
        take = stale[rows]
        slot = (take.cumsum(dim=1) - 1).clamp_min(0)  # the j-th stale entry gets the j-th fresh candidate
        hard[rows] = torch.where(take, fresh.gather(1, slot), hard[rows])
        s0[rows] = torch.where(take, fresh_s.gather(1, slot), s0[rows])
        return int((take & (fresh.gather(1, slot) >= 0)).sum())

    # ------------------------------------------------------------------ hooks
    def extend_pool(self, ctx: SampleContext, epoch: EpochContext) -> PoolExtension | None:
        d = ctx.direction
        due = epoch.step % self.period == 0 and self._checked.get(d) != epoch.step
        if d not in self.hard or due:
            self.checks += d in self.hard
            self.replaced += self.refresh(epoch, d)
            self._checked[d] = epoch.step
        ids = self.hard[d].to(ctx.anchor_ids.device)[ctx.anchor_ids]  # [B, n_hard]
        owners = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)
        keep = ids >= 0
        return PoolExtension(ids[keep], owners=owners[keep]) if bool(keep.any()) else None

    def num_picks(self, k: int) -> int | None:
        return None  # the loss sees the whole pool

    def epoch_metrics(self) -> dict[str, float]:
        """``dhn_replaced``: hard negatives replaced this epoch; ``dhn_checks``: refreshes run (per direction)."""
        return {"dhn_replaced": float(self.replaced), "dhn_checks": float(self.checks)}

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        return torch.ones_like(sims)  # every candidate of the pool is a negative of the loss
