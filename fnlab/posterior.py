"""False-negative posteriors: P(false negative | similarity).

FNE (Li et al., ACM MM 2023, Sec. 3.2) models the similarity of matching pairs as
N(mu+, var+) and of non-matching pairs as N(mu-, var-), and applies Bayes' rule with
a prior P(pos):

    P_fn(s) = P(pos) N(s; mu+, var+) / (P(pos) N(s; mu+, var+) + (1 - P(pos)) N(s; mu-, var-))

The official code fixes P(pos) = 1/10000, i.e. ``N+ / (N+ + 9999 N-)``.

What this module offers:

* :class:`GaussianPosterior`: the paper's posterior (moments fit, fixed prior);
* :class:`RunningGaussianStats`: the paper's running statistics over confident pairs,
  usable directly as the ``fne`` sampler's posterior;
* :class:`MixturePosterior`: a better-calibrated estimator, a two-component mixture fitted by
  EM on unlabelled candidate similarities that also estimates the prior;
* :func:`estimators`, :func:`fit_posterior`, :func:`from_params`.

Every posterior has ``prob_false_negative(sims)`` (same shape), ``pos_mean`` and ``params()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | float


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def normal_log_pdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """log N(x; mean, std^2), elementwise."""
    var = std * std
    return -((x - mean) ** 2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)


@dataclass
class GaussianPosterior:
    """Two-Gaussian posterior of FNE.

    Args:
        pos_mean, pos_std: mean and standard deviation of labelled-positive similarities.
        neg_mean, neg_std: mean and standard deviation of negative similarities.
        prior_pos: P(pos), the prior that a candidate is a match (paper: 1e-4).

    Example:
        >>> post = GaussianPosterior(0.6, 0.1, 0.1, 0.1, prior_pos=1e-4)
        >>> float(post.prob_false_negative(torch.tensor([0.6]))) > 0.9
        True
    """

    pos_mean: float
    pos_std: float
    neg_mean: float
    neg_std: float
    prior_pos: float = 1e-4

    def __post_init__(self) -> None:
        if not (self.pos_std > 0 and self.neg_std > 0):
            raise ValueError(f"standard deviations must be positive, got pos_std={self.pos_std}, neg_std={self.neg_std}")
        if not (0.0 < self.prior_pos < 1.0):
            raise ValueError(f"prior_pos must lie in (0, 1), got {self.prior_pos}")

    @classmethod
    def fit(cls, pos_sims: ArrayLike, neg_sims: ArrayLike, *, prior_pos: float = 1e-4,
            min_std: float = 1e-3) -> GaussianPosterior:
        """Fit both Gaussians by moments on samples of positive and negative similarities.

        Raises:
            ValueError: either sample has fewer than 2 finite values.
        """
        pos = _as_tensor(pos_sims).double().flatten()
        neg = _as_tensor(neg_sims).double().flatten()
        pos, neg = pos[torch.isfinite(pos)], neg[torch.isfinite(neg)]
        if pos.numel() < 2 or neg.numel() < 2:
            raise ValueError(f"need at least 2 positive and 2 negative similarities, got {pos.numel()} and {neg.numel()}")
        return cls(
            pos_mean=float(pos.mean()), pos_std=max(float(pos.std()), min_std),
            neg_mean=float(neg.mean()), neg_std=max(float(neg.std()), min_std),
            prior_pos=prior_pos,
        )

    def log_odds(self, sims: ArrayLike) -> torch.Tensor:
        """log P(pos | s) - log P(neg | s), in log space (stable in float32; float64 input stays float64)."""
        s = _as_tensor(sims)
        work = s if s.dtype in (torch.float32, torch.float64) else s.float()
        # The difference of two Gaussian log-densities is a quadratic in s. Written around the
        # midpoint of the two means it is evaluated in a few fused passes (this is the hot path of
        # the FNE sampler) without the cancellation of the raw polynomial.
        mid = 0.5 * (self.pos_mean + self.neg_mean)
        dp, dn = self.pos_mean - mid, self.neg_mean - mid
        ip, in_ = 0.5 / self.pos_std**2, 0.5 / self.neg_std**2
        quad = in_ - ip
        lin = 2.0 * (ip * dp - in_ * dn)
        const = (in_ * dn * dn - ip * dp * dp + math.log(self.neg_std / self.pos_std)
                 + math.log(self.prior_pos) - math.log1p(-self.prior_pos))
        t = work - mid
        return (t * quad).add_(lin).mul_(t).add_(const)

    def prob_false_negative(self, sims: ArrayLike) -> torch.Tensor:
        """P(false negative | s) for each similarity; same shape and device as ``sims``.

        Returns float32 for float32 (or float16) input, float64 for float64 input.
        """
        s = _as_tensor(sims)
        out = self.log_odds(s).sigmoid_()
        return out.to(s.dtype if s.is_floating_point() and s.dtype != torch.float16 else torch.float32)

    def params(self) -> dict[str, Any]:
        """The fitted values; :func:`from_params` rebuilds the posterior from them."""
        return {"estimator": self.estimator, "pos_mean": self.pos_mean, "pos_std": self.pos_std, "neg_mean": self.neg_mean,
                "neg_std": self.neg_std, "prior_pos": self.prior_pos}

    @property
    def estimator(self) -> str:
        return "gaussian"


# ----------------------------------------------------------------------------- running stats
class RunningGaussianStats:
    """FNE's running Gaussian statistics with the confident-pair rule (official ``average_sims_scores``).

    Per batch, a pair ``(i, i)`` of the in-batch score matrix is *confident* when image ``i``'s
    top-1 caption is ``i`` and caption ``i``'s top-1 image is ``i``. Its labelled similarity
    feeds the positive statistics; its hardest in-batch negative in both directions (row ``i``
    and column ``i``, off the positives) feeds the negative statistics. The statistics are
    running over the epoch (call :meth:`reset` at each epoch start) and the posterior is used
    only once more than ``min_count`` (200) positives were collected (:attr:`ready`).

    Variance, as the official ``VarianceSims`` (``variance="paper"``): after the batch's values
    are added to the running mean, each value adds ``(x - running_mean)^2`` and
    ``var = sum / (count - 1)``. ``variance="exact"`` uses the exact sample variance instead.
    One deliberate difference: the official code masks the diagonal with 0 before taking the
    hardest negative (so a batch whose negatives are all below 0 records 0); fnlab masks with
    ``-inf`` and records the true hardest negative.

    The object is itself a posterior (``prob_false_negative``, ``pos_mean``, ``params``) built
    from the current statistics, so it can be handed to ``build("fne", posterior=stats)``.

    Args:
        min_count: positives needed before :attr:`ready` (official ``nums_right_sims`` = 200).
        prior_pos: P(pos) of the posterior (paper: 1e-4).
        variance: ``"paper"`` or ``"exact"``.
        min_std: floor on the fitted standard deviations.

    Example:
        >>> stats = RunningGaussianStats()
        >>> scores = torch.eye(4) * 0.8 + 0.1
        >>> stats.update(scores)
        4
        >>> stats.count, stats.ready
        (4, False)
    """

    def __init__(self, min_count: int = 200, prior_pos: float = 1e-4, variance: str = "paper",
                 min_std: float = 1e-3) -> None:
        if variance not in ("paper", "exact"):
            raise ValueError(f"RunningGaussianStats: 'variance' must be 'paper' or 'exact', got {variance!r}")
        if not 0 < prior_pos < 1:
            raise ValueError(f"RunningGaussianStats: 'prior_pos' must lie in (0, 1), got {prior_pos}")
        self.min_count, self.prior_pos, self.variance, self.min_std = int(min_count), float(prior_pos), variance, min_std
        self.reset()

    def reset(self) -> None:
        """Forget everything (the official code resets at each epoch)."""
        # per side: [count, sum, paper_var_sum, sum_of_squares]
        self._acc = {"pos": [0, 0.0, 0.0, 0.0], "neg": [0, 0.0, 0.0, 0.0]}

    # --------------------------------------------------------------------- updates
    @staticmethod
    def confident_pairs(scores: torch.Tensor, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's confident-pair rule on one batch.

        Args:
            scores: ``[B, B]``, ``scores[i, j]`` = image ``i`` . caption ``j``; ``(i, i)`` labelled.
            ids: optional ``[B]`` item ids: entries sharing an id are positives of each other
                (a top-1 hit on any of them counts as correct and none is a negative). ``None``:
                only the diagonal is positive, as in the official code.

        Returns:
            ``(pos [P], neg [2P])``: confident pairs' labelled similarities, then their hardest
            negatives image-to-text followed by text-to-image (``-inf`` ones dropped).
        """
        if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
            raise ValueError(f"RunningGaussianStats.update: 'sims_batch' must be square [B, B], got {tuple(scores.shape)}")
        scores = scores.detach()
        b = scores.shape[0]
        ar = torch.arange(b, device=scores.device)
        if ids is None:
            same = torch.eye(b, dtype=torch.bool, device=scores.device)
        else:
            ids = ids.to(scores.device).reshape(-1)
            if ids.shape != (b,):
                raise ValueError(f"RunningGaussianStats.update: 'ids' must have shape [{b}], got {tuple(ids.shape)}")
            same = ids[:, None] == ids[None, :]
        ok = same[ar, scores.argmax(1)] & same[scores.argmax(0), ar]
        masked = scores.masked_fill(same, float("-inf"))
        neg = torch.cat([masked.max(1).values[ok], masked.max(0).values[ok]])
        return scores.diagonal()[ok], neg[torch.isfinite(neg)]

    def _add(self, side: str, x: torch.Tensor) -> None:
        x = x.detach().double().flatten().cpu()
        x = x[torch.isfinite(x)]
        if x.numel() == 0:
            return
        acc = self._acc[side]
        acc[0] += int(x.numel())
        acc[1] += float(x.sum())
        mean = acc[1] / acc[0]
        acc[2] += float(((x - mean) ** 2).sum())
        acc[3] += float((x * x).sum())

    def update(self, sims_or_pos: torch.Tensor, neg_sims: torch.Tensor | None = None, *,
               ids: torch.Tensor | None = None) -> int:
        """Add one batch; returns the number of positives added.

        Two forms:

        * ``update(sims_batch [B, B], ids=None)``: applies :meth:`confident_pairs`;
        * ``update(pos_sims [P], neg_sims [N])``: adds already-selected similarities.
        """
        if neg_sims is None:
            pos, neg = self.confident_pairs(sims_or_pos, ids)
        else:
            pos, neg = sims_or_pos, neg_sims
        self._add("pos", pos)
        self._add("neg", neg)
        return int(torch.isfinite(pos.detach()).sum()) if pos.numel() else 0

    # ------------------------------------------------------------------ statistics
    @property
    def count(self) -> int:
        """Positives collected since the last reset."""
        return self._acc["pos"][0]

    @property
    def ready(self) -> bool:
        """True once more than ``min_count`` positives (and 2 negatives) were collected."""
        return self.count > self.min_count and self._acc["neg"][0] >= 2

    def _moments(self, side: str) -> tuple[float, float]:
        n, s, paper_ss, ss = self._acc[side]
        if n == 0:
            return 0.0, 1.0
        mean = s / n
        if n < 2:
            return mean, 1.0
        var = paper_ss / (n - 1) if self.variance == "paper" else max(ss - n * mean * mean, 0.0) / (n - 1)
        return mean, max(math.sqrt(max(var, 0.0)), self.min_std)

    @property
    def pos_mean(self) -> float:
        return self._moments("pos")[0]

    def posterior(self, prior_pos: float | None = None) -> GaussianPosterior:
        """The :class:`GaussianPosterior` of the current statistics."""
        (pm, ps), (nm, ns) = self._moments("pos"), self._moments("neg")
        return GaussianPosterior(pm, ps, nm, ns, prior_pos=self.prior_pos if prior_pos is None else prior_pos)

    def prob_false_negative(self, sims: ArrayLike) -> torch.Tensor:
        return self.posterior().prob_false_negative(sims)

    def params(self) -> dict[str, Any]:
        return {"estimator": "gaussian", **self.posterior().params(), "count": self.count}


