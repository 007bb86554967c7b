"""Sampler playground: the weights each sampler puts on a query's ranked candidates, live.

The centre of the teaching demo: move a slider and watch which negatives a sampler would draw,
coloured by ground truth, and where each sampler sits between hardness and false-negative risk.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures, labels, state
from fnlab import samplers as smp
from fnlab.analysis import explore, viz

st.title("Sampler playground")
state.sidebar()
st.caption("Bars: the probability that each sampler draws a candidate as *the* negative for this query, "
           "candidates ranked by similarity. Vermillion bars are false negatives: probability spent there pushes "
           "true matches apart. FNE uses the run's own posterior.")

# variant label -> (registry name, fixed keyword arguments), from the sampler registry: one per sampler and per
# value of its variant parameter ("fne · paper"); samplers whose weights need training state say why not
VARIANTS = {label: v for label, v in smp.variants().items() if not smp.playground_note(v[0])}
NOT_SHOWN = {name: smp.playground_note(name) for name in smp.available() if smp.playground_note(name)}
DEFAULT = [label for label, (name, _) in VARIANTS.items() if smp.entry(name).meta.get("playground_default")]


def _widget(sampler: str, spec, key: str):
    """One widget for a ParamSpec: a radio for choices, int/float slider, log-scale for wide positive ranges,
    an optional toggle."""
    label = labels.param(sampler, spec.name)
    if spec.choices:
        return st.radio(label, list(spec.choices), index=list(spec.choices).index(spec.default), key=key,
                        format_func=spec.choice_label, horizontal=True, help=spec.help)
    if spec.optional:
        on = st.checkbox(f"Use: {label.lower()}", value=spec.default is not None, key=key + "_on", help=spec.help)
        if not on:
            return None
    default = spec.default if spec.default is not None else (spec.low + spec.high) / 2
    if spec.integer:
        return st.slider(label, int(spec.low), int(spec.high), int(default), key=key, help=spec.help)
    if spec.low > 0 and spec.high / spec.low >= 1000:
        grid = sorted({float(f"{v:.2g}") for v in np.logspace(np.log10(spec.low), np.log10(spec.high), 25)}
                      | {float(default)})
        return st.select_slider(label, grid, value=float(default), key=key, help=spec.help)
    step = (spec.high - spec.low) / 100
    return st.slider(label, float(spec.low), float(spec.high), float(default), step=step, key=key, help=spec.help)


def _build(chosen: list[str], posterior) -> dict:
    built = {}
    cols = st.columns(min(4, max(1, len(chosen))))
    for i, label in enumerate(chosen):
        name, fixed = VARIANTS[label]
        with cols[i % len(cols)].expander(label, expanded=True, icon=":material/tune:"):
            params = dict(fixed)
            # parameters that do nothing here: training-only ones (the playground hands a sampler the run's
            # posterior) and those whose choice parameter says they do not apply
            for spec in smp.param_specs(name):
                if spec.name not in fixed and not spec.training_only and spec.applies(params):
                    params[spec.name] = _widget(name, spec, f"pg_{label}_{spec.name}")
            if len(params) == len(fixed):
                st.caption("no parameters")
            try:
                built[label] = smp.build_for_run(name, params, posterior=posterior)
            except ValueError as err:  # e.g. a rank window that ends before it starts
                st.warning(f"{err}: not shown.")
    return built


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    c2, c3 = st.columns([3, 1])
    direction = state.direction()
    s = state.sides(str(root), name, split, direction)
    nq = len(s.queries)
    dkey = state.ds_key(root, name, split)
    caps, labs = state.caption_array(dkey), state.label_array(dkey)
    describe = caps.__getitem__ if direction == "t2i" else labs.__getitem__
    key = f"pg_query_{direction}"
    if key not in st.session_state and direction == "t2i":  # the session's first visit: the run's example caption
        st.session_state[key] = state.example_query(root, name, split)
    q = c2.selectbox("Query", range(nq), format_func=lambda i: f"#{i}: {describe(i)}", key=key)
    top_m = c3.slider("Candidates shown (ranks)", 10, min(100, len(s.candidates)), min(30, len(s.candidates)), key="pg_m")
    chosen = st.multiselect("Samplers", list(VARIANTS), default=DEFAULT, key="pg_samplers")
    if NOT_SHOWN:
        st.caption("Not shown here (their weights depend on what training builds): "
                   + "; ".join(f"**{labels.short_sampler(n)}**: {why}" for n, why in NOT_SHOWN.items()))
    if not chosen:
        st.info("Pick at least one sampler.")
        return
    posterior = state.run_posterior(root, name)
    samplers = _build(chosen, posterior)
    if s.relevant is None:
        hidden = [label for label, smp_ in samplers.items() if getattr(smp_, "needs_relevance", False)]
        for label in hidden:
            samplers.pop(label)
        if hidden:
            st.caption(f"No ground truth: {', '.join(hidden)} hidden; false-negative risk uses the posterior.")

    fig, outside = figures.sampler_bars(root, name, split, direction, int(q), samplers, int(top_m))
    st.plotly_chart(fig, width="stretch", key="pg_bars")
    if outside:
        st.caption("Probability on candidates ranked below the ones shown: " + ", ".join(outside))

    st.subheader("Hardness vs false-negative risk")
    pool = state.pool_split(root, name, split)
    ps = state.sides(str(root), name, pool, direction)
    bsize = st.slider("Queries averaged (a random batch, fixed seed)", 8, min(512, len(ps.queries)),
                      min(128, len(ps.queries)), key="pg_batch")
    bb = state.query_batch(str(root), name, pool, direction, int(bsize))
    summary = explore.sampler_summary(bb, explore.sampler_weights(bb, samplers), posterior=posterior, sides=ps)
    left, right = st.columns([3, 2])
    left.plotly_chart(viz.hardness_risk_scatter(summary), width="stretch", key="pg_scatter")
    right.dataframe(summary, hide_index=True, width="stretch", column_order=["sampler", "hardness", "fn_risk"],
                    column_config={"sampler": st.column_config.TextColumn("sampler"),
                                   "fn_risk": st.column_config.NumberColumn("FN risk", format="percent"),
                                   "hardness": st.column_config.NumberColumn("hardness (cosine)", format="%.3f")})
    source = summary["risk_source"].iloc[0] if len(summary) else "ground truth"
    where = (f"the {len(ps.candidates)} candidates of the training split, the pool size samplers see in training"
             if pool != split else f"the {len(ps.candidates)} candidates of the {split} split")
    right.caption(f"{len(bb.queries)} queries, each against {where}. Hardness: expected similarity of the drawn "
                  f"negative. FN risk: expected share of drawn negatives that truly match the query (here from the "
                  f"{source}).")
    if pool == split and len(ps.candidates) < 1000:
        right.caption("A small pool: SimANS ranks only its top 100 candidates, here a large part of the pool, so it "
                      "draws almost at random. Train with the training split's embeddings saved (the demo run does) "
                      "to compare samplers on a training-sized pool.")


state.guard(_page)
