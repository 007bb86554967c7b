"""fnlab app entry: ``streamlit run app/main.py``.

Eight thin pages (app/pages/) over the fnlab library; shared caching and sidebar in app/state.py.
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

st.set_page_config(page_title="fnlab: false-negative lab", page_icon="🔎", layout="wide")

PAGES = [
    st.Page("pages/data.py", title="Data", icon="🗂️", default=True),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/rankings.py", title="Rankings", icon="🔢"),
    st.Page("pages/distributions.py", title="Distributions", icon="📊"),
    st.Page("pages/playground.py", title="Sampler playground", icon="🎛️"),
    st.Page("pages/embedding_map.py", title="Embedding map", icon="🗺️"),
    st.Page("pages/suspects.py", title="Suspects", icon="🕵️"),
    st.Page("pages/compare.py", title="Compare runs", icon="⚖️"),
]

nav = st.navigation(PAGES)
ensure_demo_run()
nav.run()  # every page draws the shared sidebar itself (state.sidebar), so each page also runs alone
