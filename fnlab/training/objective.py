"""The training objective: a negative sampler, a loss and a momentum memory queue, composed.

As pytorch-metric-learning's ``CrossBatchMemory`` wraps a loss and a miner, :class:`SampledObjective`
owns what one training step needs besides the encoders (FNE, Li et al., ACM MM 2023, Sec. 3 and the
official ``model.py``):

1. the candidate pool of each direction: image-to-text (image anchors over captions) and
   text-to-image (caption anchors over images), the batch alone or the batch plus the queue, whose
   features come from the momentum encoders; extended by the sampler's mined or synthetic candidates
   (``Sampler.extend_pool``);
2. the sampler's picks (``Sampler.num_picks`` per anchor and direction, or the whole pool) and the loss on
   them with the sampler's side information (``Sampler.side_info``), summed over anchors and the sampler's
   directions and divided by the batch size as in the official code; or, for a loss with
   ``needs_embeddings``, that loss on the batch's embeddings;
3. the warm-up loss (VSE++ over the batch, the registry's triplet loss) while the sampler waits;
4. after the optimiser step: the momentum update and the queue's refill;
5. the share of the loss's negatives that are truly relevant where ground truth exists.

The sampler's own state (FNE's running statistics or fitted posterior, a mined list, centroids) stays in
the sampler, reached through its hooks with typed contexts (:mod:`fnlab.retrieval.hooks`); this module
names no sampler.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from fnlab.losses.base import accepted_side
from fnlab.retrieval.hooks import DIRECTIONS, EpochContext, PoolExtension, SampleContext
from fnlab.retrieval.memory import FeatureQueue, make_momentum_copy, momentum_update

__all__ = ["Relevance", "SampledObjective", "check_pairing"]


class Relevance:
    """Ground-truth lookups ``relevance[b, a]`` for anchors and pools (a pool id ``-1``, a synthetic
    candidate, is never relevant)."""

    def __init__(self, relevance: sp.csr_matrix | None) -> None:
        self.rel = None if relevance is None else sp.csr_matrix(relevance, dtype=bool)
        self.rel_t = None if relevance is None else self.rel.T.tocsr()

    def mask(self, anchor_idx: np.ndarray, pool_idx: np.ndarray, anchors_are_b: bool) -> np.ndarray | None:
        """``[B, M]`` bool: relevance of each anchor to each pool entry."""
        if self.rel is None:
            return None
        table = self.rel if anchors_are_b else self.rel_t
        rows = table[anchor_idx]  # [B, n_other]
        pool_idx = np.asarray(pool_idx)
        real = pool_idx >= 0
        if real.all():
            return rows[:, pool_idx].toarray().astype(bool)
        out = np.zeros((len(anchor_idx), len(pool_idx)), dtype=bool)
        out[:, real] = rows[:, pool_idx[real]].toarray().astype(bool)
        return out

    def picked(self, anchor_idx: np.ndarray, picked_idx: np.ndarray, anchors_are_b: bool) -> np.ndarray | None:
        """``[B, k]`` bool: relevance of each anchor to its ``k`` picked items (item ids ``picked_idx [B, k]``);
        the same values as :meth:`mask` gathered at the picks, without building the ``[B, M]`` mask."""
        if self.rel is None:
            return None
        table = self.rel if anchors_are_b else self.rel_t
        picked_idx = np.asarray(picked_idx)
        rows = np.broadcast_to(np.asarray(anchor_idx)[:, None], picked_idx.shape)
        hit = np.asarray(table[rows.ravel(), np.maximum(picked_idx, 0).ravel()]).reshape(picked_idx.shape)
        return hit.astype(bool) & (picked_idx >= 0)


def check_pairing(sampler: Any, loss: Any) -> None:
    """Raise ``ValueError`` when ``loss`` needs side information ``sampler`` does not provide."""
    missing = sorted(set(getattr(loss, "REQUIRES", ())) - set(getattr(sampler, "PROVIDES", ())))
    if missing:
        raise ValueError(f"loss {getattr(loss, 'name', loss)!r} needs {', '.join(missing)} from its sampler; "
                         f"sampler {getattr(sampler, 'name', sampler)!r} provides "
                         f"{', '.join(getattr(sampler, 'PROVIDES', ())) or 'none'}")


@dataclass
class _Pool:
    """One direction's pool: the anchors and, per slot, the candidate, its partner and their ids."""

    direction: str
    anchor: torch.Tensor  # [B, d] online, with gradients
    anchor_ids: torch.Tensor  # [B] the anchors' own item ids
    anchor_items: torch.Tensor  # [B] the anchors' labelled image ids (what a positive slot shares)
    cand: torch.Tensor  # [M, d]
    cand_ids: torch.Tensor  # [M] the candidates' own item ids (-1: synthetic)
    cand_items: torch.Tensor  # [M] the image id of each slot's pair (-1: synthetic)
    partner: torch.Tensor  # [M, d]
    partner_ids: torch.Tensor  # [M]
    batch_first: bool = True  # the batch's own pairs sit at slots 0..B-1 (slot i: anchor i's positive)
    extended_from: int | None = None
    owners: torch.Tensor | None = None  # [M - extended_from] the anchor row each mined slot was mined for (-1: all)

    @property
    def anchors_are_b(self) -> bool:
        return self.direction == "t2i"

    @property
    def cand_side(self) -> str:
        return "a" if self.direction == "t2i" else "b"


