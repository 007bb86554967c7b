"""Suspects: the scan's suspected false negatives, reviewed one by one; decisions persist in the run."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import streamlit as st

from app import state
from fnlab.analysis import review

st.title("Suspects")
state.sidebar()
st.caption("Unlabelled pairs the model ranks high and the run's posterior calls likely matches. Mark each as a "
           "false negative or a true negative: every decision is saved at once (an interrupted session loses "
           "nothing), and U undoes the last one.")

KEYS = "Keys: **F** false negative · **T** true negative · **U** undo · **N** next (skip for now)"


def _source():
    src = st.radio("Suspects of", ["the selected run", "uploaded embeddings"], horizontal=True, key="sus_source")
    top_k = st.slider("Candidates scanned per query (top K)", 5, 100, 20, key="sus_topk",
                      help="Each query's K most similar unlabelled candidates are scanned.")
    if src == "the selected run":
        cur = state.current_run()
        if cur is None:
            return None
        root, name, split = cur
        table, summary = state.scan_run(str(root), name, split, int(top_k), state.run_key(root, name))
        ds = state.run_dataset(root, name, split)
        store = review.RunDecisions(state.get_run(root, name), session=_session())
        n_a = len(state.run_embeddings(root, name, split)[0])
        return table, summary, store, (ds, state.ds_key(root, name, split), n_a), f"{name}-{split}"
    c1, c2, c3 = st.columns(3)
    q = c1.file_uploader("Queries (.npy, [queries, dim])", type=["npy"], key="sus_q")
    c = c2.file_uploader("Candidates (.npy, [candidates, dim])", type=["npy"], key="sus_c")
    p = c3.file_uploader("Positives (.csv or .parquet with columns query, candidate)", type=["csv", "parquet"],
                         key="sus_p")
    t1, t2 = st.columns(2)
    qt = t1.file_uploader("Optional: query texts (.txt, one line per query)", type=["txt"], key="sus_qt")
    ct = t2.file_uploader("Optional: candidate texts or image names (.txt, one line per candidate)", type=["txt"],
                          key="sus_ct")
    if not (q and c and p):
        st.info("Upload the three files to scan them.")
        return None
    table, summary = state.scan_arrays(q.getvalue(), c.getvalue(), p.getvalue(), (q.name, c.name, p.name),
                                       int(top_k))
    table = table.copy()
    for up, col, idx in ((qt, "caption", "query"), (ct, "candidate_item", "candidate")):
        if up is not None:
            lines = up.getvalue().decode("utf-8", errors="replace").splitlines()
            ids = table[idx].to_numpy()
            if len(lines) <= int(ids.max()):
                raise ValueError(f"{up.name}: {len(lines):,} lines, but the scan refers to {idx} {int(ids.max())}; "
                                 f"expected one line per {idx}")
            table[col] = [lines[i] for i in ids]
    digest = hashlib.sha256(q.getvalue()[:1 << 20] + c.getvalue()[:1 << 20] + p.getvalue()).hexdigest()[:16]
    folder = Path(os.environ.get("FNLAB_CACHE", ".fnlab_cache")) / "reviews" / digest
    return table, summary, review.FolderDecisions(folder, session=_session()), None, f"upload-{digest}"


def _session() -> str:
    """This browser tab's review session: fnlab.analysis.review's undo takes back this session's own actions only."""
    import uuid

    return st.session_state.setdefault("sus_session", uuid.uuid4().hex[:12])


def _decide(store, query: int, candidate: int, decision: str) -> None:
    store.record("t2i", int(query), int(candidate), decision)
    st.session_state["sus_actions"] = st.session_state.get("sus_actions", 0) + 1


def _undo(store) -> None:
    """Take back this session's last decision (the decision log keeps both, so nothing is lost)."""
    if store.undo() is not None:
        st.session_state["sus_actions"] = max(0, st.session_state.get("sus_actions", 0) - 1)


