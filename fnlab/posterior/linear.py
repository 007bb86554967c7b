"""Pair features and the linear (tied-covariance Gaussian) evidence of the ``pu`` posterior.

Each pair is described by features built from :class:`fnlab.posterior.signals.PairSignals`, every one a
similarity (or a difference of similarities) in which the candidate enters positively, so "higher: more
likely a match" holds for each:

=============================  ======================================================================
feature                        value
=============================  ======================================================================
``similarity``                 ``s``
``margin``                     ``s - s+``: the candidate against the query's own labelled positive
``positive_neighbour``         the candidate's similarity to the query's labelled positive
``query_neighbour``            the query's similarity to the candidate's other labelled queries
``mutual``                     ``s - candidate_hubness`` (mutual rank, CSLS-like)
``view_margin``                ``s' - s'+`` in the second view
``view_positive_neighbour``    ``positive_neighbour`` in the second view
``view_query_neighbour``       ``query_neighbour`` in the second view
=============================  ======================================================================

:class:`LinearEvidence` is a two-component Gaussian mixture over some of them with one covariance shared
by both components, fitted positive-unlabelled by EM (:func:`fnlab.posterior.gmm.fit_em`), so its log-odds
is linear in the features: ``w . (x - (mu+ + mu-) / 2) + log(pi / (1 - pi))`` with ``w = S^-1 (mu+ - mu-)``,
and each feature's term is its contribution to the log-odds. Missing features are marginalised out
exactly (their rows and columns dropped). A pair among its query's top ``window`` candidates (``s`` at
least ``query_threshold``) gets ``window_shift`` added: the rows a scan shows hold a larger share of
matches than the pool, and that share is estimated on its own (:mod:`fnlab.posterior.labelfreq`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fnlab.posterior.gmm import log_normal
from fnlab.posterior.signals import PairSignals

__all__ = ["FEATURES", "TRANSITIVE", "LinearEvidence", "features_of"]

#: feature names, in order, and the signals each needs
FEATURES = {
    "similarity": ("similarity",),
    "margin": ("similarity", "positive_similarity"),
    "positive_neighbour": ("positive_neighbour",),
    "query_neighbour": ("query_neighbour",),
    "mutual": ("similarity", "candidate_hubness"),
    "view_margin": ("view_similarity", "view_positive_similarity"),
    "view_positive_neighbour": ("view_positive_neighbour",),
    "view_query_neighbour": ("view_query_neighbour",),
}

#: the transitive features: evidence from the labelled pairs of the query or of the candidate
TRANSITIVE = ("positive_neighbour", "query_neighbour", "view_positive_neighbour", "view_query_neighbour")

_DIFFERENCES = {"margin", "mutual", "view_margin"}


def features_of(signals: PairSignals, names: tuple[str, ...]) -> torch.Tensor:
    """``[*, m]`` float64 features ``names`` of :data:`FEATURES`; NaN where a signal is missing."""
    s = signals.similarity.double()
    cols = []
    for name in names:
        parts = [getattr(signals, n) for n in FEATURES[name]]
        if any(p is None for p in parts):
            cols.append(torch.full_like(s, float("nan")))
            continue
        parts = [p.to(device=s.device, dtype=torch.float64) for p in parts]
        v = parts[0] - parts[1] if name in _DIFFERENCES else parts[0]
        cols.append(torch.broadcast_to(v, s.shape))
    return torch.stack(cols, dim=-1)


@dataclass
class LinearEvidence:
    """The fitted tied-covariance mixture (module docstring): ``means [2, m]`` (row 0 negative, row 1
    positive), ``cov [m, m]``, the pool prior ``prior`` and the window's ``window_shift`` (log-odds).
    ``window_drop``: features marginalised out for pairs inside the window (``s >= query_threshold``)."""

    features: tuple[str, ...]
    means: np.ndarray
    cov: np.ndarray
    prior: float
    window_shift: float = 0.0
    window: int = 10
    window_drop: tuple[str, ...] = ()
    _solved: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def signals(self) -> tuple[str, ...]:
        needs = {sig for f in self.features for sig in FEATURES[f]}
        windowed = self.window_shift or self.window_drop
        return tuple(sorted(needs | ({"query_threshold"} if windowed else set())))

    def _weights(self, present: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(w, mid)`` of the log-odds over the features ``present``: ``w = S^-1 (mu+ - mu-)`` and the midpoint
        of the two means (one solve per set of offered features, cached: FNE asks many times a step)."""
        if present not in self._solved:
            idx = list(present)
            sub = self.cov[np.ix_(idx, idx)]
            w = np.linalg.solve(sub, self.means[1][idx] - self.means[0][idx])
            self._solved[present] = (w, 0.5 * (self.means[1][idx] + self.means[0][idx]))
        return self._solved[present]

    def contributions(self, signals: PairSignals) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per-feature log-odds terms ``{feature: [*]}`` (NaN where missing) and the base ``[*]`` (prior
        plus window shift), such that ``base + sum of the terms present`` is the log-odds of
        :meth:`log_odds` for pairs whose missing features are marginalised by dropping them."""
        x = features_of(signals, self.features)  # [*, m]
        shape = x.shape[:-1]
        inside = None
        if (self.window_shift or self.window_drop) and signals.query_threshold is not None:
            if signals.window is not None and signals.window != self.window:
                raise ValueError(f"these signals place pairs in a window of {signals.window} candidates a query, the "
                                 f"posterior was fitted for {self.window}: build the PairContext with "
                                 f"window={self.window}")
            inside = torch.broadcast_to(signals.similarity.double() >= signals.query_threshold.double().to(x.device),
                                        shape)
        if inside is not None and self.window_drop:
            x = x.clone()
            for name in self.window_drop:
                x[..., self.features.index(name)][inside] = float("nan")
        flat = x.reshape(-1, len(self.features))
        obs = ~torch.isnan(flat)
        terms = torch.full_like(flat, float("nan"))
        # each row's pattern of present features as one integer (bit j: feature j): a 1-D unique, far cheaper
        # than unique rows of the [N, m] mask
        codes = (obs.long() << torch.arange(obs.shape[1], device=obs.device)).sum(1)
        for code in torch.unique(codes).tolist():
            present = tuple(j for j in range(obs.shape[1]) if code >> j & 1)
            if not present:
                continue
            rows = codes == code
            w, mid = self._weights(present)
            xo = flat[rows][:, list(present)]
            terms[rows.nonzero().ravel()[:, None], torch.as_tensor(present)[None, :]] = (
                (xo - torch.as_tensor(mid, device=xo.device)) * torch.as_tensor(w, device=xo.device))
        base = torch.full(shape, math.log(self.prior) - math.log1p(-self.prior), dtype=torch.float64,
                          device=x.device)
        if self.window_shift and inside is not None:
            base = base + self.window_shift * inside.double()
        return {n: terms[:, j].reshape(shape) for j, n in enumerate(self.features)}, base

    def log_odds(self, signals: PairSignals) -> torch.Tensor:
        """``[*]`` log-odds: missing features marginalised out (tied covariance: the linear form over the
        features present)."""
        terms, base = self.contributions(signals)
        total = base.clone()
        for v in terms.values():
            total = total + torch.nan_to_num(v, nan=0.0)
        return total

    def params(self) -> dict[str, Any]:
        return {"features": list(self.features), "means": self.means.tolist(), "cov": self.cov.tolist(),
                "prior": self.prior, "window_shift": self.window_shift, "window": self.window,
                "window_drop": list(self.window_drop)}

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> LinearEvidence:
        m = len(p["features"])
        return cls(tuple(p["features"]), np.asarray(p["means"], np.float64).reshape(2, m),
                   np.asarray(p["cov"], np.float64).reshape(m, m), float(p["prior"]), float(p.get("window_shift", 0.0)),
                   int(p.get("window", 10)), tuple(p.get("window_drop", ())))


def log_density_ratio_torch(x: torch.Tensor, means: np.ndarray, cov: np.ndarray) -> torch.Tensor:
    """``log N(x; mu+, S) - log N(x; mu-, S)`` for rows of ``x [n, m]`` with no missing entry (a reference
    the tests compare :meth:`LinearEvidence.log_odds` against)."""
    m1 = torch.as_tensor(means[1], dtype=torch.float64)
    m0 = torch.as_tensor(means[0], dtype=torch.float64)
    c = torch.as_tensor(cov, dtype=torch.float64)
    return log_normal(x, m1, c) - log_normal(x, m0, c)
