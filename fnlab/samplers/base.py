"""The sampler base class: the shared work of every negative sampler.

A sampler turns each anchor's similarity row into non-negative weights over the candidate
pool and draws negatives from them (pytorch-metric-learning calls this a *miner*; see its
``miners/base_miner.py`` and ``distance_weighted_miner.py``). A subclass writes only
:meth:`Sampler._weights`; the base class

* runs without gradients on detached inputs,
* checks shapes, dtypes and devices, with errors naming the argument,
* zeroes labelled positives (and anything else :meth:`Sampler._blocked` returns),
* gives a row whose weights are all zero the sampler's fallback weights (:meth:`Sampler._fallback_weights`),
  by default a one-hot weight on its hardest allowed candidate (the official FNE ``choice_negative``,
  Li et al., ACM MM 2023, and VSE++'s pick),
* checks the output (finite, non-negative, exactly zero on positives),
* draws indices with ``torch.multinomial`` and an optional generator.

Everything is vectorised over rows and runs on the device of ``sims`` (CPU or CUDA).

What a call knows besides the similarities comes as one typed :class:`~fnlab.retrieval.hooks.SampleContext`
(``ctx=``; keyword fields such as ``relevant_mask=`` are a shorthand for it). Methods that do more than
reweight the pool use the training hooks (``docs/ARCHITECTURE.md``, "Hooks"): :meth:`Sampler.start_epoch`
(an :class:`~fnlab.retrieval.hooks.EpochContext`: encoders, corpus indexes, the posterior fit),
:meth:`Sampler.observe`, :meth:`Sampler.extend_pool` (mined or synthetic candidates appended to the pool),
:meth:`Sampler.side_info` (per-negative masks and weights for the loss), :meth:`Sampler.num_picks` (``None``:
the loss sees the whole pool) and :meth:`Sampler.parameters` (trainable parameters the trainer optimises).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fnlab.retrieval.hooks import EpochContext, PoolExtension, SampleContext

from .registry import ParamSpec


def check_inputs(sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor,
                 *, where: str = "sampler") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and normalise sampler inputs.

    Args:
        sims: ``[B, M]`` floating anchor-to-pool similarities.
        pos_sims: ``[B]`` (or ``[B, 1]``) each anchor's labelled-positive similarity.
        positive_mask: ``[B, M]`` bool, true on labelled positives.

    Returns:
        ``(sims [B, M] float32|float64, pos_sims [B], positive_mask [B, M] bool)``, detached.

    Raises:
        ValueError: a wrong shape, dtype, device, or NaN in ``sims``/``pos_sims``.
    """
    if not isinstance(sims, torch.Tensor) or sims.ndim != 2 or not sims.is_floating_point():
        got = tuple(sims.shape) if isinstance(sims, torch.Tensor) else type(sims).__name__
        raise ValueError(f"{where}: 'sims' must be a 2-D floating tensor [B, M], got {got}")
    b, m = sims.shape
    if m == 0:
        raise ValueError(f"{where}: 'sims' has an empty pool (M = 0)")
    if not isinstance(pos_sims, torch.Tensor):
        raise ValueError(f"{where}: 'pos_sims' must be a tensor [B], got {type(pos_sims).__name__}")
    if pos_sims.ndim == 2 and pos_sims.shape[1] == 1:
        pos_sims = pos_sims[:, 0]
    if pos_sims.shape != (b,):
        raise ValueError(f"{where}: 'pos_sims' must have shape [B] = [{b}], got {tuple(pos_sims.shape)}")
    if not isinstance(positive_mask, torch.Tensor) or positive_mask.dtype != torch.bool:
        raise ValueError(f"{where}: 'positive_mask' must be a bool tensor [B, M]")
    if positive_mask.shape != sims.shape:
        raise ValueError(
            f"{where}: 'positive_mask' must have the shape of 'sims' {tuple(sims.shape)}, "
            f"got {tuple(positive_mask.shape)}"
        )
    for name, t in (("pos_sims", pos_sims), ("positive_mask", positive_mask)):
        if t.device != sims.device:
            raise ValueError(f"{where}: '{name}' is on {t.device} but 'sims' is on {sims.device}")
    sims = sims.detach()
    if sims.dtype not in (torch.float32, torch.float64):
        sims = sims.float()
    pos_sims = pos_sims.detach().to(sims.dtype)
    if torch.isnan(sims).any() or torch.isnan(pos_sims).any():
        raise ValueError(f"{where}: 'sims' or 'pos_sims' contains NaN")
    return sims, pos_sims, positive_mask


