"""Train: pick sampler, loss and parameters (paper defaults); the run trains in the background with live curves."""

from __future__ import annotations

import streamlit as st

from app import jobs, labels, state, url
from app.training import demo_config, finished_curves, live_curves, start_training
from fnlab import data
from fnlab import samplers as smp
from fnlab.training.train import train_losses

st.title("Train")
state.sidebar()
st.caption("Train a small dual encoder on the chosen dataset with any negative sampler. Training runs in the "
           "background: you can change pages meanwhile, and the run then appears on every page.")



def _datasets() -> dict[str, tuple[str, dict]]:
    """label -> (dataset name, options): the registry's built-in datasets (the demo's first, each preset
    separately), then the user's own folder."""
    entries = sorted((data.entry(n) for n in data.builtin()), key=lambda e: not e.meta.get("demo"))
    out: dict[str, tuple[str, dict]] = {}
    for e in entries:
        for suffix, options in e.meta.get("presets", ()) or (("", {}),):
            out[f"{e.title} ({suffix})" if suffix else e.title] = (e.name, dict(options))
    layouts = [n for n in data.available() if data.entry(n).meta.get("root")]
    out[f"my own folder ({', '.join(layouts)} or saved dataset)"] = ("folder", {})
    return out


DATASETS = _datasets()


def _sidebar_run_folder() -> tuple[str, tuple[str, dict, str | None]] | None:
    """``(label, (name, options, root))`` of the dataset of the run in the sidebar where it is a folder of the
    user's (a built-in one is in the list already), so that another sampler on one's own data is one click."""
    name = st.session_state.get("run")
    if not name:
        return None
    try:
        run = state.loaded(state.runs_root(), name)
        spec, where = run.dataset_spec, run.dataset_folder
    except (OSError, ValueError):
        return None
    if where is None:  # a built-in dataset
        return None
    label = f"the dataset of run {name} ({where})"
    if spec["root"]:
        return label, (spec["name"], dict(spec["options"]), spec["root"])
    return label, (spec["name"], {}, None)  # a saved dataset folder: its path is its name


def _dataset() -> tuple[str, dict, str | None] | None:
    own = _sidebar_run_folder()
    choices = ([own[0]] if own else []) + list(DATASETS)
    url.bind("tr_dataset", "dataset", choices[0], url.as_str, allowed=choices)
    label = st.selectbox("Dataset", choices, key="tr_dataset",
                         help="Built-in datasets have ground truth, so false-negative rates are measured, not guessed.")
    if own and label == own[0]:
        return own[1]
    name, opts = DATASETS[label]
    if name != "folder":
        return name, dict(opts), None
    c1, c2 = st.columns([1, 3])
    layouts = [n for n in data.available() if data.entry(n).meta.get("root")]
    layout = c1.selectbox("Layout", [*layouts, "saved dataset"], key="tr_layout",
                          help="; ".join(f"{n}: {data.entry(n).summary}" for n in layouts)
                          + "; saved dataset: a folder with dataset.json.")
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
    for spec in (s for s in specs if s.choices):
        params[spec.name] = st.radio(spec.title, list(spec.choices), format_func=spec.choice_label, horizontal=True,
                                     key=f"tr_{sampler}_{spec.name}", help=spec.help)
    specs = [s for s in specs if not s.choices]
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
    url.bind("tr_sampler", "sampler", smp.DEFAULT_SAMPLER if smp.DEFAULT_SAMPLER in names else names[0], url.as_str,
             allowed=names)
    sampler = c2.selectbox("Negative sampler", names, format_func=labels.sampler, key="tr_sampler",
                           help="How each query's negative is drawn from the batch and the memory queue.")
    url.publish({"dataset": st.session_state.get("tr_dataset"), "sampler": sampler})
    losses = list(train_losses())
    own = smp.default_loss(sampler)
    loss = c3.selectbox("Loss", losses, index=losses.index(own) if own in losses else 0, format_func=labels.loss,
                        key=f"tr_loss_{sampler}", help=f"Applied to the negatives the sampler picked (this sampler's "
                                                       f"own: {labels.loss(own)}).")
    with st.form("train_form"):
        c4, c5, c6, c7 = st.columns(4)
        epochs = c4.number_input("Epochs", 1, 100, 3, key="tr_epochs",
                                 help="Passes over the training split; the first is a warm-up without the sampler.")
        batch = c5.number_input("Batch size (pairs)", 8, 1024, 128, step=8, key="tr_batch")
        queue = c6.number_input("Memory queue (entries; 0 = off, paper 8224)", 0, 20000, 8224, step=64,
                                key="tr_queue", help="Past batches' features kept as extra negatives (momentum encoder).")
        seed = c7.number_input("Seed", 0, 10_000, 0, key="tr_seed", help="The same seed gives the same run.")
        params = _param_inputs(sampler)
        view = picked is not None and picked[2] is not None and st.checkbox(
            "Read the folder's texts with MiniLM", key="tr_view",
            help="Encodes the folder's texts (text, a_text) once with the bundled sentence encoder, as a second view "
                 "for the false-negative posterior: the query's text against the document's, the document's against "
                 "the labelled one's. Costs the encoding (about a minute for ten thousand short texts on two cores); "
                 "a folder without texts gains nothing.")
        name = st.text_input("Run name (empty: automatic)", key="tr_name", max_chars=100)
        go = st.form_submit_button("Train in the background", type="primary")
    if go:
        if picked is None:
            st.warning("Choose a dataset first.")
        else:
            ds_name, ds_opts, ds_root = picked
            cfg = demo_config(dataset=ds_name, dataset_options=ds_opts, sampler=sampler, loss=loss,
                              epochs=int(epochs), batch_size=int(batch), queue_size=int(queue), seed=int(seed),
                              sampler_params=params)
            if ds_root:
                cfg["dataset_root"] = ds_root
            if view:
                cfg["view_encoder"] = "minilm"
            st.session_state["tr_last"] = start_training(cfg, root, name=name.strip() or None)
    last = st.session_state.get("tr_last")
    job = jobs.status(root, last) if last else None
    if job is not None and job.state == "running":
        c1, c2 = st.columns([4, 1])
        c1.info(f"Training **{last}** in the background (progress bar at the top of every page).")
        if c2.button("Stop it", key="tr_stop"):
            jobs.stop(root, last)
        live_curves(str(root), last)
        return
    if job is not None and job.state == "failed":
        st.error(f"Training {last} failed: {job.error}")
    names = state.run_names(root)
    shown = last if last in names else st.session_state.get("run")
    if shown in names:  # the finished run's curves (the one just trained, else the sidebar's)
        finished_curves(root, shown, just_trained=shown == last)


state.guard(_page)
