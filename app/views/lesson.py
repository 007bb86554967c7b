"""Lesson: false negatives in five steps on the demo run, each with the live figure of the page it comes from.

A teacher runs it from start to end with "Next". Every figure is the run's own, and every sentence is written from
the numbers the figure shows, so the text never says what the chart does not: the example query and FNE's
setting are the ones where FNE's effect is large enough to see (:meth:`fnlab.storage.pages.RunPages.example`),
and a sampler that is as safe as FNE on this run is named as such.
"""

from __future__ import annotations

import streamlit as st

from app import figures, labels, state, url
from app.lesson_text import build_fne, fne_label, pool_table, safety_sentences
from fnlab import samplers
from fnlab.analysis import viz

st.title("Lesson: false negatives in five steps")
state.sidebar()

STEPS = ["What a false negative is", "Where they sit in a ranking", "Hardest-negative mining picks them",
         "FNE moves weight off them", "Is the posterior calibrated?"]
def _go(step: int) -> None:
    st.session_state["lesson_step"] = max(0, min(len(STEPS) - 1, step))


def _nav(step: int) -> None:
    c1, c2, c3 = st.columns([1, 4, 1])
    c1.button("Back", key="lesson_back", icon=":material/arrow_back:", disabled=step == 0, on_click=_go,
              args=(step - 1,), width="stretch")
    if step < len(STEPS) - 1:
        c3.button("Next", key="lesson_next", type="primary", icon=":material/arrow_forward:", icon_position="right",
                  on_click=_go, args=(step + 1,), width="stretch")
    else:
        c3.button("Start again", key="lesson_restart", icon=":material/replay:", on_click=_go, args=(0,),
                  width="stretch")
    c2.progress((step + 1) / len(STEPS), text=f"Step {step + 1} of {len(STEPS)}: {STEPS[step]}")


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    url.bind("lesson_step", "step", 0, lambda t: int(t) - 1, allowed=lambda v: 0 <= v < len(STEPS))
    step = int(st.session_state.get("lesson_step", 0))
    url.publish({"step": step + 1})
    ex = state.teaching_example(root, name, split)
    if ex is None:
        st.info("The lesson needs a dataset with ground truth (shapes or digits): pick such a run in the sidebar.")
        return
    c = state.content(root, name, split)
    n = c.nouns
    q = ex["query"]
    text = c.b_text[q]
    post = state.run_posterior(root, name)
    _nav(step)
    st.caption(f"Run **{name}**, {state.SPLIT_LABELS.get(split, split)} split. The example is {n.b} #{q}: “{text}”.")
    [_step0, _step1, _step2, _step3, _step4][step](root, name, split, ex, c, post)


def _step0(root, name, split, ex, c, post) -> None:
    n, q = c.nouns, ex["query"]
    text = c.b_text[q]
    st.markdown(
        f"Each {n.b} in the dataset is **labelled** with one {n.a}, its positive. But {labels.an(n.b)} such as “{text}” also "
        f"fits other {n.a_plural} nobody labelled: those pairs are **false negatives**. Contrastive training treats "
        "every unlabelled pair as a negative, so it pushes these true matches apart.")
    cols = st.columns(4)
    for col, i, what in ((cols[0], ex["positive"], "labelled positive"), (cols[1], ex["false_negative"],
                                                                           "false negative")):
        if i is None:
            continue
        img = state.image(root, name, split, int(i))
        if img is not None:
            col.image(img, width=128, caption=f"{what}: {c.a_text[int(i)]}")
        else:
            col.markdown(f"**{what}:** {c.a_text[int(i)]}")
    cols[2].markdown(f"**{n.b.capitalize()} #{q}**\n\n“{text}”")
    cols[3].markdown(f"Same {n.b}, two {n.a_plural} that fit it; only the first is labelled. The Data page's "
                     f"gallery counts each {n.a}'s false negatives.")