def _skip(query: int, candidate: int) -> None:
    st.session_state.setdefault("sus_skipped", set()).add((int(query), int(candidate)))


def _review_one(todo, store, ds_info) -> None:
    """The next undecided suspect, with its texts and image, the four keyed buttons and links."""
    skipped = st.session_state.get("sus_skipped", set())
    left_over = todo[[(int(a), int(b)) not in skipped for a, b in zip(todo["query"], todo["candidate"], strict=True)]]
    if not len(left_over) and len(todo):
        st.session_state["sus_skipped"] = set()  # everything was skipped once: start over
        left_over = todo
    if not len(left_over):
        st.success("Nothing left to review in this view.")
        return
    r = left_over.iloc[0]
    q, c = int(r["query"]), int(r["candidate"])
    left, mid, right = st.columns([1, 3, 1])
    if ds_info is not None:
        ds, dkey, n_a = ds_info
        img = state.image(dkey, c)
        if img is not None:
            left.image(img, width=110, caption=f"candidate image {c}")
    if "caption" in r:
        mid.markdown(f"**Query {q}:** {r['caption']}")
    else:
        mid.markdown(f"**Query {q}**")
    if "candidate_item" in r:
        mid.markdown(f"**Candidate {c}:** {r['candidate_item']}")
    else:
        mid.markdown(f"**Candidate {c}**")
    truth = ""
    if "is_relevant" in r and r["is_relevant"] is not None:
        truth = f", ground truth: **{'relevant' if r['is_relevant'] else 'not relevant'}**"
    mid.markdown(f"similarity **{r['similarity']:.3f}** (its labelled positive: {r['positive_similarity']:.3f}), "
                 f"rank {int(r['rank'])}, **P(false negative) = {r['p_false_negative']:.3f}**{truth}")
    if r.get("why"):
        mid.markdown(f"Why: {r['why']}")
    right.button("False negative", key="sus_fn", type="primary", icon=":material/check:", width="stretch",
                 shortcut="F", on_click=_decide, args=(store, q, c, review.FALSE_NEGATIVE))
    right.button("True negative", key="sus_tn", icon=":material/close:", width="stretch", shortcut="T",
                 on_click=_decide, args=(store, q, c, review.TRUE_NEGATIVE))
    right.button("Next", key="sus_next", icon=":material/skip_next:", width="stretch", shortcut="N",
                 on_click=_skip, args=(q, c))
    right.button("Undo", key="sus_undo_btn", icon=":material/undo:", width="stretch", shortcut="U",
                 on_click=_undo, args=(store,), disabled=not st.session_state.get("sus_actions"))
    st.caption(f"{KEYS}. {len(left_over):,} undecided in this view.")
    if ds_info is not None:
        l1, l2 = st.columns(2)
        if l1.button("Open this query in Rankings", key="sus_to_ranking", icon=":material/format_list_numbered:"):
            state.open_ranking("t2i", q)
        if l2.button("Show this query on the map", key="sus_to_map", icon=":material/scatter_plot:"):
            state.open_on_map(ds_info[2] + q)


