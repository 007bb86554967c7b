"""Rankings: one query's top-K candidates with similarity, posterior and ground-truth badges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, state

st.title("Rankings")
state.sidebar()
st.caption("What a trained model ranks above (and around) a query's labelled positive. Green: the labelled "
           "positive; vermillion: a ground-truth false negative (a true match nobody labelled); blue: a true negative.")


def _query_picker(labels: np.ndarray, direction: str, default: int) -> int | None:
    """Text search, then a select box; a query opened from another page (or the URL) is selected first, else
    ``default`` (the run's example caption) on the session's first visit."""
    key = f"rk_query_{direction}"
    focus = st.session_state.pop("_rk_focus", None)
    if focus is None:
        focus = state.url_index("query")
    if focus is None and key not in st.session_state:
        focus = default
    if focus is not None and 0 <= int(focus) < len(labels):
        st.session_state["rk_search"] = ""
        st.session_state[key] = int(focus)
    text = st.text_input("Search queries", key="rk_search", placeholder="e.g. red circle",
                         help="Keeps the queries whose text contains these words.")
    hits = [i for i, t in enumerate(labels) if text.lower() in t.lower()] if text else list(range(len(labels)))
    if not hits:
        st.warning(f"No query contains {text!r}.")
        return None
    options = hits[:2000]
    current = st.session_state.get(key)
    if current is not None and current not in options and current in set(hits):
        options = [current, *options]
    return st.selectbox(f"Query ({len(hits):,} match)", options, format_func=lambda i: f"#{i}: {labels[i]}",
                        key=key)


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    direction = state.direction()
    c2, c3 = st.columns(2)
    k = c2.slider("Candidates shown (top K)", 5, 50, 15, key="rk_k")
    threshold = c3.slider("Suspect threshold on P(false negative)", 0.05, 0.99, 0.5, 0.01, key="rk_threshold",
                          help="A candidate whose posterior P(false negative) reaches this is badged as a suspect.")
    s = state.sides(str(root), name, split, direction)
    dkey = state.ds_key(root, name, split)
    labels = state.caption_array(dkey) if direction == "t2i" else state.label_array(dkey)
    q = _query_picker(labels, direction, state.example_query(root, name, split) if direction == "t2i" else 0)
    if q is None:
        return
    st.query_params["query"] = str(int(q))
    table, pos_rank, fig = figures.ranking(root, name, split, direction, int(q), k, threshold)
    n_a = len(state.run_embeddings(root, name, split)[0])
    top = st.columns([1, 3, 1])
    if direction == "i2t":
        img = state.image(dkey, int(q))
        if img is not None:
            top[0].image(img, caption=labels[q], width=96)
    if top[2].button("Show on the map", key="rk_to_map", icon=":material/scatter_plot:",
                     help="Open the Embedding map with this query selected."):
        state.open_on_map(int(q) + n_a if direction == "t2i" else int(q))
    n_fn = int(np.nansum(table["false_negative"].astype(float))) if s.relevant is not None else None
    m = st.columns(3)
    m[0].metric("Labelled positive lands at rank", pos_rank if pos_rank > 0 else "—")
    m[1].metric(f"Suspects in the top {k}", int((table["p_false_negative"] >= threshold).sum()),
                help=f"Candidates with P(false negative) ≥ {threshold:.2f}.")
    m[2].metric(f"Ground-truth false negatives in the top {k}", n_fn if n_fn is not None else "unknown")

    if direction == "t2i":
        table["image"] = state.thumbs(dkey, table["candidate"], 64)
    st.plotly_chart(fig, width="stretch", key="rk_chart")
    # badges next to the rank, long captions last, so nothing that matters is cut off on narrow screens
    cols = ["rank", "image", "badges", "similarity", "p_false_negative", "item"] if "image" in table else \
        ["rank", "badges", "similarity", "p_false_negative", "item"]
    if "why" in table:
        cols.append("why")
    st.dataframe(pd.DataFrame(table[cols]), hide_index=True, width="stretch", row_height=60,
                 height=min(1000, 40 + 61 * len(table)),
                 column_config={
                     "rank": st.column_config.NumberColumn("rank", width=50),
                     "image": st.column_config.ImageColumn("image", width="small"),
                     "similarity": st.column_config.ProgressColumn("similarity (cosine)", format="%.3f",
                                                                   min_value=-1.0, max_value=1.0, width=130),
                     "p_false_negative": st.column_config.ProgressColumn("P(false negative)", format="%.3f",
                                                                         min_value=0.0, max_value=1.0, width=130),
                     "badges": st.column_config.TextColumn("status", width=255),  # the longest badge in full
                     "item": st.column_config.TextColumn("candidate", width="large"),
                     "why": st.column_config.TextColumn("why suspected", width="large",
                                                        help="The evidence behind P(false negative)."),
                 })


state.guard(_page)
