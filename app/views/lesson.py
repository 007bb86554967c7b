"""Lesson: false negatives in five steps on the demo run, each with the live figure of the page it comes from.

A teacher runs it from start to end with "Next"; every figure is computed from the run in the sidebar.
"""

from __future__ import annotations

import streamlit as st

from app import figures, state
from fnlab import samplers
from fnlab.analysis import explore, viz

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


def _samplers(post, *names: str) -> dict:
    built = {"hardest": lambda: samplers.build("hardest"), "random": lambda: samplers.build("random"),
             "semihard": lambda: samplers.build("semihard"),
             "fne · calibrated": lambda: samplers.build("fne", mode="calibrated", posterior=post)}
    return {n: built[n]() for n in names}


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    step = int(st.session_state.get("lesson_step", 0))
    ex = state.teaching_example(str(root), name, split, state.run_key(root, name))
    if ex is None:
        st.info("The lesson needs a dataset with ground truth (shapes or digits): pick such a run in the sidebar.")
        return
    q, fn_cand, pos_cand = ex["query"], ex["false_negative"], ex["positive"]
    dkey = state.ds_key(root, name, split)
    caption = state.caption_array(dkey)[q]
    post = state.run_posterior(root, name)
    _nav(step)
    st.caption(f"Run **{name}**, {split} split. The example is caption #{q}: “{caption}”.")
    if step == 0:
        st.markdown(
            f"Each caption in the dataset is **labelled** with one image, its positive. But a caption such as "
            f"“{caption}” also describes other images nobody labelled: those pairs are **false negatives**. "
            "Contrastive training treats every unlabelled pair as a negative, so it pushes these true matches apart.")
        cols = st.columns(4)
        for col, i, text in ((cols[0], pos_cand, "labelled positive"), (cols[1], fn_cand, "false negative")):
            if i is None:
                continue
            img = state.image(dkey, int(i))
            if img is not None:
                col.image(img, width=128, caption=f"{text}: {state.label_array(dkey)[int(i)]}")
        cols[2].markdown(f"**Caption #{q}**\n\n“{caption}”")
        cols[3].markdown("Same caption, two images that fit it; only the first is labelled. The Data page's "
                         "gallery counts each image's false negatives.")
    elif step == 1:
        table, pos_rank, fig = figures.ranking(root, name, split, "t2i", q, 15, 0.5)
        n_above = int(((table["false_negative"] == True) & (table["rank"] < max(pos_rank, 1))).sum())  # noqa: E712
        st.markdown(
            f"The trained model ranks every image for this caption. Its labelled positive lands at rank **{pos_rank}**, "
            f"and **{n_above}** false negatives rank above it: false negatives look like matches, so they sit at the "
            "top of the ranking, exactly where hard negatives are mined. (From the Rankings page.)")
        st.plotly_chart(fig, width="stretch", key="lesson_ranking")
    elif step == 2:
        fig, _ = figures.sampler_bars(root, name, split, "t2i", q, _samplers(post, "hardest", "random"), 20)
        here = ("and here that is a false negative (the vermillion bar)" if ex.get("hardest_pick_is_fn")
                else "here a true negative, but on many captions a false negative")
        st.markdown(
            "A sampler decides which candidate becomes *the* negative for this caption. **Hardest** (VSE++) puts all "
            f"its weight on the most similar non-positive, {here}; random spreads its weight, so it rarely hits one. "
            "(From the Sampler playground.)")
        st.plotly_chart(fig, width="stretch", key="lesson_hardest")
    elif step == 3:
        samplers = _samplers(post, "hardest", "fne · calibrated", "semihard", "random")
        fig, _ = figures.sampler_bars(root, name, split, "t2i", q,
                                      {k: samplers[k] for k in ("hardest", "fne · calibrated")}, 20)
        pool = state.pool_split(root, name, split)
        bb = state.query_batch(str(root), name, pool, "t2i", 128)
        summary = explore.sampler_summary(bb, explore.sampler_weights(bb, samplers), posterior=post,
                                          sides=state.sides(str(root), name, pool, "t2i"))
        risk = dict(zip(summary["sampler"], summary["fn_risk"], strict=True))
        st.markdown(
            "**FNE** weighs each candidate by how hard it is *and* by the run's posterior P(false negative): likely "
            "false negatives lose weight, which moves to hard candidates that are truly negative. Over a batch of "
            f"{len(bb.queries)} {pool} captions on this run, {risk['fne · calibrated']:.1%} of FNE's draws are false "
            f"negatives against {risk['hardest']:.1%} for hardest and {risk['random']:.1%} for random (the lower "
            "chart: right is harder, down is safer). How far it gets depends on how sharp the posterior is.")
        st.plotly_chart(fig, width="stretch", key="lesson_fne")
        st.plotly_chart(viz.hardness_risk_scatter(summary), width="stretch", key="lesson_scatter")
    else:
        rel, summary = figures.reliability_figure(root, name, split, "t2i")
        ece = summary["calibration error (ECE)"] if summary else float("nan")
        st.markdown(
            "FNE trusts the posterior, so it should be **calibrated**: of the pairs it calls 30% likely matches, about "
            "30% should truly match. The reliability diagram bins each caption's top unlabelled candidates by "
            f"predicted P(false negative) against the observed rate; on this run the mean gap (ECE) is **{ece:.3f}**. "
            "Points under the diagonal mean over-confidence. (From the Distributions page.)")
        if rel is not None:
            st.plotly_chart(rel, width="stretch", key="lesson_reliability")
        st.success("That is the lesson. Explore any step on its own page in the sidebar.")


state.guard(_page)