class SampledObjective:
    """Sampler + loss on the picked negatives + optional momentum queue (module docstring).

    Args:
        sampler: a :class:`fnlab.samplers.base.Sampler`.
        pick_loss: ``loss(sims [B, M], pos_sims [B], positive_mask [B, M], neg_idx [B, k] | None, **side)`` summed
            over anchors (:class:`fnlab.losses.base.Loss`).
        warmup_loss: a :class:`fnlab.losses.TripletLoss` for the warm-up (``in_batch``).
        model: the online dual encoder (its momentum copy is made here when the queue is on).
        b_to_a: ``[n_b]`` long tensor, each caption's labelled image.
        queue_size, dim, momentum: the memory queue (``queue_size=0``, or a sampler with ``uses_queue = False``:
            no queue, the batch is the pool).
        num_negatives: picks per anchor and direction (the sampler may change it: ``num_picks``).
        relevance: ground truth ``[n_b, n_a]`` or ``None`` (for the sampled false-negative rate and
            for samplers that need it, such as the oracle).
        generator: the sampler's random generator.
        inputs: the training split's encoder inputs ``(a_inputs, b_inputs)`` (tensors on the device): mined
            candidates without features are encoded from them.
        encoder: ``encoder(split, side, model) -> [n, d]``, what :meth:`EpochContext.encode` calls.
        dataset: the training split, handed to the sampler as :attr:`EpochContext.dataset`.
        identity: ``[n_b, n_a]`` sparse bool, the labelled pairs lifted over exact-duplicate texts
            (:func:`fnlab.data.identity.text_identity_labels`): every pair it holds is a positive of the pool's
            mask (and of the mining samplers' labels), not a negative; ``None``: the item ids alone.
        caption_view: ``[n_b, d']`` a second view of the captions (their text, e.g. MiniLM) or ``None``: the
            sample context then carries it (FNE's pool evidence offers its view signals).
        a_view: ``[n_a, d']`` the same view of side A's texts (a text-text folder's documents) or ``None``.
    """

    def __init__(self, sampler: Any, pick_loss: Any, warmup_loss: Any, model: torch.nn.Module,
                 b_to_a: torch.Tensor, *, queue_size: int, dim: int, momentum: float, num_negatives: int,
                 relevance: sp.csr_matrix | None, generator: torch.Generator,
                 inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
                 encoder: Callable[[str, str, Any], Any] | None = None, dataset: Any = None,
                 identity: sp.csr_matrix | None = None, caption_view: torch.Tensor | None = None,
                 a_view: torch.Tensor | None = None) -> None:
        self.sampler, self.pick_loss, self.warmup_loss = sampler, pick_loss, warmup_loss
        self.b_to_a, self.momentum, self.gen = b_to_a, momentum, generator
        self.model, self.inputs, self._encoder = model, inputs, encoder
        self.dataset = dataset
        self.identity = None if identity is None else Relevance(identity)
        self.device = b_to_a.device
        if not getattr(sampler, "uses_queue", True):
            queue_size = 0
        self.twin = make_momentum_copy(model).to(self.device) if queue_size > 0 else None
        self.queue = FeatureQueue(dim, queue_size, device=self.device) if queue_size > 0 else None
        self.rel = Relevance(relevance)
        self.needs_rel = bool(getattr(sampler, "needs_relevance", False))
        if self.needs_rel and self.rel.rel is None:
            raise ValueError(f"sampler {getattr(sampler, 'name', sampler)!r} needs ground-truth relevance; "
                             "the dataset has none")
        self.embeds = bool(getattr(pick_loss, "needs_embeddings", False))
        if not self.embeds:
            check_pairing(sampler, pick_loss)
        self.directions = tuple(d for d in DIRECTIONS if d in getattr(sampler, "directions", DIRECTIONS))
        self.num_picks = sampler.num_picks(int(num_negatives)) if hasattr(sampler, "num_picks") else int(num_negatives)
        self.step = 0
        self.indexes: dict = {}
        self.epoch_ctx = EpochContext(0, warmup=True, generator=generator, device=self.device)
        self._keys: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._labels: dict[str, sp.csr_matrix] = {}
        b2a = b_to_a.cpu().numpy()
        n_a = int(inputs[0].shape[0]) if inputs is not None else (int(b2a.max()) + 1 if b2a.size else 0)
        first_b = np.full(n_a, -1, dtype=np.int64)  # each image's first caption: its partner in a mined slot
        order = np.argsort(b2a, kind="stable")
        images, first = np.unique(b2a[order], return_index=True)
        first_b[images] = order[first]
        self.a_to_b = torch.from_numpy(first_b).to(self.device)
        self.caption_view = None if caption_view is None else caption_view.to(self.device)
        self.a_view = None if a_view is None else a_view.to(self.device)
        self._content: dict[str, torch.Tensor] = {}  # side -> [n] content keys of the training items (built once)
        self._reset_counts()

    def _reset_counts(self) -> None:
        self.picked, self.picked_fn = [0, 0], [0, 0]
        self.mined, self.mined_fn = 0, 0
        self.margin_sum, self.margin_n = None, 0  # the picks' s - s+ (the draw's hardness), summed on the device

    @property
    def key_model(self) -> torch.nn.Module:
        """The encoder that fills the pool: the momentum twin with a queue, else the online model."""
        return self.twin if self.twin is not None else self.model

    # ------------------------------------------------------------------ epochs
    def start_epoch(self, epoch: int, *, warmup: bool, queue_starts: bool, model: torch.nn.Module,
                    fit_posterior: Any, steps_per_epoch: int = 0) -> None:
        """Reset the epoch's counters, tell the sampler (an :class:`EpochContext`), and restart the momentum twin
        when the queue starts.

        The twin is restarted from the warmed-up online model: copied at initialisation, after a short
        warm-up it would still be mostly random init and the whole queue would hold near-random features
        (the paper starts from pretrained encoders with thousands of steps per epoch).
        """
        self._reset_counts()
        if self.twin is not None and queue_starts:
            self.twin.load_state_dict(model.state_dict())
        if fit_posterior is not None and self.twin is not None:
            fit_posterior = functools.partial(fit_posterior, key_model=self.twin)
        self.epoch_ctx = EpochContext(epoch, warmup=warmup, fit_posterior=fit_posterior, step=self.step,
                                      steps_per_epoch=steps_per_epoch, generator=self.gen,
                                      encoder=self._encode if self._encoder is not None else None,
                                      labels=self.labels, indexes=self.indexes, device=self.device,
                                      dataset=self.dataset)
        self.sampler.start_epoch(self.epoch_ctx)

    def _encode(self, split: str, side: str, which: str) -> Any:
        return self._encoder(split, side, self.key_model if which == "key" else self.model)

    def labels(self, direction: str) -> sp.csr_matrix:
        """The training split's labelled pairs of ``direction``: ``[n_b, n_a]`` (t2i) or ``[n_a, n_b]`` (i2t)."""
        if direction not in self._labels:
            b2a = self.b_to_a.cpu().numpy()
            n_a = len(self.a_to_b)
            t2i = sp.csr_matrix((np.ones(len(b2a), dtype=bool), (np.arange(len(b2a)), b2a)), shape=(len(b2a), n_a))
            if self.identity is not None:
                t2i = (t2i + self.identity.rel).astype(bool).tocsr()
            self._labels = {"t2i": t2i, "i2t": t2i.T.tocsr()}
        return self._labels[direction]

    def epoch_metrics(self) -> dict[str, float]:
        """``sampled_fn_rate`` (and per direction where ground truth exists; ``mined_fn_rate`` over each anchor's
        own mined candidates, ``PoolExtension.owners``), ``sampled_margin`` (the picks' mean ``s - s+``: how hard
        the draw is) plus the sampler's own metrics."""
        total = sum(self.picked)
        row = {"sampled_fn_rate": (sum(self.picked_fn) / total) if total else float("nan"),
               "sampled_margin": float(self.margin_sum) / self.margin_n if self.margin_n else float("nan")}
        if self.rel.rel is not None:
            row["sampled_fn_rate_i2t"] = self.picked_fn[0] / self.picked[0] if self.picked[0] else float("nan")
            row["sampled_fn_rate_t2i"] = self.picked_fn[1] / self.picked[1] if self.picked[1] else float("nan")
            if self.mined:
                row["mined_fn_rate"] = self.mined_fn / self.mined
        row.update(self.sampler.epoch_metrics())
        return row

    # ------------------------------------------------------------------ steps
    def loss(self, fa: torch.Tensor, fb: torch.Tensor, a_inputs: torch.Tensor, b_inputs: torch.Tensor,
             aidx: torch.Tensor, bidx: torch.Tensor, *, warmup: bool) -> torch.Tensor:
        """The step's loss (one call per optimiser step). Shapes: ``fa [B, d]`` images, ``fb [B, d]`` captions
        (unit rows, online encoders), ``a_inputs``/``b_inputs`` their encoder inputs (for the momentum twin),
        ``aidx``/``bidx [B]`` item ids."""
        bsz = bidx.shape[0]
        self.step += 1
        self.epoch_ctx.step = self.step
        if warmup:
            return self.warmup_loss.in_batch(fa @ fb.T, aidx) / bsz
        if self.embeds:
            return self.pick_loss.embed(fa, fb, aidx)
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
        # direction i2t: image anchors (item aidx) over captions; t2i: caption anchors over images
        # each pool slot holds a pair: the candidate and, beside it, its partner (the other modality)
        pools = {"i2t": _Pool("i2t", fa, aidx, aidx, pool_b, pool_b_idx, self.b_to_a[pool_b_idx], pool_a, pool_a_idx),
                 "t2i": _Pool("t2i", fb, bidx, aidx, pool_a, pool_a_idx, pool_a_idx, pool_b, pool_b_idx)}
        loss = fa.new_zeros(())
        for d in self.directions:
            loss = loss + self._direction_loss(pools[d], DIRECTIONS.index(d))
        return loss / bsz

    def _direction_loss(self, p: _Pool, d: int) -> torch.Tensor:
        """One direction: extend the pool, sample, the loss with side information, the sampled FN rate."""
        ext = self.sampler.extend_pool(self._context(p, self._positive_mask(p)), self.epoch_ctx)
        if ext is not None:
            p = self._extend(p, ext)
        sims = p.anchor @ p.cand.T  # [B, M]
        pos_mask = self._positive_mask(p)
        pos_sims = self._positive_sims(sims, pos_mask, p)
        rel_mask = None
        if self.needs_rel:  # the sampler reads the ground truth of the whole pool (the oracle)
            rel_mask = self._relevance(p)
        ctx = self._context(p, pos_mask, positive_mean=pos_sims.detach().mean(),  # 0-dim: no device sync
                            relevant_mask=rel_mask, candidate_keys=self._candidate_keys(p), **self._views(p))
        idx = None
        if self.num_picks is not None:
            idx = self.sampler.sample(sims.detach(), pos_sims.detach(), pos_mask, k=self.num_picks,
                                      generator=self.gen, ctx=ctx)
        if idx is not None:  # the draw's hardness: mean s - s+ of the picks (no device sync per step)
            margin = (sims.detach().gather(1, idx) - pos_sims.detach()[:, None]).sum()
            self.margin_sum = margin if self.margin_sum is None else self.margin_sum + margin
            self.margin_n += int(idx.numel())
        side = accepted_side(self.pick_loss, self.sampler.side_info(sims.detach(), pos_sims.detach(), pos_mask, ctx))
        loss = self.pick_loss(sims, pos_sims, pos_mask, neg_idx=idx, **side)
        if self.rel.rel is not None:
            self._count(p, d, idx, pos_mask, rel_mask, side.get("neg_mask"))
        return loss

    def _positive_mask(self, p: _Pool) -> torch.Tensor:
        """``[B, M]`` bool: the slots holding a labelled positive of each anchor (its image's item id), plus the pairs
        the text-identity labels lift (``identity``)."""
        mask = p.anchor_items[:, None] == p.cand_items[None, :]
        if self.identity is not None:
            lifted = self.identity.mask(p.anchor_ids.cpu().numpy(), p.cand_ids.cpu().numpy(), p.anchors_are_b)
            mask = mask | torch.from_numpy(lifted).to(mask.device)
        return mask

    def _candidate_keys(self, p: _Pool) -> torch.Tensor | None:
        """``[M]`` long content key of each slot's candidate (:meth:`fnlab.data.base.MatchingDataset.content_keys`:
        equal where the encoder inputs are identical); a synthetic slot (id ``-1``) gets a key of its own. ``None``
        without the training split's dataset."""
        if self.dataset is None or not hasattr(self.dataset, "content_keys"):
            return None
        side = p.cand_side
        if side not in self._content:
            self._content[side] = torch.from_numpy(self.dataset.content_keys(side)).to(self.device)
        ids = p.cand_ids
        own = -2 - torch.arange(ids.shape[0], device=ids.device)  # never equal to a real key or to each other
        return torch.where(ids >= 0, self._content[side][ids.clamp_min(0)], own)

    def _views(self, p: _Pool) -> dict[str, torch.Tensor]:
        """The second view for the sample context: the captions' (side B) rows of the candidates in ``i2t`` and of
        the anchors and partners in ``t2i``; side A's, where it has a view (``a_view``), of the other places. A
        synthetic slot (id ``-1``) gets a zero row (no similarity to anything)."""
        def rows(view: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            out = view[ids.clamp(min=0)]
            return torch.where((ids >= 0)[:, None], out, torch.zeros_like(out))

        b_places, a_places = ((("candidate_view", p.cand_ids),),
                              (("anchor_view", p.anchor_ids), ("partner_view", p.partner_ids)))
        if p.direction != "i2t":
            b_places, a_places = a_places, b_places
        out = {}
        for view, places in ((self.caption_view, b_places), (self.a_view, a_places)):
            if view is not None:
                out.update({name: rows(view, ids) for name, ids in places})
        return out

    @staticmethod
    def _context(p: _Pool, pos_mask: torch.Tensor | None = None, **evidence: Any) -> SampleContext:
        """The :class:`SampleContext` of a pool (features detached), with optional evidence fields."""
        if pos_mask is None:
            pos_mask = p.anchor_items[:, None] == p.cand_items[None, :]
        return SampleContext(p.direction, p.anchor.detach(), p.cand.detach(), p.partner.detach(), p.anchor_ids,
                             p.cand_ids, p.partner_ids, pos_mask, extended_from=p.extended_from, **evidence)

    @staticmethod
    def _positive_sims(sims: torch.Tensor, pos_mask: torch.Tensor, p: _Pool) -> torch.Tensor:
        """``[B]`` each anchor's positive similarity: its own pair's slot when the batch leads the pool, else
        its most similar labelled positive."""
        if p.batch_first:
            return sims[:, :sims.shape[0]].diagonal()  # the anchor's own positive sits at the same batch slot
        if not bool(pos_mask.any(dim=1).all()):
            raise ValueError("a pool that replaces the batch (PoolExtension.replace) must hold every anchor's "
                             "labelled positive")
        return sims.masked_fill(~pos_mask, float("-inf")).amax(dim=1)

    def _relevance(self, p: _Pool) -> torch.Tensor:
        m = self.rel.mask(p.anchor_ids.cpu().numpy(), p.cand_ids.cpu().numpy(), p.anchors_are_b)
        return torch.from_numpy(m).to(self.device)

    def _count(self, p: _Pool, d: int, idx: torch.Tensor | None, pos_mask: torch.Tensor,
               rel_mask: torch.Tensor | None, neg_mask: torch.Tensor | None) -> None:
        """The sampled false-negative rate: ground truth at the picks, or over every negative of the loss."""
        if idx is not None and rel_mask is None:  # ground truth at the picks only
            picked_ids = p.cand_ids.cpu().numpy()[idx.cpu().numpy()]
            hit = torch.from_numpy(self.rel.picked(p.anchor_ids.cpu().numpy(), picked_ids, p.anchors_are_b))
        elif idx is not None:
            hit = rel_mask.gather(1, idx)
        if idx is not None:
            chosen = hit.to(self.device) & ~pos_mask.gather(1, idx)
            self.picked[d] += int(idx.numel())
            self.picked_fn[d] += int(chosen.sum())
            negatives = None
        else:
            rel_mask = self._relevance(p) if rel_mask is None else rel_mask
            negatives = ~pos_mask if neg_mask is None else ~pos_mask & neg_mask
            self.picked[d] += int(negatives.sum())
            self.picked_fn[d] += int((rel_mask & negatives).sum())
        if p.extended_from is not None:
            rel_mask = self._relevance(p) if rel_mask is None else rel_mask
            mined = (~pos_mask & (p.cand_ids >= 0)[None, :])[:, p.extended_from:]
            if negatives is not None:
                mined = mined & negatives[:, p.extended_from:]
            if p.owners is not None:  # each anchor's own mined candidates
                rows = torch.arange(mined.shape[0], device=mined.device)[:, None]
                mined = mined & ((p.owners[None, :] == rows) | (p.owners[None, :] < 0))
            self.mined += int(mined.sum())
            self.mined_fn += int((rel_mask[:, p.extended_from:] & mined).sum())

    # ------------------------------------------------------------------ pool extension
    def _extend(self, p: _Pool, ext: PoolExtension) -> _Pool:
        """The pool with ``ext``'s candidates appended (or alone, ``ext.replace``), with partners, ids and labels."""
        ids = ext.ids.to(self.device, torch.long)
        owners = None if ext.owners is None else ext.owners.to(self.device, torch.long)
        real = ids >= 0
        side = p.cand_side
        feats = self._extension_features(ext, ids, side).to(p.cand.dtype)
        if side == "a":  # image candidates: item id = the image, partner = one of its captions
            items, partner_ids = ids, torch.where(real, self.a_to_b[ids.clamp_min(0)], -1)
        else:  # caption candidates: item = its image, partner = that image
            items = torch.where(real, self.b_to_a[ids.clamp_min(0)], -1)
            partner_ids = items
        partners = torch.zeros_like(feats)
        if bool(real.any()):
            with torch.no_grad():
                partners[real] = self._encode_ids("b" if side == "a" else "a", partner_ids[real]).to(feats.dtype)
        if ext.replace:
            return replace(p, cand=feats, cand_ids=ids, cand_items=items, partner=partners, partner_ids=partner_ids,
                           batch_first=False, extended_from=0, owners=owners)
        return replace(p, cand=torch.cat([p.cand, feats]), cand_ids=torch.cat([p.cand_ids, ids]),
                       cand_items=torch.cat([p.cand_items, items]), partner=torch.cat([p.partner, partners]),
                       partner_ids=torch.cat([p.partner_ids, partner_ids]), extended_from=p.cand.shape[0],
                       owners=owners)

    def _extension_features(self, ext: PoolExtension, ids: torch.Tensor, side: str) -> torch.Tensor:
        if ext.features is not None:
            return ext.features.to(self.device)
        if ext.index is not None:
            return ext.index.embeddings.to(self.device)[ids]
        return self._encode_ids(side, ids)  # with gradients, by the online encoder

    def _encode_ids(self, side: str, ids: torch.Tensor) -> torch.Tensor:
        """``[N, d]``: the training items ``ids`` of ``side`` through the online encoder (in train mode)."""
        if self.inputs is None:
            raise ValueError("this objective has no training inputs to encode mined candidates: give the "
                             "PoolExtension its features or an index")
        fn = self.model.encode_a if side == "a" else self.model.encode_b
        return fn(self.inputs[0 if side == "a" else 1][ids])

    def parameters(self) -> list[torch.nn.Parameter]:
        """The sampler's trainable parameters (``Sampler.parameters``), for the optimiser."""
        return list(self.sampler.parameters()) if hasattr(self.sampler, "parameters") else []

    def after_step(self, model: torch.nn.Module, *, warmup: bool) -> None:
        """After the optimiser step: momentum update of the twin and, past the warm-up, the queue's refill."""
        if self.queue is None:
            return
        momentum_update(model, self.twin, m=self.momentum)
        if not warmup and self._keys is not None:
            self.queue.enqueue(*self._keys)
        self._keys = None