def hardest_index(sims: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """``[B]`` index of the most similar candidate not in ``blocked`` (first index if all blocked)."""
    return sims.masked_fill(blocked, float("-inf")).argmax(dim=1)


def topk_mask(sims: torch.Tensor, blocked: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, M]`` bool: the ``k`` most similar candidates per row among the non-blocked ones.

    Rows with fewer than ``k`` allowed candidates get all of them.
    """
    m = sims.shape[1]
    k = min(int(k), m)
    masked = sims.masked_fill(blocked, float("-inf"))
    idx = masked.topk(k, dim=1).indices
    out = torch.zeros_like(blocked)
    out.scatter_(1, idx, True)
    return out & ~blocked


def rank_among_allowed(sims: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` long: 0-based rank by descending similarity among non-blocked candidates.

    Blocked candidates rank after every allowed one. Ties are broken by a stable sort.
    """
    masked = sims.masked_fill(blocked, float("-inf"))
    order = masked.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ar = torch.arange(sims.shape[1], device=sims.device).expand_as(order)
    ranks.scatter_(1, order, ar)
    return ranks


class Sampler:
    """Base class of negative samplers. Subclasses implement :meth:`_weights`.

    Call :meth:`weights` for the weight matrix and :meth:`sample` to draw negatives.
    Samplers hold parameters only, no state, unless documented (``fne`` holds its running
    statistics or a fitted posterior; the mining samplers hold their mined lists).
    """

    name: ClassVar[str] = "base"
    PARAMS: ClassVar[tuple[ParamSpec, ...]] = ()
    #: whether this sampler needs ground truth (``relevant_mask``) at call time.
    needs_relevance: ClassVar[bool] = False
    #: whether training should warm up (plain VSE++) before this sampler takes over.
    needs_warmup: ClassVar[bool] = False
    #: whether the pool holds the momentum queue (when the run has one); ``False``: the online batch only.
    uses_queue: ClassVar[bool] = True
    #: the directions the trainer samples and trains (``"i2t"``, ``"t2i"``); a direction left out trains nothing.
    directions: ClassVar[tuple[str, ...]] = ("i2t", "t2i")
    #: the keys :meth:`side_info` returns (``fn_mask``, ``neg_weight``, ``rank``), for the losses that take them.
    PROVIDES: ClassVar[tuple[str, ...]] = ()

    # --------------------------------------------------------------- subclass API
    def _weights(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor,
                 ctx: SampleContext) -> torch.Tensor:
        """Raw ``[B, M]`` non-negative weights; the base zeroes blocked entries afterwards."""
        raise NotImplementedError

    def _blocked(self, sims: torch.Tensor, positive_mask: torch.Tensor, ctx: SampleContext) -> torch.Tensor:
        """``[B, M]`` bool: candidates that must get zero weight (default: labelled positives)."""
        return positive_mask

    def _fallback_weights(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor,
                          ctx: SampleContext) -> torch.Tensor | None:
        """``[R, M]`` weights for rows whose :meth:`_weights` all vanished (the rows are given), or ``None``
        for the default: a one-hot weight on the hardest allowed candidate. A sampler whose filter removes
        suspected false negatives overrides this, so that an emptied row does not fall back to the hardest
        candidate, the likeliest false negative of all (FNE's calibrated mode)."""
        return None

    # ------------------------------------------------------------- training hooks
    def start_epoch(self, epoch: EpochContext) -> None:
        """Called by the trainer before each epoch. Adaptive samplers reset or refit their state here.

        ``epoch`` (:class:`~fnlab.retrieval.hooks.EpochContext`) carries the epoch number, whether it is a
        warm-up epoch, the step count, ``fit_posterior`` (fits the run's false-negative posterior on the
        current embeddings, labels only; call it only if the sampler needs one: it costs an encoding pass),
        ``encode(split, side)`` and the run's corpus indexes (``epoch.index(side)``). A sampler may keep the
        object: the trainer advances its ``step`` before every step's sampling.
        """

    def observe(self, batch_scores: torch.Tensor, ids: torch.Tensor) -> None:
        """Called with each training step's in-batch scores ``[B, B]`` (image ``i`` . caption ``j``,
        labelled pairs on the diagonal) and the batch's item ids ``[B]``, before sampling."""

    def extend_pool(self, ctx: SampleContext, epoch: EpochContext) -> PoolExtension | None:
        """Candidates to add to this step's pool of ``ctx.direction`` (mined from ``epoch.index(...)``, or
        synthetic), or ``None``. Called before :meth:`sample`, whose context then holds the extended pool
        (``ctx.extended_from``: the first appended slot)."""
        return None

    def side_info(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor,
                  ctx: SampleContext) -> dict[str, torch.Tensor]:
        """Per-candidate inputs for the loss, each ``[B, M]`` over the pool (keys in :attr:`PROVIDES`):
        ``fn_mask`` (bool, suspected false negatives), ``neg_weight`` (float), ``rank`` (long, 1-based rank in
        the anchor's retrieved list, 0 outside it), ``neg_mask`` (bool, the slots that count as the anchor's
        negatives). Called after :meth:`sample` in the same step; the trainer gathers them at the picks."""
        return {}

    def num_picks(self, k: int) -> int | None:
        """Negatives the trainer draws per anchor given the run's ``num_negatives = k``; ``None``: no draw,
        the loss sees the whole pool (``neg_idx=None``)."""
        return k

    def parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters of the sampler; the trainer adds them to the optimiser (none by default)."""
        return []

    def epoch_metrics(self) -> dict[str, float]:
        """Per-epoch metrics the sampler wants recorded (e.g. whether FNE's posterior was active)."""
        return {}

    # ---------------------------------------------------------------- public API
    def weights(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor,
                ctx: SampleContext | None = None, **fields: Any) -> torch.Tensor:
        """Sampling weights over the pool.

        Args:
            sims: ``[B, M]`` anchor-to-pool similarities.
            pos_sims: ``[B]`` each anchor's labelled-positive similarity.
            positive_mask: ``[B, M]`` bool, true on labelled positives.
            ctx: the call's :class:`~fnlab.retrieval.hooks.SampleContext` (optional).
            **fields: :class:`SampleContext` fields, a shorthand (``relevant_mask=`` for ``oracle``).

        Returns:
            ``[B, M]`` float tensor on the device of ``sims``: finite, ``>= 0``, exactly 0 where
            ``positive_mask`` is true. A row whose weights all vanish gets weight 1 on its
            hardest allowed candidate; a row with no non-positive candidate stays all zero.

        Raises:
            ValueError: bad shapes, dtypes, devices or NaN (the message names the argument or field).
            TypeError: a keyword that is not a :class:`SampleContext` field.
        """
        return self._checked_weights(sims, pos_sims, positive_mask, self._context(ctx, fields, sims))[0]

    def _context(self, ctx: SampleContext | None, fields: dict[str, Any], sims: Any) -> SampleContext:
        ctx = SampleContext.of(ctx, **fields)
        if isinstance(sims, torch.Tensor) and sims.ndim == 2:
            ctx.check(*sims.shape, where=self.name)
        return ctx

    def _checked_weights(self, sims, pos_sims, positive_mask, ctx: SampleContext):
        """``(weights [B, M], dead [B] bool, sims)``; ``dead`` rows have no non-positive candidate."""
        with torch.no_grad():
            sims, pos_sims, positive_mask = check_inputs(sims, pos_sims, positive_mask, where=self.name)
            blocked = self._blocked(sims, positive_mask, ctx)
            if blocked is not positive_mask:
                blocked = blocked | positive_mask
            w = self._weights(sims, pos_sims, positive_mask, ctx)
            if w.shape != sims.shape:
                raise RuntimeError(f"sampler {self.name!r} returned weights of shape {tuple(w.shape)}, "
                                   f"expected {tuple(sims.shape)}")
            w = w.to(sims.dtype).masked_fill(blocked, 0.0)
            lo, hi = torch.aminmax(w)  # one pass; NaN fails both comparisons
            if not (bool(lo >= 0) and bool(hi < float("inf"))):
                raise RuntimeError(f"sampler {self.name!r} produced negative or non-finite weights")
            empty = w.sum(dim=1) <= 0
            dead = empty
            if bool(empty.any()):
                fb = self._fallback_weights(sims[empty], pos_sims[empty], positive_mask[empty], ctx.rows(empty))
                if fb is not None:
                    w[empty] = fb.to(w.dtype).masked_fill(positive_mask[empty], 0.0).clamp_min(0.0)
                    empty = w.sum(dim=1) <= 0
                    dead = empty
            if bool(empty.any()):
                # Hardest allowed candidate; where everything is blocked, the hardest non-positive.
                has_allowed = (~blocked).any(dim=1)
                fb_block = torch.where(has_allowed[:, None], blocked, positive_mask)
                idx = hardest_index(sims, fb_block)
                ok = empty & (~fb_block).gather(1, idx[:, None])[:, 0]
                w[ok, idx[ok]] = 1.0
                dead = empty & ~ok
            return w, dead, sims

    def sample(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor,
               k: int = 1, generator: torch.Generator | None = None, ctx: SampleContext | None = None,
               **fields: Any) -> torch.Tensor:
        """Draw ``k`` negatives per anchor from :meth:`weights` with ``torch.multinomial``.

        Rows with at least ``k`` non-zero weights are drawn without replacement (``k``
        distinct negatives); rows with fewer are drawn with replacement. A row with no
        non-positive candidate at all (every weight zero) returns its most similar candidate,
        which is then a positive: callers can spot it with ``positive_mask``.

        Args:
            k: negatives per anchor.
            generator: a ``torch.Generator`` on the device of ``sims``, for reproducibility.
            ctx, **fields: the call's context, as in :meth:`weights`.

        Returns:
            ``LongTensor[B, k]`` of pool indices.
        """
        if int(k) < 1:
            raise ValueError(f"{self.name}: 'k' must be >= 1, got {k}")
        w, dead, sims = self._checked_weights(sims, pos_sims, positive_mask, self._context(ctx, fields, sims))
        return self._draw(w, sims, int(k), generator, dead)

    def __repr__(self) -> str:
        args = ", ".join(f"{p.name}={getattr(self, p.name, None)!r}" for p in self.PARAMS)
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _draw(w: torch.Tensor, sims: torch.Tensor, k: int, generator: torch.Generator | None,
              dead: torch.Tensor | None = None) -> torch.Tensor:
        w = w.float() if w.dtype == torch.float64 else w
        if dead is None:
            dead = w.sum(dim=1) <= 0
        if bool(dead.any()):
            w = w.clone()
            w[dead, sims[dead].argmax(dim=1)] = 1.0
        if k == 1:
            return _draw_one(w, generator)
        nonzero = (w > 0).sum(dim=1)
        enough = nonzero >= k
        if bool(enough.all()):
            return torch.multinomial(w, k, replacement=False, generator=generator)
        out = torch.multinomial(w, k, replacement=True, generator=generator)
        if bool(enough.any()):
            out[enough] = torch.multinomial(w[enough], k, replacement=False, generator=generator)
        return out


def _draw_one(w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One multinomial draw per row of ``w [B, M]`` (rows with positive mass) -> ``[B, 1]``: :func:`draw_many`
    with ``t = 1``. Inverse-CDF sampling replaced ``torch.multinomial``, whose per-row set-up dominated a
    128 x 8352 FNE step on CPU (bench/sampler_speed.py)."""
    return draw_many(w, 1, generator)


def draw_many(w: torch.Tensor, t: int, generator: torch.Generator | None) -> torch.Tensor:
    """``t`` independent multinomial draws (with replacement) per row of ``w [B, M]`` (rows with positive mass)
    -> ``[B, t]``.

    Inverse-CDF sampling: ``u ~ U[0, total)`` per draw, then the first index whose cumulative weight exceeds
    ``u``: one cumsum per row for all ``t`` draws, the distribution of ``torch.multinomial(w, t, replacement=True)``.
    A zero weight is never drawn: its cumulative value equals its predecessor's, so it is never the first to
    exceed ``u``; draws where rounding in a parallel cumsum could break that are redrawn with ``torch.multinomial``.
    """
    cdf = w.cumsum(dim=1, dtype=torch.float64 if w.dtype == torch.float64 else torch.float32)
    u = torch.rand((w.shape[0], int(t)), generator=generator, device=w.device, dtype=cdf.dtype) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, u, right=True).clamp_(max=w.shape[1] - 1)
    bad = w.gather(1, idx) <= 0
    if bool(bad.any()):
        br, bj = bad.nonzero(as_tuple=True)
        idx[br, bj] = torch.multinomial(w[br], 1, generator=generator)[:, 0]
    return idx