# ----------------------------------------------------------------------------- mixture EM
@dataclass
class MixturePosterior(GaussianPosterior):
    """Two-Gaussian mixture fitted by EM on unlabelled candidate similarities.

    Model: an unlabelled candidate's similarity is ``pi N(mu+, var+) + (1 - pi) N(mu-, var-)``;
    ``pi`` (the prior of a match among the candidates) is estimated, not fixed at 1e-4 as in
    FNE (Li et al., ACM MM 2023, Sec. 3.2). Semi-supervised EM: labelled positives belong to
    the positive component with responsibility 1 (weight ``anchor_weight`` each), so the
    positive component is anchored on them but can shift towards the false negatives seen
    among the candidates; the negative component starts from ``neg_sims`` (or a robust fit of
    the unlabelled sample) and is re-estimated on the unlabelled sample only.
    ``P_fn(s) = pi N+(s) / (pi N+(s) + (1 - pi) N-(s))`` is then calibrated for candidates drawn
    like the unlabelled sample (same pool, e.g. each query's top-k negatives).

    Fitted attributes end in ``_``: ``n_iter_``, ``converged_``, ``log_likelihood_``.
    """

    n_iter_: int = 0
    converged_: bool = False
    log_likelihood_: float = float("nan")
    anchored_positive: bool = False

    @property
    def estimator(self) -> str:
        return "anchored" if self.anchored_positive else "mixture"

    @classmethod
    def fit_em(cls, pos_sims: ArrayLike, unlabelled_sims: ArrayLike, *, neg_sims: ArrayLike | None = None,
               prior: float | None = None, anchored_positive: bool = False, anchor_weight: float = 1.0,
               max_iter: int = 300, tol: float = 1e-6, min_std: float = 1e-3,
               prior_bounds: tuple[float, float] = (1e-7, 0.5)) -> MixturePosterior:
        """Fit by EM (vectorised numpy, float64, single-threaded: no thread pool to contend for).

        Each step costs a handful of passes over the unlabelled sample: the E-step's log-odds is
        a quadratic in ``s`` (one Horner evaluation), the responsibilities a logistic of it, and
        the M-step needs only ``sum r``, ``sum r s`` and ``sum r s^2`` (one matrix-vector
        product); the labelled positives enter through their precomputed sums. Values are
        centred on the sample mean first so that the variance sums are well conditioned.

        Convergence: stop when no parameter moves by more than ``tol`` in one step: means and
        standard deviations absolutely, the prior relatively (``|d pi| <= tol * pi``, as it
        can be tiny). ``log_likelihood_`` is the log-likelihood of the unlabelled sample under
        the returned parameters.

        Args:
            pos_sims: ``[P]`` labelled positive similarities (P >= 2).
            unlabelled_sims: ``[U]`` candidate similarities (U >= 2).
            neg_sims: optional ``[N]`` negatives, used to initialise the negative component.
            prior: fixed ``pi``; ``None`` estimates it.
            anchored_positive: keep the positive component at the moments of ``pos_sims``
                (positive-unlabelled "selected completely at random" assumption).
            anchor_weight: weight of each labelled positive in the positive component's M-step.
            max_iter: most EM steps.
            tol: parameter-change tolerance (see above).

        Raises:
            ValueError: too few finite values, or a prior outside (0, 1).
        """
        pos = _clean(pos_sims, "pos_sims", 2)
        unl = _clean(unlabelled_sims, "unlabelled_sims", 2)
        if prior is not None and not 0 < prior < 1:
            raise ValueError(f"prior must lie in (0, 1), got {prior}")
        lo, hi = prior_bounds
        n_lab, n_unl = pos.size, unl.size
        mp0 = float(pos.mean())
        mu_p, sd_p = mp0, max(float(pos.std(ddof=1)), min_std)
        neg = None if neg_sims is None else _clean(neg_sims, "neg_sims", 0)
        if neg is not None and neg.size >= 2:
            mu_n, sd_n = float(neg.mean()), max(float(neg.std(ddof=1)), min_std)
        else:
            med = float(np.median(unl))
            mu_n, sd_n = med, max(1.4826 * float(np.median(np.abs(unl - med))), min_std)
        pi = float(prior) if prior is not None else 0.05

        # centred coordinates: x = s - c; parameters theta = (pi, mu+, sd+, mu-, sd-)
        c = float(unl.mean())
        x = unl - c
        moments = np.stack([np.ones_like(x), x, x * x])  # [3, U]: sum r, sum r x, sum r x^2 in one product
        sx, sxx = float(x.sum()), float(x @ x)
        aw = float(anchor_weight)
        lab_n, lab_d = aw * n_lab, mp0 - c  # labelled positives: weight, centred mean
        lab_ss = aw * float(((pos - mp0) ** 2).sum())  # weighted sum of squares about their mean
        free_pi, free_pos = prior is None, not anchored_positive
        bufs = np.empty_like(x), np.empty_like(x), np.empty_like(x)

        def em_step(th: np.ndarray, want_obj: bool) -> tuple[np.ndarray, float]:
            """One EM map ``theta -> F(theta)``; also the objective at ``theta`` when asked."""
            pi_, mp, sp, mn, sn = (float(v) for v in th)
            d, t, u = bufs
            # E-step: d(x) = log(pi N+(x)) - log((1 - pi) N-(x)) = (a x + b) x + k; r = sigmoid(d)
            ip, in_ = 1.0 / (sp * sp), 1.0 / (sn * sn)
            np.multiply(x, 0.5 * (in_ - ip), out=d)
            d += mp * ip - mn * in_
            d *= x
            d += 0.5 * (mn * mn * in_ - mp * mp * ip) + math.log(sn / sp) + math.log(pi_) - math.log1p(-pi_)
            obj = math.nan
            if not want_obj:
                np.negative(d, out=t)
                np.exp(t, out=t)  # e^{-d}; inf where d < -709, giving r = 0
                t += 1.0
                np.reciprocal(t, out=t)
            else:  # sum log(pi N+ + (1 - pi) N-) = sum [log((1 - pi) N-) + softplus(d)], overflow-free
                np.abs(d, out=t)
                np.negative(t, out=t)
                np.exp(t, out=t)  # e^{-|d|}
                obj = float(np.log1p(t, out=u).sum()) + float(np.maximum(d, 0.0, out=u).sum())
                obj += (-(sxx - 2 * mn * sx + n_unl * mn * mn) * 0.5 * in_
                        + n_unl * (math.log1p(-pi_) - math.log(sn) - 0.5 * math.log(2 * math.pi)))
                if free_pos:  # the labelled positives' term of the semi-supervised likelihood
                    obj -= lab_n * math.log(sp) + (lab_ss + lab_n * (lab_d - mp) ** 2) * 0.5 * ip
                np.add(t, 1.0, out=u)
                np.copyto(t, 1.0, where=d >= 0)
                np.divide(t, u, out=t)
            r0, r1, r2 = (float(v) for v in moments @ t)
            # M-step
            new = np.array([pi_, mp, sp, 0.0, 0.0])
            if free_pi:
                new[0] = min(max(r0 / n_unl, lo), hi)
            if free_pos:
                wsum = lab_n + r0
                m = (lab_n * lab_d + r1) / wsum
                ss = lab_ss + lab_n * (lab_d - m) ** 2 + r2 - 2 * m * r1 + m * m * r0
                new[1], new[2] = m, max(math.sqrt(max(ss, 0.0) / wsum), min_std)
            q0, q1, q2 = n_unl - r0, sx - r1, sxx - r2
            qsum = max(q0, 1e-12)
            m = q1 / qsum
            new[3], new[4] = m, max(math.sqrt(max(q2 - 2 * m * q1 + m * m * q0, 0.0) / qsum), min_std)
            return new, obj

        def small(old: np.ndarray, new: np.ndarray) -> bool:
            return bool(np.abs(new[1:] - old[1:]).max() <= tol and abs(new[0] - old[0]) <= tol * old[0])

        # SQUAREM (Varadhan & Roland 2008, SqS3) around the EM map: two EM steps, one extrapolated
        # point, one stabilising EM step from it; kept only if it does not lower the likelihood
        th = np.array([pi, mu_p - c, sd_p, mu_n - c, sd_n])
        floor = np.array([lo if free_pi else pi, -np.inf, min_std, -np.inf, min_std])
        ceil = np.array([hi if free_pi else pi, np.inf, np.inf, np.inf, np.inf])
        converged, it = False, 0
        with np.errstate(over="ignore"):
            while it < max_iter:
                th1, _ = em_step(th, False)
                it += 1
                if small(th, th1) or it >= max_iter:
                    th, converged = th1, small(th, th1)
                    break
                th2, obj1 = em_step(th1, True)
                it += 1
                if small(th1, th2) or it >= max_iter:
                    th, converged = th2, small(th1, th2)
                    break
                r, v = th1 - th, th2 - 2 * th1 + th
                nv = float(np.linalg.norm(v))
                alpha = -float(np.linalg.norm(r)) / nv if nv > 0 else -1.0
                if alpha >= -1.0:
                    th = th2
                    continue
                th3, obj3 = em_step(np.clip(th - 2 * alpha * r + alpha * alpha * v, floor, ceil), True)
                it += 1
                th = th3 if math.isfinite(obj3) and obj3 >= obj1 else th2
        pi, mu_p, sd_p, mu_n, sd_n = (float(v) for v in th)
        la = -0.5 * ((x - mu_p) / sd_p) ** 2 - math.log(sd_p) + math.log(pi)
        lb = -0.5 * ((x - mu_n) / sd_n) ** 2 - math.log(sd_n) + math.log1p(-pi)
        ll = float(np.logaddexp(la, lb).sum()) - 0.5 * n_unl * math.log(2 * math.pi)
        return cls(pos_mean=mu_p + c, pos_std=sd_p, neg_mean=mu_n + c, neg_std=sd_n, prior_pos=pi, n_iter_=it,
                   converged_=converged, log_likelihood_=ll, anchored_positive=anchored_positive)

    def params(self) -> dict[str, Any]:
        return {"estimator": self.estimator, **super().params(), "n_iter": self.n_iter_,
                "converged": self.converged_, "log_likelihood": self.log_likelihood_}


