"""Sampler playground: the weights each sampler puts on a query's ranked candidates, live.

The centre of the teaching demo: move a slider and watch which negatives a sampler would draw,
coloured by ground truth, and where each sampler sits between hardness and false-negative risk.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures, labels, state, url
from fnlab import samplers as smp
from fnlab.analysis import viz

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


def _slug(label: str) -> str:
    return label.replace(" · ", ".").replace(" ", "_")


def _widget(sampler: str, spec, key: str, url_name: str, default=None):
    """One widget for a ParamSpec: a radio for choices, int/float slider, log-scale for wide positive ranges,
    an optional toggle. Its value is in the URL (``url_name``) when it differs from the default."""
    label = labels.param(sampler, spec.name)
    default = spec.default if default is None else default
    if spec.choices:
        url.bind(key, url_name, default, url.as_str, allowed=list(spec.choices))
        return st.radio(label, list(spec.choices), key=key, format_func=spec.choice_label, horizontal=True,
                        help=spec.help)
    if spec.optional:
        url.bind(key + "_on", url_name + ".on", spec.default is not None, lambda t: t == "1", allowed=(True, False))
        on = st.checkbox(f"Use: {label.lower()}", key=key + "_on", help=spec.help)
        if not on:
            return None
    value = default if default is not None else (spec.low + spec.high) / 2
    if spec.integer:
        url.bind(key, url_name, int(value), url.as_int, allowed=lambda v: spec.low <= v <= spec.high)
        return st.slider(label, int(spec.low), int(spec.high), key=key, help=spec.help)
    if spec.low > 0 and spec.high / spec.low >= 1000:
        grid = sorted({float(f"{v:.2g}") for v in np.logspace(np.log10(spec.low), np.log10(spec.high), 25)}
                      | {float(value)})
        url.bind(key, url_name, float(value), url.as_float, allowed=grid)
        return st.select_slider(label, grid, key=key, help=spec.help)
    url.bind(key, url_name, float(value), url.as_float, allowed=lambda v: spec.low <= v <= spec.high)
    step = (spec.high - spec.low) / 100
    return st.slider(label, float(spec.low), float(spec.high), step=step, key=key, help=spec.help)


def _build(chosen: list[str], posterior, lesson: dict) -> tuple[dict, dict]:
    """The chosen samplers built with their widgets' parameters: ``(built, params by label)``. FNE's calibrated
    variant starts from the lesson's setting (the one where its effect shows on this run)."""
    built, params_of = {}, {}
    cols = st.columns(min(4, max(1, len(chosen))))
    for i, label in enumerate(chosen):
        name, fixed = VARIANTS[label]
        start = lesson if name == "fne" and fixed.get("mode", "calibrated") == lesson.get("mode", "calibrated") else {}
        with cols[i % len(cols)].expander(label, expanded=True, icon=":material/tune:"):
            params = dict(fixed)
            # parameters that do nothing here: training-only ones (the playground hands a sampler the run's
            # posterior) and those whose choice parameter says they do not apply; choice parameters come first
            # so that the parameters they switch on are known to apply when their turn comes
            for spec in sorted(smp.param_specs(name), key=lambda s: s.choices is None):
                if spec.name not in fixed and not spec.training_only and spec.applies(params):
                    params[spec.name] = _widget(name, spec, f"pg_{label}_{spec.name}",
                                                f"{_slug(label)}.{spec.name}", start.get(spec.name))
            if len(params) == len(fixed):
                st.caption("no parameters")
            try:
                built[label] = smp.build_for_run(name, params, posterior=posterior)
                params_of[label] = params
            except ValueError as err:  # e.g. a rank window that ends before it starts
                st.warning(f"{err}: not shown.")
    return built, params_of


