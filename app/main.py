"""fnlab app entry: ``streamlit run app/main.py``.

Eight thin pages (app/views/; not pages/, which would switch on Streamlit's legacy auto-navigation) over fnlab; shared caching and sidebar in app/state.py.
On first start with no trained run, a short demo run is trained on the sample data (visible progress).
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from app.demo import ensure_demo_run  # noqa: E402

st.set_page_config(page_title="fnlab: false-negative lab", page_icon=":material/search:", layout="wide")

PAGES = [
    st.Page("views/data.py", title="Data", icon=":material/dataset:", default=True),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/rankings.py", title="Rankings", icon=":material/format_list_numbered:"),
    st.Page("views/distributions.py", title="Distributions", icon=":material/bar_chart:"),
    st.Page("views/playground.py", title="Sampler playground", icon=":material/tune:"),
    st.Page("views/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("views/suspects.py", title="Suspects", icon=":material/search_check:"),
    st.Page("views/compare.py", title="Compare runs", icon=":material/compare_arrows:"),
]

nav = st.navigation(PAGES)
ensure_demo_run()
nav.run()  # every page draws the shared sidebar itself (state.sidebar), so each page also runs alone
