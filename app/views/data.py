"""Data: what a false negative is, the chosen dataset's statistics and a gallery."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from app import state

st.title("fnlab: a false-negative lab")
state.sidebar()
st.markdown(
    "A **false negative** is a pair that truly matches (a caption that describes an image) but is not "
    "labelled as a match, so contrastive training pushes it away as if it were a negative. "
    "Start with **Sampler playground** in the sidebar to see which negatives each sampler picks, then "
    "**Rankings** and **Suspects** to find the false negatives hiding in a trained model's top results."
)

SOURCES = {
    "sample: shapes (sample_data/shapes)": "sample",
    "shapes (generated)": "shapes",
    "digits": "digits",
    "precomp folder": "precomp",
    "pairs folder": "pairs",
    "saved dataset folder": "folder",
    "upload a zipped dataset folder": "upload",
}


def _load():
    c1, c2 = st.columns([3, 1])
    choice = SOURCES[c1.selectbox("Dataset", list(SOURCES), key="data_source")]
    split = c2.selectbox("Split", ["train", "val", "test", "all"], index=2, key="data_split")
    if choice == "sample":
        if not state.SAMPLE_DATA.joinpath("dataset.json").is_file():
            raise FileNotFoundError(f"the sample data is missing at {state.SAMPLE_DATA}: run `make sample-data`")
        return state.dataset(str(state.SAMPLE_DATA), split)
    if choice in ("shapes", "digits"):
        return state.dataset(choice, split)
    if choice in ("precomp", "pairs", "folder"):
        folder = st.text_input("Folder", key="data_folder", placeholder="/path/to/dataset")
        if not folder:
            st.info("Enter a folder path to load it.")
            return None
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"folder {folder!r} does not exist")
        if choice == "folder":
            return state.dataset(folder, split)
        return state.dataset(choice, split, folder)
    up = st.file_uploader("Zipped dataset folder (a saved dataset or a pairs folder)", type=["zip"],
                          key="data_upload")
    if up is None:
        return None
    target = Path(tempfile.gettempdir()) / "fnlab_uploads" / f"{abs(hash(up.getvalue())):x}"
    if not target.exists():
        try:
            with zipfile.ZipFile(up) as zf:
                for member in zf.namelist():  # never extract outside the target folder
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise ValueError(f"the zip holds an unsafe path {member!r}")
                zf.extractall(target)
        except zipfile.BadZipFile as err:
            raise ValueError(f"the upload is not a valid zip file: {err}") from err
    roots = [p.parent for p in target.rglob("dataset.json")]
    if roots:
        return state.dataset(str(roots[0]), split)
    subdirs = [p for p in target.iterdir() if p.is_dir()]
    return state.dataset("pairs", split, str(subdirs[0] if len(subdirs) == 1 else target))


def _page():
    ds = _load()
    if ds is None:
        return
    s = ds.stats()
    cols = st.columns(5)
    cols[0].metric("Images (A)", f"{s.items_a:,}")
    cols[1].metric("Captions (B)", f"{s.items_b:,}")
    cols[2].metric("Labelled pairs", f"{s.labelled_pairs:,}")
    if s.relevant_pairs is not None:
        cols[3].metric("False negatives", f"{s.relevant_pairs - s.labelled_pairs:,}",
                       help="Relevant pairs that are not labelled (ground truth).")
        cols[4].metric("Queries with a false negative", f"{s.share_queries_with_fn:.0%}",
                       help=f"mean {s.fn_per_query_mean:.1f}, max {s.fn_per_query_max} per caption")
    else:
        cols[3].metric("False negatives", "unknown", help="This dataset has no ground truth.")
    with st.expander("All statistics"):
        st.json(json.loads(json.dumps(s.as_dict())))

    st.subheader("Gallery")
    n = st.slider("Items shown", 4, min(96, max(4, ds.n_a)), min(24, ds.n_a), key="data_gallery_n")
    by_a = ds.a_to_b()
    rows = []
    display = state.optional("fnlab.data.display")
    for i in range(min(n, ds.n_a)):
        caps = [state.caption(ds, j) for j in by_a[i][:5]]
        row = {"image": display.image_data_uri(ds, i, size=64) if display else None,
               "item": state.a_label(ds, i), "captions": " · ".join(caps)}
        if ds.relevance is not None:
            rel_col = ds.relevance[:, i]
            row["false negatives (captions)"] = int(rel_col.nnz - len(by_a[i]))
        rows.append(row)
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch", row_height=70,
                 column_config={"image": st.column_config.ImageColumn("image", width="small"),
                                "item": st.column_config.TextColumn("item", width="medium"),
                                "captions": st.column_config.TextColumn("captions", width="large")})


state.guard(_page)
