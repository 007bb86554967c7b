"""Compare runs: what each run was trained with, its test metrics, and the training curves; one colour per run.
Runs of different datasets are not compared side by side without a word; runs can be renamed or deleted here."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import labels, state, url
from fnlab.analysis import viz

st.title("Compare runs")
state.sidebar()
st.caption("Each row is a run: how it was trained, then its test metrics. Look at **rSum, any relevant item** "
           "(retrieval quality when every true match counts) against **false negatives among sampled negatives** "
           "(how often training pushed true matches apart): a sampler that avoids false negatives should score "
           "higher on the first with a lower second. A run keeps its colour however many runs you pick.")

CONFIG_COLUMNS = ["dataset", "sampler", "loss", "queue", "batch", "epochs"]
PREFERRED = ["relevant_recall.rsum", "recall.rsum", "sampled_fn_rate", "fn_detection.auroc"]
ALL = "every dataset (not comparable)"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def dataset_of(cfg: dict) -> str:
    """The dataset a run was trained on, with its options that change it (``shapes (2,000 train)``)."""
    ds = cfg.get("dataset")
    name = ds.get("name") if isinstance(ds, dict) else ds
    opts = (ds.get("options") or {}) if isinstance(ds, dict) else (cfg.get("dataset_options") or {})
    root = ds.get("root") if isinstance(ds, dict) else cfg.get("dataset_root")
    text = str(name or "unknown")
    if root:
        text += f" ({root})"
    if opts:
        text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) + ")"
    return text


def config_row(cfg: dict) -> dict:
    """The columns that tell runs apart, from a run's ``config.json`` (never ``None``: unknown reads ``—``)."""
    sampler = cfg.get("sampler")
    sampler = sampler.get("name") if isinstance(sampler, dict) else sampler
    queue = cfg.get("queue_size")
    # the sampler with the value of its variant parameter, as the playground names it ("FNE · paper")
    return {"dataset": dataset_of(cfg), "sampler": labels.sampler_variant(str(sampler), cfg.get("sampler_params")),
            "loss": labels.short_loss(cfg.get("loss") or "triplet"), "queue": "off" if not queue else f"{int(queue):,}",
            "batch": str(cfg.get("batch_size") or "—"), "epochs": str(cfg.get("epochs") or "—")}


def _shown(v: float, key: str) -> str:
    if pd.isna(v):
        return "—"
    if key == "sampled_fn_rate" or key.endswith("ece"):
        return f"{v:.1%}" if key == "sampled_fn_rate" else f"{v:.3f}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def _rename(root) -> None:
    from fnlab.storage.runs import RunStore

    old, new = st.session_state.get("cmp_manage_run"), (st.session_state.get("cmp_new_name") or "").strip()
    try:
        RunStore(root).rename(old, new)
    except (OSError, ValueError) as err:
        st.session_state["_cmp_msg"] = ("error", state.public_message(err))
        return
    if st.session_state.get("run") == old or st.session_state.get("_fn_run") == old:
        state.select_run(new)
    st.session_state["cmp_new_name"] = ""
    st.session_state["cmp_manage_run"] = new
    state.refresh_runs()
    st.session_state["_cmp_msg"] = ("success", f"Renamed {old} to {new}.")


def _delete(root) -> None:
    from fnlab.storage.runs import RunStore

    which = st.session_state.get("cmp_manage_run")
    try:
        RunStore(root).delete(which)
    except (OSError, ValueError) as err:
        st.session_state["_cmp_msg"] = ("error", state.public_message(err))
        return
    st.session_state["cmp_delete_sure"] = False
    st.session_state.pop("cmp_manage_run", None)
    state.refresh_runs()
    st.session_state["_cmp_msg"] = ("success", f"Deleted {which}.")


def _manage(root, names: list[str]) -> None:
    """Rename or delete a run, through the run store (it touches only runs fnlab wrote)."""
    with st.expander("Rename or delete a run", icon=":material/edit:",
                     expanded=bool(st.session_state.get("_cmp_msg"))):
        kind, msg = st.session_state.pop("_cmp_msg", (None, None))
        if kind == "error":
            st.error(msg)
        elif kind == "success":
            st.success(msg)
        c1, c2, c3 = st.columns([2, 2, 1])
        if st.session_state.get("cmp_manage_run") not in names:
            st.session_state["cmp_manage_run"] = names[0]
        which = c1.selectbox("Run", names, key="cmp_manage_run")
        c2.text_input("New name", key="cmp_new_name", max_chars=128,
                      help="Letters, digits, '.', '_' and '-', starting with a letter or digit.")
        c3.button("Rename", key="cmp_rename", icon=":material/drive_file_rename_outline:", on_click=_rename,
                  args=(root,))
        sure = st.checkbox(f"Delete run **{which}** and everything in its folder (its review decisions too)",
                           key="cmp_delete_sure")
        st.button("Delete", key="cmp_delete", icon=":material/delete:", disabled=not sure, type="primary",
                  on_click=_delete, args=(root,))


