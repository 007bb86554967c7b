"""The training objective: a negative sampler, a loss and a momentum memory queue, composed.

As pytorch-metric-learning's ``CrossBatchMemory`` wraps a loss and a miner, :class:`SampledObjective`
owns what one training step needs besides the encoders (FNE, Li et al., ACM MM 2023, Sec. 3 and the
official ``model.py``):

1. the candidate pool of each direction: image-to-text (image anchors over captions) and
   text-to-image (caption anchors over images), the batch alone or the batch plus the queue, whose
   features come from the momentum encoders;
2. the sampler's picks (``num_negatives`` per anchor and direction) and the loss on them, summed
   over anchors and both directions and divided by the batch size as in the official code;
3. the warm-up loss (VSE++ over the batch, the registry's triplet loss) while the sampler waits;
4. after the optimiser step: the momentum update and the queue's refill;
5. the share of picked negatives that are truly relevant where ground truth exists.

The sampler's own state (FNE's running statistics or fitted posterior) stays in the sampler, reached
through its hooks ``start_epoch``, ``observe`` and ``epoch_metrics``; this module names no sampler.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from fnlab.posterior.pool import PoolEvidence
from fnlab.retrieval.memory import FeatureQueue, make_momentum_copy, momentum_update

__all__ = ["Relevance", "SampledObjective"]


class Relevance:
    """Ground-truth lookups ``relevance[b, a]`` for anchors and pools."""

    def __init__(self, relevance: sp.csr_matrix | None) -> None:
        self.rel = None if relevance is None else sp.csr_matrix(relevance, dtype=bool)
        self.rel_t = None if relevance is None else self.rel.T.tocsr()

    def mask(self, anchor_idx: np.ndarray, pool_idx: np.ndarray, anchors_are_b: bool) -> np.ndarray | None:
        """``[B, M]`` bool: relevance of each anchor to each pool entry."""
        if self.rel is None:
            return None
        table = self.rel if anchors_are_b else self.rel_t
        rows = table[anchor_idx]  # [B, n_other]
        return rows[:, pool_idx].toarray().astype(bool)

    def picked(self, anchor_idx: np.ndarray, picked_idx: np.ndarray, anchors_are_b: bool) -> np.ndarray | None:
        """``[B, k]`` bool: relevance of each anchor to its ``k`` picked items (item ids ``picked_idx [B, k]``);
        the same values as :meth:`mask` gathered at the picks, without building the ``[B, M]`` mask."""
        if self.rel is None:
            return None
        table = self.rel if anchors_are_b else self.rel_t
        rows = np.broadcast_to(np.asarray(anchor_idx)[:, None], picked_idx.shape)
        return np.asarray(table[rows.ravel(), np.asarray(picked_idx).ravel()]).reshape(picked_idx.shape).astype(bool)


class SampledObjective:
    """Sampler + loss on the picked negatives + optional momentum queue (module docstring).

    Args:
        sampler: a :class:`fnlab.samplers.base.Sampler`.
        pick_loss: ``loss(sims [B, M], pos_sims [B], positive_mask [B, M], neg_idx [B, k])`` summed over anchors.
        warmup_loss: a :class:`fnlab.losses.TripletLoss` for the warm-up (``in_batch``).
        model: the online dual encoder (its momentum copy is made here when the queue is on).
        b_to_a: ``[n_b]`` long tensor, each caption's labelled image.
        queue_size, dim, momentum: the memory queue (``queue_size=0``: no queue, the batch is the pool).
        num_negatives: picks per anchor and direction.
        relevance: ground truth ``[n_b, n_a]`` or ``None`` (for the sampled false-negative rate and
            for samplers that need it, such as the oracle).
        generator: the sampler's random generator.
        caption_view: ``[n_b, d']`` a second view of the captions (their text, e.g. MiniLM) or ``None``: the
            pool evidence then also offers its view signals (:class:`fnlab.posterior.pool.PoolEvidence`).
    """

    def __init__(self, sampler: Any, pick_loss: Any, warmup_loss: Any, model: torch.nn.Module,
                 b_to_a: torch.Tensor, *, queue_size: int, dim: int, momentum: float, num_negatives: int,
                 relevance: sp.csr_matrix | None, generator: torch.Generator,
                 caption_view: torch.Tensor | None = None) -> None:
        self.sampler, self.pick_loss, self.warmup_loss = sampler, pick_loss, warmup_loss
        self.b_to_a, self.num_negatives, self.momentum, self.gen = b_to_a, int(num_negatives), momentum, generator
        self.device = b_to_a.device
        self.twin = make_momentum_copy(model).to(self.device) if queue_size > 0 else None
        self.queue = FeatureQueue(dim, queue_size, device=self.device) if queue_size > 0 else None
        self.rel = Relevance(relevance)
        self.needs_rel = bool(getattr(sampler, "needs_relevance", False))
        if self.needs_rel and self.rel.rel is None:
            raise ValueError(f"sampler {getattr(sampler, 'name', sampler)!r} needs ground-truth relevance; "
                             "the dataset has none")
        self._keys: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.picked, self.picked_fn = [0, 0], [0, 0]
        self.caption_view = None if caption_view is None else caption_view.to(self.device)

    # ------------------------------------------------------------------ epochs
    def start_epoch(self, epoch: int, *, warmup: bool, queue_starts: bool, model: torch.nn.Module,
                    fit_posterior: Any) -> None:
        """Reset the epoch's counters, tell the sampler, and restart the momentum twin when the queue starts.

        The twin is restarted from the warmed-up online model: copied at initialisation, after a short
        warm-up it would still be mostly random init and the whole queue would hold near-random features
        (the paper starts from pretrained encoders with thousands of steps per epoch).
        """
        self.picked, self.picked_fn = [0, 0], [0, 0]
        if self.twin is not None and queue_starts:
            self.twin.load_state_dict(model.state_dict())
        if fit_posterior is not None and self.twin is not None:
            fit_posterior = functools.partial(fit_posterior, key_model=self.twin)
        self.sampler.start_epoch(epoch, warmup=warmup, fit_posterior=fit_posterior)

    def epoch_metrics(self) -> dict[str, float]:
        """``sampled_fn_rate`` (and per direction where ground truth exists) plus the sampler's own metrics."""
        total = sum(self.picked)
        row = {"sampled_fn_rate": (sum(self.picked_fn) / total) if total else float("nan")}
        if self.rel.rel is not None:
            row["sampled_fn_rate_i2t"] = self.picked_fn[0] / self.picked[0] if self.picked[0] else float("nan")
            row["sampled_fn_rate_t2i"] = self.picked_fn[1] / self.picked[1] if self.picked[1] else float("nan")
        row.update(self.sampler.epoch_metrics())
        return row

    # ------------------------------------------------------------------ steps
    def loss(self, fa: torch.Tensor, fb: torch.Tensor, a_inputs: torch.Tensor, b_inputs: torch.Tensor,
             aidx: torch.Tensor, bidx: torch.Tensor, *, warmup: bool) -> torch.Tensor:
        """The step's loss. Shapes: ``fa [B, d]`` images, ``fb [B, d]`` captions (unit rows, online encoders),
        ``a_inputs``/``b_inputs`` their encoder inputs (for the momentum twin), ``aidx``/``bidx [B]`` item ids."""
        bsz = bidx.shape[0]
        if warmup:
            return self.warmup_loss.in_batch(fa @ fb.T, aidx) / bsz
        with torch.no_grad():
            self.sampler.observe((fa @ fb.T).detach(), aidx)
        if self.queue is not None:
            with torch.no_grad():
                ka, kb = self.twin.encode_a(a_inputs), self.twin.encode_b(b_inputs)
            self._keys = (ka, kb, bidx)
            pool_a, pool_b, pool_b_idx = self.queue.pool(ka, kb, bidx)
            pool_a_idx = self.b_to_a[pool_b_idx]
        else:
            pool_a, pool_a_idx, pool_b, pool_b_idx = fa, aidx, fb, bidx
        loss = fa.new_zeros(())
        # direction i2t: image anchors (item aidx) over captions; t2i: caption anchors over images
        # each pool slot holds a pair: the candidate and, beside it, its partner (the other modality)
        for d, (anchor, pool, pool_item, anchor_ids, pool_ids, anchors_are_b, partner, partner_ids) in enumerate((
            (fa, pool_b, self.b_to_a[pool_b_idx], aidx, pool_b_idx, False, pool_a, pool_a_idx),
            (fb, pool_a, pool_a_idx, bidx, pool_a_idx, True, pool_b, pool_b_idx),
        )):
            sims = anchor @ pool.T  # [B, M]
            pos_sims = sims[:, :bsz].diagonal()  # the anchor's own positive sits at the same batch slot
            pos_mask = aidx[:, None] == pool_item[None, :]
            rel_mask = None
            if self.needs_rel:  # the sampler reads the ground truth of the whole pool (the oracle)
                m = self.rel.mask(anchor_ids.cpu().numpy(), pool_ids.cpu().numpy(), anchors_are_b)
                rel_mask = torch.from_numpy(m).to(self.device)
            cv = self.caption_view  # captions' second view by caption id: candidates in i2t, anchors/partners in t2i
            views = ({} if cv is None else {"candidate_view": cv[pool_b_idx]} if d == 0
                     else {"anchor_view": cv[bidx], "partner_view": cv[pool_b_idx]})
            ctx = {"direction": ("i2t", "t2i")[d], "positive_mean": pos_sims.detach().mean(),  # 0-dim: no sync
                   "pool": PoolEvidence(anchor.detach(), pool.detach(), partner.detach(), pool_ids, partner_ids,
                                        anchor_ids, pos_mask, **views)}
            if self.needs_rel:
                ctx["relevant_mask"] = rel_mask
            idx = self.sampler.sample(sims.detach(), pos_sims.detach(), pos_mask, k=self.num_negatives,
                                      generator=self.gen, **ctx)
            loss = loss + self.pick_loss(sims, pos_sims, pos_mask, neg_idx=idx)
            if self.rel.rel is not None:  # the sampled false-negative rate: ground truth at the picks only
                if rel_mask is not None:
                    hit = rel_mask.gather(1, idx)
                else:
                    picked_ids = pool_ids.cpu().numpy()[idx.cpu().numpy()]
                    hit = torch.from_numpy(self.rel.picked(anchor_ids.cpu().numpy(), picked_ids, anchors_are_b))
                chosen = hit.to(self.device) & ~pos_mask.gather(1, idx)
                self.picked[d] += int(idx.numel())
                self.picked_fn[d] += int(chosen.sum())
        return loss / bsz

    def after_step(self, model: torch.nn.Module, *, warmup: bool) -> None:
        """After the optimiser step: momentum update of the twin and, past the warm-up, the queue's refill."""
        if self.queue is None:
            return
        momentum_update(model, self.twin, m=self.momentum)
        if not warmup and self._keys is not None:
            self.queue.enqueue(*self._keys)
        self._keys = None
