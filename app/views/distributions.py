"""Distributions: positive vs negative similarities, fitted densities, the posterior and its calibration."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from app import state
from fnlab import explore, viz

st.title("Distributions")
state.sidebar()
st.caption("Where labelled positives, negatives and ground-truth false negatives fall in similarity, "
           "and how well P(false negative | s) matches reality.")


def _estimators(run_posterior, smp, prior: float) -> dict:
    """name -> posterior: the run's fitted posterior (prior from the slider), plus every estimator
    fnlab.posterior offers, fitted here on this split (labelled positives vs a random negative sample)."""
    import dataclasses

    base = run_posterior
    if dataclasses.is_dataclass(base) and hasattr(base, "prior_pos"):
        base = dataclasses.replace(base, prior_pos=prior)
    out = {}
    if getattr(base, "uses_positive_similarity", False):
        st.caption("The run's posterior is per-anchor (a function of s - s+, not of s alone), so it has no "
                   "single curve over s; `fnlab eval` scores it.")
    else:
        out["run's posterior (posterior.json)"] = base
    post = state.optional("fnlab.posterior")
    if post is not None and hasattr(post, "estimators") and hasattr(post, "fit_posterior"):
        for name in post.estimators():
            try:
                out[f"{name} (fitted on {st.session_state.get('split', 'test')})"] = post.fit_posterior(
                    name, pos_sims=smp.positive, neg_sims=smp.negative, unlabelled_sims=smp.hard, prior=prior)
            except (ValueError, TypeError, RuntimeError) as err:
                st.caption(f"estimator {name!r} could not be fitted: {err}")
    return out


def _fit_params(post) -> dict | None:
    p = post.params() if hasattr(post, "params") else {}
    keys = ("pos_mean", "pos_std", "neg_mean", "neg_std")
    return {k: float(p[k]) for k in keys} if all(k in p for k in keys) else None


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    c1, c2 = st.columns([1, 2])
    direction = c1.radio("Direction", list(explore.DIRECTIONS), format_func=explore.DIRECTIONS.get,
                         horizontal=True, key="ds_direction")
    log_prior = c2.slider("Prior P(pos) of an unlabelled pair (log10)", -5.0, -0.5, -4.0, 0.1, key="ds_prior",
                          help="The paper fixes 1e-4. A realistic prior is the share of unlabelled pairs that truly "
                               "match; with ground truth, compare the reliability diagram.")
    prior = float(10 ** log_prior)
    smp = state.similarity_sample(str(root), name, split, direction)
    ests = _estimators(state.run_posterior(root, name), smp, prior)
    gauss = next(iter(ests.values()))

    scope = st.radio("Histogram of", ["whole split", "one query"], horizontal=True, key="ds_scope")
    if scope == "whole split":
        fig = viz.similarity_histogram(smp.positive, smp.negative, fn_sims=smp.false_negative, fit=_fit_params(gauss),
                                       title=f"Similarities on the {split} split ({explore.DIRECTIONS[direction]})")
    else:
        s = state.sides(str(root), name, split, direction)
        q = st.number_input("Query index", 0, len(s.queries) - 1, 0, key="ds_query")
        b = explore.batch(s, np.array([int(q)]))
        sims = b.sims[0].numpy()
        pos = b.positive_mask[0].numpy()
        fn = b.false_negative_mask[0].numpy() if b.false_negative_mask is not None else None
        fig = viz.similarity_histogram(sims[pos], sims[~pos & ~(fn if fn is not None else False)],
                                       fn_sims=sims[fn] if fn is not None else None, fit=_fit_params(gauss), bins=40,
                                       marker=float(b.pos_sims[0]), title=f"Similarities of query #{q}")
    st.plotly_chart(fig, width="stretch", key="ds_hist")

    left, right = st.columns(2)
    curves = {n: (lambda x, p=p: p.prob_false_negative(torch.as_tensor(x)).numpy()) for n, p in ests.items()}
    fn_points = (smp.hard, smp.hard_is_fn) if smp.hard_is_fn is not None else None
    if fn_points is not None and len(smp.hard) > 3000:
        idx = np.random.default_rng(0).choice(len(smp.hard), 3000, replace=False)
        fn_points = (smp.hard[idx], smp.hard_is_fn[idx])
    lo = float(min(smp.negative.min(), smp.hard.min(), smp.positive.min()))
    left.plotly_chart(viz.posterior_curve(curves, s_range=(lo, 1.0), prior=prior, fn_points=fn_points,
                                          pos_mean=gauss.pos_mean, margin=0.2), width="stretch",
                      key="ds_posterior")
    if smp.hard_is_fn is not None:
        rel = {n: (p.prob_false_negative(torch.as_tensor(smp.hard)).numpy(), smp.hard_is_fn) for n, p in ests.items()}
        right.plotly_chart(viz.reliability_diagram(rel, title="Reliability on each query's top-10 negatives"),
                           width="stretch", key="ds_reliability")
        rows = []
        for n, (p, y) in rel.items():
            b = viz.reliability_bins(p, y, n_bins=10)
            ece = float((b["count"] * (b["mean_predicted"] - b["observed_rate"]).abs()).sum() / max(1, len(p)))
            rows.append({"estimator": n, "ECE": ece, "mean P(FN)": float(np.mean(p)), "true FN rate": float(np.mean(y)),
                         **{k: v for k, v in ests[n].params().items() if isinstance(v, float)}})
        right.dataframe(rows, hide_index=True, width="stretch")
    else:
        right.info("This dataset has no ground truth: the reliability diagram needs known false negatives.")


state.guard(_page)
