"""Figures more than one page shows (the Lesson reuses the pages' own): stored data in, plotly figure out."""

from __future__ import annotations

import numpy as np

from app import state
from fnlab.analysis import explore, viz
from fnlab.analysis.evaluate import expected_calibration_error
from fnlab.core import status as fs


def _gauss_params(post) -> dict | None:  # the fitted Gaussians, where the posterior has them
    p = post.params()
    keys = ("pos_mean", "pos_std", "neg_mean", "neg_std")
    return {k: float(p[k]) for k in keys} if all(isinstance(p.get(k), float | int) for k in keys) else None


def hard_probs(root, name: str, split: str, direction: str, estimator: str | None = None, prior="auto"):
    """``(similarity sample, P(false negative) of its hard pairs)`` under the run's posterior, or under
    ``estimator`` with ``prior`` (the Distributions page's teaching controls)."""
    smp, p = state.distribution(root, name, split, direction)
    if estimator is not None or prior != "auto":
        p = state.pages(root, name).hard_probs(split, direction, estimator, prior)
    return smp, p


def posterior_figure(root, name: str, split: str, direction: str, estimator: str | None = None, prior="auto",
                     title: str = "The run's P(false negative), per pair"):
    """P(false negative) of each query's top unlabelled candidates against their similarity, coloured by ground
    truth (the posterior may use more signals than s, so it is shown per pair, not as a curve)."""
    smp, p = hard_probs(root, name, split, direction, estimator, prior)
    return viz.posterior_scatter(smp.hard, p, smp.hard_is_fn, margin=smp.hard - smp.hard_pos, title=title)


def reliability_figure(root, name: str, split: str, direction: str, estimator: str | None = None, prior="auto",
                       label: str = "the run's posterior"):
    """Reliability of a posterior on each query's top-10 unlabelled candidates, and its summary row."""
    smp, p = hard_probs(root, name, split, direction, estimator, prior)
    if smp.hard_is_fn is None:
        return None, None
    fig = viz.reliability_diagram({label: (p, smp.hard_is_fn)}, title=f"Reliability of {label}")
    ece = expected_calibration_error(p, smp.hard_is_fn)
    return fig, {"calibration error (ECE)": ece, "mean P(false negative)": float(np.mean(p)),
                 "true false-negative rate": float(np.mean(smp.hard_is_fn)), "pairs": int(len(p)),
                 "share above 0.5": float(np.mean(p >= 0.5))}


def histogram_figure(root, name: str, split: str, direction: str, words: dict):
    smp, _ = state.distribution(root, name, split, direction)
    fit = _gauss_params(state.pages(root, name).posterior(direction))
    return viz.similarity_histogram(smp.positive, smp.negative, fn_sims=smp.false_negative, fit=fit,
                                    title=f"Similarities on {'all splits' if split == 'all' else f'the {split} split'} "
                                          f"({words[direction]})")


def ranking(root, name: str, split: str, direction: str, q: int, k: int, threshold: float):
    """Query ``q``'s top ``k`` with status badges, read from the run's stored rankings:
    ``(table, labelled-positive rank, figure)``."""
    s = state.sides(root, name, split, direction)
    table, pos_rank = state.rankings(root, name, split, direction).table(s, int(q), k)
    c = state.content(root, name, split)
    table["item"] = c.candidates(direction)[table["candidate"].to_numpy()]
    table["label"] = table["item"]
    badges = []
    for r in table.itertuples():
        b = []
        if r.labelled_positive:
            b.append(fs.POSITIVE)
        if r.false_negative is True:
            b.append(fs.FALSE_NEGATIVE)
        if not r.labelled_positive and r.p_false_negative >= threshold:
            b.append("suspect")
        badges.append(" · ".join(b))
    table["badges"] = badges
    fig = viz.similarity_rank_bars(table, threshold=threshold,
                                   title=f"Top {k} for {c.query_noun(direction)} #{q}")
    return table, pos_rank, fig


def sampler_bars(root, name: str, split: str, direction: str, q: int, samplers: dict, top_m: int):
    """Each sampler's probability of drawing each of query ``q``'s ``top_m`` candidates: ``(figure, outside)``,
    ``outside`` listing the probability each sampler puts below the candidates shown."""
    s = state.sides(root, name, split, direction)
    c = state.content(root, name, split)
    b = explore.batch(s, np.array([int(q)]))
    weights = explore.sampler_weights(b, samplers)
    sims = b.sims[0].numpy()
    order = np.argsort(-sims, kind="stable")[:top_m]
    fn = b.false_negative_mask[0].numpy() if b.false_negative_mask is not None else None
    status = viz.status_labels(b.positive_mask[0].numpy()[order], fn[order] if fn is not None else None)
    cand = c.candidates(direction)
    shown, outside = {}, []
    for label, w in weights.items():
        p = w[0].double().numpy()
        p = p / p.sum() if p.sum() > 0 else p
        shown[label] = p[order]
        if p[order].sum() < 0.999:
            outside.append(f"{label}: {1 - p[order].sum():.0%}")
    fig = viz.sampler_weight_bars(shown, status, similarities=sims[order], hover=[cand[int(i)] for i in order],
                                  title=f"{c.query_noun(direction).capitalize()} #{q}: {c.queries(direction)[int(q)]}",
                                  normalise=False)
    return fig, outside
