"""FNE: False Negative Elimination sampling (Li et al., "Your Negative May not Be True
Negative: Boosting Image-Text Matching with False Negative Elimination", ACM MM 2023)."""

from __future__ import annotations

import math
from typing import Any

import torch

from fnlab.retrieval.hooks import EpochContext, SampleContext

from .base import Sampler, check_inputs, draw_many, topk_mask
from .registry import register
from .semihard import below_semihard_mask, semihard_mask


def _posterior_ready(posterior: Any) -> bool:
    """A posterior is usable when present and ready (FNE's running stats wait for confident pairs)."""
    return posterior is not None and bool(posterior.ready)


def reads_density(posterior: Any) -> bool:
    """Whether a band's mean P may be read as its share of false negatives: not where the posterior's own checks
    found its share of matches unestimable or contradicted (``share_trusted``, :class:`fnlab.posterior.PUPosterior`;
    estimators without that check are taken at their word). Rules ``adapt`` and ``leave`` read density only then."""
    return bool(getattr(posterior, "share_trusted", True))


def acts_on(posterior: Any) -> bool:
    """Whether FNE lets the posterior's P change its draw: not where P is a function of similarity alone (the
    ``pu`` posterior's ``similar_only``: the data showed no other evidence of a match). Lowering weights by such a
    P would only make the draw easier, which the band or window already sets, and would remove no suspected false
    negative; FNE then draws as its base sampler does (as it did when that P was 0)."""
    return not bool(getattr(posterior, "similar_only", False))


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
    * ``rule`` (calibrated mode only) says how P acts inside the band above the cut:
      ``"soft"`` (default) multiplies by ``1 - P`` as above; ``"keep"`` eliminates: each anchor keeps the
      ``keep_fraction`` of its band with the lowest P (at least one candidate) at their base weights, the
      rest get zero; ``"drop"`` eliminates every candidate with ``P >= drop_above``; ``"adapt"`` follows the
      band's density: where the band's mean P (its estimated share of false negatives) is below ``dense_above`` it
      keeps as ``"keep"`` does, elsewhere it drops as ``"drop"`` does, so that a band made mostly of suspected false
      negatives is left for the easier negatives below it rather than thinned to its lowest-P third (``"keep"``
      keeps hard true negatives where false negatives are few; ``"drop"`` gains where they are many,
      ``bench/regime_map.py``); ``"leave"`` reads the band's density the same way but, where it is dense, leaves the
      whole band: the anchor draws below it, from the base weights (the emptied row's fallback below), and keeps as
      ``"keep"`` does elsewhere (inside a band that is mostly false negatives even a posterior trained on the ground
      truth leaves too many, ``bench/fne_pool.py`` on ``digits``; the easier candidates below it hold far fewer).
      Both density rules read density only from a posterior whose share of matches passed its own checks
      (:func:`reads_density`); elsewhere every band counts as sparse, and they keep as ``"keep"`` does. No rule
      acts on a P that is a function of similarity alone (:func:`acts_on`): the band keeps its base weights. The soft
      rule leaves
      much of the band's weight on false negatives wherever P is spread out (with ``tau = 0.5`` on cosine
      the base kernel is nearly flat, so the draw is about uniform over the band times ``1 - P``); a rank
      rule needs only P's order within each anchor, not its calibration;
    * cut-down: ``w = 0`` where ``s <= mu+ - margin``. ``mu+`` is the posterior's positive mean (paper
      mode: the official running mean of in-batch positives), except that in calibrated mode a call may
      pass ``positive_mean`` (a float or 0-dim tensor) in its context: the trainer passes the mean positive similarity of the
      step's pool, which follows the online and momentum encoders as they drift apart within an epoch
      (a cut fixed at the refit's positive mean held for four epochs of ``shapes-precomp`` and then
      emptied rows in the fifth, which fell back to the hardest negative: sampled false-negative rate
      0.61, validation relevant rSum 570.6 -> 462.2). Without it (the app) a pair's weight does not
      depend on the other queries of the call;
    * zero on labelled positives. A row left empty (nothing above the cut, or every candidate eliminated)
      falls back, in calibrated mode, to the base weights over its non-positives below the cut (outside the
      window when one is set; all its non-positives when there are none there), never to its hardest candidate,
      which is the likeliest false negative of all, and never back into the band it emptied: either would undo
      the elimination (where false negatives are dense, e.g. class-level captions, ``rule="drop"`` empties
      many bands). Paper mode keeps the official fallback to the hardest negative.

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
      direction (``by_direction``; the trainer says which direction a call samples, ``ctx.direction``), each fitted where the pool is scored: queries from the online encoder,
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
        rule: calibrated mode: ``"soft"``, ``"keep"``, ``"drop"``, ``"adapt"`` or ``"leave"`` (above).
        keep_fraction: ``rule="keep"`` (and ``"adapt"`` or ``"leave"`` in a sparse band): the share of each anchor's band kept,
            lowest P first.
        drop_above: ``rule="drop"`` (and ``"adapt"`` in a dense band): candidates with ``P >= drop_above`` are
            eliminated.
        dense_above: ``rule="adapt"`` or ``"leave"``: a band whose mean P is at least this counts as dense.
        window: ``0`` (default): the band is everything above the cut-down; ``k > 0``: the band is each
            anchor's ``k`` most similar non-positives instead (no cut-down), the hardness knob every sampler
            of the regime map shares (``bench/regime_map.py``).
        band: ``"cut"`` (default): the band is set by the cut-down (or ``window``); ``"semihard"``: each anchor's
            semi-hard negatives, ``s+ - margin < s < s+`` (FaceNet's window, :class:`SemiHardSampler`), so that
            FNE can act on the best sampler of the regime map rather than on a top-k window. An emptied
            semi-hard band falls back below it (``s <= s+ - margin``), never to the candidates above the positive.

    Example:
        >>> from fnlab.posterior import GaussianPosterior
        >>> s = FNESampler(GaussianPosterior(0.6, 0.1, 0.1, 0.1), mode="paper")
        >>> sims = torch.tensor([[0.7, 0.5, 0.1]]); mask = torch.tensor([[True, False, False]])
        >>> s.sample(sims, sims[:, 0], mask).shape
        torch.Size([1, 1])
    """

    needs_warmup = True  # the paper's first epoch is plain VSE++ before FNE samples
    #: calibrated draws: rejection tries before an anchor is drawn from its exact weights, made
    #: ``tries_per_round`` at a time (P at all of a round's draws in one call)
    max_tries = 8
    tries_per_round = 4
    #: rule 'keep': bands up to this size are drawn from their exact weights; larger ones by rejection below the
    #: P quantile of a ``quantile_sample`` of the band (P at every pair of a whole pool would cost a step)
    exact_band = 512
    quantile_sample = 256
    #: calibrated mode's rules for P inside the band
    RULES = ("soft", "keep", "drop", "adapt", "leave")
    #: the rules that rank P within each anchor's band (lowest-P share kept) and those that read its density (mean P)
    RANKED_RULES = ("keep", "adapt", "leave")
    DENSITY_RULES = ("adapt", "leave")
    #: what sets the band the rule acts in (``window`` > 0 replaces the cut by a top-k window)
    BANDS = ("cut", "semihard")

    def __init__(self, posterior: Any = None, mode: str = "calibrated", tau: float = 0.5,
                 margin: float = 0.2, fn_cutoff: float = 1e-3, min_confident: int = 200,
                 prior: float | str = "auto", rule: str = "soft", keep_fraction: float = 1 / 3,
                 drop_above: float = 0.5, dense_above: float = 0.5, window: int = 0, band: str = "cut") -> None:
        if mode not in ("paper", "calibrated"):
            raise ValueError(f"fne: 'mode' must be 'paper' or 'calibrated', got {mode!r}")
        if rule not in self.RULES:
            raise ValueError(f"fne: 'rule' must be one of {', '.join(self.RULES)}, got {rule!r}")
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"fne: 'keep_fraction' must lie in (0, 1], got {keep_fraction}")
        if not 0 < drop_above <= 1:
            raise ValueError(f"fne: 'drop_above' must lie in (0, 1], got {drop_above}")
        if not 0 < dense_above <= 1:
            raise ValueError(f"fne: 'dense_above' must lie in (0, 1], got {dense_above}")
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
        if int(window) < 0:
            raise ValueError(f"fne: 'window' must be >= 0, got {window}")
        if band not in self.BANDS:
            raise ValueError(f"fne: 'band' must be one of {', '.join(self.BANDS)}, got {band!r}")
        if band != "cut" and int(window) > 0:
            raise ValueError(f"fne: 'band' {band!r} sets the band itself: 'window' must be 0, got {window}")
        self.rule, self.keep_fraction, self.drop_above = rule, float(keep_fraction), float(drop_above)
        self.dense_above = float(dense_above)
        self.window, self.band = int(window), band
        self._owns_posterior = posterior is None
        self.by_direction: dict[str, Any] = {}
        self._steps = self._active = 0
        self._first_active: int | None = None
        self._warmup = True

    # ------------------------------------------------------------------ training hooks
    def start_epoch(self, epoch: EpochContext) -> None:
        """Paper mode: fresh running statistics; calibrated mode: refit the run's posterior (after
        the warm-up, ``epoch.fit_posterior``), so it is applied from the first step of the epoch."""
        from fnlab.posterior import PAPER_PRIOR, RunningGaussianStats

        warmup, fit_posterior = epoch.warmup, epoch.fit_posterior
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
        the posterior; 0: FNE ran as SimANS), ``posterior_on_step`` (first such step; NaN: never) and, for the
        rules that read a band's density after the warm-up, ``fne_density_read`` (share of the epoch's posteriors,
        one a direction, whose density was read: :func:`reads_density`; 0: the rule kept as ``"keep"`` does)."""
        post = self.posterior
        out = {"fne_prior": float(post.prior_pos) if post is not None else float("nan"),
               **{f"fne_prior_{d}": float(p.prior_pos) for d, p in self.by_direction.items() if d != "t2i"},
               "posterior_active": 0.0 if self._warmup or not self._steps else self._active / self._steps,
               "posterior_on_step": float(self._first_active) if self._first_active is not None else math.nan}
        posts = list(self.by_direction.values()) or ([post] if post is not None else [])
        if self.mode == "calibrated" and self.rule in self.DENSITY_RULES and not self._warmup and posts:
            out["fne_density_read"] = sum(reads_density(p) for p in posts) / len(posts)
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

    def _outside_window(self, sims: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
        """``[B, M]`` bool: everything but each anchor's ``window`` most similar non-positives."""
        return ~topk_mask(sims, positive_mask, self.window)

    def _outside_semihard(self, sims: torch.Tensor, pos_sims: torch.Tensor) -> torch.Tensor:
        """``[B, M]`` bool: everything but each anchor's semi-hard negatives (``s+ - margin < s < s+``)."""
        return ~semihard_mask(sims, pos_sims, self.margin)

    def _posterior_and_cut(self, sims: torch.Tensor, ctx: SampleContext, positive_mask: torch.Tensor,
                           pos_sims: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The posterior of the call's direction and the cut-down mask ``[B, M]`` (``s <= mu+ - margin``, or
        everything outside the anchor's top-``window`` non-positives when a window is set, or outside its
        semi-hard negatives with ``band="semihard"``)."""
        post = self.by_direction.get(ctx.direction, self.posterior)
        if self.band == "semihard":
            return post, self._outside_semihard(sims, pos_sims)
        if self.window > 0:
            return post, self._outside_window(sims, positive_mask)
        ref = ctx.positive_mean if self.mode == "calibrated" else None
        if ref is None:
            ref = float(post.pos_mean)
        elif isinstance(ref, torch.Tensor):
            ref = ref.double()  # the threshold in float64, as a Python float would give it
        return post, sims <= ref - self.margin

    def _weights(self, sims, pos_sims, positive_mask, ctx):
        w = torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2)
        if not _posterior_ready(self.posterior):
            if self.band == "semihard":
                return w.masked_fill(self._outside_semihard(sims, pos_sims), 0.0)
            return w.masked_fill(self._outside_window(sims, positive_mask), 0.0) if self.window > 0 else w
        post, cut = self._posterior_and_cut(sims, ctx, positive_mask, pos_sims)
        pool = pool_evidence(ctx) if self.mode == "calibrated" else None
        p = self._prob_above_cut(sims, pos_sims, ~cut, post, pool)
        if self.mode == "paper":
            replace = (1 - p) < (1 - self.fn_cutoff)
            w = torch.where(replace, torch.exp(-self.tau * p), w)
        elif self.rule == "soft":
            w = w * (1 - p).clamp_min(0)
        elif self.rule == "drop":
            w = w.masked_fill(p >= self.drop_above, 0.0)
        else:
            band = ~cut & ~positive_mask
            kept = self._lowest_p(p, band)
            if self.rule in self.DENSITY_RULES:
                dense = (_band_mean(p, band) >= self.dense_above) & reads_density(post)
                in_dense = band & (p < self.drop_above) if self.rule == "adapt" else torch.zeros_like(band)
                kept = torch.where(dense[:, None], in_dense, kept)  # 'leave': a dense band keeps nothing
            w = w.masked_fill(~kept, 0.0)
        return w.masked_fill(cut, 0.0)

    def _lowest_p(self, p: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """``[B, M]`` bool: in each row, the members of the ``band`` (``n`` of them) whose ``p`` is at most the
        ``ceil(keep_fraction * n)``-th lowest: that many, and every member tied with the last of them. P cannot
        tell tied candidates apart, so none of them is eliminated (where P is 0 over a whole band, e.g. below
        float32's smallest number, the whole band is kept); the large-band draw keeps ``P <= threshold`` alike."""
        n = band.sum(dim=1)
        keep_n = torch.ceil(self.keep_fraction * n.double()).long().clamp(min=1)
        ranked = p.masked_fill(~band, float("inf")).sort(dim=1).values
        kth = ranked.gather(1, (keep_n - 1).clamp_max(p.shape[1] - 1)[:, None])  # [B, 1]: the last kept P
        return band & (p <= kth)

    def _fallback_weights(self, sims, pos_sims, positive_mask, ctx):
        """Calibrated mode: an emptied row draws from the base weights over its non-positives outside the band
        (below the cut, or outside the window), so what the rule eliminated stays eliminated; a row with nothing
        outside the band draws from the base weights over all its non-positives."""
        if self.mode == "paper":
            return None
        base = torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2)
        if not _posterior_ready(self.posterior):
            return base
        if self.band == "semihard":  # below the band: never the candidates above the positive
            cut = below_semihard_mask(sims, pos_sims, self.margin)
        else:
            _, cut = self._posterior_and_cut(sims, ctx, positive_mask, pos_sims)
        outside = base.masked_fill(~cut | positive_mask, 0.0)
        return torch.where((outside.sum(dim=1) > 0)[:, None], outside, base)

    def sample(self, sims: torch.Tensor, pos_sims: torch.Tensor, positive_mask: torch.Tensor, k: int = 1,
               generator: torch.Generator | None = None, ctx: SampleContext | None = None,
               **fields: Any) -> torch.Tensor:
        """Draw ``k`` negatives per anchor (:meth:`Sampler.sample`).

        Calibrated mode with a posterior draws one negative per anchor by rejection, in the same
        distribution as the weights ``exp(-tau (s - s+)^2) (1 - P)`` above the cut: a candidate is drawn
        from the base weights above the cut and kept with probability ``1 - P``, which needs ``P`` (and
        the pool's signals) at the drawn pairs only instead of at every pair above the cut. The tries are
        made :attr:`tries_per_round` at a time: independent draws with their P in one call, the first kept one
        taken (the law of trying one after another). Anchors that keep nothing in ``max_tries`` tries, or have
        nothing above the cut, are drawn from their exact weights (:meth:`weights`; an emptied row falls back to the base weights).
        ``rule="drop"`` draws the same way and keeps a candidate when ``P < drop_above``. ``rule="keep"`` draws a
        band of at most :attr:`exact_band` candidates from its exact weights; a larger band (a wide window, the
        whole pool) keeps a draw when its P is at most the ``keep_fraction`` quantile of P over a uniform sample of
        :attr:`quantile_sample` band members: about the same distribution (the quantile is estimated), with P at
        a few hundred pairs per anchor instead of thousands. ``rule="adapt"`` draws as ``"keep"`` does, with the
        band's density read off the same sample; ``rule="leave"`` too, and an anchor whose sample says dense draws from
        its fallback weights below the band at once.
        """
        if self.mode != "calibrated" or int(k) != 1 or not _posterior_ready(self.posterior):
            return super().sample(sims, pos_sims, positive_mask, k=k, generator=generator, ctx=ctx, **fields)
        ctx = self._context(ctx, fields, sims)
        with torch.no_grad():
            sims, pos_sims, positive_mask = check_inputs(sims, pos_sims, positive_mask, where=self.name)
            post, cut = self._posterior_and_cut(sims, ctx, positive_mask, pos_sims)
            pool = pool_evidence(ctx)
            base = torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2).masked_fill(cut | positive_mask, 0.0)
            todo = base.sum(dim=1) > 0
            threshold = None
            ranked = self.rule in self.RANKED_RULES
            if ranked:  # small bands: the exact weights; large ones: P below a per-row threshold
                todo &= (base > 0).sum(dim=1) > self.exact_band
                threshold = self._band_thresholds(post, sims, pos_sims, base > 0, todo, generator, pool)
            out = torch.zeros(sims.shape[0], dtype=torch.long, device=sims.device)
            if self.rule == "leave" and threshold is not None:  # a dense band is left: draw below it at once
                left = todo & torch.isneginf(threshold)
                if bool(left.any()):
                    rows = left.nonzero(as_tuple=True)[0]
                    fb = self._fallback_weights(sims[rows], pos_sims[rows], positive_mask[rows], ctx.rows(left))
                    out[rows] = self._draw(fb.masked_fill(positive_mask[rows], 0.0), sims[rows], 1, generator)[:, 0]
                    todo &= ~left
            tried = 0
            while tried < self.max_tries:
                rows = todo.nonzero(as_tuple=True)[0]
                if not rows.numel():
                    break
                t = min(int(self.tries_per_round), self.max_tries - tried)
                w = base[rows]
                cols = draw_many(w.float() if w.dtype == torch.float64 else w, t, generator)  # [R, t]
                p = self._prob_at(post, sims, pos_sims, rows[:, None].expand(-1, t).reshape(-1), cols.reshape(-1),
                                  pool).reshape(cols.shape)
                if self.rule == "drop":
                    kept = p < self.drop_above
                elif ranked:
                    kept = p <= threshold[rows][:, None]
                else:
                    u = torch.rand(cols.shape, generator=generator, device=sims.device, dtype=p.dtype)
                    kept = u >= p  # probability 1 - P
                hit = kept.any(dim=1)
                first = kept.to(torch.uint8).argmax(dim=1)  # the first kept try of each row
                out[rows[hit]] = cols[hit, first[hit]]
                todo[rows[hit]] = False
                tried += t
            rest = todo | (base.sum(dim=1) <= 0)
            if ranked:
                rest |= (base > 0).sum(dim=1) <= self.exact_band
            if bool(rest.any()):
                out[rest] = super().sample(sims[rest], pos_sims[rest], positive_mask[rest], k=1, generator=generator,
                                           ctx=ctx.rows(rest))[:, 0]
            return out[:, None]

    def _band_thresholds(self, post: Any, sims: torch.Tensor, pos_sims: torch.Tensor, band: torch.Tensor,
                         rows_mask: torch.Tensor, generator: torch.Generator | None, pool: Any) -> torch.Tensor:
        """``[B]`` for the rows ``rows_mask`` marks: the ``keep_fraction`` quantile of P over a uniform sample of
        ``quantile_sample`` members of the row's band (``band [B, M]`` bool), so that the 'keep' rule can draw by
        rejection (keep a draw when its P is at most the threshold) with P at the sampled and drawn pairs only.
        Rule 'adapt': where the sample's mean P is at least ``dense_above`` the threshold is the largest value
        below ``drop_above`` instead (a draw is kept when ``P < drop_above``); rule 'leave': ``-inf`` there (the band
        is left)."""
        out = torch.full((sims.shape[0],), float("inf"), dtype=sims.dtype, device=sims.device)
        rows = rows_mask.nonzero(as_tuple=True)[0]
        if not rows.numel():
            return out
        keys = torch.rand(band[rows].shape, generator=generator, device=sims.device).masked_fill(~band[rows], -1.0)
        n = min(self.quantile_sample, band.shape[1])
        cols = keys.topk(n, dim=1).indices  # [R, n]: a uniform sample of each band (bands exceed n here)
        p = self._prob_at(post, sims, pos_sims, rows[:, None].expand_as(cols).reshape(-1), cols.reshape(-1), pool)
        kth = max(1, math.ceil(self.keep_fraction * n))
        p = p.reshape(cols.shape)
        out[rows] = p.kthvalue(kth, dim=1).values
        if not reads_density(post):
            return out
        if self.rule == "leave":
            out[rows] = torch.where(p.mean(dim=1) >= self.dense_above, -math.inf, out[rows])
        if self.rule == "adapt":
            below = torch.nextafter(torch.tensor(self.drop_above, dtype=out.dtype, device=out.device),
                                    torch.tensor(-math.inf, dtype=out.dtype, device=out.device))
            out[rows] = torch.where(p.mean(dim=1) >= self.dense_above, below, out[rows])
        return out

    def _prob_at(self, post: Any, sims: torch.Tensor, pos_sims: torch.Tensor, rows: torch.Tensor,
                 cols: torch.Tensor, pool: Any) -> torch.Tensor:
        """``[N]`` P at the pairs ``(rows, cols)``, with the pool's signals where the posterior reads them; 0 where
        FNE does not act on the posterior (:func:`acts_on`), so every rule keeps the band's base weights."""
        from fnlab.posterior import PairSignals

        if not acts_on(post):
            return torch.zeros(rows.shape, device=sims.device, dtype=sims.dtype)
        wanted = pool_signals_of(post) if pool is not None else ()
        signals = (pool.pair_signals(sims, pos_sims, wanted, rows, cols) if wanted
                   else PairSignals(sims[rows, cols], positive_similarity=pos_sims[rows]))
        return torch.as_tensor(post.prob_false_negative(signals)).to(device=sims.device, dtype=sims.dtype)


