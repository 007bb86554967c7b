"""Distributions: positive vs negative similarities, the run's posterior and its calibration."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures, state
from fnlab.analysis import explore, viz

st.title("Distributions")
state.sidebar()
st.caption("Where labelled positives, negatives and ground-truth false negatives fall in similarity, and how "
           "well the run's posterior P(false negative) matches reality. Every number here is the run's own "
           "posterior (fitted when the run was trained); nothing is refitted on this page.")


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    direction = state.direction()
    scope = st.radio("Histogram of", ["the whole split", "one query"], horizontal=True, key="ds_scope")
    if scope == "the whole split":
        fig = figures.histogram_figure(root, name, split, direction)
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
    left.plotly_chart(figures.posterior_figure(root, name, split, direction), width="stretch", key="ds_posterior")
    rel, summary = figures.reliability_figure(root, name, split, direction)
    if rel is not None:
        right.plotly_chart(rel, width="stretch", key="ds_reliability")
        c = right.columns(3)
        c[0].metric("ECE", f"{summary['calibration error (ECE)']:.3f}",
                    help="Expected calibration error: the mean gap between predicted P(false negative) and the "
                         "observed rate, weighted by pairs (0 = perfectly calibrated).")
        c[1].metric("Mean P(FN)", f"{summary['mean P(false negative)']:.3f}",
                    help="Mean predicted P(false negative) over these pairs.")
        c[2].metric("True FN rate", f"{summary['true false-negative rate']:.3f}",
                    help=f"Share of the {summary['pairs']:,} pairs that truly match (ground truth).")
    else:
        right.info("This dataset has no ground truth: the reliability diagram needs known false negatives.")


state.guard(_page)
