"""Figures more than one page shows (the Lesson reuses the pages' own): data in, plotly figure out."""

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


def posterior_figure(root, name: str, split: str, direction: str):
    """The run's P(false negative) of each query's top unlabelled candidates against their similarity,
    coloured by ground truth (the posterior may use more signals than s, so it is shown per pair, not as a curve)."""
    smp = state.similarity_sample(str(root), name, split, direction)
    p = state.hard_pair_probs(str(root), name, split, direction, state.run_key(root, name))
    return viz.posterior_scatter(smp.hard, p, smp.hard_is_fn, margin=smp.hard - smp.hard_pos,
                                 title="The run's P(false negative), per pair")


def reliability_figure(root, name: str, split: str, direction: str):
    """Reliability of the run's posterior on each query's top-10 unlabelled candidates, and its summary row."""
    smp = state.similarity_sample(str(root), name, split, direction)
    if smp.hard_is_fn is None:
        return None, None
    p = state.hard_pair_probs(str(root), name, split, direction, state.run_key(root, name))
    fig = viz.reliability_diagram({"the run's posterior": (p, smp.hard_is_fn)},
                                  title="Reliability of the run's posterior")
    ece = expected_calibration_error(p, smp.hard_is_fn)
    return fig, {"calibration error (ECE)": ece, "mean P(false negative)": float(np.mean(p)),
                 "true false-negative rate": float(np.mean(smp.hard_is_fn)), "pairs": int(len(p))}


def histogram_figure(root, name: str, split: str, direction: str):
    smp = state.similarity_sample(str(root), name, split, direction)
    fit = _gauss_params(state.run_posterior(root, name))
    return viz.similarity_histogram(smp.positive, smp.negative, fn_sims=smp.false_negative, fit=fit,
                                    title=f"Similarities on the {split} split ({explore.DIRECTIONS[direction]})")


def ranking(root, name: str, split: str, direction: str, q: int, k: int, threshold: float):
    """Query ``q``'s top ``k`` with status badges: ``(table, labelled-positive rank, figure)``."""
    s = state.sides(str(root), name, split, direction)
    dkey = state.ds_key(root, name, split)
    table, pos_rank = explore.ranking(s, int(q), k=k, posterior=state.run_posterior(root, name))
    items = state.label_array(dkey) if direction == "t2i" else state.caption_array(dkey)
    table["item"] = items[table["candidate"].to_numpy()]
    table["label"] = table["item"]
    badges = []
    for r in table.itertuples():
        b = []
        if r.labelled_positive:
            b.append(fs.POSITIVE)
        if r.false_negative is True:
            b.append(f"{fs.FALSE_NEGATIVE} (ground truth)")
        if not r.labelled_positive and r.p_false_negative >= threshold:
            b.append("suspect")
        badges.append(" · ".join(b))
    table["badges"] = badges
    fig = viz.similarity_rank_bars(table, threshold=threshold, title=f"Top {k} for query #{q}")
    return table, pos_rank, fig


def sampler_bars(root, name: str, split: str, direction: str, q: int, samplers: dict, top_m: int):
    """Each sampler's probability of drawing each of query ``q``'s ``top_m`` candidates: ``(figure, outside)``,
    ``outside`` listing the probability each sampler puts below the candidates shown."""
    s = state.sides(str(root), name, split, direction)
    dkey = state.ds_key(root, name, split)
    caps, labs = state.caption_array(dkey), state.label_array(dkey)
    b = explore.batch(s, np.array([int(q)]))
    weights = explore.sampler_weights(b, samplers)
    sims = b.sims[0].numpy()
    order = np.argsort(-sims, kind="stable")[:top_m]
    fn = b.false_negative_mask[0].numpy() if b.false_negative_mask is not None else None
    status = viz.status_labels(b.positive_mask[0].numpy()[order], fn[order] if fn is not None else None)
    cand = labs if direction == "t2i" else caps
    query_text = caps[int(q)] if direction == "t2i" else labs[int(q)]
    shown, outside = {}, []
    for label, w in weights.items():
        p = w[0].double().numpy()
        p = p / p.sum() if p.sum() > 0 else p
        shown[label] = p[order]
        if p[order].sum() < 0.999:
            outside.append(f"{label}: {1 - p[order].sum():.0%}")
    fig = viz.sampler_weight_bars(shown, status, similarities=sims[order], hover=[cand[int(c)] for c in order],
                                  title=f"Query #{q}: {query_text}", normalise=False)  # over every candidate
    return fig, outside