def _clean(x: ArrayLike, name: str, at_least: int) -> np.ndarray:
    """Finite values of ``x`` as a flat float64 numpy array (a copy).

    Raises:
        ValueError: fewer than ``at_least`` finite values.
    """
    t = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    t = t.ravel()
    t = t[np.isfinite(t)]
    if t.size < at_least:
        raise ValueError(f"'{name}' needs at least {at_least} finite similarities, got {t.size}")
    return t


# ----------------------------------------------------------------------------- factory
PAPER_PRIOR = 1e-4

_ESTIMATORS = {
    "anchored": "two-component EM on the unlabelled candidates with the positive component fixed "
                "at the labelled positives' moments; re-estimates the negative component and the prior",
    "gaussian": "FNE's two Gaussians by moments (positives; negatives); prior fixed, or 'auto': "
                "EM on the unlabelled sample with the positive component anchored (negative "
                "component and prior re-estimated), paper prior 1e-4 without an unlabelled sample",
    "mixture": "semi-supervised two-component EM on the unlabelled candidates, positive component "
               "anchored on the labelled positives but free to move; estimates the prior",
}


def estimators() -> list[str]:
    """Names accepted by :func:`fit_posterior`."""
    return sorted(_ESTIMATORS)


def describe_estimator(name: str) -> str:
    """One line on what estimator ``name`` does."""
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; valid names: {', '.join(estimators())}")
    return _ESTIMATORS[name]


