"""Near-copies of the labelled positive: the evidence one-positive data offer, learned from the data's
own duplicates.

Where every query has one labelled candidate and every candidate one labelled query (query -> document
retrieval), no labelled pair shows what an *unlabelled* match looks like next to the labelled one: the
labels say how close a query sits to its document, not how close two documents that both answer it
sit. What does show it is the data itself. A document that matches a query as well as its labelled
document does is, in such data, a copy of it up to noise (the same page crawled twice, a
re-uploaded image, a caption repeated): among the candidates a scan shows a query, its near-copies of
the labelled positive form a group of their own, set apart from the continuum of merely related
candidates (cluster-mates, paraphrases, other recipes for tomato soup). This module finds that group.

**The statistic** is the similarity of the candidate to the labelled positive (``positive_neighbour``;
also in a second view, and 1 for an identical content key), on Fisher's scale
``z = atanh(min(pn, 1 - 1e-6))``, which spreads the values near 1 where copies sit.

**The model** is a one-dimensional Gaussian mixture over the scanned rows' ``z`` with 1 to
:data:`MAX_COMPONENTS` components, chosen by BIC (Schwarz 1978), fitted by EM. The *duplicate group* is
its top component if it stands clearly apart from the next: a gap of at least :data:`MIN_SEPARATION`
pooled standard deviations between their means (a clearly bimodal pair of Gaussians; cf. the
separation measures of Ashman, Bird & Zepeda, 1994) and at most half of the rows. Otherwise there is
no duplicate group and this evidence says nothing. ``P(copy | z)`` is the top component's
responsibility, held at its maximum above the component's mean so that it never falls as ``z`` rises.

This is a *definition* as much as a model: in one-positive data a near neighbour that is not a copy
(a paraphrase, a cluster-mate) is not taken for a match, because no label says it is one. Data whose
matches are not copies show it through labelled pairs (several positives a query, several queries a
candidate), where :mod:`fnlab.posterior.pu` learns it from them instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DuplicateGroup", "MAX_COMPONENTS", "MIN_SEPARATION", "z_scale"]

#: most mixture components tried for the scanned rows' ``z``
MAX_COMPONENTS = 5
#: gap, in pooled standard deviations, between the top component and the next for it to be a group
MIN_SEPARATION = 4.0
#: largest similarity below 1 kept apart on the ``z`` scale (identical rows reach it)
Z_CAP = 1 - 1e-6
#: floor of a component's standard deviation on the ``z`` scale (identical copies would collapse it)
MIN_STD = 0.01


def z_scale(similarity: np.ndarray) -> np.ndarray:
    """Fisher's ``atanh`` of a similarity, capped at :data:`Z_CAP` (NaN stays NaN)."""
    return np.arctanh(np.clip(np.asarray(similarity, dtype=np.float64), -Z_CAP, Z_CAP))


