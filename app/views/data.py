"""Data: what a false negative is, the chosen dataset's statistics and a gallery."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import labels, state, uploads, url
from fnlab.data import display

st.title("fnlab: a false-negative lab")
state.sidebar()


def _nouns():
    """The words of the run in the sidebar (captions and images for the demo), else of image-text data."""
    name = st.session_state.get("run")
    if name:
        try:
            return state.content(state.runs_root(), name, st.session_state.get("split") or "test").nouns
        except (OSError, ValueError):
            pass
    from fnlab.data.base import nouns_for

    return nouns_for("image", "text")


def _intro() -> None:
    n = _nouns()
    st.markdown(
        f"A **false negative** is a pair that truly matches ({labels.an(n.b)} that fits {labels.an(n.a)}) but is not labelled as a "
        "match, so contrastive training pushes it away as if it were a negative. "
        "New here? The **Lesson** page walks through it in five steps on the demo run. Then **Sampler playground** "
        "shows which negatives each sampler picks, and **Rankings** and **Suspects** find the false negatives hiding "
        "in a trained model's top results."
    )


def _example() -> None:
    """Two sentences on the run's example query, the one Rankings and the Sampler playground open on."""
    name = st.session_state.get("run")
    if not name:
        return
    root, split = state.runs_root(), st.session_state.get("split") or "test"
    ex = state.teaching_example(root, name, split)
    if ex is None:
        return
    q = ex["query"]
    c = state.content(root, name, split)
    n = c.nouns
    text = c.b_text[q]
    above = ex["false_negatives_above"]
    behind = (f"behind {above} {n.a if above == 1 else n.a_plural} that it also fits but nobody labelled "
              "(false negatives)" if above else "with no false negative above it")
    st.markdown(
        f"**An example on run {name}:** {n.b} #{q} “{text}” finds its labelled {n.a} at rank "
        f"{ex['positive_rank']}, {behind}; **Rankings** opens on it. "
        f"Asked for a negative for it, hardest-negative mining draws a false negative {ex['hardest_fn_risk']:.0%} "
        f"of the time and FNE ({_setting(ex)}) {ex['fne_fn_risk']:.0%}: the bars of the **Sampler playground** show "
        "where each puts its weight.")
    c1, c2, _ = st.columns(3)
    c1.button("Open it in Rankings", key="data_to_ranking", icon=":material/format_list_numbered:", width="stretch",
              on_click=state.open_ranking, args=("t2i", q))
    c2.button("Open it in the playground", key="data_to_playground", icon=":material/tune:", width="stretch",
              on_click=state.open_playground, args=(q,))


def _setting(ex: dict) -> str:
    return labels.fne_setting(ex.get("fne_params") or {})


state.guard(_intro)
state.guard(_example)

DATA_SPLITS = ["test", "val", "train", "all"]
SOURCES = {
    "the dataset of the run in the sidebar": "run",
    "sample: shapes (sample_data/shapes)": "sample",
    "shapes (generated)": "shapes",
    "digits": "digits",
    "shapes as pretrained features (shapes-precomp)": "shapes-precomp",
    "digits as pretrained features (digits-precomp)": "digits-precomp",
    "precomp folder": "precomp",
    "pairs folder": "pairs",
    "saved dataset folder": "folder",
    "upload a zipped dataset folder": "upload",
}


def _folder_dataset(choice: str, split: str):
    folder = st.text_input("Folder", key="data_folder", placeholder="/path/to/dataset",
                           help="A folder on the machine running the app. System folders are refused.")
    if not folder.strip():
        st.info("Enter a folder path to load it.")
        return None
    path = state.checked_folder(folder, "Folder")
    if not path.is_dir():
        raise FileNotFoundError(f"Folder: {folder!r} does not exist")
    if choice == "folder":
        return state.dataset(str(path), split)
    return state.dataset(choice, split, str(path))


def _uploaded_dataset(split: str):
    up = st.file_uploader("Zipped dataset folder (a saved dataset or a pairs folder)", type=["zip"],
                          key="data_upload",
                          help=f"At most {uploads.MAX_FILES:,} files and {uploads.MAX_BYTES // 2**20} MiB once "
                               "extracted. Extracted into a private folder that is removed when you leave.")
    if up is None:
        return None
    folder = state.upload_folder().extract(up.getvalue(), up.name)
    kind, root = uploads.dataset_root(folder)

    def load(which: str):
        return state.dataset(str(root), which) if kind == "folder" else state.dataset("pairs", which, str(root))

    uploads.check_confined(load("all"), root, f"{up.name}: the pairs table")  # every split, before any is shown
    return load(split)