def fit_posterior(name: str, *, pos_sims: ArrayLike, neg_sims: ArrayLike,
                  unlabelled_sims: ArrayLike | None = None, prior: float | str = "auto") -> GaussianPosterior:
    """Fit a false-negative posterior by estimator name.

    Args:
        name: ``"gaussian"``, ``"anchored"`` or ``"mixture"`` (:func:`estimators`).
            ``"gaussian"`` with ``unlabelled_sims`` and ``prior="auto"`` (or any prior) fits
            like ``"anchored"``; without ``unlabelled_sims`` it is the paper's moment fit.
        pos_sims: ``[P]`` labelled positive similarities.
        neg_sims: ``[N]`` negative similarities (hardest negatives in the paper; a random sample
            of non-positive pairs is less biased).
        unlabelled_sims: ``[U]`` similarities of the candidates the posterior will be applied
            to (e.g. each query's top-k non-positives); needed for ``"mixture"`` and for an
            estimated prior.
        prior: a float P(pos) in (0, 1), or ``"auto"`` to estimate it (``"gaussian"`` without
            ``unlabelled_sims`` then uses the paper's 1e-4).

    Returns:
        a posterior with ``prob_false_negative``, ``pos_mean`` and ``params()``.

    Raises:
        ValueError: unknown name, bad prior, missing or too small samples.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> pos = 0.6 + 0.05 * torch.randn(300, generator=g)
        >>> unl = torch.cat([0.1 + 0.1 * torch.randn(3000, generator=g), 0.6 + 0.05 * torch.randn(150, generator=g)])
        >>> post = fit_posterior("mixture", pos_sims=pos, neg_sims=unl, unlabelled_sims=unl)
        >>> 0.02 < post.prior_pos < 0.08
        True
    """
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; valid names: {', '.join(estimators())}")
    if isinstance(prior, str):
        if prior != "auto":
            raise ValueError(f"'prior' must be a float in (0, 1) or 'auto', got {prior!r}")
        fixed = None
    else:
        fixed = float(prior)
        if not 0 < fixed < 1:
            raise ValueError(f"'prior' must lie in (0, 1), got {prior}")
    if name == "gaussian":
        if unlabelled_sims is None:
            return GaussianPosterior.fit(pos_sims, neg_sims, prior_pos=PAPER_PRIOR if fixed is None else fixed)
        return MixturePosterior.fit_em(pos_sims, unlabelled_sims, neg_sims=neg_sims, prior=fixed,
                                       anchored_positive=True)
    if unlabelled_sims is None:
        raise ValueError(f"estimator {name!r} needs 'unlabelled_sims' (the candidate similarities it is applied to)")
    return MixturePosterior.fit_em(pos_sims, unlabelled_sims, neg_sims=neg_sims, prior=fixed,
                                   anchored_positive=name == "anchored")


