"""Suspects: the scan's suspected false negatives, reviewed one by one; decisions persist in the run."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import streamlit as st

from app import state
from fnlab import review

st.title("Suspects")
state.sidebar()
st.caption("Unlabelled pairs the model ranks high and the posterior calls likely matches. Mark each as a false "
           "negative or a true negative: every click is saved at once (an interrupted session loses nothing).")


def _source():
    src = st.radio("Suspects of", ["the selected run", "uploaded embeddings"], horizontal=True, key="sus_source")
    top_k = st.slider("Candidates scanned per query (top-k)", 5, 100, 20, key="sus_topk")
    if src == "the selected run":
        cur = state.current_run()
        if cur is None:
            return None
        root, name, split = cur
        table, summary = state.scan_run(str(root), name, split, int(top_k), state.run_key(root, name))
        ds = state.run_dataset(root, name, split)
        store = review.RunDecisions(state.get_run(root, name))
        return table, summary, store, (ds, state.ds_key(root, name, split)), f"{name}-{split}"
    c1, c2, c3 = st.columns(3)
    q = c1.file_uploader("Queries (.npy, [Nq, d])", type=["npy"], key="sus_q")
    c = c2.file_uploader("Candidates (.npy, [Nc, d])", type=["npy"], key="sus_c")
    p = c3.file_uploader("Positives (.csv/.parquet: query, candidate)", type=["csv", "parquet"], key="sus_p")
    if not (q and c and p):
        st.info("Upload the three files to scan them.")
        return None
    try:
        table, summary = state.scan_arrays(q.getvalue(), c.getvalue(), p.getvalue(), p.name, int(top_k))
    except ValueError as err:
        raise ValueError(f"could not scan the uploaded files: {err}") from err
    digest = hashlib.sha256(q.getvalue()[:1 << 20] + c.getvalue()[:1 << 20] + p.getvalue()).hexdigest()[:16]
    folder = Path(os.environ.get("FNLAB_CACHE", ".fnlab_cache")) / "reviews" / digest
    return table, summary, review.FolderDecisions(folder), None, f"upload-{digest}"


def _decide(store, query: int, candidate: int, decision: str) -> None:
    store.record("t2i", int(query), int(candidate), decision)


def _page():
    got = _source()
    if got is None:
        return
    table, summary, store, ds_info, stem = got
    table = review.merge(table, store.load(), direction="t2i")
    m = st.columns(4)
    m[0].metric("Pairs scanned", f"{len(table):,}")
    m[1].metric("P(FN) ≥ 0.5", f"{int((table['p_false_negative'] >= 0.5).sum()):,}")
    m[2].metric("P(FN) ≥ 0.9", f"{int((table['p_false_negative'] >= 0.9).sum()):,}")
    m[3].metric("Reviewed", f"{int((table['decision'] != review.UNDECIDED).sum()):,}")
    with st.expander("Scan summary"):
        st.json({k: v for k, v in summary.items() if isinstance(v, int | float | str | dict | list | None)})

    c1, c2, c3 = st.columns([2, 1, 1])
    lo, hi = c1.slider("Posterior range", 0.0, 1.0, (0.5, 1.0), 0.01, key="sus_range")
    sort = c2.selectbox("Sort by", ["p_false_negative", "similarity", "rank", "query"], key="sus_sort")
    show = c3.selectbox("Show", ["all", review.UNDECIDED, *review.DECISIONS], key="sus_show")
    view = table[(table["p_false_negative"] >= lo) & (table["p_false_negative"] <= hi)]
    if show != "all":
        view = view[view["decision"] == show]
    view = view.sort_values(sort, ascending=sort in ("rank", "query"), kind="stable")

    if ds_info is not None:
        ds, dkey = ds_info
        view = view.assign(caption=state.caption_array(dkey)[view["query"].to_numpy()],
                           candidate_item=state.label_array(dkey)[view["candidate"].to_numpy()])
    # ---- one-by-one review of the next undecided suspect
    todo = view[view["decision"] == review.UNDECIDED]
    st.subheader("Review")
    if len(todo):
        r = todo.iloc[0]
        left, mid, right = st.columns([1, 2, 1])
        if ds_info is not None:
            img = state.image(dkey, int(r["candidate"]))
            if img is not None:
                left.image(img, width=110, caption=f"candidate image {int(r['candidate'])}")
            mid.markdown(f"**Caption (query {int(r['query'])}):** {r['caption']}")
            mid.markdown(f"**Candidate image:** {r['candidate_item']}")
        else:
            mid.markdown(f"**Query {int(r['query'])}** vs **candidate {int(r['candidate'])}**")
        mid.markdown(f"similarity **{r['similarity']:.3f}** (its labelled positive: {r['positive_similarity']:.3f}), "
                     f"rank {int(r['rank'])}, **P(false negative) = {r['p_false_negative']:.3f}**"
                     + (f", ground truth: **{'relevant' if r['is_relevant'] else 'not relevant'}**"
                        if "is_relevant" in r else ""))
        right.button("False negative", key="sus_fn", type="primary", icon=":material/check:", width="stretch",
                     on_click=_decide, args=(store, r["query"], r["candidate"], review.FALSE_NEGATIVE))
        right.button("True negative", key="sus_tn", icon=":material/close:", width="stretch",
                     on_click=_decide, args=(store, r["query"], r["candidate"], review.TRUE_NEGATIVE))
        st.caption(f"{len(todo):,} undecided in this view.")
    else:
        st.success("Nothing left to review in this view.")

    st.subheader(f"Suspects ({len(view):,})")
    cols = [c for c in ["query", "caption", "candidate", "candidate_item", "rank", "similarity", "positive_similarity",
                        "p_false_negative", "is_relevant", "decision"] if c in view.columns]
    shown = view[cols].head(500).copy()
    if ds_info is not None:
        shown.insert(3, "image", state.thumbs(dkey, shown["candidate"], 48))
    event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="multi-row", key="sus_table", height=380,
                         column_config={"image": st.column_config.ImageColumn("image", width="small"),
                                        "p_false_negative": st.column_config.ProgressColumn(
                                            "P(FN)", format="%.3f", min_value=0.0, max_value=1.0)})
    rows = list(event.selection.rows) if event is not None and hasattr(event, "selection") else []
    if rows:
        picked = shown.iloc[rows]
        b1, b2, b3 = st.columns(3)
        for col, label, dec in ((b1, "Mark selected as false negative", review.FALSE_NEGATIVE),
                                (b2, "Mark selected as true negative", review.TRUE_NEGATIVE),
                                (b3, "Clear decision", review.UNDECIDED)):
            if col.button(f"{label} ({len(picked)})", key=f"sus_bulk_{dec}"):
                for q, c in zip(picked["query"], picked["candidate"], strict=True):
                    _decide(store, q, c, dec)
                st.rerun()

    st.subheader("Export")
    fmt = st.radio("Format", list(review.EXPORT_FORMATS), horizontal=True, key="sus_fmt")
    scope = st.radio("Rows", ["all scanned pairs", "this view"], horizontal=True, key="sus_scope")
    out = table if scope == "all scanned pairs" else view
    st.download_button(f"Download {len(out):,} rows with decisions ({fmt})", review.export_bytes(out, fmt),
                       f"suspects-{stem}.{fmt}", "text/csv" if fmt == "csv" else "application/octet-stream",
                       key="sus_download")


state.guard(_page)
