"""First start: train a short demo run on the sample data when the runs folder has none."""

from __future__ import annotations

import streamlit as st

from app import state


def ensure_demo_run() -> None:
    """Train the demo run once per session if no run exists (skipped when FNLAB_NO_DEMO is set)."""
    import os
    import time

    if os.environ.get("FNLAB_NO_DEMO") or st.session_state.get("_demo_done"):
        return
    root = state.runs_root()
    if state.run_names(root):
        st.session_state["_demo_done"] = True
        return
    from app.training import demo_config, run_training

    if state.optional("fnlab.train") is None:
        st.sidebar.info("Training is not available yet (module `fnlab.train` is missing): no demo run.")
        st.session_state["_demo_done"] = True
        return
    runs = state.optional("fnlab.runs")
    staging = getattr(runs.RunStore(root), "staging", None) if runs is not None else None
    if staging is not None and (staging / "demo").is_dir() and time.time() - (staging / "demo").stat().st_mtime < 300:
        st.info("Another session is training the demo run right now: reload this page in a minute.")
        return
    st.info("First start: training a short demo run on the sample data so every page has something to show "
            "(under a minute on 2 CPU cores). Please wait for the bar to finish.")
    try:
        run_training(demo_config(), root, name="demo")
    except Exception as err:
        if type(err).__name__ in ("RerunException", "StopException"):
            raise  # the user clicked something: Streamlit restarts the script, which retries the demo
        st.error(f"The demo training failed: {err}")
        st.session_state["_demo_done"] = True
        return
    st.session_state["_demo_done"] = True
    state._run_names.clear()
    st.rerun()