def _page():
    got = _source()
    if got is None:
        return
    table, summary, store, ds_info, stem = got
    table = review.merge(table, store.load(), direction="t2i")
    for problem in store.problems:  # a damaged line of the review log: skipped, the rest kept
        st.warning(state.public_message(ValueError(problem)))
    m = st.columns(4)
    m[0].metric("Pairs scanned", f"{len(table):,}")
    m[1].metric("P(false negative) ≥ 0.5", f"{int((table['p_false_negative'] >= 0.5).sum()):,}")
    m[2].metric("P(false negative) ≥ 0.9", f"{int((table['p_false_negative'] >= 0.9).sum()):,}")
    m[3].metric("Reviewed", f"{int((table['decision'] != review.UNDECIDED).sum()):,}")
    prior = summary.get("posterior", {}).get("prior_pos") if isinstance(summary.get("posterior"), dict) else None
    st.caption(f"{int(summary.get('queries_scanned') or 0):,} queries against "
               f"{int(summary.get('candidates') or 0):,} candidates, top {summary.get('top_k', '?')} each"
               + (f"; estimated share of matches among unlabelled pairs: {prior:.2g}" if prior is not None else "")
               + ".")
    status = summary.get("status", "calibrated")
    if status != "calibrated":  # the posterior says it cannot back a probability: never show P as one
        st.warning(f"P(false negative) is **{status}** ({summary.get('status_reason', '')}): it orders the pairs, "
                   "but a value such as 0.99 is not a probability here.", icon=":material/warning:")
    else:
        st.caption("P(false negative) is calibrated: among pairs shown with P ≈ 0.9, about 9 in 10 are matches.")

    c1, c2, c3 = st.columns([2, 1, 1])
    lo, hi = c1.slider("P(false negative) between", 0.0, 1.0, (0.0, 1.0), 0.01, key="sus_range",
                       help="Only pairs whose posterior lies in this range; sorted by P(false negative), the most "
                            "likely false negatives come first.")
    sorts = {"p_false_negative": "P(false negative)", "similarity": "similarity", "rank": "rank", "query": "query"}
    sort = c2.selectbox("Sort by", list(sorts), format_func=sorts.get, key="sus_sort")
    show = c3.selectbox("Show", ["all", review.UNDECIDED, *review.DECISIONS], key="sus_show")
    view = table[(table["p_false_negative"] >= lo) & (table["p_false_negative"] <= hi)]
    if show != "all":
        view = view[view["decision"] == show]
    view = view.sort_values(sort, ascending=sort in ("rank", "query"), kind="stable")

    if ds_info is not None:
        ds, dkey, _ = ds_info
        view = view.assign(caption=state.caption_array(dkey)[view["query"].to_numpy()],
                           candidate_item=state.label_array(dkey)[view["candidate"].to_numpy()])
    st.subheader("Review")
    _review_one(view[view["decision"] == review.UNDECIDED], store, ds_info)

    st.subheader(f"Suspects ({len(view):,})")
    cols = [c for c in ["query", "caption", "candidate", "candidate_item", "rank", "similarity", "positive_similarity",
                        "p_false_negative", "why", "is_relevant", "decision"] if c in view.columns]
    shown = view[cols].head(500).copy()
    if ds_info is not None:
        shown.insert(3, "image", state.thumbs(dkey, shown["candidate"], 48))
    event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="multi-row", key="sus_table", height=380,
                         column_config={"query": st.column_config.NumberColumn("query #", width="small"),
                                        "candidate": st.column_config.NumberColumn("candidate #", width="small"),
                                        "rank": st.column_config.NumberColumn("rank", width="small"),
                                        "image": st.column_config.ImageColumn("image", width="small"),
                                        "caption": st.column_config.TextColumn("query text", width="medium"),
                                        "candidate_item": st.column_config.TextColumn("candidate", width="medium"),
                                        "positive_similarity": st.column_config.NumberColumn(
                                            "its positive", format="%.3f", help="Similarity of the query's "
                                                                                "labelled positive."),
                                        "similarity": st.column_config.NumberColumn("similarity", format="%.3f"),
                                        "is_relevant": st.column_config.CheckboxColumn("truly relevant"),
                                        "why": st.column_config.TextColumn(
                                            "why suspected", width="medium",
                                            help="The evidence behind P(false negative), strongest first."),
                                        "p_false_negative": st.column_config.ProgressColumn(
                                            "P(FN)", format="%.3f", min_value=0.0, max_value=1.0)})
    rows = list(event.selection.rows)
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
    data = review.export_bytes(out, fmt, dataset=ds_info[0] if ds_info is not None else None)
    st.download_button(f"Download {len(out):,} rows with decisions ({fmt})", data,
                       f"suspects-{stem}.{fmt}", "text/csv" if fmt == "csv" else "application/octet-stream",
                       key="sus_download")


state.guard(_page)