def from_params(params: dict[str, Any]) -> GaussianPosterior:
    """Rebuild a posterior from ``params()`` (e.g. a run's ``posterior.json``).

    Raises:
        ValueError: a missing or non-numeric field, or an unknown ``estimator``.
    """
    if not isinstance(params, dict):
        raise ValueError(f"posterior params must be a dict, got {type(params).__name__}")
    est = params.get("estimator", "gaussian")
    values = {}
    keys = ("pos_mean", "pos_std") if est == "relative" else ("pos_mean", "pos_std", "neg_mean", "neg_std", "prior_pos")
    for key in keys:
        if key not in params:
            raise ValueError(f"posterior params: missing field {key!r} (expected a number)")
        try:
            values[key] = float(params[key])
        except (TypeError, ValueError):
            raise ValueError(f"posterior params: field {key!r} must be a number, got {params[key]!r}") from None
    if est == "relative":
        inner = params.get("delta")
        if not isinstance(inner, dict):
            raise ValueError("posterior params: estimator 'relative' needs a 'delta' object (the posterior of s - s+)")
        return RelativePosterior(from_params(inner), pos_mean=values["pos_mean"], pos_std=values["pos_std"])
    if est == "gaussian":
        return GaussianPosterior(**values)
    if est in ("mixture", "anchored"):
        return MixturePosterior(**values, n_iter_=int(params.get("n_iter", 0)),
                                converged_=bool(params.get("converged", False)),
                                log_likelihood_=float(params.get("log_likelihood", float("nan"))),
                                anchored_positive=est == "anchored")
    raise ValueError(f"posterior params: unknown estimator {est!r}; expected one of gaussian, mixture, anchored, "
                     "relative")


