"""Compare runs: what each run was trained with, its test metrics, and the training curves; one colour per run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import labels, state
from fnlab.analysis import viz

st.title("Compare runs")
state.sidebar()
st.caption("Each row is a run: how it was trained, then its test metrics. Look at **rSum, any relevant item** "
           "(retrieval quality when every true match counts) against **false negatives among sampled negatives** "
           "(how often training pushed true matches apart): a sampler that avoids false negatives should score "
           "higher on the first with a lower second. A run keeps its colour however many runs you pick.")

CONFIG_COLUMNS = ["dataset", "sampler", "loss", "queue", "batch", "epochs"]
PREFERRED = ["relevant_recall.rsum", "recall.rsum", "sampled_fn_rate", "fn_detection.auroc"]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def config_row(cfg: dict) -> dict:
    """The columns that tell runs apart, from a run's ``config.json``."""
    ds = cfg.get("dataset")
    ds_name = ds.get("name") if isinstance(ds, dict) else ds
    opts = (ds.get("options") or {}) if isinstance(ds, dict) else (cfg.get("dataset_options") or {})
    if opts.get("n_train"):
        ds_name = f"{ds_name} ({opts['n_train']:,} train)"
    sampler = cfg.get("sampler")
    sampler = sampler.get("name") if isinstance(sampler, dict) else sampler
    queue = cfg.get("queue_size")
    # the sampler with the value of its variant parameter, as the playground names it ("FNE · paper")
    return {"dataset": ds_name, "sampler": labels.sampler_variant(str(sampler), cfg.get("sampler_params")),
            "loss": labels.short_loss(cfg.get("loss") or "triplet"), "queue": "off" if not queue else int(queue),
            "batch": cfg.get("batch_size"), "epochs": cfg.get("epochs")}


def _page():
    root = state.runs_root()
    names = state.run_names(root)
    if not names:
        st.info("No trained run yet: train one on the **Train** page.")
        return
    colors = viz.run_colors(sorted(names))  # by name: a run's colour never depends on the selection
    chosen = st.multiselect("Runs", names, default=names[:6], key="cmp_runs")
    if not chosen:
        st.info("Pick at least one run.")
        return
    rows, curves = [], {}
    for n in chosen:
        run = state.get_run(root, n)
        row = {"run": n, **config_row(run.config)}
        try:
            row.update(_flatten(run.load_json("eval")))
        except (FileNotFoundError, OSError, ValueError):
            pass
        rows.append(row)
        curves[n] = state.run_metrics(root, n)
    table = pd.DataFrame(rows)
    numeric = [c for c in table.columns if c not in ("run", *CONFIG_COLUMNS) and pd.api.types.is_numeric_dtype(table[c])
               and not c.endswith(".k")]
    st.markdown("**How each run was trained**")
    st.dataframe(table[["run", *CONFIG_COLUMNS]], hide_index=True, width="stretch", key="cmp_config")
    st.markdown("**Test metrics**")
    shown = ["run", *[c for c in PREFERRED if c in numeric]]
    st.dataframe(table[shown].rename(columns={c: labels.metric(c) for c in numeric}), hide_index=True,
                 width="stretch", key="cmp_table")
    defaults = [c for c in PREFERRED if c in numeric] or numeric[:4]
    metrics = st.multiselect("Metrics to chart", numeric, default=defaults, format_func=labels.metric,
                             key="cmp_metrics")
    if metrics:
        st.plotly_chart(viz.run_comparison_bars(table, metrics=metrics, colors=colors,
                                                labels={m: labels.metric(m) for m in metrics}),
                        width="stretch", key="cmp_bars")
    st.plotly_chart(viz.training_curves(curves, colors=colors), width="stretch", key="cmp_curves")


state.guard(_page)
