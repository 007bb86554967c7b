"""Train: pick sampler, loss and parameters (paper defaults), train with progress and live curves."""

from __future__ import annotations

import streamlit as st

from app import state
from app.training import demo_config, run_training

st.title("Train")
state.sidebar()
st.caption("Train a small dual encoder on the chosen dataset with any negative sampler. "
           "The run is saved in the runs folder and appears on every other page.")

DATASETS = {"shapes, small (600 training images, fast)": ("shapes", {"n_train": 600}),
            "shapes (full)": ("shapes", {}), "digits": ("digits", {})}


def _page():
    smp = state.need("fnlab.samplers", "Samplers")
    train = state.need("fnlab.train", "Training")
    # Outside the form: changing the sampler must redraw its parameter fields at once.
    c1, c2, c3 = st.columns(3)
    ds_label = c1.selectbox("Dataset", list(DATASETS), key="tr_dataset")
    sampler = c2.selectbox("Sampler", smp.available(), index=smp.available().index("fne")
                           if "fne" in smp.available() else 0, key="tr_sampler")
    losses = list(getattr(train, "TRAIN_LOSSES", ("triplet", "infonce")))
    loss = c3.selectbox("Loss", losses, key="tr_loss")
    with st.form("train_form"):
        c4, c5, c6, c7 = st.columns(4)
        epochs = c4.number_input("Epochs", 1, 100, 3, key="tr_epochs")
        batch = c5.number_input("Batch size", 8, 1024, 128, step=8, key="tr_batch")
        queue = c6.number_input("Memory queue (0 = off; paper 8224)", 0, 20000, 1024, step=64, key="tr_queue")
        seed = c7.number_input("Seed", 0, 10_000, 0, key="tr_seed")
        mode = st.radio("FNE mode", ["calibrated", "paper"], horizontal=True, key="tr_mode",
                        help="paper: the official weighting (softens false negatives to 61%); "
                             "calibrated: weight × (1 − P_fn), really eliminates them") if sampler == "fne" else None
        params = {}
        specs = smp.param_specs(sampler)
        if specs:
            cols = st.columns(min(4, len(specs)))
            for i, spec in enumerate(specs):
                if spec.optional:
                    continue  # optional window/score limits stay off here; try them in the playground
                w = cols[i % len(cols)]
                if spec.integer:
                    params[spec.name] = w.number_input(spec.name, int(spec.low), int(spec.high), int(spec.default),
                                                       help=spec.help, key=f"tr_{sampler}_{spec.name}")
                else:
                    params[spec.name] = w.number_input(spec.name, float(spec.low), float(spec.high),
                                                       float(spec.default), help=spec.help, format="%.4g",
                                                       key=f"tr_{sampler}_{spec.name}")
        name = st.text_input("Run name (empty: automatic)", key="tr_name")
        go = st.form_submit_button("Train", type="primary")
    if not go:
        return
    ds_name, ds_opts = DATASETS[ds_label]
    if mode is not None:
        params["mode"] = mode
    cfg = demo_config(dataset=ds_name, dataset_options=ds_opts, sampler=sampler, loss=loss, epochs=int(epochs),
                      batch_size=int(batch), queue_size=int(queue), seed=int(seed), sampler_params=params)
    run = run_training(cfg, state.runs_root(), name=name.strip() or None)
    st.session_state["run_pending"] = run.name
    st.success(f"Run **{run.name}** saved in `{state.runs_root()}`.")
    st.button("Show it on every page", key="tr_show", type="primary")  # a rerun selects it in the sidebar


state.guard(_page)