def _load():
    c1, c2 = st.columns([3, 1])
    url.bind("data_source", "source", list(SOURCES)[0], url.as_str, allowed=list(SOURCES))
    choice = SOURCES[c1.selectbox("Dataset", list(SOURCES), key="data_source")]
    url.bind("data_split", "data_split", "test", url.as_str, allowed=DATA_SPLITS)
    split = c2.selectbox("Split", DATA_SPLITS, key="data_split", format_func=lambda s: state.SPLIT_LABELS.get(s, s))
    if choice == "run":
        name = st.session_state.get("run")
        if name:
            st.caption(f"Run **{name}** was trained on `{state.loaded(state.runs_root(), name).dataset_spec['name']}`.")
            return state.run_dataset(state.runs_root(), name, split)
        st.caption("No trained run yet: showing the sample data.")
        choice = "sample"
    if choice == "sample":
        if not state.SAMPLE_DATA.joinpath("dataset.json").is_file():
            raise FileNotFoundError("the sample data is missing: run `make sample-data`")
        return state.dataset(str(state.SAMPLE_DATA), split)
    if choice in ("shapes", "digits", "shapes-precomp", "digits-precomp"):
        return state.dataset(choice, split)
    if choice in ("precomp", "pairs", "folder"):
        return _folder_dataset(choice, split)
    return _uploaded_dataset(split)


def _page():
    ds = _load()
    if ds is None:
        return
    s = ds.stats()
    cols = st.columns(5)
    words = ds.nouns
    cols[0].metric(f"{words.a_plural.capitalize()} (A)", f"{s.items_a:,}")
    cols[1].metric(f"{words.b_plural.capitalize()} (B)", f"{s.items_b:,}")
    cols[2].metric("Labelled pairs", f"{s.labelled_pairs:,}")
    if s.relevant_pairs is not None:
        cols[3].metric("False negatives", f"{s.relevant_pairs - s.labelled_pairs:,}",
                       help=f"Relevant ({words.b}, {words.a}) pairs that are not labelled (ground truth).")
        cols[4].metric(f"{words.b_plural.capitalize()} with FNs", f"{s.share_queries_with_fn:.0%}",
                       help=f"Share of {words.b_plural} with at least one false negative.")
    else:
        cols[3].metric("False negatives", "unknown", help="This dataset has no ground truth.")
    if s.fn_per_query_mean is not None:
        st.caption(f"Per {words.b}: {s.fn_per_query_mean:.1f} false negatives on average, at most "
                   f"{s.fn_per_query_max}. A false negative is a relevant ({words.b}, {words.a}) pair that is not "
                   "labelled.")

    st.subheader("Gallery")
    hi = min(96, max(4, ds.n_a))
    url.bind("data_gallery_n", "n", min(24, ds.n_a), url.as_int, allowed=lambda v: 4 <= v <= hi)
    n = st.slider(f"{words.a_plural.capitalize()} shown", 4, hi, key="data_gallery_n")
    url.publish({"source": st.session_state.get("data_source"), "data_split": st.session_state.get("data_split"),
                 "n": n})
    by_a = ds.a_to_b()
    rows = []
    images = ds.a_modality == "image"
    for i in range(min(n, ds.n_a)):
        texts = [state.caption(ds, j) for j in by_a[i][:5]]
        row = {"image": display.image_data_uri(ds, i, size=64)} if images else {}
        row.update({"item": state.a_text(ds, i), "labelled": " · ".join(texts)})
        if ds.relevance is not None:
            rel_col = ds.relevance[:, i]
            row["false negatives"] = int(rel_col.nnz - len(by_a[i]))
        rows.append(row)
    table = pd.DataFrame(rows)
    what = {"image": "what it shows", "text": "its text"}.get(ds.a_modality, "what it is")
    st.dataframe(table, hide_index=True, width="stretch", row_height=96 if images else 35,
                 height=560 if images else 420,
                 column_config={"image": st.column_config.ImageColumn(words.a, width="small"),
                                "item": st.column_config.TextColumn(f"{words.a}: {what}", width=240),
                                "labelled": st.column_config.TextColumn(f"its labelled {words.b_plural}",
                                                                        width=340 if images else 420),
                                "false negatives": st.column_config.NumberColumn(
                                    "false negatives", help=f"{words.b_plural.capitalize()} that fit this {words.a} "
                                                            "but are not labelled with it.", width=110)})


state.guard(_page)
