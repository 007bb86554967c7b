"""The transitive signals of a pair inside a training pool (a batch plus a memory queue).

:class:`fnlab.posterior.signals.PairContext` computes a pair's signals over a whole split. FNE (Li et
al., ACM MM 2023) samples from a different place: the candidate pool of one training step, the batch
plus a momentum queue of features and item ids (``fnlab.training.objective``). The pool offers the
same evidence, without any look-up outside it, because every slot of the queue holds a *pair*: an
image with one of its captions. For an anchor ``i`` and a pool slot ``j``:

==============================  =============================================================
signal                          in the pool
==============================  =============================================================
``positive_neighbour``          ``max_p cand[j] . cand[p]`` over the slots ``p`` that hold a labelled
                                positive of ``i`` (a near-duplicate of the anchor's positive)
``query_neighbour``             ``max_j' anchor[i] . partner[j']`` over the slots ``j'`` holding the
                                same candidate item as ``j``: does the anchor resemble the candidate's
                                own labelled queries (in text-to-image: the caption stored beside each
                                copy of the candidate image)? A partner that is the anchor itself is
                                left out.
``view_positive_neighbour``     ``positive_neighbour`` in a second view of the candidates
                                (``candidate_view``: e.g. MiniLM of the captions, image-to-text)
``view_query_neighbour``        ``query_neighbour`` in a second view of the anchors and partners
                                (``anchor_view``, ``partner_view``: text-to-image)
``positive_duplicate``          1 if slot ``j``'s candidate has the same content as a slot holding a
                                labelled positive of ``i`` (``candidate_keys``: equal keys, identical
                                encoder inputs), else 0
==============================  =============================================================

Exact copies need the content keys: in a pool two copies are never the same features (a queue entry was
encoded by an older momentum encoder than the batch), so their ``positive_neighbour`` is 0.99 where the
posterior, fitted on one encoder's embeddings of the split, saw identical rows and learned a group at 1.

``cand`` are the pool's candidates (images in text-to-image), ``partner`` the other half of each slot's
pair (its caption), both as the pool holds them (momentum features). Fit the posterior these signals
feed where the pool is scored, queries from the online encoder and everything else from the momentum
encoder (:class:`PairContext` with ``query_keys``), so that a signal means the same in the fit and in
the pool. The queue holds some of a candidate's labelled queries, not always all, so a pool signal is a
max over a subset of what the fit saw.

Only the pairs a caller asks for are computed: a few pairs (FNE's training draw asks for about one per
anchor) directly from their anchor's positives and their candidate's copies; many pairs (a whole weight
matrix) through two ``[B, M]`` products at most, never an ``[M, M]`` matrix.
"""

from __future__ import annotations

import torch

from fnlab.posterior.signals import PairSignals

__all__ = ["POOL_SIGNALS", "PoolEvidence"]

#: the signals a pool offers beyond the similarity and the positive similarity
POOL_SIGNALS = ("positive_neighbour", "query_neighbour", "view_positive_neighbour", "view_query_neighbour",
                "positive_duplicate")

#: up to this many pairs a call computes the signals pair by pair, beyond it through ``[B, M]`` products
PAIRWISE_MAX = 4096