def _step1(root, name, split, ex, c, post) -> None:
    n = c.nouns
    table, pos_rank, fig = figures.ranking(root, name, split, "t2i", ex["query"], 15, 0.5)
    n_above = int(((table["false_negative"] == True) & (table["rank"] < max(pos_rank, 1))).sum())  # noqa: E712
    st.markdown(
        f"The trained model ranks every {n.a} for this {n.b}. Its labelled positive lands at rank **{pos_rank}**, "
        f"and **{n_above}** false negative{'s rank' if n_above != 1 else ' ranks'} above it: false negatives look "
        "like matches, so they sit at the top of the ranking, exactly where hard negatives are mined. (From the "
        "Rankings page.)")
    st.plotly_chart(fig, width="stretch", key="lesson_ranking")


def _step2(root, name, split, ex, c, post) -> None:
    built = {"hardest": samplers.build("hardest"), "random": samplers.build("random")}
    fig, _ = figures.sampler_bars(root, name, split, "t2i", ex["query"], built, 20)
    here = ("and here that is a false negative (the vermillion bar)" if ex.get("hardest_pick_is_fn")
            else "here a true negative, but on many queries a false negative")
    st.markdown(
        f"A sampler decides which candidate becomes *the* negative for this {c.nouns.b}. **Hardest** (VSE++) puts "
        f"all its weight on the most similar non-positive, {here}; random spreads its weight, so it rarely hits one. "
        "(From the Sampler playground.)")
    st.plotly_chart(fig, width="stretch", key="lesson_hardest")


def _step3(root, name, split, ex, c, post) -> None:
    me = fne_label(ex)
    fig, _ = figures.sampler_bars(root, name, split, "t2i", ex["query"],
                                  {"hardest": samplers.build("hardest"), me: build_fne(ex, post)}, 20)
    t = pool_table(ex)
    risk = dict(zip(t["sampler"], t["fn_risk"], strict=True))
    pool = ex.get("pool_split", split)
    st.markdown(
        f"**FNE** weighs each candidate by how hard it is *and* by the run's posterior P(false negative): likely "
        f"false negatives lose weight, which moves to hard candidates that are truly negative. Here FNE runs "
        f"{labels.fne_setting(ex.get('fne_params') or {})}. For this {c.nouns.b} it draws a false negative "
        f"{ex['fne_fn_risk']:.0%} of the time, against {ex['hardest_fn_risk']:.0%} for hardest (the bars). Over a "
        f"batch of {ex.get('pool_queries', 128)} {pool} {c.nouns.b_plural}, {risk[me]:.1%} of FNE's draws are false "
        f"negatives against {risk['hardest']:.1%} for hardest (the lower chart: right is harder, down is safer).")
    for sentence in safety_sentences(ex):
        st.markdown(sentence)
    st.plotly_chart(fig, width="stretch", key="lesson_fne")
    st.plotly_chart(viz.hardness_risk_scatter(t, styles=labels.sampler_styles(t["sampler"])), width="stretch",
                    key="lesson_scatter")


def _step4(root, name, split, ex, c, post) -> None:
    rel, summary = figures.reliability_figure(root, name, split, "t2i")
    if summary:
        gap = summary["mean P(false negative)"] - summary["true false-negative rate"]
        verdict = (f"over-confident: it predicts {summary['mean P(false negative)']:.2f} on average where "
                   f"{summary['true false-negative rate']:.2f} truly match" if gap > 0.05 else
                   f"under-confident: it predicts {summary['mean P(false negative)']:.2f} on average where "
                   f"{summary['true false-negative rate']:.2f} truly match" if gap < -0.05 else
                   f"about right on average ({summary['mean P(false negative)']:.2f} predicted, "
                   f"{summary['true false-negative rate']:.2f} true)")
        ece = summary["calibration error (ECE)"]
    else:
        verdict, ece = "not measurable without ground truth", float("nan")
    st.markdown(
        "FNE trusts the posterior, so it should be **calibrated**: of the pairs it calls 30% likely matches, about "
        f"30% should truly match. The reliability diagram bins each {c.nouns.b}'s top unlabelled candidates by "
        f"predicted P(false negative) against the observed rate; on this run the mean gap (ECE) is **{ece:.3f}**, "
        f"and the posterior is {verdict}. Points under the diagonal mean over-confidence, above it "
        "under-confidence. (From the Distributions page, which also lets you try other estimators and priors.)")
    if rel is not None:
        st.plotly_chart(rel, width="stretch", key="lesson_reliability")
    st.success("That is the lesson. Explore any step on its own page in the sidebar.")


state.guard(_page)
