"""Rankings: one query's top-K candidates with similarity, posterior and ground-truth badges (read, not computed:
every query's ranking is stored with the run's pages)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, state, url
from fnlab.analysis import explore, review

st.title("Rankings")
state.sidebar()
st.caption("What a trained model ranks above (and around) a query's labelled positive. Green: the labelled "
           "positive; vermillion: a ground-truth false negative (a true match nobody labelled); blue: a true negative.")


def _query_picker(texts: np.ndarray, direction: str, default: int, noun: str, plural: str) -> int | None:
    """Text search, then a select box over the query every page shares (one opened from another page or the URL
    first, else the run's example on the session's first visit)."""
    key = f"rk_query_{direction}"
    state.bind_query(key, direction, len(texts), default)
    url.bind("rk_search", "search", "")
    text = st.text_input(f"Search {plural}", key="rk_search", placeholder="words of the text",
                         help=f"Keeps the {plural} whose text contains these words.")
    hits = [i for i, t in enumerate(texts) if text.lower() in str(t).lower()] if text else list(range(len(texts)))
    if not hits:
        st.warning(f"No {noun} contains {text!r}.")
        return None
    options = hits[:2000]
    current = st.session_state.get(key)
    if current is not None and current not in options:
        options = [current, *options]
    return st.selectbox(f"{noun.capitalize()} ({len(hits):,} match)", options, key=key,
                        format_func=lambda i: f"#{i}: {texts[i]}", on_change=state.on_query_change,
                        args=(key, direction))


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    direction = state.direction()
    c = state.content(root, name, split)
    qnoun = c.query_noun(direction)
    c2, c3 = st.columns(2)
    url.bind("rk_k", "k", 15, url.as_int, allowed=lambda v: 5 <= v <= 50)
    k = c2.slider("Candidates shown (top K)", 5, 50, key="rk_k")
    url.bind("rk_threshold", "threshold", 0.5, url.as_float, allowed=lambda v: 0.05 <= v <= 0.99)
    threshold = c3.slider("Suspect threshold on P(false negative)", 0.05, 0.99, step=0.01, key="rk_threshold",
                          help="A candidate whose posterior P(false negative) reaches this is badged as a suspect.")
    default = state.example_query(root, name, split) if direction == "t2i" else 0
    q = _query_picker(c.queries(direction), direction, default, qnoun, c.query_noun(direction, True))
    url.publish({"query": q, "k": k, "threshold": threshold, "search": st.session_state.get("rk_search") or None})
    if q is None:
        return
    table, pos_rank, fig = figures.ranking(root, name, split, direction, int(q), k, threshold)
    s = state.sides(root, name, split, direction)
    n_a = len(s.candidates) if direction == "t2i" else len(s.queries)
    top = st.columns([1, 3, 1])
    if c.queries_are_images(direction):
        img = state.image(root, name, split, int(q))
        if img is not None:
            top[0].image(img, caption=c.queries(direction)[q], width=96)
    top[2].button("Show on the map", key="rk_to_map", icon=":material/scatter_plot:",
                  help=f"Open the Embedding map with this {qnoun} selected.", on_click=state.open_on_map,
                  args=(int(q) + n_a if direction == "t2i" else int(q),))
    unlabelled = ~table["labelled_positive"].to_numpy()
    suspects = int((table["p_false_negative"].to_numpy()[unlabelled] >= threshold).sum())
    n_fn = int(np.nansum(table["false_negative"].astype(float))) if s.relevant is not None else None
    m = st.columns(3)
    m[0].metric("Labelled positive lands at rank", pos_rank if pos_rank > 0 else "—")
    m[1].metric(f"Suspects in the top {k}", suspects,
                help=f"Unlabelled candidates with P(false negative) ≥ {threshold:.2f}.")
    m[2].metric(f"Ground-truth false negatives in the top {k}", n_fn if n_fn is not None else "unknown")
    if n_fn and not suspects:
        fn_p = table.loc[table["false_negative"] == True, "p_false_negative"]  # noqa: E712
        st.caption(f"None of the {n_fn} ground-truth false negatives shown reaches P = {threshold:.2f} (the highest "
                   f"is {np.nanmax(fn_p):.3f}): the run's posterior is not confident about them. Lower the threshold, "
                   "or see its calibration on **Distributions**.")

    if c.candidates_are_images(direction):
        table["image"] = state.thumbs(root, name, split, table["candidate"], 64)
    st.plotly_chart(fig, width="stretch", key="rk_chart")
    # badges next to the rank, long texts last, so nothing that matters is cut off at 1280 px
    cols = ["rank", "image", "badges", "similarity", "p_false_negative", "item"] if "image" in table else \
        ["rank", "badges", "similarity", "p_false_negative", "item"]
    if "why" in table:
        cols.append("why")
    st.dataframe(pd.DataFrame(table[cols]), hide_index=True, width="stretch", row_height=60 if "image" in table else 35,
                 height=min(1000, 40 + (61 if "image" in table else 36) * len(table)),
                 column_config={
                     "rank": st.column_config.NumberColumn("rank", width=42),
                     "image": st.column_config.ImageColumn(c.nouns.a, width=64),
                     "similarity": st.column_config.ProgressColumn("cosine", format="%.3f", min_value=-1.0,
                                                                   max_value=1.0, width=90),
                     "p_false_negative": st.column_config.ProgressColumn("P(FN)", format="%.3f", min_value=0.0,
                                                                         max_value=1.0, width=90,
                                                                         help="P(false negative), the run's posterior"),
                     "badges": st.column_config.TextColumn("status", width=175,
                                                           help="labelled positive and false negative: ground truth; "
                                                                "suspect: P(false negative) at or above the threshold"),
                     "item": st.column_config.TextColumn(c.candidate_noun(direction), width=250 if "why" in table else 330),
                     "why": st.column_config.TextColumn("why suspected", width=170,
                                                        help="The evidence behind P(false negative)."),
                 })
    export = explore.with_content(table[["rank", "candidate", "similarity", "p_false_negative", "status"]]
                                  .assign(query=int(q)), state.run_dataset(root, name, split), direction=direction)
    st.download_button(f"Download this ranking (CSV, with each {c.candidate_noun(direction)}'s content)",
                       review.export_bytes(export, "csv"), f"ranking-{name}-{split}-{direction}-{q}.csv", "text/csv",
                       key="rk_download")


state.guard(_page)
