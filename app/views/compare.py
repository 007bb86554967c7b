"""Compare runs: metrics table, bar charts and overlaid training curves."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from fnlab import viz

st.title("Compare runs")
state.sidebar()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _page():
    root = state.runs_root()
    names = state.run_names(root)
    if not names:
        st.info("No trained run yet: train one on the **Train** page.")
        return
    chosen = st.multiselect("Runs", names, default=names[-6:], key="cmp_runs")
    if not chosen:
        st.info("Pick at least one run.")
        return
    rows, curves = [], {}
    for n in chosen:
        run = state.get_run(root, n)
        cfg = run.config
        row = {"run": n, "sampler": cfg.get("sampler"), "loss": cfg.get("loss"), "epochs": cfg.get("epochs")}
        try:
            row.update(_flatten(run.load_json("eval")))
        except (FileNotFoundError, OSError, ValueError):
            pass
        rows.append(row)
        curves[n] = state.run_metrics(root, n)
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch")
    numeric = [c for c in table.columns if c not in ("run", "epochs") and pd.api.types.is_numeric_dtype(table[c])]
    preferred = [c for c in ("recall.rsum", "relevant_recall.rsum", "r_precision.t2i", "fn_detection.auroc",
                             "sampled_fn_rate") if c in numeric]
    metrics = st.multiselect("Metrics to chart", numeric, default=preferred or numeric[:4], key="cmp_metrics")
    if metrics:
        st.plotly_chart(viz.run_comparison_bars(table, metrics=metrics), width="stretch", key="cmp_bars")
    st.plotly_chart(viz.training_curves(curves), width="stretch", key="cmp_curves")


state.guard(_page)
