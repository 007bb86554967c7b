"""First start: train a short demo run on the sample data when the runs folder has none."""

from __future__ import annotations

import streamlit as st

from app import state


def ensure_demo_run() -> None:
    """Train the demo run once per session if no run exists (skipped when FNLAB_NO_DEMO is set)."""
    import os

    if os.environ.get("FNLAB_NO_DEMO") or st.session_state.get("_demo_tried"):
        return
    st.session_state["_demo_tried"] = True
    root = state.runs_root()
    if state.run_names(root):
        return
    from app.training import demo_config, run_training

    if state.optional("fnlab.train") is None:
        st.sidebar.info("Training is not available yet (module `fnlab.train` is missing): no demo run.")
        return
    st.info("First start: training a short demo run on the sample data so every page has something to show "
            "(under a minute).")
    try:
        run_training(demo_config(), root, name="demo")
    except Exception as err:  # noqa: BLE001 - shown in the page, the app keeps working
        st.error(f"The demo training failed: {err}")
        return
    state._run_names.clear()
    st.rerun()
