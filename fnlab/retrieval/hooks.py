"""The typed hooks between a training loop and a negative-sampling method.

Four families of methods reach past "reweight the pool you are handed", and each needs one hook:

================================  ======================================================================
hook                              what it gives a sampler (``fnlab.samplers.base.Sampler``)
================================  ======================================================================
:class:`SampleContext`            every call: the direction, the pool's anchor / candidate / partner
                                  features with their item ids, the positive mask, and optional evidence
                                  (the pool's positive mean, the ground truth for the oracle); the same
                                  object in training, the app's playground and the analysis code
:class:`EpochContext`             every epoch and step: the epoch, the step count, the posterior fit,
                                  ``encode(split, side)``, and a :class:`CorpusIndex` per side
:class:`PoolExtension`            mined candidates (or synthetic ones, such as cluster centroids) that
                                  the trainer appends to the pool, with their features and labels
``Sampler.side_info``             per-negative masks and weights for the loss, gathered at the picks
================================  ======================================================================

This module holds the types only; the training objective (``fnlab.training.objective``) fills them. It
sits in the data-and-models layer, below samplers and losses, and imports torch, numpy and faiss only.

Ids: an *anchor id* is the anchor's item id in its own side (the image index for image anchors, the
caption index for caption anchors), a *candidate id* the candidate's in its side, and a *partner id* the
id, in the anchor's side, of the item stored beside each candidate (every pool slot holds a pair). In
text-to-image (``t2i``) anchors are captions (side ``"b"``) and candidates images (side ``"a"``);
image-to-text (``i2t``) the other way round.

Example:
    >>> import torch
    >>> ctx = SampleContext(direction="t2i", positive_mask=torch.tensor([[True, False], [False, True]]))
    >>> ctx.candidate_side, ctx.rows(torch.tensor([False, True])).positive_mask.tolist()
    ('a', [[False, True]])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch

__all__ = ["DIRECTIONS", "CorpusIndex", "EpochContext", "PoolExtension", "SampleContext"]

#: the two directions of a dual encoder: image anchors over captions, caption anchors over images
DIRECTIONS = ("i2t", "t2i")
_SIDES = {"i2t": ("a", "b"), "t2i": ("b", "a")}  # direction -> (anchor side, candidate side)


@dataclass
class SampleContext:
    """What one sampler call knows besides ``sims [B, M]``, ``pos_sims [B]`` and ``positive_mask [B, M]``.

    Every field is optional: the app's playground knows the similarities and the masks only; training
    fills everything. Shapes: ``B`` anchors, ``M`` pool slots, ``d`` features.

    Attributes:
        direction: ``"i2t"`` or ``"t2i"`` (module docstring); ``None`` outside a direction.
        anchors: ``[B, d]`` anchor features (the online encoder, detached).
        candidates: ``[M, d]`` the pool's candidates (as the pool holds them: momentum features with a queue).
        partners: ``[M, d]`` the other half of each slot's pair (same encoder as ``candidates``).
        anchor_ids, candidate_ids, partner_ids: ``[B]``, ``[M]``, ``[M]`` long item ids (module docstring);
            ``-1`` marks a synthetic candidate (a centroid), never a labelled positive.
        positive_mask: ``[B, M]`` bool, the slots holding a labelled positive of each anchor.
        positive_mean: the pool's mean positive similarity (a float or a 0-dim tensor: training passes it
            so that a cut can follow the step's pool).
        relevant_mask: ``[B, M]`` bool ground truth (only for samplers with ``needs_relevance``).
        extended_from: the first slot a :class:`PoolExtension` appended (``None``: no extension).
        anchor_view, candidate_view, partner_view: ``[B, d']``, ``[M, d']``, ``[M, d']`` unit rows of a second
            view of the data (e.g. the captions' text embedded by a sentence encoder); a side without one is
            ``None``. FNE's pool evidence reads them (:class:`fnlab.posterior.pool.PoolEvidence`).
        candidate_keys: ``[M]`` long content key of each slot's candidate: equal keys where the encoder inputs are
            identical (:meth:`fnlab.data.base.MatchingDataset.content_keys`), so that an exact copy of a positive
            is known as one in a pool whatever its features (FNE's pool evidence: ``positive_duplicate``).
    """

    direction: str | None = None
    anchors: torch.Tensor | None = None
    candidates: torch.Tensor | None = None
    partners: torch.Tensor | None = None
    anchor_ids: torch.Tensor | None = None
    candidate_ids: torch.Tensor | None = None
    partner_ids: torch.Tensor | None = None
    positive_mask: torch.Tensor | None = None
    positive_mean: torch.Tensor | float | None = None
    relevant_mask: torch.Tensor | None = None
    extended_from: int | None = None
    anchor_view: torch.Tensor | None = None
    candidate_view: torch.Tensor | None = None
    partner_view: torch.Tensor | None = None
    candidate_keys: torch.Tensor | None = None
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, ctx: SampleContext | None = None, **values: Any) -> SampleContext:
        """``ctx`` (or an empty context) with the keyword fields set: the shorthand
        ``sampler.weights(sims, pos, mask, relevant_mask=rel)`` builds its context this way.

        Raises:
            TypeError: a keyword that is not a field (the message lists the fields).
        """
        names = {f.name for f in fields(cls) if not f.name.startswith("_")}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"SampleContext has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(names))}")
        if ctx is None:
            return cls(**values)
        if not isinstance(ctx, SampleContext):
            raise TypeError(f"ctx must be a SampleContext, got {type(ctx).__name__}")
        return replace(ctx, **values, _memo={}) if values else ctx

    def check(self, b: int, m: int, *, where: str = "sampler") -> None:
        """Raise ``ValueError`` naming the field whose shape does not fit ``B = b`` anchors and ``M = m`` slots."""
        shapes = {"anchors": (b, None), "candidates": (m, None), "partners": (m, None), "anchor_ids": (b,),
                  "candidate_ids": (m,), "partner_ids": (m,), "positive_mask": (b, m), "relevant_mask": (b, m),
                  "anchor_view": (b, None), "candidate_view": (m, None), "partner_view": (m, None), "candidate_keys": (m,)}
        for name, want in shapes.items():
            t = getattr(self, name)
            if t is None:
                continue
            got = tuple(t.shape)
            if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want, strict=True)):
                raise ValueError(f"{where}: context field {name!r} has shape {got}, expected "
                                 f"{tuple('d' if w is None else w for w in want)}")
        for name in ("positive_mask", "relevant_mask"):
            t = getattr(self, name)
            if t is not None and t.dtype != torch.bool:
                raise ValueError(f"{where}: context field {name!r} must be a bool tensor, got {t.dtype}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"{where}: context field 'direction' must be one of {DIRECTIONS}, got {self.direction!r}")

    @property
    def anchor_side(self) -> str:
        """``"a"`` (images) or ``"b"`` (captions): the side the anchors come from."""
        return _SIDES[self._direction()][0]

    @property
    def candidate_side(self) -> str:
        """``"a"`` or ``"b"``: the side the pool's candidates come from."""
        return _SIDES[self._direction()][1]

    def _direction(self) -> str:
        if self.direction not in _SIDES:
            raise ValueError(f"this sample context has no direction (got {self.direction!r})")
        return self.direction

    @property
    def has_pool(self) -> bool:
        """Whether the pool's features and ids are present (training; not the app's playground)."""
        return all(getattr(self, n) is not None for n in ("anchors", "candidates", "partners", "anchor_ids",
                                                           "candidate_ids", "partner_ids", "positive_mask"))

    def rows(self, keep: torch.Tensor) -> SampleContext:
        """The context of the anchors ``keep`` marks (``[B]`` bool) over the same pool."""
        cut = {n: getattr(self, n)[keep] for n in ("anchors", "anchor_ids", "positive_mask", "relevant_mask", "anchor_view")
               if getattr(self, n) is not None}
        return replace(self, **cut, _memo={})

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per context (e.g. FNE's pool evidence, which caches tables per pool)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


@dataclass
class PoolExtension:
    """Candidates a sampler adds to the pool of one step and direction (``Sampler.extend_pool``).

    The trainer appends them after the pool's slots (or, with ``replace``, makes them the whole pool),
    with their partners, ids and labels: a slot is a labelled positive of an anchor when its item is the
    anchor's labelled match, exactly as for the batch and the queue.

    Attributes:
        ids: ``[N]`` long candidate ids of the training split (the candidate side's item indices); ``-1``
            for a synthetic candidate, which is never a positive and has no partner.
        features: ``[N, d]`` the candidates' features, or ``None``: looked up in ``index`` when given, else
            encoded now by the online encoder, *with* gradients (as the official STAR and Conan code encode
            their hard negatives).
        index: a :class:`CorpusIndex` whose stored (detached) embeddings are the features.
        replace: the pool is these candidates alone (no batch, no queue; ADORE).
        owners: ``[N]`` long, the anchor (row of the call) each candidate was mined for, ``-1`` for one mined
            for every anchor; ``None``: all ``-1``. Only the metrics read it: ``mined_fn_rate`` is the
            false-negative share of each anchor's own mined candidates (every anchor still sees them all).
    """

    ids: torch.Tensor
    features: torch.Tensor | None = None
    index: CorpusIndex | None = None
    replace: bool = False
    owners: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ids, torch.Tensor) or self.ids.ndim != 1 or self.ids.is_floating_point():
            raise ValueError("PoolExtension: 'ids' must be a 1-D integer tensor [N]")
        if self.features is not None and (self.features.ndim != 2 or self.features.shape[0] != self.ids.shape[0]):
            raise ValueError(f"PoolExtension: 'features' must be [N={self.ids.shape[0]}, d], "
                             f"got {tuple(self.features.shape)}")
        if self.features is None and bool((self.ids < 0).any()):
            raise ValueError("PoolExtension: synthetic candidates (id -1) need their 'features'")
        if self.owners is not None and tuple(self.owners.shape) != tuple(self.ids.shape):
            raise ValueError(f"PoolExtension: 'owners' must be [N={self.ids.shape[0]}], got {tuple(self.owners.shape)}")


class CorpusIndex:
    """A faiss ``IndexFlatIP`` over one side's embeddings of the training split, built on demand.

    ``encode()`` returns the embeddings (``[N, d]`` unit rows, from the encoder the index was asked for);
    the index is built on first use and rebuilt by :meth:`refresh`, or by :meth:`ensure` once
    ``refresh_every`` steps have passed since the last build (``None``: never, a frozen index as ADORE's).

    Args:
        encode: ``() -> [N, d]`` float tensor or array.
        refresh_every: steps between rebuilds under :meth:`ensure` (``None``: build once).
        device: where :attr:`embeddings` live (CPU by default).

    Example:
        >>> idx = CorpusIndex(lambda: torch.eye(3))
        >>> scores, ids = idx.search(torch.tensor([[0.6, 0.8, 0.0]]), 2, exclude=[[1]])
        >>> ids.tolist(), idx.version
        ([[0, 2]], 1)
    """

    def __init__(self, encode: Callable[[], Any], *, refresh_every: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        if refresh_every is not None and int(refresh_every) < 1:
            raise ValueError(f"CorpusIndex: 'refresh_every' must be >= 1 or None, got {refresh_every}")
        self._encode = encode
        self.refresh_every = None if refresh_every is None else int(refresh_every)
        self.device = torch.device(device)
        self.version = 0
        self.built_at: int | None = None
        self._emb: torch.Tensor | None = None
        self._faiss = None

    def refresh(self, step: int = 0) -> CorpusIndex:
        """Re-encode and rebuild now (``step``: the training step, recorded as :attr:`built_at`)."""
        from fnlab.retrieval.similarity import build_index

        emb = self._encode()
        emb = emb.detach() if isinstance(emb, torch.Tensor) else torch.from_numpy(np.asarray(emb))
        self._emb = emb.to(self.device, torch.float32)
        self._faiss = build_index(self._emb.cpu().numpy(), "flat")
        self.version += 1
        self.built_at = int(step)
        return self

    def ensure(self, step: int = 0) -> CorpusIndex:
        """Build if never built, or rebuild when ``refresh_every`` steps have passed since the last build."""
        if self._emb is None or (self.refresh_every is not None and step - (self.built_at or 0) >= self.refresh_every):
            self.refresh(step)
        return self

    @property
    def embeddings(self) -> torch.Tensor:
        """``[N, d]`` float32 (detached): the vectors the index holds."""
        return self.ensure()._emb

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def search(self, queries: torch.Tensor | np.ndarray, k: int, *, exclude: Any = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The top ``k`` ids per query by inner product (:func:`fnlab.retrieval.similarity.topk`).

        Args:
            queries: ``[B, d]``.
            exclude: pairs left out (labelled positives): sparse ``[B, N]`` or one id array per query.

        Returns:
            ``(scores [B, k] float32, ids [B, k] long)`` on :attr:`device`, best first; ``-1`` / ``-inf`` pad
            rows with fewer than ``k`` candidates left.
        """
        from fnlab.retrieval.similarity import topk

        self.ensure()
        q = queries.detach().float().cpu().numpy() if isinstance(queries, torch.Tensor) else np.asarray(queries)
        scores, ids = topk(q, None, int(k), exclude=exclude, index=self._faiss)
        return torch.from_numpy(scores).to(self.device), torch.from_numpy(ids).to(self.device)


@dataclass
class EpochContext:
    """What a sampler's ``start_epoch`` and ``extend_pool`` hooks get besides the pool (module docstring).

    Attributes:
        epoch: 1-based epoch number.
        warmup: whether this epoch trains without the sampler (VSE++ warm-up).
        fit_posterior: ``fit_posterior(prior="auto", direction="t2i") -> posterior`` fits the run's
            false-negative posterior (:mod:`fnlab.posterior`) on the current validation embeddings, labels only
            (an encoding pass: call it only when needed); ``None`` outside training.
        step: optimiser steps taken in the run so far; the trainer advances it before each step's sampling.
        steps_per_epoch: steps in one epoch.
        generator: the run's sampling generator (seeded: draws made with it are reproducible).
        encoder: ``encoder(split, side, which) -> [n, d]`` (see :meth:`encode`); ``None`` outside training.
        labels: ``labels(direction) -> scipy.sparse.csr_matrix [n_anchor, n_candidate]``, the training
            split's labelled pairs of a direction; ``None`` outside training.
        indexes: the run's corpus indexes by ``(side, which)``, kept across epochs.
        device: the training device.
        dataset: the training split (a :class:`fnlab.data.base.MatchingDataset`), for methods that read the data's
            own side information (its texts for a guide model's view, the judged set of a pooled dataset);
            ``None`` outside training.
    """

    epoch: int
    warmup: bool
    fit_posterior: Callable[..., Any] | None = None
    step: int = 0
    steps_per_epoch: int = 0
    generator: torch.Generator | None = None
    encoder: Callable[[str, str, str], Any] | None = None
    labels: Callable[[str], Any] | None = None
    indexes: dict[tuple[str, str], CorpusIndex] = field(default_factory=dict)
    device: torch.device | str = "cpu"
    dataset: Any = None

    def encode(self, split: str, side: str, *, which: str = "key") -> torch.Tensor:
        """``[n, d]`` float32 unit rows of one side of a split (``"train"``, ``"val"``), detached, on :attr:`device`.

        ``which``: ``"key"``, the encoder that fills the pool (the momentum twin when there is a queue, else the
        online model), or ``"online"``.

        Raises:
            RuntimeError: outside training (no encoder).
        """
        if self.encoder is None:
            raise RuntimeError("EpochContext.encode: no encoder outside training")
        if side not in ("a", "b") or which not in ("key", "online"):
            raise ValueError(f"EpochContext.encode: side must be 'a' or 'b' and which 'key' or 'online', "
                             f"got {side!r}, {which!r}")
        out = self.encoder(split, side, which)
        out = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))
        return out.to(self.device, torch.float32)

    def index(self, side: str, *, which: str = "key", refresh_every: int | None = None) -> CorpusIndex:
        """The run's :class:`CorpusIndex` over the training split's side ``side`` from encoder ``which``, made
        on first request and kept across epochs; rebuilt once ``refresh_every`` steps have passed since its
        last build (``None``: as built; call :meth:`CorpusIndex.refresh` to rebuild on demand)."""
        key = (side, which)
        if key not in self.indexes:
            self.indexes[key] = CorpusIndex(lambda: self.encode("train", side, which=which),
                                            refresh_every=refresh_every, device=self.device)
        idx = self.indexes[key]
        if refresh_every is not None:
            idx.refresh_every = int(refresh_every)
        return idx.ensure(self.step)

    def positives(self, direction: str) -> Any:
        """The training split's labelled pairs of ``direction`` as a csr matrix ``[n_anchor, n_candidate]``."""
        if self.labels is None:
            raise RuntimeError("EpochContext.positives: no labels outside training")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return self.labels(direction)
