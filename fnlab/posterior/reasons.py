"""Why a pair is suspected: the evidence behind its P(false negative), in words.

A user relabels a pair because of what the posterior saw, so every suspect carries it: the pieces of
evidence that raised its P, strongest first, each with the value of the signal behind it, e.g.
``"near-copy of the labelled positive (0.98); its labelled queries say the same (0.91)"``.

For :class:`fnlab.posterior.pu.PUPosterior` the pieces are

* the near-copy evidence (``P_copy``), worded by the signal that carried it (identical content, the
  candidate's similarity to the labelled positive, or the same in the text view);
* the group evidence's per-feature terms of its linear log-odds (:meth:`LinearEvidence.contributions`):
  a feature that raised the log-odds above the pool's base rate is named with its value;
* the window: the pair ranks among its query's top candidates, where matches are more common;
* for queries without a labelled positive: "as similar as labelled matches are".

Other posteriors read the similarity (and the margin) only: they get those.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fnlab.posterior.signals import PairSignals

__all__ = ["PHRASES", "explain", "reason_terms"]

#: how a piece of evidence is worded (``{v}``: the value of its signal)
PHRASES = {
    "copy_identical": "same content as the labelled positive",
    "positive_neighbour": "near-copy of the labelled positive ({v:.2f})",
    "view_positive_neighbour": "its text nearly repeats the labelled positive's ({v:.2f})",
    "query_neighbour": "its labelled queries say the same ({v:.2f})",
    "view_query_neighbour": "its labelled queries say the same in the text view ({v:.2f})",
    "margin": "as close to the query as its labelled positive ({v:+.2f})",
    "view_margin": "as close as the labelled positive in the text view ({v:+.2f})",
    "similarity": "as similar as labelled matches are ({v:.2f})",
    "mutual": "the query is among the candidate's nearest ({v:+.2f})",
    "window": "among its query's top {v:.0f}",
}


def _value(signals: PairSignals, name: str) -> np.ndarray:
    from fnlab.posterior.linear import FEATURES, features_of

    if name in FEATURES:
        return features_of(signals, (name,))[..., 0].numpy().ravel()
    v = signals.numpy(name)
    return np.full(signals.similarity.numel(), np.nan) if v is None else np.asarray(v, np.float64).ravel()


def reason_terms(posterior: Any, signals: PairSignals) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{reason: (weight [N], value [N])}``: how much each piece of evidence raised each pair's P (its
    log-odds term; 0 where it did not) and the value of the signal behind it."""
    from fnlab.posterior.pu import PUPosterior

    n = signals.similarity.numel()
    if not isinstance(posterior, PUPosterior):
        out = {"similarity": (np.full(n, 1e-3), signals.similarity.double().cpu().numpy().ravel())}
        if signals.positive_similarity is not None:
            out["margin"] = (np.full(n, 1e-3), _value(signals, "margin"))
        return out
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    parts = {k: v.double().cpu().numpy().ravel() for k, v in posterior.parts(signals).items()}
    if "copy" in parts:
        _copy_terms(posterior, signals, np.nan_to_num(parts["copy"]), out)
    if posterior.linear is not None:
        terms, base = posterior.linear.contributions(signals)
        for name, t in terms.items():
            out[name] = (np.nan_to_num(t.double().cpu().numpy().ravel(), nan=0.0), _value(signals, name))
        lift = base.double().cpu().numpy().ravel() - _logit(posterior.linear.prior)
        out["window"] = (np.maximum(lift, 0.0), np.full(n, float(posterior.window)))
    if "designated" in parts:
        d = np.nan_to_num(parts["designated"], nan=0.0)
        out["similarity"] = (10.0 * d, signals.similarity.double().cpu().numpy().ravel())
    return out


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def _copy_terms(posterior: Any, signals: PairSignals, p_copy: np.ndarray, out: dict) -> None:
    """The near-copy evidence, under the name of the signal that carried it (weighted so that a near-copy
    outweighs any single feature term)."""
    n = p_copy.size
    dup = (signals.positive_duplicate.double().cpu().numpy().ravel() > 0.5
           if signals.positive_duplicate is not None else np.zeros(n, bool))
    vals = {name: _value(signals, name) for name in posterior.copy_signals}
    stack = np.stack([np.nan_to_num(v, nan=-np.inf) for v in vals.values()]) if vals else np.zeros((0, n))
    which = stack.argmax(0) if stack.size else np.zeros(n, int)
    for j, name in enumerate(vals):
        mine = (which == j) & ~dup
        out[name] = (np.where(mine, 10.0 * p_copy, 0.0), vals[name])
    out["copy_identical"] = (np.where(dup, 10.0 * p_copy, 0.0), np.ones(n))


def explain(posterior: Any, signals: PairSignals, *, probs: np.ndarray | None = None, min_p: float = 0.05,
            top: int = 2) -> list[str]:
    """``N`` strings: the ``top`` strongest pieces of evidence of each pair, joined by ``"; "``; empty for
    pairs with ``P < min_p`` (``probs``: their P, computed here when not given) and where nothing raised P."""
    terms = reason_terms(posterior, signals)
    n = signals.similarity.numel()
    if probs is None:
        probs = posterior.prob_false_negative(signals).double().cpu().numpy().ravel()
    names = list(terms)
    if not names:
        return [""] * n
    weights = np.stack([terms[k][0] for k in names], axis=1)  # [N, R]
    values = np.stack([terms[k][1] for k in names], axis=1)
    order = np.argsort(-weights, axis=1)[:, :top]
    out = [""] * n
    for i in np.flatnonzero(np.nan_to_num(np.asarray(probs, np.float64).ravel(), nan=0.0) >= min_p):
        words = [PHRASES[names[r]].format(v=values[i, r]) for r in order[i] if weights[i, r] > 0.0]
        out[i] = "; ".join(words)
    return out
