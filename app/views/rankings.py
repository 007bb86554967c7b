"""Rankings: one query's top-K candidates with similarity, posterior and ground-truth badges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import state
from fnlab import explore, viz

st.title("Rankings")
state.sidebar()
st.caption("What a trained model ranks above (and around) a query's labelled positive. "
           "Green = labelled positive, orange = ground-truth false negative, blue = true negative.")


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    c1, c2, c3 = st.columns([1, 1, 1])
    direction = c1.radio("Direction", list(explore.DIRECTIONS), format_func=explore.DIRECTIONS.get,
                         horizontal=True, key="rk_direction")
    k = c2.slider("Top K", 5, 50, 15, key="rk_k")
    threshold = c3.slider("Suspect threshold on P(FN)", 0.05, 0.99, 0.5, 0.01, key="rk_threshold")
    s = state.sides(str(root), name, split, direction)
    post = state.run_posterior(root, name)
    dkey = state.ds_key(root, name, split)

    # Query choice: text search over captions (t2i) or item labels (i2t), then a select box.
    labels = state.caption_array(dkey) if direction == "t2i" else state.label_array(dkey)
    text = st.text_input("Search queries", key="rk_search", placeholder="e.g. red circle")
    hits = [i for i, t in enumerate(labels) if text.lower() in t.lower()] if text else list(range(len(labels)))
    if not hits:
        st.warning(f"No query contains {text!r}.")
        return
    q = st.selectbox(f"Query ({len(hits):,} match)", hits[:2000], format_func=lambda i: f"#{i}: {labels[i]}",
                     key=f"rk_query_{direction}")
    table, pos_rank = explore.ranking(s, int(q), k=k, posterior=post)
    if direction == "i2t":
        img = state.image(dkey, int(q))
        if img is not None:
            st.image(img, caption=labels[q], width=96)
    n_fn = int(np.nansum(table["false_negative"].astype(float))) if s.relevant is not None else None
    m = st.columns(3)
    m[0].metric("Labelled positive lands at rank", pos_rank if pos_rank > 0 else "—")
    m[1].metric(f"Suspects in top {k} (P ≥ {threshold:.2f})", int((table["p_false_negative"] >= threshold).sum()))
    m[2].metric(f"Ground-truth false negatives in top {k}", n_fn if n_fn is not None else "unknown")

    if direction == "t2i":
        table["item"] = state.label_array(dkey)[table["candidate"].to_numpy()]
        table["image"] = state.thumbs(dkey, table["candidate"], 64)
    else:
        table["item"] = state.caption_array(dkey)[table["candidate"].to_numpy()]
    table["label"] = table["item"]
    badges = []
    for r in table.itertuples():
        b = []
        if r.labelled_positive:
            b.append("labelled positive")
        if r.false_negative is True:
            b.append("ground-truth FN")
        if not r.labelled_positive and r.p_false_negative >= threshold:
            b.append("suspected FN")
        badges.append(" · ".join(b))
    table["badges"] = badges
    st.plotly_chart(viz.similarity_rank_bars(table, threshold=threshold, title=f"Top {k} for query #{q}"),
                    width="stretch", key="rk_chart")
    # badges next to the rank, long captions last, so nothing that matters is cut off on narrow screens
    cols = ["rank", "image", "badges", "similarity", "p_false_negative", "item"] if "image" in table else \
        ["rank", "badges", "similarity", "p_false_negative", "item"]
    st.dataframe(pd.DataFrame(table[cols]), hide_index=True, width="stretch", row_height=60,
                 height=min(1000, 40 + 61 * len(table)),
                 column_config={
                     "image": st.column_config.ImageColumn("image", width="small"),
                     "similarity": st.column_config.ProgressColumn("similarity", format="%.3f", min_value=-1.0,
                                                                   max_value=1.0),
                     "p_false_negative": st.column_config.ProgressColumn("P(false negative)", format="%.3f",
                                                                         min_value=0.0, max_value=1.0),
                     "badges": st.column_config.TextColumn("badges", width="medium"),
                     "item": st.column_config.TextColumn("candidate", width="large"),
                 })


state.guard(_page)
