"""Embedding map: UMAP of both sides together (images and captions, documents and queries), coloured by any
field; select to inspect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import labels, state, url
from fnlab.analysis import projection, viz
from fnlab.core import status as fs

st.title("Embedding map")
state.sidebar()

STATUS = "false-negative status"
SIDE = "side"


@st.fragment(run_every=2.0)
def _wait_for_umap(root: str, name: str, split: str) -> None:
    """While the UMAP map computes in the background: say so, and redraw the page when it is ready."""
    if state.umap_ready(root, name, split):
        st.rerun(scope="app")
    st.info("Computing the UMAP map in the background (the first map of a run takes up to a minute); "
            "showing a PCA projection until then. Everything on this page already works.")


def _fields(ds) -> list[str]:
    return [STATUS, SIDE] + [c for c in ds.a_meta.columns
                             if c not in labels.ID_FIELDS and 1 < ds.a_meta[c].nunique() <= 30]


def _page():
    cur = state.current_run()
    if cur is None:
        return
    root, name, split = cur
    ds = state.run_dataset(root, name, split)
    a, b = state.run_embeddings(root, name, split)
    c = state.content(root, name, split)
    n = c.nouns
    n_a, n_b = len(a), len(b)
    st.caption(f"{n.a_plural.capitalize()} and {n.b_plural} of the split in one map (UMAP, cosine, exact neighbours). "
               "Click a point (or pick the box or lasso tool in the chart's toolbar): below the map you see it, its "
               "labelled pair and its true nearest neighbours in the original space. With a point selected, colour "
               "by false-negative status shows its pairs.")
    text = url.take("point")
    if text is not None and text.lstrip("-").isdigit() and 0 <= int(text) < n_a + n_b:
        st.session_state["map_selected_ids"] = [int(text)]
    picked = st.session_state.get("map_selected_ids") or []
    focus = int(picked[0]) if picked else None
    st.session_state["map_manual"] = focus if focus is not None else -1  # the box shows the selected point
    c1, c2 = st.columns([1, 2])
    fields = _fields(ds)
    url.bind("map_colour", "colour", STATUS, url.as_str, allowed=fields)
    colour_by = c1.selectbox("Colour by", fields, key="map_colour",
                             format_func=lambda f: f if f in (STATUS, SIDE) else labels.field(f),
                             help=f"False-negative status: with a point selected, its labelled pair and its false "
                                  f"negatives; with none, every point that takes part in a false negative. Side: "
                                  f"{n.a_plural} or {n.b_plural}.")
    xy, is_umap = state.map_coords(str(root), name, split)
    if not is_umap:
        _wait_for_umap(str(root), name, split)

    hover = state.map_hover(root, name, split)
    side = np.array([n.a] * n_a + [n.b] * n_b, dtype=object)
    owner = np.concatenate([np.arange(n_a), ds.b_to_a])  # the side-A item each point belongs to

    found = _search(c2, hover, n)
    fn = ds.false_negative_matrix()
    if colour_by == SIDE:
        colour = side
    elif colour_by == STATUS:
        if fn is None:
            colour = np.array([fs.UNKNOWN] * (n_a + n_b), dtype=object)
        elif focus is None:
            has = np.concatenate([np.diff(fn.tocsc().indptr) > 0, np.diff(fn.indptr) > 0])
            colour = np.where(has, fs.HAS_FALSE_NEGATIVE, fs.NO_FALSE_NEGATIVE).astype(object)
        else:
            colour = _status_relative_to(focus, ds, n_a, n_b)
    else:
        colour = ds.a_meta[colour_by].astype(str).replace("", "(none)").to_numpy()[owner]

    highlight = list(picked[:1]) + [int(i) for i in found[:200]]
    if focus is not None:
        highlight += [int(i) for i in _neighbours(a, b, focus, 8)["id"]]
    what = "UMAP" if is_umap else "PCA"
    fig = viz.embedding_scatter(xy, color=colour, row_ids=np.arange(n_a + n_b), hover=hover, symbol=side,
                                color_name=colour_by if colour_by in (STATUS, SIDE) else labels.field(colour_by),
                                highlight=highlight, axes=what,
                                title=f"{n_a:,} {n.a_plural} and {n_b:,} {n.b_plural} "
                                      f"({state.SPLIT_LABELS.get(split, split)} split"
                                      f"{'' if is_umap else ', PCA while UMAP computes'})")
    # The map takes the full width (room to click); what is selected is shown below it.
    st.plotly_chart(fig, width="stretch", on_select=_on_select, selection_mode=("points", "box", "lasso"),
                    key="map_chart")
    st.number_input(f"…or type a point number ({n.a_plural} first, then {n.b_plural}; −1: none)", -1,
                    n_a + n_b - 1, key="map_manual", on_change=_on_manual)
    url.publish({"point": focus, "colour": colour_by if colour_by != STATUS else None,
                 "search": st.session_state.get("map_search") or None})
    _side_panel(root, name, split, ds, a, b, picked, c, fn)


def _search(col, hover: np.ndarray, n) -> list[int]:
    """Text search over every point's text; the matches are ringed on the map and one can be selected."""
    url.bind("map_search", "search", "")
    text = col.text_input("Find on the map", key="map_search", placeholder="words of the text",
                          help=f"Rings every {n.a} or {n.b} whose text contains these words; pick one to select it.")
    if not text.strip():
        return []
    low = text.lower().strip()
    found = [i for i, t in enumerate(hover) if low in t.lower()]
    if not found:
        col.warning(f"Nothing on the map contains {text!r}.")
        return []
    col.selectbox(f"{len(found):,} found: select one", [-1, *found[:500]], key="map_found",
                  format_func=lambda i: "—" if i < 0 else f"#{i}: {hover[i]}", on_change=_on_found)
    return found


