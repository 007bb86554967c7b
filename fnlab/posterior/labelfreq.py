"""The share of matches among the rows a scan shows, from the signals labelled pairs show without bias.

Elkan & Noto ("Learning classifiers from only positive and unlabeled data", KDD 2008): a classifier
``h(x) = P(labelled | x)`` trained to tell labelled pairs from unlabelled ones gives, for an unlabelled
pair, ``P(match | x) = (1 - c) / c * h(x) / (1 - h(x))`` with ``c = P(labelled | match)`` estimated as the
mean of ``h`` over labelled pairs. That holds when labelled pairs are a random sample of the matches in
``x`` ("selected completely at random"). Here they are not in the similarity: a labelled positive is the
query's *designated* match, which a trained model ranks above its other matches. Following the
selected-at-random view of Bekker, Robberechts & Davis ("Beyond the selected completely at random
assumption for learning from positive and unlabeled data", ECML-PKDD 2019), where the labelling
propensity depends on some attributes only, the classifier reads only the *transitive* signals: how the
query relates to the candidate's other labelled queries, and the candidate to the query's other
positives, in either view. Which item a query was written for decides its similarity, much less how much
it resembles the candidate's other captions. Not always much less: captions written from one image's own
details resemble that image's other captions beyond what relevance explains, labelled pairs then sit above
the other matches on these signals too and the share comes out low. :mod:`fnlab.posterior.pu` checks for
that (labelled pairs against the rows weighted by the fitted P, ``MAX_LABELLED_LEAD``) and says so in the
posterior's status.

:func:`match_share` applies this to one population (the rows a scan shows: each query's top ``window``
unlabelled candidates), with the labelled pairs restricted to those that would fall in it were they
unlabelled (their similarity at least their query's ``window``-th unlabelled one), so that both sides of
the classifier come from the same part of the ranking.
"""

from __future__ import annotations

import numpy as np

__all__ = ["elkan_noto_share", "match_share"]


def _design(x: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Features with NaN filled by ``fill`` and one missing-value indicator per column that has any."""
    miss = np.isnan(x)
    cols = [np.where(miss, fill, x)]
    if miss.any():
        cols.append(miss[:, miss.any(axis=0)].astype(np.float64))
    return np.concatenate(cols, axis=1)


def match_share(labelled: np.ndarray, unlabelled: np.ndarray, *, seed: int = 0, folds: int = 3,
                max_rows: int = 100_000) -> tuple[float, float]:
    """Share of matches among ``unlabelled`` rows by Elkan & Noto (module docstring).

    Args:
        labelled: ``[L, m]`` the transitive signals of labelled pairs (left out of their own sets).
        unlabelled: ``[U, m]`` the same signals of the population's unlabelled rows.
        seed: seeds the subsample (above ``max_rows`` rows) and the folds.
        folds: ``h`` on each row is predicted by a model fitted on the other folds (no row scores itself).

    Returns:
        ``(share, c)``: the estimated share of matches among the unlabelled rows and the label frequency
        ``c``; ``(nan, nan)`` when either side has fewer than 20 rows or the signals do not vary.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    lab, unl = np.asarray(labelled, np.float64), np.asarray(unlabelled, np.float64)
    if lab.shape[0] > max_rows // 2:
        lab = lab[rng.choice(lab.shape[0], max_rows // 2, replace=False)]
    if unl.shape[0] > max_rows:
        unl = unl[rng.choice(unl.shape[0], max_rows, replace=False)]
    if lab.shape[0] < 20 or unl.shape[0] < 20:
        return float("nan"), float("nan")
    x = np.vstack([lab, unl])
    fill = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = _design(x, fill)
    sd = x.std(axis=0)
    if not (sd > 0).any():
        return float("nan"), float("nan")
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    y = np.r_[np.ones(lab.shape[0]), np.zeros(unl.shape[0])]
    fold = rng.integers(0, folds, size=y.size)
    h = np.empty(y.size)
    for f in range(folds):
        test = fold == f
        clf = LogisticRegression(C=1.0, max_iter=500)
        clf.fit(x[~test], y[~test])
        h[test] = clf.predict_proba(x[test])[:, 1]
    return elkan_noto_share(h[: lab.shape[0]], h[lab.shape[0]:])


def elkan_noto_share(h_labelled: np.ndarray, h_unlabelled: np.ndarray) -> tuple[float, float]:
    """Elkan & Noto's estimate from the classifier's ``h = P(labelled | x)`` on held-out rows: ``c`` the mean
    of ``h`` over labelled rows (``[L]``), and the mean over unlabelled rows (``[U]``) of
    ``P(match | x) = min(1, (1 - c) / c * h / (1 - h))``. Returns ``(share, c)``."""
    c = float(np.mean(h_labelled))
    hu = np.clip(np.asarray(h_unlabelled, np.float64), 1e-12, 1 - 1e-12)
    p = np.clip((1.0 - c) / c * hu / (1.0 - hu), 0.0, 1.0)
    return float(p.mean()), c
