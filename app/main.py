"""fnlab app entry: ``fnlab app`` (127.0.0.1 unless ``--address``), or ``streamlit run app/main.py``.

Ten thin pages (app/views/; not pages/, which would switch on Streamlit's legacy auto-navigation) over fnlab;
shared caching and sidebar in app/state.py. On first start with no trained run, a short demo run trains in the
background (app/jobs.py) with a progress bar on every page. The URL carries the view (app/url.py): the page is its
path, and run, split, direction, query, point and each page's main controls its parameters
(``/rankings?run=demo&split=test&direction=t2i&query=12&k=20``); ``?page=rankings`` works too.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from app import state, url  # noqa: E402
from app.demo import ensure_demo_run, progress_panel  # noqa: E402

st.set_page_config(page_title="fnlab: false-negative lab", page_icon=":material/search:", layout="wide")

PAGES = [
    # the Data page is the app's root; its own name is not "data", which the alias below answers to
    st.Page("views/data.py", title="Data", icon=":material/dataset:", default=True, url_path="start"),
    st.Page("views/lesson.py", title="Lesson", icon=":material/school:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/rankings.py", title="Rankings", icon=":material/format_list_numbered:"),
    st.Page("views/distributions.py", title="Distributions", icon=":material/bar_chart:"),
    st.Page("views/playground.py", title="Sampler playground", icon=":material/tune:"),
    st.Page("views/which_sampler.py", title="Which sampler?", icon=":material/explore:"),
    st.Page("views/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("views/suspects.py", title="Suspects", icon=":material/search_check:"),
    st.Page("views/compare.py", title="Compare runs", icon=":material/compare_arrows:"),
]

# "/data" (the Data page's name in the menu) opens it too, instead of Streamlit's "Page not found"
DATA_PATH = "data"
nav = st.navigation([*PAGES, st.Page("views/data.py", title="Data", url_path=DATA_PATH, visibility="hidden")])
state.read_url()  # before any page switch, which clears the URL's parameters
state.go_pending()  # a linked view's button (its callback named the page): straight there
if getattr(nav, "url_path", None) == DATA_PATH:  # (no page, hence no url_path, where a process imports this bare)
    st.switch_page(PAGES[0])  # the root URL, with the view's parameters (read above) republished by the page
if not st.session_state.get("_fn_page_read"):  # ?page=… opens that page (once per session)
    st.session_state["_fn_page_read"] = True
    wanted = str(url.take("page") or "").strip().lower().replace(" ", "_")
    target = next((p for p in PAGES if wanted and wanted in (p.url_path, p.title.lower().replace(" ", "_"))), None)
    if target is not None and target.url_path != nav.url_path:
        st.switch_page(target)
state.warn_if_public()
ensure_demo_run()
progress_panel()
nav.run()  # every page draws the shared sidebar itself (state.sidebar), so each page also runs alone
