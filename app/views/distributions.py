"""Distributions: positive vs negative similarities, a posterior and its calibration, with the estimator and prior
as teaching controls (the run's own posterior by default)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures, state, url
from fnlab import posterior as fp
from fnlab.analysis import explore, viz

st.title("Distributions")
state.sidebar()
st.caption("Where labelled positives, negatives and ground-truth false negatives fall in similarity, and how "
           "well a posterior P(false negative) matches reality. By default it is the run's own posterior (fitted "
           "when the run was trained); the controls below fit another estimator or prior on the validation split "
           "(labels only) to show what each gets right or wrong.")

OWN = "the run's own"
#: the prior slider's values: one match in 100,000 unlabelled pairs up to one in two
PRIORS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]
#: what each choice shows a class (the estimator's own line comes from fnlab.posterior.describe)
LESSONS = {
    "paper": "FNE's paper fixes the prior at one match in 10,000 pairs. Where false negatives are common that prior is "
             "far too small, so P stays near 0 for pairs that truly match: move the prior up and watch the "
             "reliability curve come back towards the diagonal.",
    "pu": "Estimates the prior from the labelled pairs and uses every signal of a pair; fnlab's default.",
    "relative": "Reads only the margin to the query's labelled positive, so it sees how close a candidate comes "
                "to the positive, not its raw similarity.",
    "mixture": "Reads only the raw similarity, so a query whose candidates are all similar gets high P everywhere.",
}


def _controls(run_estimator: str) -> tuple[str | None, float | str]:
    c1, c2, c3 = st.columns([2, 1, 2])
    options = [OWN, *fp.available()]
    url.bind("ds_estimator", "estimator", OWN, url.as_str, allowed=options)
    est = c1.selectbox("Posterior", options, key="ds_estimator",
                       format_func=lambda e: f"{OWN} ({run_estimator})" if e == OWN else e,
                       help="The estimator of P(false negative): the run's own, or another fitted here on the "
                            "validation split (labels only, never ground truth).")
    url.bind("ds_prior_mode", "prior_mode", "estimated", url.as_str, allowed=("estimated", "fixed"))
    mode = c2.radio("Prior", ["estimated", "fixed"], key="ds_prior_mode",
                    help="The share of true matches assumed among unlabelled pairs: estimated from the data, or "
                         "fixed by you (the paper fixes it at 1e-4).")
    url.bind("ds_prior", "prior", 1e-4, url.as_float, allowed=PRIORS)
    value = c3.select_slider("Fixed prior (share of matches among unlabelled pairs)", PRIORS, key="ds_prior",
                             disabled=mode != "fixed", format_func=lambda v: f"{v:g}")
    prior: float | str = float(value) if mode == "fixed" else "auto"
    chosen = None if est == OWN else est
    if chosen is None and prior != "auto":
        chosen = run_estimator
    return chosen, prior


def _what_it_shows(estimator: str, prior, summary: dict | None, true_share: float | None) -> str:
    text = f"**{estimator}**: {fp.describe(estimator)}. {LESSONS.get(estimator, '')}"
    if summary:
        mean, rate = summary["mean P(false negative)"], summary["true false-negative rate"]
        how = ("over-confident" if mean > rate + 0.05 else "under-confident" if mean < rate - 0.05
               else "about right on average")
        text += (f" Here, on each query's top unlabelled candidates, it predicts P = {mean:.3f} on average where "
                 f"{rate:.3f} truly match ({how}; ECE {summary['calibration error (ECE)']:.3f}).")
    if prior != "auto" and true_share is not None:
        text += f" The prior you fixed is {float(prior):g}; in this split {true_share:.2g} of unlabelled pairs truly match."
    return text


@st.fragment
def _histogram_part(root, name, split, direction) -> None:
    """The histogram and its scope: a change here redraws this part only."""
    state.guard(lambda: _histogram(root, name, split, direction, state.content(root, name, split)))


def _histogram(root, name, split, direction, c) -> None:
    url.bind("ds_scope", "scope", "split", url.as_str, allowed=("split", "query"))
    words = {"split": "the whole split", "query": f"one {c.query_noun(direction)}"}
    scope = st.radio("Histogram of", list(words), horizontal=True, key="ds_scope", format_func=words.get)
    if scope == "split":
        st.plotly_chart(figures.histogram_figure(root, name, split, direction, c.directions), width="stretch",
                        key="ds_hist")
        url.update({"scope": None, "query": None})
        return None
    s = state.sides(root, name, split, direction)
    texts = c.queries(direction)
    key = f"ds_query_{direction}"
    default = state.example_query(root, name, split) if direction == "t2i" and s.relevant is not None else 0
    state.bind_query(key, direction, len(s.queries), default)
    q = st.selectbox(c.query_noun(direction).capitalize(), range(len(s.queries)), key=key,
                     format_func=lambda i: f"#{i}: {texts[i]}", on_change=state.on_query_change, args=(key, direction),
                     help="The same query as on Rankings and the Sampler playground: choosing one here chooses it "
                          "there too.")
    b = explore.batch(s, np.array([int(q)]))
    sims = b.sims[0].numpy()
    pos = b.positive_mask[0].numpy()
    fn = b.false_negative_mask[0].numpy() if b.false_negative_mask is not None else None
    fig = viz.similarity_histogram(sims[pos], sims[~pos & ~(fn if fn is not None else False)],
                                   fn_sims=sims[fn] if fn is not None else None, bins=40,
                                   marker=float(b.pos_sims[0]), title=f"Similarities of {c.query_noun(direction)} #{q}")
    st.plotly_chart(fig, width="stretch", key="ds_hist")
    url.update({"scope": "query", "query": q})


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    direction = state.direction()
    url.publish({k: st.query_params.get(k) for k in ("scope", "query", "estimator", "prior_mode", "prior")})
    _histogram_part(root, name, split, direction)
    _posterior_part(root, name, split, direction)


@st.fragment
def _posterior_part(root, name, split, direction) -> None:
    """The posterior's controls, scatter, reliability and sentence: a change here redraws this part only."""
    state.guard(lambda: _posterior(root, name, split, direction))


