"""Distributions: positive vs negative similarities, the run's posterior and its calibration."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import state
from fnlab import explore, viz

st.title("Distributions")
state.sidebar()
st.caption("Where labelled positives, negatives and ground-truth false negatives fall in similarity, and how "
           "well the run's posterior P(false negative) matches reality. Every number here is the run's own "
           "posterior (fitted when the run was trained); nothing is refitted on this page.")


def _gauss_params(post) -> dict | None:
    p = post.params() if hasattr(post, "params") else {}
    keys = ("pos_mean", "pos_std", "neg_mean", "neg_std")
    return {k: float(p[k]) for k in keys} if all(isinstance(p.get(k), float | int) for k in keys) else None


def posterior_figure(root, name: str, split: str, direction: str):
    """The run's P(false negative) against s (or s − s⁺ for a per-anchor posterior), with ground truth."""
    from fnlab.posterior import prob_false_negative

    smp = state.similarity_sample(str(root), name, split, direction)
    post = state.run_posterior(root, name)
    relative = bool(getattr(post, "uses_positive_similarity", False))
    x = smp.hard - smp.hard_pos if relative else smp.hard
    fn_points = (x, smp.hard_is_fn) if smp.hard_is_fn is not None else None
    if fn_points is not None and len(x) > 3000:
        idx = np.random.default_rng(0).choice(len(x), 3000, replace=False)
        fn_points = (x[idx], smp.hard_is_fn[idx])
    if relative:
        def curve(v):
            return prob_false_negative(post, state.torch_tensor(v), state.torch_tensor(np.zeros_like(v))).numpy()
        rng = (float(np.nanmin(x)) - 0.05, float(max(0.2, np.nanmax(x))) + 0.05)
        return viz.posterior_curve({"the run's posterior": curve}, s_range=rng, fn_points=fn_points,
                                   title="P(false negative) against s − s⁺", xaxis="s − s⁺ (candidate minus the "
                                   "query's labelled positive, cosine)")
    lo = float(min(smp.negative.min(), smp.hard.min(), smp.positive.min()))
    params = post.params() if hasattr(post, "params") else {}
    return viz.posterior_curve({"the run's posterior": lambda v: prob_false_negative(post, state.torch_tensor(v)).numpy()},
                               s_range=(lo, 1.0), prior=params.get("prior_pos"), fn_points=fn_points,
                               pos_mean=params.get("pos_mean"), margin=0.2 if "pos_mean" in params else None)


def reliability_figure(root, name: str, split: str, direction: str):
    """Reliability of the run's posterior on each query's top-10 unlabelled candidates, and its summary row."""
    smp = state.similarity_sample(str(root), name, split, direction)
    if smp.hard_is_fn is None:
        return None, None
    p = state.hard_pair_probs(str(root), name, split, direction, state.run_key(root, name))
    fig = viz.reliability_diagram({"the run's posterior": (p, smp.hard_is_fn)},
                                  title="Reliability on each query's top-10 unlabelled candidates")
    b = viz.reliability_bins(p, smp.hard_is_fn, n_bins=10)
    ece = float((b["count"] * (b["mean_predicted"] - b["observed_rate"]).abs()).sum() / max(1, len(p)))
    return fig, {"calibration error (ECE)": ece, "mean P(false negative)": float(np.mean(p)),
                 "true false-negative rate": float(np.mean(smp.hard_is_fn)), "pairs": int(len(p))}


def histogram_figure(root, name: str, split: str, direction: str):
    smp = state.similarity_sample(str(root), name, split, direction)
    fit = _gauss_params(state.run_posterior(root, name))
    return viz.similarity_histogram(smp.positive, smp.negative, fn_sims=smp.false_negative, fit=fit,
                                    title=f"Similarities on the {split} split ({explore.DIRECTIONS[direction]})")


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    direction = state.direction()
    scope = st.radio("Histogram of", ["the whole split", "one query"], horizontal=True, key="ds_scope")
    if scope == "the whole split":
        fig = histogram_figure(root, name, split, direction)
    else:
        s = state.sides(str(root), name, split, direction)
        q = st.number_input("Query number", 0, len(s.queries) - 1, 0, key="ds_query",
                            help="The row of the query in this split (as in Rankings).")
        b = explore.batch(s, np.array([int(q)]))
        sims = b.sims[0].numpy()
        pos = b.positive_mask[0].numpy()
        fn = b.false_negative_mask[0].numpy() if b.false_negative_mask is not None else None
        fig = viz.similarity_histogram(sims[pos], sims[~pos & ~(fn if fn is not None else False)],
                                       fn_sims=sims[fn] if fn is not None else None, bins=40,
                                       marker=float(b.pos_sims[0]), title=f"Similarities of query #{q}")
    st.plotly_chart(fig, width="stretch", key="ds_hist")

    left, right = st.columns(2)
    left.plotly_chart(posterior_figure(root, name, split, direction), width="stretch", key="ds_posterior")
    rel, summary = reliability_figure(root, name, split, direction)
    if rel is not None:
        right.plotly_chart(rel, width="stretch", key="ds_reliability")
        c = right.columns(3)
        c[0].metric("Calibration error (ECE)", f"{summary['calibration error (ECE)']:.3f}",
                    help="Mean gap between predicted P(false negative) and the observed rate, weighted by pairs "
                         "(0 = perfectly calibrated).")
        c[1].metric("Mean predicted P(FN)", f"{summary['mean P(false negative)']:.3f}")
        c[2].metric("Observed FN rate", f"{summary['true false-negative rate']:.3f}",
                    help=f"Share of the {summary['pairs']:,} pairs that truly match (ground truth).")
    else:
        right.info("This dataset has no ground truth: the reliability diagram needs known false negatives.")


state.guard(_page)
