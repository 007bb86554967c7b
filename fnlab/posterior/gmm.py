"""The tied-covariance Gaussian mixture of the ``pu`` posterior, fitted by EM with missing values, and
Best Bin Estimation of a mixture proportion.

* :func:`fit_em`: two components (negative, positive) sharing one covariance, so the log-odds is linear
  in the features; labelled rows belong to the positive component; missing entries are handled as in
  Ghahramani & Jordan, "Supervised learning from incomplete data via an EM approach" (NIPS 1994): the
  E-step imputes each component's conditional mean and adds its conditional covariance.
  Where the positive component finds no mode of its own among the unlabelled rows, the free prior decays
  geometrically to its floor, a decade every 17-30 iterations. Once the unlabelled rows carry under
  :data:`BOUNDARY_SHARE` of the positive component's weight, its parameters are the labelled rows' and the
  negative component's the unlabelled rows', so the log-likelihood is concave in the prior alone; its optimum
  is the floor exactly when its slope there is not positive, ``sum_i w_i (f+(x_i) / f-(x_i) - 1) <= 0`` over the
  unlabelled rows. The EM then sets the prior to the floor and converges the components with it fixed: the fixed
  point the free iterations would reach, in a third to a half of the iterations.
* :func:`log_density_ratio`: ``log N+(x) - log N-(x)`` with missing entries marginalised out exactly.
* :func:`best_bin_prior`: Garg, Wu, Smola, Balakrishnan & Lipton, "Mixture proportion estimation and PU
  learning: a modern approach" (NeurIPS 2021).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import solve_triangular

__all__ = ["PRIOR_CAP", "PRIOR_FLOOR", "best_bin_prior", "fit_em", "log_density_ratio", "log_normal"]

#: the smallest and largest prior the EM may reach
PRIOR_FLOOR, PRIOR_CAP = 1e-7, 0.5

#: below this share of the positive component's weight carried by unlabelled rows, the labelled rows alone
#: decide its parameters, and :func:`fit_em` tests whether the prior's optimum is its floor (module docstring)
BOUNDARY_SHARE = 0.01


def best_bin_prior(labelled: np.ndarray, unlabelled: np.ndarray, weights: np.ndarray, *, delta: float = 0.1,
                   min_share: float = 0.05) -> float:
    """Mixture proportion of positives among unlabelled values by Best Bin Estimation (Garg, Wu,
    Smola, Balakrishnan & Lipton, "Mixture proportion estimation and PU learning: a modern approach",
    NeurIPS 2021): ``min_t (q_U(t) + c_U) / (q_P(t) - c_P)`` over upper tails ``[t, inf)``, with
    ``q_P``, ``q_U`` the shares of labelled and (weighted) unlabelled values in the tail and ``c`` their
    Hoeffding confidence terms; tails holding fewer than ``min_share`` of the labelled values are skipped.

    Shapes: ``labelled [L]``, ``unlabelled [U]``, ``weights [U]`` (NaN entries ignored). Clipped to
    ``[PRIOR_FLOOR, 0.5]``.
    """
    lab = labelled[np.isfinite(labelled)]
    ok = np.isfinite(unlabelled)
    unl, w = unlabelled[ok], weights[ok]
    if lab.size < 2 or unl.size < 2:
        return PRIOR_FLOOR
    order = np.argsort(unl)
    unl, w = unl[order], w[order]
    tail_w = np.cumsum(w[::-1])[::-1] / w.sum()  # weighted share of unlabelled values >= unl[i]
    n_eff = w.sum() ** 2 / (w * w).sum()  # effective sample size of the weighted sample
    c_u = np.sqrt(np.log(4 / delta) / (2 * n_eff))
    c_p = np.sqrt(np.log(4 / delta) / (2 * lab.size))
    best = 0.5
    for t in np.quantile(lab, np.linspace(0.0, 1.0 - min_share, 40)):
        q_p = float((lab >= t).mean())
        i = int(np.searchsorted(unl, t, side="left"))
        q_u = float(tail_w[i]) if i < unl.size else 0.0
        if q_p - c_p > 0:
            best = min(best, (q_u + c_u) / (q_p - c_p))
    return float(min(max(best, PRIOR_FLOOR), 0.5))


def log_density_ratio(x: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """Log-density ratio ``log N+(x) - log N-(x)`` per row of ``x [n, m]`` (missing entries marginalised)."""
    obs = ~np.isnan(x)
    patterns, inverse = np.unique(obs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    return (_component_stats(x, patterns, inverse, means[1], covs[1])[0]
            - _component_stats(x, patterns, inverse, means[0], covs[0])[0])


def log_normal(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """``log N(x; mean, cov)`` for rows of ``x [n, m]``."""
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False)
    return -0.5 * (z * z).sum(0) - torch.log(torch.diagonal(chol)).sum() - 0.5 * x.shape[1] * math.log(2 * math.pi)


def np_log_normal(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    chol = np.linalg.cholesky(cov)
    z = solve_triangular(chol, (x - mean).T, lower=True, check_finite=False)
    return -0.5 * (z * z).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _component_stats(x: np.ndarray, obs_patterns: np.ndarray, inverse: np.ndarray, mean: np.ndarray,
                     cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per row: log-density of its observed part, the row with missing entries imputed by the
    component's conditional mean, and per pattern the conditional covariance of the missing block
    (embedded in ``[m, m]``)."""
    n, m = x.shape
    ll = np.empty(n)
    filled = np.where(np.isnan(x), 0.0, x)
    extra = []
    for p, o in enumerate(obs_patterns):
        rows = inverse == p
        mis = ~o
        c_add = np.zeros((m, m))
        if not o.any():
            ll[rows] = 0.0
            filled[np.ix_(rows, mis)] = mean[mis]
            c_add = cov.copy()
            extra.append(c_add)
            continue
        xo = x[np.ix_(rows, o)]
        s_oo = cov[np.ix_(o, o)]
        ll[rows] = np_log_normal(xo, mean[o], s_oo)
        if mis.any():
            gain = np.linalg.solve(s_oo, cov[np.ix_(o, mis)]).T  # [mis, o]
            filled[np.ix_(rows, mis)] = mean[mis] + (xo - mean[o]) @ gain.T
            c_add[np.ix_(mis, mis)] = cov[np.ix_(mis, mis)] - gain @ cov[np.ix_(o, mis)]
        extra.append(c_add)
    return ll, filled, extra


