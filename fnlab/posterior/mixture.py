"""Two-component mixture on the similarity alone, fitted by EM (estimator ``"mixture"``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fnlab.core.registry import ParamSpec
from fnlab.posterior.base import Status, read_numbers
from fnlab.posterior.gaussian import ArrayLike, GaussianPosterior

#: the prior bounds of the EM; a prior that ends within a factor of 1.1 of either is not an estimate
PRIOR_BOUNDS = (1e-7, 0.5)


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

    PARAMS = (ParamSpec("n_random", 50_000, 1000, 1_000_000, "uniform unlabelled pairs in the fit sample",
                        integer=True),)

    @property
    def estimator(self) -> str:
        return "mixture"

    @property
    def status(self) -> Status:
        """Calibrated unless the EM stopped before converging or its prior ran to a bound."""
        return mixture_status(self.prior_pos, self.converged_, self.n_iter_)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MixturePosterior:
        """Rebuild from :meth:`params`.

        Raises:
            ValueError: a missing or non-numeric field.
        """
        values = read_numbers(params, ("pos_mean", "pos_std", "neg_mean", "neg_std", "prior_pos"))
        return cls(**values, n_iter_=int(params.get("n_iter", 0)), converged_=bool(params.get("converged", False)),
                   log_likelihood_=float(params.get("log_likelihood", float("nan"))), anchored_positive=True)

    @classmethod
    def fit_context(cls, ctx: Any, *, prior: float | str = "auto", seed: int = 0,
                    n_random: int = 50_000) -> MixturePosterior:
        """Fit on a :class:`fnlab.posterior.signals.PairContext`: labelled pairs and ``n_random``
        uniformly drawn unlabelled pairs, positive component anchored on the labelled pairs."""
        _, _, pos = ctx.positive_similarities()
        uq, uc = ctx.draw_unlabelled(n_random, np.random.default_rng(seed))
        unl = ctx.similarity(uq, uc)
        return cls.fit_em(pos, unl, neg_sims=unl, prior=None if prior == "auto" else float(prior),
                          anchored_positive=True)

    @classmethod
    def fit_em(cls, pos_sims: ArrayLike, unlabelled_sims: ArrayLike, *, neg_sims: ArrayLike | None = None,
               prior: float | None = None, anchored_positive: bool = False, anchor_weight: float = 1.0,
               max_iter: int = 300, tol: float = 1e-6, min_std: float = 1e-3,
               prior_bounds: tuple[float, float] = PRIOR_BOUNDS) -> MixturePosterior:
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


def mixture_status(prior: float, converged: bool, n_iter: int) -> Status:
    """The status of a one-dimensional EM fit: uncalibrated when it did not converge (``n_iter`` > 0:
    a fitted model) or when its prior ran to a bound of :data:`PRIOR_BOUNDS`."""
    lo, hi = PRIOR_BOUNDS
    if prior <= lo * 1.1 or prior >= hi / 1.1:
        return Status(False, f"the mixture's prior ran to its bound ({prior:.2g}): no separate match component")
    if n_iter > 0 and not converged:
        return Status(False, f"the EM stopped unconverged after {n_iter} iterations")
    return Status()


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