def _on_found() -> None:
    v = int(st.session_state.get("map_found", -1))
    if v >= 0:
        st.session_state["map_selected_ids"] = [v]


def _on_select() -> None:
    st.session_state["map_selected_ids"] = projection.selection_to_ids(st.session_state.get("map_chart"))


def _on_manual() -> None:
    v = int(st.session_state.get("map_manual", -1))
    st.session_state["map_selected_ids"] = [v] if v >= 0 else []


def _on_clear() -> None:
    st.session_state["map_selected_ids"] = []


def _status_relative_to(focus: int, ds, n_a: int, n_b: int) -> np.ndarray:
    out = np.full(n_a + n_b, fs.OTHER, dtype=object)
    out[focus] = fs.SELECTED
    rel = ds.relevance
    if focus < n_a:  # an image: its captions are labelled pairs or false negatives
        col = rel[:, focus].toarray().ravel() if rel is not None else np.zeros(n_b, bool)
        lab = ds.b_to_a == focus
        out[n_a:][col & ~lab] = fs.FALSE_NEGATIVE
        out[n_a:][lab] = fs.POSITIVE
    else:
        j = focus - n_a
        row = rel[j].toarray().ravel() if rel is not None else np.zeros(n_a, bool)
        out[:n_a][row] = fs.FALSE_NEGATIVE
        out[ds.b_to_a[j]] = fs.POSITIVE
    return out


def _neighbours(a: np.ndarray, b: np.ndarray, focus: int, k: int) -> pd.DataFrame:
    """True cosine nearest neighbours of point ``focus`` among all points (original space)."""
    both = np.concatenate([a, b])
    sims = both @ both[focus]
    sims[focus] = -np.inf
    top = np.argsort(-sims)[:k]
    return pd.DataFrame({"id": top, "similarity": sims[top]})


def _describe(root, name, split, ds, i: int, n_a: int, c) -> dict:
    n = c.nouns
    if i < n_a:
        return {"id": i, "image": state.thumbs(root, name, split, [i], 48)[0], "kind": n.a,
                "text": f"{n.a}: {c.a_text[i]}"}
    j = i - n_a
    return {"id": i, "image": state.thumbs(root, name, split, [int(ds.b_to_a[j])], 48)[0], "kind": n.b,
            "text": f"{n.b}: {c.b_text[j]}"}


def _cfg(c, text_width: int = 160) -> dict:
    """Column settings; the text column has a fixed width (long texts are cut, shown whole on hover) so no
    table scrolls sideways in its half of the page at 1280 px."""
    return {"image": st.column_config.ImageColumn(c.nouns.a, width="small"),
            "text": st.column_config.TextColumn(f"{c.nouns.a} or {c.nouns.b}", width=text_width),
            "id": st.column_config.NumberColumn("point", width="small")}


def _order(c, cols: list[str]) -> list[str]:
    return cols if c.images else [x for x in cols if x != "image"]