# ----------------------------------------------------------------------------- per-anchor
class RelativePosterior:
    """Per-anchor posterior: P(false negative | s - s+), with ``s+`` the anchor's labelled positive.

    The FNE posterior (Li et al., ACM MM 2023, Sec. 3.2) sees one similarity scale for every anchor,
    but anchors differ: a generic caption ("a shape") is close to everything, a specific one only to
    its match, so a true match of the first can score below a near miss of the second. Measuring a
    candidate against the anchor's own positive removes that offset: ``d = s - s+``. For a true match,
    ``d`` is modelled as the difference of two independent positive similarities (so ``N(0, 2 var+)``,
    sampled from random pairs of labelled positives); the negative component and the prior are fitted
    by EM on unlabelled pairs with that component fixed (the ``"anchored"`` estimator, on ``d``).

    Args:
        delta: a posterior over ``d`` (``prob_false_negative(d)``).
        pos_mean, pos_std: moments of the labelled positive similarities (``pos_mean`` is what FNE's
            cut-down ``s <= mu+ - margin`` uses).

    Call :meth:`prob_false_negative` with ``pos_sims`` (broadcastable to ``sims``). The result never
    decreases as ``s - s+`` grows (see :meth:`_monotone_floor`).
    """

    uses_positive_similarity = True

    def __init__(self, delta: Any, *, pos_mean: float, pos_std: float) -> None:
        self.delta, self.pos_mean, self.pos_std = delta, float(pos_mean), float(pos_std)

    @property
    def prior_pos(self) -> float:
        return float(self.delta.prior_pos)

    @classmethod
    def fit(cls, pos_sims: ArrayLike, unlabelled_sims: ArrayLike, unlabelled_pos_sims: ArrayLike, *,
            prior: float | str = "auto", seed: int = 0) -> RelativePosterior:
        """Fit on labelled positives ``[P]`` and unlabelled pairs ``[U]`` with their anchors' positives ``[U]``.

        Raises:
            ValueError: mismatched lengths or too few values (as :func:`fit_posterior`).
        """
        pos = _as_tensor(pos_sims).double().flatten()
        unl = _as_tensor(unlabelled_sims).double().flatten()
        unl_pos = _as_tensor(unlabelled_pos_sims).double().flatten()
        if unl.shape != unl_pos.shape:
            raise ValueError(f"'unlabelled_sims' has {unl.numel()} values but 'unlabelled_pos_sims' has {unl_pos.numel()}")
        if pos.numel() < 2:
            raise ValueError(f"need at least 2 labelled positive similarities, got {pos.numel()}")
        g = torch.Generator().manual_seed(int(seed))
        pos_delta = pos[torch.randperm(pos.numel(), generator=g)] - pos
        delta = unl - unl_pos
        inner = fit_posterior("anchored", pos_sims=pos_delta, neg_sims=delta, unlabelled_sims=delta, prior=prior)
        return cls(inner, pos_mean=float(pos.mean()), pos_std=float(pos.std()))

    def prob_false_negative(self, sims: ArrayLike, pos_sims: ArrayLike | None = None) -> torch.Tensor:
        """P(false negative) for each similarity; ``pos_sims`` broadcasts against ``sims``.

        Raises:
            ValueError: ``pos_sims`` is missing (this posterior is relative to each anchor's positive).
        """
        if pos_sims is None:
            raise ValueError("the 'relative' posterior needs each anchor's positive similarity: "
                             "call prob_false_negative(sims, pos_sims)")
        s = _as_tensor(sims)
        d = s - _as_tensor(pos_sims).to(device=s.device, dtype=s.dtype)
        floor = self._monotone_floor()
        if floor is not None:
            d = d.clamp(min=floor)
        return self.delta.prob_false_negative(d)

    def _monotone_floor(self) -> float | None:
        """Where the positive component is the wider one, the two-Gaussian log-odds is a convex
        parabola in ``d`` and rises again in the far-negative tail, which would call candidates far
        *less* similar than the anchor's positive likely matches. Below the parabola's vertex the
        posterior is held at its minimum, so P(FN) never decreases as ``s - s+`` grows."""
        mp, sp_ = float(self.delta.pos_mean), float(self.delta.pos_std)
        mn, sn = float(self.delta.neg_mean), float(self.delta.neg_std)
        curvature = 1.0 / sn**2 - 1.0 / sp_**2
        if curvature <= 0:
            return None
        return (mn / sn**2 - mp / sp_**2) / curvature

    def params(self) -> dict[str, Any]:
        return {"estimator": "relative", "pos_mean": self.pos_mean, "pos_std": self.pos_std,
                "prior_pos": self.prior_pos, "delta": self.delta.params()}

    @property
    def estimator(self) -> str:
        return "relative"


def prob_false_negative(posterior: Any, sims: ArrayLike, pos_sims: ArrayLike | None = None) -> torch.Tensor:
    """``posterior.prob_false_negative`` with the anchors' positive similarities where it uses them."""
    if getattr(posterior, "uses_positive_similarity", False):
        return posterior.prob_false_negative(sims, pos_sims)
    return posterior.prob_false_negative(sims)