def _posterior(root, name, split, direction) -> None:
    run_est = state.loaded(root, name).estimator
    estimator, prior = _controls(run_est)
    url.update({"estimator": st.session_state.get("ds_estimator") if estimator is not None or prior != "auto"
                else None, "prior_mode": "fixed" if prior != "auto" else None,
                "prior": st.session_state.get("ds_prior") if prior != "auto" else None})
    if (estimator, prior) != (None, "auto"):
        pg = state.pages(root, name)
        label = "auto" if prior == "auto" else f"{float(prior):.6g}"
        if not pg.has("posterior", direction, estimator, label) and not (estimator == "paper" and prior != "auto"):
            state.distribution(root, name, split, direction)
            with st.spinner(f"Fitting {estimator} on the validation split (once; kept for next time)…"):
                pg.posterior(direction, estimator, prior)
    label = f"{estimator} (prior {'estimated' if prior == 'auto' else f'{float(prior):g}'})" if estimator else \
        "the run's posterior"
    left, right = st.columns(2)
    left.plotly_chart(figures.posterior_figure(root, name, split, direction, estimator, prior,
                                               title=f"P(false negative) of {label}, per pair"),
                      width="stretch", key="ds_posterior")
    rel, summary = figures.reliability_figure(root, name, split, direction, estimator, prior, label=label)
    smp, _ = state.distribution(root, name, split, direction)
    true_share = None
    if smp.false_negative is not None:
        s = state.sides(root, name, split, direction)
        unlabelled = len(s.queries) * len(s.candidates) - s.positives.nnz
        true_share = len(smp.false_negative) / max(unlabelled, 1)
    st.markdown(_what_it_shows(estimator or run_est, prior, summary, true_share))
    if rel is not None:
        right.plotly_chart(rel, width="stretch", key="ds_reliability")
        m = right.columns(3)
        m[0].metric("ECE", f"{summary['calibration error (ECE)']:.3f}",
                    help="Expected calibration error: the mean gap between predicted P(false negative) and the "
                         "observed rate, weighted by pairs (0 = perfectly calibrated).")
        m[1].metric("Mean P(FN)", f"{summary['mean P(false negative)']:.3f}",
                    help="Mean predicted P(false negative) over these pairs.")
        m[2].metric("True FN rate", f"{summary['true false-negative rate']:.3f}",
                    help=f"Share of the {summary['pairs']:,} pairs that truly match (ground truth).")
    else:
        right.info("This dataset has no ground truth: the reliability diagram needs known false negatives.")


state.guard(_page)
