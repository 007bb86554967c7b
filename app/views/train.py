"""Train: pick sampler, loss and parameters (paper defaults); the run trains in the background with live curves."""

from __future__ import annotations

import streamlit as st

from app import jobs, labels, state
from app.training import demo_config, live_curves, start_training
from fnlab import samplers as smp
from fnlab.training.train import TRAIN_LOSSES

st.title("Train")
state.sidebar()
st.caption("Train a small dual encoder on the chosen dataset with any negative sampler. Training runs in the "
           "background: you can change pages meanwhile, and the run then appears on every page.")

DATASETS = {"shapes as frozen pretrained features (shapes-precomp, the paper's setting; the demo run)":
                ("shapes-precomp", {}),
            "digits as frozen pretrained features (digits-precomp)": ("digits-precomp", {}),
            "shapes from pixels and words (600 training images)": ("shapes", {"n_train": 600}),
            "shapes from pixels and words (2,000 training images)": ("shapes", {}),
            "digits (scikit-learn handwritten digits)": ("digits", {}),
            "my own folder (pairs, precomp or saved dataset)": ("folder", {})}


def _dataset() -> tuple[str, dict, str | None] | None:
    label = st.selectbox("Dataset", list(DATASETS), key="tr_dataset",
                         help="Built-in datasets have ground truth, so false-negative rates are measured, not guessed.")
    name, opts = DATASETS[label]
    if name != "folder":
        return name, dict(opts), None
    c1, c2 = st.columns([1, 3])
    layout = c1.selectbox("Layout", ["pairs", "precomp", "saved dataset"], key="tr_layout",
                          help="pairs: pairs.csv|parquet with a.npy and b.npy; precomp: {split}_ims.npy and "
                               "{split}_caps.txt; saved dataset: a folder with dataset.json.")
    folder = c2.text_input("Dataset folder", key="tr_folder", placeholder="/path/to/my_pairs")
    if not folder.strip():
        st.info("Enter the folder holding your dataset.")
        return None
    path = state.checked_folder(folder, "Dataset folder")
    if not path.is_dir():
        raise FileNotFoundError(f"Dataset folder: {folder!r} does not exist")
    if layout == "saved dataset":
        return str(path), {}, None
    return layout, {}, str(path)


def _param_inputs(sampler: str) -> dict:
    params = {}
    specs = [s for s in smp.param_specs(sampler) if not s.optional]  # optional windows: try them in the playground
    if not specs:
        return params
    cols = st.columns(min(4, len(specs)))
    for i, spec in enumerate(specs):
        w, label = cols[i % len(cols)], labels.param(sampler, spec.name)
        if spec.integer:
            params[spec.name] = w.number_input(label, int(spec.low), int(spec.high), int(spec.default),
                                               help=spec.help, key=f"tr_{sampler}_{spec.name}")
        else:
            params[spec.name] = w.number_input(label, float(spec.low), float(spec.high), float(spec.default),
                                               help=spec.help, format="%.4g", key=f"tr_{sampler}_{spec.name}")
    return params


def _page():
    root = state.runs_root()
    # Outside the form: changing the dataset or sampler must redraw the fields at once.
    picked = _dataset()
    c2, c3 = st.columns(2)
    names = smp.available()
    sampler = c2.selectbox("Negative sampler", names, index=names.index("fne") if "fne" in names else 0,
                           format_func=labels.sampler, key="tr_sampler",
                           help="How each query's negative is drawn from the batch and the memory queue.")
    losses = list(TRAIN_LOSSES)
    loss = c3.selectbox("Loss", losses, format_func=lambda n: labels.LOSSES.get(n, n), key="tr_loss",
                        help="Applied to the negatives the sampler picked.")
    with st.form("train_form"):
        c4, c5, c6, c7 = st.columns(4)
        epochs = c4.number_input("Epochs", 1, 100, 3, key="tr_epochs",
                                 help="Passes over the training split; the first is a warm-up without the sampler.")
        batch = c5.number_input("Batch size (pairs)", 8, 1024, 128, step=8, key="tr_batch")
        queue = c6.number_input("Memory queue (entries; 0 = off, paper 8224)", 0, 20000, 8224, step=64,
                                key="tr_queue", help="Past batches' features kept as extra negatives (momentum encoder).")
        seed = c7.number_input("Seed", 0, 10_000, 0, key="tr_seed", help="The same seed gives the same run.")
        mode = st.radio("FNE mode", list(labels.FNE_MODES), format_func=labels.FNE_MODES.get, horizontal=True,
                        key="tr_mode", help="paper: the official weighting (keeps 61% of a sure false negative's "
                                            "weight); calibrated: multiplies by 1 − P(FN), really removing them.") \
            if sampler == "fne" else None
        params = _param_inputs(sampler)
        name = st.text_input("Run name (empty: automatic)", key="tr_name", max_chars=100)
        go = st.form_submit_button("Train in the background", type="primary")
    if go:
        if picked is None:
            st.warning("Choose a dataset first.")
        else:
            ds_name, ds_opts, ds_root = picked
            if mode is not None:
                params["mode"] = mode
            cfg = demo_config(dataset=ds_name, dataset_options=ds_opts, sampler=sampler, loss=loss,
                              epochs=int(epochs), batch_size=int(batch), queue_size=int(queue), seed=int(seed),
                              sampler_params=params)
            if ds_root:
                cfg["dataset_root"] = ds_root
            st.session_state["tr_last"] = start_training(cfg, root, name=name.strip() or None)
    last = st.session_state.get("tr_last")
    if last:
        job = jobs.status(root, last)
        if job is not None and job.state == "running":
            c1, c2 = st.columns([4, 1])
            c1.info(f"Training **{last}** in the background (progress bar at the top of every page).")
            if c2.button("Stop it", key="tr_stop"):
                jobs.stop(root, last)
        live_curves(str(root), last)


state.guard(_page)