class PoolEvidence:
    """The transitive signals of ``(anchor, pool slot)`` pairs of one training step (module docstring).

    Args:
        anchors: ``[B, d]`` anchor features (online encoder).
        candidates: ``[M, d]`` the pool's candidates.
        partners: ``[M, d]`` the other half of each slot's pair (same encoder as ``candidates``).
        candidate_ids: ``[M]`` long, the item id of each slot's candidate.
        partner_ids: ``[M]`` long, the item id of each slot's partner (same id space as the anchors).
        anchor_ids: ``[B]`` long, each anchor's item id.
        positive_mask: ``[B, M]`` bool, the slots that hold a labelled positive of each anchor.
        anchor_view, candidate_view, partner_view: optional ``[B, d']``, ``[M, d']``, ``[M, d']`` unit rows of a
            second view (a side without text has none); the view signals need them.
        candidate_keys: optional ``[M]`` long content key of each slot's candidate (equal keys: identical
            content); ``positive_duplicate`` needs them.

    Raises:
        ValueError: shapes that do not agree.

    Example:
        >>> a = torch.eye(3)[:2]; c = torch.eye(3); ids = torch.arange(3)
        >>> ev = PoolEvidence(a, c, c, ids, ids, ids[:2], torch.eye(3, dtype=torch.bool)[:2])
        >>> ev.signals(("positive_neighbour",), torch.tensor([0]), torch.tensor([2]))["positive_neighbour"]
        tensor([0.])
    """

    def __init__(self, anchors: torch.Tensor, candidates: torch.Tensor, partners: torch.Tensor,
                 candidate_ids: torch.Tensor, partner_ids: torch.Tensor, anchor_ids: torch.Tensor,
                 positive_mask: torch.Tensor, *, anchor_view: torch.Tensor | None = None,
                 candidate_view: torch.Tensor | None = None, partner_view: torch.Tensor | None = None,
                 candidate_keys: torch.Tensor | None = None) -> None:
        b, m = positive_mask.shape
        if anchors.shape[0] != b or candidates.shape[0] != m or partners.shape != candidates.shape:
            raise ValueError(f"pool evidence: anchors {tuple(anchors.shape)}, candidates {tuple(candidates.shape)}, "
                             f"partners {tuple(partners.shape)} do not fit positive_mask {tuple(positive_mask.shape)}")
        if candidate_ids.shape != (m,) or partner_ids.shape != (m,) or anchor_ids.shape != (b,):
            raise ValueError("pool evidence: candidate_ids and partner_ids must be [M], anchor_ids [B]")
        self.anchors, self.candidates, self.partners = anchors, candidates, partners
        self.candidate_ids, self.partner_ids, self.anchor_ids = candidate_ids, partner_ids, anchor_ids
        self.positive_mask = positive_mask
        for name, view, n in (("anchor_view", anchor_view, b), ("candidate_view", candidate_view, m),
                              ("partner_view", partner_view, m)):
            if view is not None and (view.ndim != 2 or view.shape[0] != n):
                raise ValueError(f"pool evidence: {name} has shape {tuple(view.shape)}, expected [{n}, d']")
        self.anchor_view, self.candidate_view, self.partner_view = anchor_view, candidate_view, partner_view
        if candidate_keys is not None and tuple(candidate_keys.shape) != (m,):
            raise ValueError(f"pool evidence: candidate_keys has shape {tuple(candidate_keys.shape)}, expected [{m}]")
        self.candidate_keys = candidate_keys
        self._positive_slots: torch.Tensor | None = None  # [B, P] each anchor's positive slots, -1 padded
        self._copies: tuple[torch.Tensor, torch.Tensor] | None = None  # slot -> item, item -> its slots

    def signals(self, names: tuple[str, ...], rows: torch.Tensor, cols: torch.Tensor) -> dict[str, torch.Tensor]:
        """The signals ``names`` (some of :data:`POOL_SIGNALS`) of the pairs ``(rows[n], cols[n])``:
        ``{name: [N] tensor}``, NaN where a pair has no value (an anchor with no positive in the pool)."""
        unknown = set(names) - set(POOL_SIGNALS)
        if unknown:
            raise ValueError(f"pool evidence offers {list(POOL_SIGNALS)}, not {sorted(unknown)}")
        out = {}
        pairwise = rows.numel() <= PAIRWISE_MAX
        spaces = {"positive_neighbour": (self.candidates,), "query_neighbour": (self.anchors, self.partners),
                  "view_positive_neighbour": (self.candidate_view,),
                  "view_query_neighbour": (self.anchor_view, self.partner_view),
                  "positive_duplicate": (self.candidate_keys,)}
        for name in names:
            if any(v is None for v in spaces[name]):
                continue  # this pool has no view on that side: the posterior marginalises the signal out
            if name == "positive_duplicate":
                out[name] = (self._positive_duplicate_at(rows, cols) if pairwise
                             else self._positive_duplicate()[rows, cols])
            elif name.endswith("positive_neighbour"):
                cand = spaces[name][0]
                out[name] = (self._positive_neighbour_at(rows, cols, cand) if pairwise
                             else self._positive_neighbour(cand)[rows, cols])
            else:
                anchors, partners = spaces[name]
                out[name] = (self._query_neighbour_at(rows, cols, anchors, partners) if pairwise
                             else self._query_neighbour(anchors, partners)[rows, cols])
        return out

    def rows(self, keep: torch.Tensor) -> PoolEvidence:
        """The evidence of the anchors ``keep`` marks (``[B]`` bool) over the same pool."""
        return PoolEvidence(self.anchors[keep], self.candidates, self.partners, self.candidate_ids,
                            self.partner_ids, self.anchor_ids[keep], self.positive_mask[keep],
                            anchor_view=None if self.anchor_view is None else self.anchor_view[keep],
                            candidate_view=self.candidate_view, partner_view=self.partner_view,
                            candidate_keys=self.candidate_keys)

    def pair_signals(self, sims: torch.Tensor, pos_sims: torch.Tensor, names: tuple[str, ...], rows: torch.Tensor,
                     cols: torch.Tensor) -> PairSignals:
        """:class:`PairSignals` of the pairs ``(rows, cols)``: similarity and positive similarity from
        ``sims [B, M]`` and ``pos_sims [B]``, plus the pool signals ``names`` (those this pool offers)."""
        extra = self.signals(tuple(n for n in names if n in POOL_SIGNALS), rows, cols)
        return PairSignals(sims[rows, cols], positive_similarity=pos_sims[rows], **extra)

    def _positive_neighbour(self, cand: torch.Tensor) -> torch.Tensor:
        """``[B, M]``: each slot's best similarity to a slot holding one of the anchor's positives (in the space
        of ``cand [M, d]``)."""
        prow, pcol = self.positive_mask.nonzero(as_tuple=True)
        b, m = self.positive_mask.shape
        out = torch.full((b, m), float("nan"), dtype=cand.dtype, device=cand.device)
        if prow.numel():
            per_positive = cand[pcol] @ cand.T  # [P, M]
            out = out.scatter_reduce(0, prow[:, None].expand(-1, m), per_positive, reduce="amax",
                                     include_self=False)
        return out

    def _positive_duplicate(self) -> torch.Tensor:
        """``[B, M]``: 1 where the slot's candidate has the content of a slot holding one of the anchor's positives,
        else 0; NaN for an anchor with no positive in the pool."""
        prow, pcol = self.positive_mask.nonzero(as_tuple=True)
        b, m = self.positive_mask.shape
        keys = self.candidate_keys
        out = torch.full((b, m), float("nan"), dtype=self.candidates.dtype, device=self.candidates.device)
        if prow.numel():
            same = (keys[pcol][:, None] == keys[None, :]).to(out.dtype)  # [P, M]
            out = out.scatter_reduce(0, prow[:, None].expand(-1, m), same, reduce="amax", include_self=False)
        return out

    def _positive_duplicate_at(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``[N]``: :meth:`_positive_duplicate` at the pairs only."""
        slots = self._slots_of_positives()
        dtype, device = self.candidates.dtype, self.candidates.device
        if slots.shape[1] == 0:
            return torch.full(rows.shape, float("nan"), dtype=dtype, device=device)
        mine = slots[rows]  # [N, P]
        keys = self.candidate_keys
        same = (keys[cols][:, None] == keys[mine.clamp_min(0)]) & (mine >= 0)
        out = same.any(dim=1).to(dtype)
        return out.masked_fill(~(mine >= 0).any(dim=1), float("nan"))

    def _slots_of_positives(self) -> torch.Tensor:
        """``[B, P]`` each anchor's positive slots, padded with -1 (built once per pool: a draw asks again for the
        anchors left)."""
        if self._positive_slots is None:
            self._positive_slots = _padded_groups(*self.positive_mask.nonzero(as_tuple=True), self.positive_mask.shape[0])
        return self._positive_slots

    def _query_neighbour(self, anchors: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
        """``[B, M]``: the anchor's best similarity to a partner stored beside the slot's candidate item."""
        b, m = self.positive_mask.shape
        to_partner = anchors @ partners.T  # [B, M]
        to_partner = to_partner.masked_fill(self.partner_ids[None, :] == self.anchor_ids[:, None], float("-inf"))
        items, slot_item = torch.unique(self.candidate_ids, return_inverse=True)
        best = torch.full((b, items.numel()), float("-inf"), dtype=to_partner.dtype, device=to_partner.device)
        best = best.scatter_reduce(1, slot_item[None, :].expand(b, -1), to_partner, reduce="amax")
        out = best[:, slot_item]
        return out.masked_fill(torch.isinf(out), float("nan"))

    def _positive_neighbour_at(self, rows: torch.Tensor, cols: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """``[N]``: :meth:`_positive_neighbour` at the pairs only (each anchor's positive slots, padded)."""
        slots = self._slots_of_positives()
        if slots.shape[1] == 0:
            return torch.full(rows.shape, float("nan"), dtype=cand.dtype, device=cand.device)
        mine = slots[rows]  # [N, P]
        vals = torch.einsum("nd,npd->np", cand[cols], cand[mine.clamp_min(0)])
        return _masked_max(vals, mine >= 0)

    def _query_neighbour_at(self, rows: torch.Tensor, cols: torch.Tensor, anchors: torch.Tensor,
                            partners: torch.Tensor) -> torch.Tensor:
        """``[N]``: :meth:`_query_neighbour` at the pairs only (each candidate item's slots, padded)."""
        if self._copies is None:  # built once per pool
            items, slot_item = torch.unique(self.candidate_ids, return_inverse=True)
            self._copies = (slot_item, _padded_groups(slot_item, torch.arange(slot_item.numel(), device=slot_item.device),
                                                      items.numel()))
        slot_item, copies = self._copies
        mine = copies[slot_item[cols]]  # [N, K]: the slots holding the same candidate item as each pair's
        safe = mine.clamp_min(0)
        vals = torch.einsum("nd,nkd->nk", anchors[rows], partners[safe])
        ok = (mine >= 0) & (self.partner_ids[safe] != self.anchor_ids[rows][:, None])
        return _masked_max(vals, ok)


def _padded_groups(group: torch.Tensor, member: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``[n_groups, K]`` long: the members of each group, padded with -1 (``group``, ``member``: ``[E]``)."""
    order = torch.argsort(group, stable=True)
    group, member = group[order], member[order]
    counts = torch.bincount(group, minlength=n_groups)
    width = int(counts.max()) if counts.numel() and group.numel() else 0
    table = torch.full((n_groups, width), -1, dtype=torch.long, device=group.device)
    if width:
        start = torch.cumsum(counts, 0) - counts
        table[group, torch.arange(group.numel(), device=group.device) - start[group]] = member
    return table


def _masked_max(vals: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Row max of ``vals [N, K]`` over the entries ``ok`` marks; NaN for a row with none."""
    best = vals.masked_fill(~ok, float("-inf")).amax(dim=1) if vals.shape[1] else vals.new_full(vals.shape[:1], -1.0)
    return best.masked_fill(~ok.any(dim=1), float("nan"))