def _url_params(params_of: dict) -> dict:
    """The sampler parameters that differ from their defaults, as URL parameters."""
    out = {}
    for label, params in params_of.items():
        name, fixed = VARIANTS[label]
        for spec in smp.param_specs(name):
            if spec.name in params and spec.name not in fixed and params[spec.name] != spec.default:
                v = params[spec.name]
                out[f"{_slug(label)}.{spec.name}"] = v
                if spec.optional:
                    out[f"{_slug(label)}.{spec.name}.on"] = "1"
            elif spec.optional and spec.name in params and params[spec.name] is None and spec.default is not None:
                out[f"{_slug(label)}.{spec.name}.on"] = "0"
    return out


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    c2, c3 = st.columns([3, 1])
    direction = state.direction()
    s = state.sides(root, name, split, direction)
    nq = len(s.queries)
    c = state.content(root, name, split)
    texts = c.queries(direction)
    ex = state.teaching_example(root, name, split) if s.relevant is not None else None
    key = f"pg_query_{direction}"
    state.bind_query(key, direction, nq, ex["query"] if ex is not None and direction == "t2i" else 0)
    q = c2.selectbox(c.query_noun(direction).capitalize(), range(nq), format_func=lambda i: f"#{i}: {texts[i]}",
                     key=key, on_change=state.on_query_change, args=(key, direction))
    hi = min(100, len(s.candidates))
    url.bind("pg_m", "m", min(30, len(s.candidates)), url.as_int, allowed=lambda v: 10 <= v <= hi)
    top_m = c3.slider("Candidates shown (ranks)", 10, hi, key="pg_m")
    url.bind("pg_samplers", "samplers", DEFAULT, url.as_list, allowed=list(VARIANTS))
    chosen = st.multiselect("Samplers", list(VARIANTS), key="pg_samplers")
    if NOT_SHOWN:
        st.caption("Not shown here (their weights depend on what training builds): "
                   + "; ".join(f"**{labels.short_sampler(n)}**: {why}" for n, why in NOT_SHOWN.items()))
    if not chosen:
        url.publish({"query": q, "m": top_m, "samplers": ""})
        st.info("Pick at least one sampler.")
        return
    posterior = state.pages(root, name).posterior(direction)
    samplers, params_of = _build(chosen, posterior, dict((ex or {}).get("fne_params") or {}))
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
    pool_split = state.pages(root, name).pool_split(split)
    ps = state.sides(root, name, pool_split, direction)
    hi_b = min(512, len(ps.queries))
    url.bind("pg_batch", "batch", min(128, len(ps.queries)), url.as_int, allowed=lambda v: 8 <= v <= hi_b)
    bsize = st.slider("Queries averaged (a random batch, fixed seed)", 8, hi_b, key="pg_batch")
    url.publish({"query": q, "m": top_m, "samplers": chosen, "batch": bsize, **_url_params(params_of)})
    summary = state.sampler_summary(root, name, split, direction, int(bsize), samplers, params_of)
    left, right = st.columns([3, 2])
    left.plotly_chart(viz.hardness_risk_scatter(summary, styles=labels.sampler_styles(summary["sampler"])),
                      width="stretch", key="pg_scatter")
    right.dataframe(summary, hide_index=True, width="stretch", column_order=["sampler", "hardness", "fn_risk"],
                    column_config={"sampler": st.column_config.TextColumn("sampler"),
                                   "fn_risk": st.column_config.NumberColumn("FN risk", format="percent"),
                                   "hardness": st.column_config.NumberColumn("hardness (cosine)", format="%.3f")})
    source = summary["risk_source"].iloc[0] if len(summary) else "ground truth"
    where = (f"the {len(ps.candidates)} {c.candidate_noun(direction, True)} of the training split, the pool size "
             "samplers see in training" if pool_split != split
             else f"the {len(ps.candidates)} {c.candidate_noun(direction, True)} of the {split} split")
    right.caption(f"{min(int(bsize), len(ps.queries))} {c.query_noun(direction, True)}, each against {where}. "
                  f"Hardness: expected similarity of the drawn negative. FN risk: expected share of drawn negatives "
                  f"that truly match the query (here from the {source}).")
    if pool_split == split and len(ps.candidates) < 1000:
        right.caption("A small pool: SimANS ranks only its top 100 candidates, here a large part of the pool, so it "
                      "draws almost at random. Train with the training split's embeddings saved (the demo run does) "
                      "to compare samplers on a training-sized pool.")


state.guard(_page)