def _side_panel(root, name, split, ds, a, b, picked, c, fn) -> None:
    n_a = len(a)
    if not picked:
        st.info("Select a point (click, box or lasso) to see it here.")
        return
    left, right = st.columns([2, 3])
    with left:
        _selected(root, name, split, ds, picked, c, n_a)
    with right:
        _neighbour_table(root, name, split, ds, a, b, int(picked[0]), c, fn)


def _selected(root, name, split, ds, picked, c, n_a: int) -> None:
    n = c.nouns
    st.button("Clear selection", key="map_clear", on_click=_on_clear)
    if len(picked) > 1:
        st.markdown(f"**{len(picked)} points selected**")
        sel = pd.DataFrame([_describe(root, name, split, ds, i, n_a, c) for i in picked[:200]])
        st.dataframe(sel, hide_index=True, width="stretch", column_config=_cfg(c), height=260,
                     column_order=_order(c, ["image", "text", "id"]))
        st.download_button("Export selection (CSV, with each point's content)", _selection_csv(ds, picked, n_a),
                           "selection.csv", "text/csv", key="map_export")
    focus = int(picked[0])
    me = _describe(root, name, split, ds, focus, n_a, c)
    st.markdown(f"**Point {focus}**, {me['text']}")
    st.button("Open its ranking", key="map_to_ranking", icon=":material/format_list_numbered:",
              help=f"Rankings for this {n.b} ({c.directions['t2i']}) or this {n.a} ({c.directions['i2t']}).",
              on_click=state.open_ranking, args=("t2i", focus - n_a) if focus >= n_a else ("i2t", focus))
    owner = focus if focus < n_a else int(ds.b_to_a[focus - n_a])
    img = state.image(root, name, split, owner)
    if img is not None:
        st.image(img, width=96, caption=f"its {n.a}" if focus >= n_a else None)
    if focus < n_a:
        pair = [n_a + int(j) for j in np.flatnonzero(ds.b_to_a == focus)]
        st.markdown(f"**Labelled pair (its {n.b_plural}):**")
    else:
        pair = [owner]
        st.markdown(f"**Labelled pair (its {n.a}):**")
    st.dataframe(pd.DataFrame([_describe(root, name, split, ds, i, n_a, c) for i in pair]), hide_index=True,
                 width="stretch", column_config=_cfg(c), column_order=_order(c, ["image", "text", "id"]))


def _selection_csv(ds, picked, n_a: int) -> bytes:
    """The selected points with what each is (ids in the full dataset, texts, image paths)."""
    from fnlab.data.display import side_content

    rows = []
    content = {"a": side_content(ds, "a"), "b": side_content(ds, "b")}
    for i in picked:
        side, j = ("a", int(i)) if i < n_a else ("b", int(i) - n_a)
        row = {"point": int(i), "side": ds.nouns.side(side, plural=False), "index": j}
        row.update({col: vals[j] for col, vals in content[side].items()})
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False).encode()


def _neighbour_table(root, name, split, ds, a, b, focus: int, c, fn) -> None:
    n_a = len(a)
    st.markdown(f"**True nearest neighbours of point {focus}** (cosine, original space):")
    nb = _neighbours(a, b, focus, 8)
    rows = []
    for i, s in zip(nb["id"], nb["similarity"], strict=True):
        d = _describe(root, name, split, ds, int(i), n_a, c)
        d["similarity"] = float(s)
        d["status"] = _pair_status(ds, fn, focus, int(i), n_a)
        rows.append(d)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        **_cfg(c, text_width=170), "similarity": st.column_config.NumberColumn("cosine", format="%.3f", width="small"),
        "status": st.column_config.TextColumn("pair status", width="small")},
        column_order=_order(c, ["image", "similarity", "status", "text", "id"]))


def _pair_status(ds, fn, x: int, y: int, n_a: int) -> str:
    """Status of the pair (x, y) when one is an image and the other a caption; '' for same-side pairs."""
    if (x < n_a) == (y < n_a):
        return "same kind"
    img, cap = (x, y - n_a) if x < n_a else (y, x - n_a)
    if ds.b_to_a[cap] == img:
        return fs.POSITIVE
    if fn is None:
        return fs.UNKNOWN
    return fs.FALSE_NEGATIVE if fn[cap, img] else fs.TRUE_NEGATIVE


state.guard(_page)