def _band_mean(p: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean of ``p [B, M]`` over each row's ``band [B, M]`` (0 where the band is empty)."""
    n = band.sum(dim=1).clamp_min(1)
    return p.masked_fill(~band, 0.0).sum(dim=1) / n


def pool_evidence(ctx: SampleContext) -> Any:
    """The pool's transitive evidence (:class:`fnlab.posterior.pool.PoolEvidence`) built from the context's
    features and ids, once per context; ``None`` where the context has no pool (the app's playground)."""
    if not ctx.has_pool:
        return None
    from fnlab.posterior.pool import PoolEvidence

    return ctx.memo("pool_evidence", lambda: PoolEvidence(ctx.anchors, ctx.candidates, ctx.partners, ctx.candidate_ids,
                                                          ctx.partner_ids, ctx.anchor_ids, ctx.positive_mask,
                                                          anchor_view=ctx.anchor_view,
                                                          candidate_view=ctx.candidate_view,
                                                          partner_view=ctx.partner_view,
                                                          candidate_keys=ctx.candidate_keys))


def pool_signals_of(posterior: Any) -> tuple[str, ...]:
    """The transitive signals (:data:`fnlab.posterior.pool.POOL_SIGNALS`) a fitted posterior reads
    (its ``signals``, :class:`fnlab.posterior.Posterior`)."""
    from fnlab.posterior.pool import POOL_SIGNALS

    return tuple(n for n in POOL_SIGNALS if n in posterior.signals)