def fit_em(lab: np.ndarray, unl: np.ndarray, weights: np.ndarray, *, prior: float | None, max_iter: int,
            tol: float, prior_bounds: tuple[float, float] = (PRIOR_FLOOR, PRIOR_CAP), ridge: float = 1e-5,
            tied: bool = True) -> tuple[float, np.ndarray, np.ndarray, int, bool]:
    """EM for the positive-unlabelled mixture with missing features (module docstring).

    ``lab [L, m]`` labelled pairs (positive component, responsibility 1), ``unl [U, m]`` unlabelled
    sample with pool weights ``weights [U]``. The labelled pairs are given, together, the weight of
    the unlabelled positives (``pi * sum(weights)``) so that neither group swamps the other, and each
    at least the weight of one sampled unlabelled row (so the anchor never fades as ``pi`` shrinks).
    Returns ``(pi, means [2, m], covs [2, m, m], iterations, converged)``.
    """
    x = np.concatenate([lab, unl])
    n_lab, m = lab.shape[0], x.shape[1]
    obs = ~np.isnan(x)
    patterns, inverse = np.unique(obs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    total_w = float(weights.sum())
    lo, hi = prior_bounds

    def moments(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        filled = np.where(obs, x, 0.0)
        cnt = (w[:, None] * obs).sum(0)
        mean = (w[:, None] * filled).sum(0) / np.maximum(cnt, 1e-300)
        dev = np.where(obs, x - mean, 0.0)
        cov = np.diag((w[:, None] * dev * dev).sum(0) / np.maximum(cnt, 1e-300))
        return mean, cov + ridge * np.eye(m)

    # start: responsibilities from the similarity alone (labelled pairs' moments against the
    # weighted unlabelled sample, prior 1%), then one moment step with missing entries skipped
    sim = x[:, 0]  # the anchor feature (margin or similarity): always first, set for every labelled pair
    lab_m, lab_s = float(np.nanmean(sim[:n_lab])), float(np.nanstd(sim[:n_lab])) + 1e-3
    seen = np.isfinite(sim[n_lab:])
    unl_m = float(np.average(sim[n_lab:][seen], weights=weights[seen]))
    unl_s = float(np.sqrt(np.average((sim[n_lab:][seen] - unl_m) ** 2, weights=weights[seen]))) + 1e-3
    pi = prior if prior is not None else 0.01
    d0 = (-0.5 * ((sim - lab_m) / lab_s) ** 2 - math.log(lab_s) + 0.5 * ((sim - unl_m) / unl_s) ** 2
          + math.log(unl_s) + math.log(pi) - math.log1p(-pi))
    r0 = 0.5 * (1.0 + np.tanh(0.5 * np.clip(np.nan_to_num(d0, nan=math.log(pi) - math.log1p(-pi)), -700, 700)))
    r0[:n_lab] = 1.0
    w0 = np.concatenate([np.full(n_lab, max(pi * total_w / max(n_lab, 1), total_w / max(weights.size, 1))), weights])
    mean_n, cov_n = moments(w0 * (1.0 - r0))
    mean_p, cov_p = moments(w0 * r0)
    means, covs = np.stack([mean_n, mean_p]), np.stack([cov_n, cov_p])
    it, converged = 0, False
    free = prior is None
    lab_w = max(pi * total_w / max(n_lab, 1), total_w / max(weights.size, 1))
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        stats = [_component_stats(x, patterns, inverse, means[k], covs[k]) for k in (0, 1)]
        llr = stats[1][0] - stats[0][0]
        if free and pi > lo and pi * total_w < BOUNDARY_SHARE * lab_w * n_lab and _optimum_at_floor(llr[n_lab:], weights):
            pi, free = lo, False  # the prior's optimum is its floor (module docstring): converge with it fixed
        d = llr + math.log(pi) - math.log1p(-pi)
        r = 0.5 * (1.0 + np.tanh(0.5 * np.clip(d, -700, 700)))  # sigmoid without overflow
        r[:n_lab] = 1.0
        new_pi = pi
        if free:
            new_pi = float(np.clip((weights * r[n_lab:]).sum() / total_w, lo, hi))
        lab_w = max(new_pi * total_w / max(n_lab, 1), total_w / max(weights.size, 1))  # floor: one sampled row each
        w_all = np.concatenate([np.full(n_lab, lab_w), weights])
        new_means, new_covs = np.empty_like(means), np.empty_like(covs)
        sums = [0.0, 0.0]
        for k, resp in ((0, 1.0 - r), (1, r)):
            a = w_all * resp
            a_sum = max(float(a.sum()), 1e-300)
            _, filled, extra = stats[k]
            mu = (a[:, None] * filled).sum(0) / a_sum
            dev = filled - mu
            cov = (a[:, None] * dev).T @ dev
            for p in range(len(patterns)):
                cov += a[inverse == p].sum() * extra[p]
            new_means[k], new_covs[k] = mu, cov
            sums[k] = a_sum
        if tied:  # one covariance for both components: the log-odds is linear in x (a logistic model)
            shared = (new_covs[0] + new_covs[1]) / (sums[0] + sums[1])
            new_covs[0] = new_covs[1] = shared
        else:
            new_covs[0] /= sums[0]
            new_covs[1] /= sums[1]
        for k in (0, 1):
            new_covs[k] = 0.5 * (new_covs[k] + new_covs[k].T) + ridge * np.eye(m)
        change = max(float(np.abs(new_means - means).max()), float(np.abs(new_covs - covs).max()),
                     abs(new_pi - pi) / max(pi, 1e-12) * 1e-2)
        means, covs, pi = new_means, new_covs, new_pi
        if change < tol:
            converged = True
            break
    return float(pi), means, covs, it, converged


def _optimum_at_floor(llr: np.ndarray, weights: np.ndarray) -> bool:
    """Whether the mixture log-likelihood, concave in the prior with the components fixed, has its maximum at
    prior 0: its slope there, ``sum_i w_i (exp(llr_i) - 1)``, is not positive (``llr [U]``: ``log f+ - log f-`` of
    the unlabelled rows, ``weights [U]``). Computed in log space; False where a value is not finite."""
    from scipy.special import logsumexp

    ok = weights > 0
    if not ok.any() or not np.isfinite(llr[ok]).all():
        return False
    return bool(logsumexp(llr[ok], b=weights[ok]) <= math.log(float(weights[ok].sum())))
