"""FNE: False Negative Elimination sampling (Li et al., "Your Negative May not Be True
Negative: Boosting Image-Text Matching with False Negative Elimination", ACM MM 2023)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import Sampler, check_inputs
from .registry import ParamSpec, register


def _posterior_ready(posterior: Any) -> bool:
    """A posterior is usable when present and ready (FNE's running stats wait for confident pairs)."""
    return posterior is not None and bool(posterior.ready)


@register("fne")
class FNESampler(Sampler):
    """FNE's negative sampling, in the paper's form or a calibrated form.

    With ``P = posterior.prob_false_negative(s)`` and ``mu+ = posterior.pos_mean``:

    * base weight ``w = exp(-tau (s - s+)^2)`` (SimANS with ``a = tau``, ``b = 0``);
    * ``mode="paper"`` (the official ``choice_negative``): where ``1 - P < 1 - fn_cutoff``
      (i.e. ``P > fn_cutoff``) the weight *becomes* ``exp(-tau P)``. A near-certain false
      negative keeps ``exp(-0.5) = 0.61`` of the weight: the paper softens, it does not
      eliminate;
    * ``mode="calibrated"`` (default): ``w = exp(-tau (s - s+)^2) * (1 - P)``, so likely false
      negatives really vanish when the posterior is calibrated (fit it with an honest prior,
      see :func:`fnlab.posterior.fit`);
    * cut-down: ``w = 0`` where ``s <= mu+ - margin``. ``mu+`` is the posterior's positive mean (paper
      mode: the official running mean of in-batch positives), except that in calibrated mode a call may
      pass ``positive_mean=`` (a float or 0-dim tensor) in its context: the trainer passes the mean positive similarity of the
      step's pool, which follows the online and momentum encoders as they drift apart within an epoch
      (a cut fixed at the refit's positive mean held for four epochs of ``shapes-precomp`` and then
      emptied rows in the fifth, which fell back to the hardest negative: sampled false-negative rate
      0.61, validation relevant rSum 570.6 -> 462.2). Without it (the app) a pair's weight does not
      depend on the other queries of the call;
    * zero on labelled positives, hardest-non-positive fallback for empty rows (base class).

    ``posterior=None``, or a posterior whose ``ready`` attribute is false (e.g.
    :class:`fnlab.posterior.RunningGaussianStats` before 200 confident positives), gives the
    warm-up behaviour: base weights only, no cut-down.

    In training the sampler owns its posterior through the trainer's hooks
    (:meth:`start_epoch`, :meth:`observe`, :meth:`epoch_metrics`), unless one was given:

    * ``"paper"``: the official running statistics (:class:`fnlab.posterior.RunningGaussianStats`)
      over confident in-batch pairs, reset every epoch, used once more than ``min_confident``
      positives were collected, prior 1e-4 (or ``prior``);
    * ``"calibrated"``: at the start of every epoch after the warm-up, the run's posterior
      (:mod:`fnlab.posterior`, default estimator ``pu``, prior estimated unless ``prior`` is set) is
      fitted on the validation split, labels only, and applied from the first step. One posterior per
      direction (``by_direction``; the trainer says which direction a call samples, ``direction=`` in
      the call's context), each fitted where the pool is scored: queries from the online encoder,
      candidates from the encoder that fills the pool (the momentum twin when there is a queue). A
      caption-to-image posterior applied to image anchors, or an online-online fit applied to momentum
      keys, reads signals whose scale it never saw.

    Args:
        posterior: any object with ``prob_false_negative(signals) -> Tensor`` and ``pos_mean``.
        mode: ``"calibrated"`` or ``"paper"``.
        tau: sharpness of the base weight (0.5).
        margin: cut-down margin below the positive mean (0.2).
        fn_cutoff: paper mode replaces weights where ``P > fn_cutoff`` (1e-3).
        min_confident: paper mode: confident positives the running statistics need (200).
        prior: P(match) of an unlabelled pair: ``"auto"`` (paper: 1e-4; calibrated: estimated) or a float.

    Example:
        >>> from fnlab.posterior import GaussianPosterior
        >>> s = FNESampler(GaussianPosterior(0.6, 0.1, 0.1, 0.1), mode="paper")
        >>> sims = torch.tensor([[0.7, 0.5, 0.1]]); mask = torch.tensor([[True, False, False]])
        >>> s.sample(sims, sims[:, 0], mask).shape
        torch.Size([1, 1])
    """

    needs_warmup = True  # the paper's first epoch is plain VSE++ before FNE samples
    #: calibrated draws: rejection rounds before an anchor is drawn from its exact weights
    max_tries = 8
    PARAMS = (
        ParamSpec("tau", 0.5, 0.0, 20.0, "sharpness of exp(-tau (s - s+)^2)"),
        ParamSpec("margin", 0.2, 0.0, 1.0, "cut-down: zero weight where s <= mu+ - margin"),
        ParamSpec("fn_cutoff", 1e-3, 1e-6, 0.5, "paper mode: P_fn above this replaces the weight"),
        ParamSpec("min_confident", 200, 0, 5000, "paper mode: confident positives before the posterior is used",
                  integer=True),
    )

    def __init__(self, posterior: Any = None, mode: str = "calibrated", tau: float = 0.5,
                 margin: float = 0.2, fn_cutoff: float = 1e-3, min_confident: int = 200,
                 prior: float | str = "auto") -> None:
        if mode not in ("paper", "calibrated"):
            raise ValueError(f"fne: 'mode' must be 'paper' or 'calibrated', got {mode!r}")
        if tau < 0:
            raise ValueError(f"fne: 'tau' must be >= 0, got {tau}")
        if not 0 < fn_cutoff < 1:
            raise ValueError(f"fne: 'fn_cutoff' must lie in (0, 1), got {fn_cutoff}")
        from fnlab.posterior import Posterior

        if posterior is not None and not isinstance(posterior, Posterior):
            raise ValueError("fne: 'posterior' must be a fnlab.posterior.Posterior (prob_false_negative, pos_mean, "
                             f"signals, ready, ...), got {type(posterior).__name__}")
        if prior != "auto" and not (isinstance(prior, int | float) and 0 < prior < 1):
            raise ValueError(f"fne: 'prior' must be 'auto' or a number in (0, 1), got {prior!r}")
        if int(min_confident) < 0:
            raise ValueError(f"fne: 'min_confident' must be >= 0, got {min_confident}")
        self.posterior = posterior
        self.mode, self.tau, self.margin, self.fn_cutoff = mode, float(tau), float(margin), float(fn_cutoff)
        self.min_confident, self.prior = int(min_confident), prior
        self._owns_posterior = posterior is None
        self.by_direction: dict[str, Any] = {}
        self._steps = self._active = 0
        self._first_active: int | None = None
        self._warmup = True

    # ------------------------------------------------------------------ training hooks
    def start_epoch(self, epoch: int, *, warmup: bool, fit_posterior: Any = None) -> None:
        """Paper mode: fresh running statistics; calibrated mode: refit the run's posterior (after
        the warm-up), so it is applied from the first step of the epoch."""
        from fnlab.posterior import PAPER_PRIOR, RunningGaussianStats

        self._steps = self._active = 0
        self._first_active, self._warmup = None, warmup
        if not self._owns_posterior:
            return
        if self.mode == "paper":
            self.posterior = RunningGaussianStats(min_count=self.min_confident,
                                                  prior_pos=PAPER_PRIOR if self.prior == "auto" else float(self.prior))
        elif not warmup and fit_posterior is not None:
            self.by_direction = {d: fit_posterior(prior=self.prior, direction=d) for d in ("t2i", "i2t")}
            self.posterior = self.by_direction["t2i"]

    def observe(self, batch_scores: torch.Tensor, ids: torch.Tensor) -> None:
        """Feed the paper's running statistics; count the steps that sample with a posterior."""
        if self._warmup:
            return
        if self._owns_posterior and self.mode == "paper" and self.posterior is not None:
            self.posterior.update(batch_scores.detach(), ids=ids)
        self._steps += 1
        if _posterior_ready(self.posterior):
            self._active += 1
            if self._first_active is None:
                self._first_active = self._steps

    def epoch_metrics(self) -> dict[str, float]:
        """``fne_prior`` (the posterior's prior; ``fne_prior_i2t``: the image-to-text one), ``confident_pairs``
        (paper mode: positives collected), ``posterior_active`` (share of the epoch's steps that sampled with
        the posterior; 0: FNE ran as SimANS) and ``posterior_on_step`` (first such step; NaN: never)."""
        post = self.posterior
        out = {"fne_prior": float(post.prior_pos) if post is not None else float("nan"),
               **{f"fne_prior_{d}": float(p.prior_pos) for d, p in self.by_direction.items() if d != "t2i"},
               "posterior_active": 0.0 if self._warmup or not self._steps else self._active / self._steps,
               "posterior_on_step": float(self._first_active) if self._first_active is not None else math.nan}
        from fnlab.posterior import RunningGaussianStats

        if isinstance(post, RunningGaussianStats):
            out["confident_pairs"] = float(post.count)
        return out

    def prob_false_negative(self, sims: torch.Tensor, pos_sims: torch.Tensor | None = None) -> torch.Tensor | None:
        """``[B, M]`` posterior on the device and dtype of ``sims``, or None during warm-up.

        The posterior sees the signals a training pool offers: the similarity and each anchor's
        positive similarity ``pos_sims [B]`` (:func:`fnlab.posterior.prob_false_negative`)."""
        if not _posterior_ready(self.posterior):
            return None
        from fnlab.posterior import PairSignals

        p = self.posterior.prob_false_negative(
            PairSignals(sims, positive_similarity=None if pos_sims is None else pos_sims[:, None]))
        if not isinstance(p, torch.Tensor):
            p = torch.as_tensor(p)
        return p.to(device=sims.device, dtype=sims.dtype)

    def _prob_above_cut(self, sims: torch.Tensor, pos_sims: torch.Tensor, keep: torch.Tensor,
                        posterior: Any = None, pool: Any = None) -> torch.Tensor:
        """:meth:`prob_false_negative` on the pairs ``keep`` marks, 0 on the others (``[B, M]``).

        The cut-down zeroes every other weight whatever P is, so P is computed where it counts only, at a
        fraction of the cost: 7% of a 128 x 8352 pool is above the cut in a ``shapes-precomp`` run, where
        the posterior over the whole pool had taken a quarter of the step (bench/train_speed.py). Each
        pair's P depends on its own signals alone, so the values are the same; in float64 the last bit can
        differ (torch's vectorised exp and its scalar tail loop round differently), in float32 training the
        runs are identical bit for bit.

        ``pool``: a :class:`fnlab.posterior.pool.PoolEvidence` (the trainer passes one): the pairs also get
        the transitive signals the posterior was fitted on (:func:`pool_signals_of`); without it those are
        marginalised out."""
        post = self.posterior if posterior is None else posterior
        rows, cols = keep.nonzero(as_tuple=True)
        p = torch.zeros_like(sims)
        if len(rows):
            p[rows, cols] = self._prob_at(post, sims, pos_sims, rows, cols, pool)
        return p

    def _posterior_and_cut(self, sims: torch.Tensor, context: dict) -> tuple[Any, torch.Tensor]:
        """The posterior of the call's direction and the cut-down mask ``[B, M]`` (``s <= mu+ - margin``)."""
        post = self.by_direction.get(context.get("direction"), self.posterior)
        ref = context.get("positive_mean") if self.mode == "calibrated" else None
        if ref is None:
            ref = float(post.pos_mean)
        elif isinstance(ref, torch.Tensor):
            ref = ref.double()  # the threshold in float64, as a Python float would give it
        return post, sims <= ref - self.margin

    def _weights(self, sims, pos_sims, positive_mask, **context):
        w = torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2)
        if not _posterior_ready(self.posterior):
            return w
        post, cut = self._posterior_and_cut(sims, context)
        pool = context.get("pool") if self.mode == "calibrated" else None
        p = self._prob_above_cut(sims, pos_sims, ~cut, post, pool)
        if self.mode == "paper":
            replace = (1 - p) < (1 - self.fn_cutoff)
            w = torch.where(replace, torch.exp(-self.tau * p), w)
        else:
            w = w * (1 - p).clamp_min(0)
        return w.masked_fill(cut, 0.0)

    def sample(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor, k: int = 1,
               generator: torch.Generator | None = None, **context: Any) -> torch.Tensor:
        """Draw ``k`` negatives per anchor (:meth:`Sampler.sample`).

        Calibrated mode with a posterior draws one negative per anchor by rejection, in the same
        distribution as the weights ``exp(-tau (s - s+)^2) (1 - P)`` above the cut: a candidate is drawn
        from the base weights above the cut and kept with probability ``1 - P``, which needs ``P`` (and
        the pool's signals) at the drawn pairs only, about ``B / E[1 - P]`` of them, instead of at every
        pair above the cut. Anchors that keep nothing in ``max_tries`` rounds, or have nothing above the
        cut, are drawn from their exact weights (:meth:`weights`, with its hardest-negative fallback).
        """
        if self.mode != "calibrated" or int(k) != 1 or not _posterior_ready(self.posterior):
            return super().sample(sims, pos_sims, positive_mask, k=k, generator=generator, **context)
        with torch.no_grad():
            sims, pos_sims, positive_mask = check_inputs(sims, pos_sims, positive_mask, where=self.name)
            post, cut = self._posterior_and_cut(sims, context)
            pool = context.get("pool")
            base = torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2).masked_fill(cut | positive_mask, 0.0)
            todo = base.sum(dim=1) > 0
            out = torch.zeros(sims.shape[0], dtype=torch.long, device=sims.device)
            for _ in range(self.max_tries):
                rows = todo.nonzero(as_tuple=True)[0]
                if not rows.numel():
                    break
                cols = self._draw(base[rows], sims[rows], 1, generator)[:, 0]
                p = self._prob_at(post, sims, pos_sims, rows, cols, pool)
                u = torch.rand(rows.shape, generator=generator, device=sims.device, dtype=p.dtype)
                kept = u >= p  # probability 1 - P
                out[rows[kept]] = cols[kept]
                todo[rows[kept]] = False
            rest = todo | (base.sum(dim=1) <= 0)
            if bool(rest.any()):
                ctx = dict(context)
                if pool is not None:
                    ctx["pool"] = pool.rows(rest)
                out[rest] = super().sample(sims[rest], pos_sims[rest], positive_mask[rest], k=1, generator=generator,
                                           **ctx)[:, 0]
            return out[:, None]

    def _prob_at(self, post: Any, sims: torch.Tensor, pos_sims: torch.Tensor, rows: torch.Tensor,
                 cols: torch.Tensor, pool: Any) -> torch.Tensor:
        """``[N]`` P at the pairs ``(rows, cols)``, with the pool's signals where the posterior reads them."""
        from fnlab.posterior import PairSignals

        wanted = pool_signals_of(post) if pool is not None else ()
        signals = (pool.pair_signals(sims, pos_sims, wanted, rows, cols) if wanted
                   else PairSignals(sims[rows, cols], positive_similarity=pos_sims[rows]))
        return torch.as_tensor(post.prob_false_negative(signals)).to(device=sims.device, dtype=sims.dtype)


def pool_signals_of(posterior: Any) -> tuple[str, ...]:
    """The transitive signals (:data:`fnlab.posterior.pool.POOL_SIGNALS`) a fitted posterior reads
    (its ``signals``, :class:`fnlab.posterior.Posterior`)."""
    from fnlab.posterior.pool import POOL_SIGNALS

    return tuple(n for n in POOL_SIGNALS if n in posterior.signals)
