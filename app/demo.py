"""First start and background training: the demo run, and the progress bar every page shows.

Training runs as a background job (app/jobs.py), so clicks, reruns and page changes never stop it, and
every session sees the same job instead of starting its own.
"""

from __future__ import annotations

import os

import streamlit as st

from app import jobs, state
from app.training import demo_config


@st.cache_resource(show_spinner=False)
def warm_imports() -> bool:
    """Import the engine's heavy modules (torch, the analysis code) in a background thread, once per server: while
    the first run trains, so the first page after it is not kept waiting for them."""
    import importlib
    import threading

    def load() -> None:
        for mod in ("torch", "fnlab.analysis.explore", "fnlab.storage.pages", "fnlab.posterior"):
            try:
                importlib.import_module(mod)
            except ImportError:
                pass

    threading.Thread(target=load, daemon=True, name="fnlab-warm-imports").start()
    return True


def ensure_demo_run() -> None:
    """Start the demo run in the background when the default runs folder holds no run (not with FNLAB_NO_DEMO set).

    Only the default folder (``$FNLAB_RUNS``, else ``runs``): a folder typed into the sidebar never gets a run, nor
    is it created, without a click (the page offers the demo run there with a button)."""
    warm_imports()
    if os.environ.get("FNLAB_NO_DEMO"):
        return
    root = state.runs_root()
    if root != state.default_root() or state.run_names(root):
        return
    job = jobs.status(root, state.DEMO_RUN)
    if job is not None and job.state in ("running", "done"):
        return
    if job is not None and job.state == "failed" and st.session_state.get("_demo_tried"):
        return  # failed in this session already: progress_panel shows the error and a retry button
    st.session_state["_demo_tried"] = True
    try:
        jobs.start(root, state.DEMO_RUN, demo_config())
    except (OSError, ValueError) as err:
        st.error(f"Could not start the demo training: {err}")


def progress_panel() -> None:
    """A progress bar for every training job running in the runs folder (drawn on every page)."""
    root = state.runs_root()
    if jobs.running(root):
        _poll(str(root))
        return
    job = jobs.status(root, state.DEMO_RUN)
    if job is not None and job.state == "failed" and not state.run_names(root):
        st.error(f"The demo training failed: {job.error}")
        if st.button("Try again", key="demo_retry"):
            st.session_state["_demo_tried"] = False
            st.rerun()


@st.fragment(run_every=1.0)
def _poll(root: str) -> None:
    running = jobs.running(root)
    if not running:  # finished: redraw the whole page with the new run
        state.refresh_runs()
        st.rerun(scope="app")
    for job in running:
        what = "the demo run (first start, so every page has something to show)" if job.name == state.DEMO_RUN \
            else f"run **{job.name}**"
        st.progress(min(1.0, max(0.0, job.fraction)), text=f"Training {what}: {job.text}")