@dataclass
class DuplicateGroup:
    """A fitted duplicate group on the ``z`` scale (module docstring).

    Attributes:
        weights, means, stds: ``[K]`` the mixture, lowest mean first (``K = 0``: not fitted).
        found: whether the top component is a duplicate group.
        share: the group's share of the rows it was fitted on (0 when not found).
        n_iter: EM iterations of the chosen fit; converged: whether it met the tolerance.
    """

    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    found: bool = False
    n_iter: int = 0
    converged: bool = True

    @property
    def share(self) -> float:
        return float(self.weights[-1]) if self.found else 0.0

    @property
    def level(self) -> float:
        """The group's mean similarity to the labelled positive (``tanh`` of its ``z`` mean), NaN if none."""
        return float(math.tanh(self.means[-1])) if self.found else float("nan")

    @classmethod
    def fit(cls, z: np.ndarray, *, max_components: int = MAX_COMPONENTS, max_iter: int = 1000,
            tol: float = 1e-6, seed: int = 0) -> DuplicateGroup:
        """Fit on the rows' ``z`` values (``[N]``, NaN ignored); see the module docstring."""
        x = np.asarray(z, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size < 10 or float(np.ptp(x)) < 1e-9:
            return cls()
        values, counts = _binned(x)
        best, best_bic = None, math.inf
        for k in range(1, max_components + 1):
            if x.size < 5 * k:
                break
            for init in _inits(x, k, seed):
                w, m, s, it, conv, ll = _em_1d(values, counts, *init, max_iter=max_iter, tol=tol)
                bic = -2 * ll + (3 * k - 1) * math.log(x.size)
                if bic < best_bic:
                    best, best_bic = (w, m, s, it, conv), bic
        w, m, s, it, conv = best
        order = np.argsort(m)
        w, m, s = w[order], m[order], s[order]
        found = False
        if m.size >= 2 and w[-1] <= 0.5:
            pooled = math.sqrt(0.5 * (s[-1] ** 2 + s[-2] ** 2))
            found = (m[-1] - m[-2]) >= MIN_SEPARATION * pooled
        return cls(weights=w, means=m, stds=s, found=bool(found), n_iter=int(it), converged=bool(conv))

    def prob(self, z: np.ndarray) -> np.ndarray:
        """``P(copy | z)`` per value (``[*]``; 0 where no group was found, NaN where ``z`` is NaN)."""
        z = np.asarray(z, dtype=np.float64)
        out = np.where(np.isnan(z), np.nan, 0.0)
        if not self.found:
            return out
        zz = np.where(np.isnan(z), self.means[0], np.maximum(z, -50.0))
        zz = np.where(zz > self.means[-1], self.means[-1], zz)  # never falls above the group's mean
        logs = np.stack([math.log(w) - math.log(s) - 0.5 * ((zz - m) / s) ** 2
                         for w, m, s in zip(self.weights, self.means, self.stds, strict=True)])
        top = logs[-1] - np.logaddexp.reduce(logs, axis=0)
        return np.where(np.isnan(z), np.nan, np.exp(top))

    def params(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(), "stds": self.stds.tolist(),
                "found": self.found, "n_iter": self.n_iter, "converged": self.converged}

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> DuplicateGroup:
        return cls(weights=np.asarray(p["weights"], dtype=np.float64), means=np.asarray(p["means"], dtype=np.float64),
                   stds=np.asarray(p["stds"], dtype=np.float64), found=bool(p["found"]),
                   n_iter=int(p.get("n_iter", 0)), converged=bool(p.get("converged", True)))


def _inits(x: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Starting points for ``k`` components: quantiles, and quantiles with the top component on the
    largest values (a small far group is found only if a component starts near it)."""
    sd = max(float(np.std(x)), MIN_STD)
    q = np.quantile(x, (np.arange(k) + 0.5) / k)
    starts = [(np.full(k, 1.0 / k), q, np.full(k, sd / k))]
    if k >= 2:
        top = np.quantile(x, 0.999)
        q2 = np.append(np.quantile(x, (np.arange(k - 1) + 0.5) / (k - 1)), max(top, float(x.max()) - sd / k))
        w = np.append(np.full(k - 1, 0.999 / (k - 1)), 0.001)
        starts.append((w, q2, np.full(k, sd / k)))
    return starts


#: bin width on the ``z`` scale for the EM (half :data:`MIN_STD`: a component's shape is kept)
BIN_WIDTH = 5e-3


def _binned(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, counts)``: ``x`` rounded to :data:`BIN_WIDTH`, each distinct value once with its count
    (the EM then costs the number of bins, not of rows)."""
    keys, counts = np.unique(np.round(x / BIN_WIDTH).astype(np.int64), return_counts=True)
    return keys * BIN_WIDTH, counts.astype(np.float64)


def _em_1d(x: np.ndarray, c: np.ndarray, w: np.ndarray, m: np.ndarray, s: np.ndarray, *, max_iter: int,
           tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool, float]:
    """EM for a 1-D Gaussian mixture over values ``x [B]`` seen ``c [B]`` times each; returns
    ``(weights, means, stds, iterations, converged, loglik)``."""
    w, m, s = w.astype(np.float64).copy(), m.astype(np.float64).copy(), np.maximum(s, MIN_STD)
    n = float(c.sum())
    ll_old, it, conv = -math.inf, 0, False
    ll = -math.inf
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        logp = (np.log(np.maximum(w, 1e-300))[:, None] - np.log(s)[:, None]
                - 0.5 * ((x[None, :] - m[:, None]) / s[:, None]) ** 2)
        norm = np.logaddexp.reduce(logp, axis=0)
        ll = float(c @ norm) - 0.5 * n * math.log(2 * math.pi)
        r = np.exp(logp - norm) * c
        nk = r.sum(1) + 1e-12
        w = nk / n
        m = (r @ x) / nk
        s = np.maximum(np.sqrt((r * (x[None, :] - m[:, None]) ** 2).sum(1) / nk), MIN_STD)
        if abs(ll - ll_old) <= tol * max(1.0, abs(ll)):
            conv = True
            break
        ll_old = ll
    return w, m, s, it, conv, ll