def _page():
    root = state.runs_root()
    names = state.run_names(root)
    if not names:
        st.info("No trained run yet: train one on the **Train** page.")
        return
    colors = viz.run_colors(sorted(names))  # by name: a run's colour never depends on the selection
    configs = {n: state.get_run(root, n).config for n in names}
    datasets = sorted({dataset_of(c) for c in configs.values()})
    current = dataset_of(configs[st.session_state["run"]]) if st.session_state.get("run") in configs else datasets[0]
    options = datasets + ([ALL] if len(datasets) > 1 else [])
    url.bind("cmp_dataset", "dataset", current, url.as_str, allowed=options)
    if len(datasets) > 1:
        ds = st.selectbox("Dataset", options, key="cmp_dataset",
                          help="Metrics are comparable only between runs of one dataset (and its options).")
    else:
        ds = datasets[0]
    pool = [n for n in names if ds == ALL or dataset_of(configs[n]) == ds]
    if st.session_state.get("cmp_runs_of", ds) != ds:  # a new dataset filter offers its own runs
        st.session_state["cmp_runs"] = pool[:6]
    st.session_state["cmp_runs_of"] = ds
    url.bind("cmp_runs", "runs", pool[:6], url.as_list, allowed=pool)
    chosen = st.multiselect("Runs", pool, key="cmp_runs")
    url.publish({"dataset": ds if len(datasets) > 1 else None, "runs": chosen})
    if not chosen:
        st.info("Pick at least one run.")
        _manage(root, names)
        return
    kinds = sorted({dataset_of(configs[n]) for n in chosen})
    if len(kinds) > 1:
        st.warning(f"These runs come from {len(kinds)} different datasets ({'; '.join(kinds)}): their metrics "
                   "measure different tasks and are not comparable side by side.", icon=":material/warning:")
    rows, curves = [], {}
    for n in chosen:
        row = {"run": n, **config_row(configs[n])}
        try:
            row.update(_flatten(state.get_run(root, n).load_json("eval")))
        except (FileNotFoundError, OSError, ValueError):
            pass
        rows.append(row)
        curves[n] = state.run_metrics(root, n)
    table = pd.DataFrame(rows)
    numeric = [c for c in table.columns if c not in ("run", *CONFIG_COLUMNS) and pd.api.types.is_numeric_dtype(table[c])
               and not c.endswith(".k") and table[c].notna().any()]
    words = state.direction_labels(root, chosen[0]) if len(kinds) == 1 else None
    st.markdown("**How each run was trained**")
    st.dataframe(table[["run", *CONFIG_COLUMNS]], hide_index=True, width="stretch", key="cmp_config",
                 column_config={"run": st.column_config.TextColumn("run", width=190),
                                "dataset": st.column_config.TextColumn("dataset", width=200),
                                "sampler": st.column_config.TextColumn("sampler", width=140),
                                "loss": st.column_config.TextColumn("loss", width=80),
                                **{c: st.column_config.TextColumn(c, width=60) for c in ("queue", "batch", "epochs")}})
    st.markdown("**Test metrics**")
    shown = [c for c in PREFERRED if c in numeric]
    metrics_table = table[["run"]].copy()
    for c in shown:
        metrics_table[labels.metric_short(c, words)] = [_shown(v, c) for v in table[c]]
    st.dataframe(metrics_table, hide_index=True, width="stretch", key="cmp_table",
                 column_config={"run": st.column_config.TextColumn("run", width=190),
                                **{labels.metric_short(c, words): st.column_config.TextColumn(
                                    labels.metric_short(c, words), width=150, help=labels.metric(c, words))
                                   for c in shown}})
    defaults = [c for c in PREFERRED if c in numeric] or numeric[:4]
    url.bind("cmp_metrics", "metrics", defaults, url.as_list, allowed=numeric)
    metrics = st.multiselect("Metrics to chart", numeric, format_func=lambda m: labels.metric(m, words),
                             key="cmp_metrics")
    url.publish({"dataset": ds if len(datasets) > 1 else None, "runs": chosen,
                 "metrics": metrics if metrics != defaults else None})
    if metrics:
        st.plotly_chart(viz.run_comparison_bars(table, metrics=metrics, colors=colors,
                                                labels={m: labels.metric(m, words) for m in metrics}),
                        width="stretch", key="cmp_bars")
    st.plotly_chart(viz.training_curves(curves, colors=colors), width="stretch", key="cmp_curves")
    _manage(root, names)


state.guard(_page)
