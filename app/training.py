"""Training from the app: the demo configuration and background runs (app/jobs.py) with live curves."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import streamlit as st

from app import jobs, state
from fnlab.analysis import viz

DEMO_EPOCHS = 2


def demo_config(**overrides) -> dict:
    """The demo run: FNE over frozen pretrained features (``shapes-precomp`` at its defaults, the paper's
    setting), 2 epochs: a VSE++ warm-up, then one with FNE and the paper's 8224-entry queue. A third epoch
    lowers the validation rSum (342.9 after the second, 189.3 after the third) and training keeps the best
    epoch, so it would cost time and change nothing the pages show. It trains what ``fnlab train --dataset
    shapes-precomp --epochs 2`` trains. Cold, with only what the repository ships, the first start (building
    the dataset, training, writing the run) takes well under a minute on 2 CPU cores (bench/train_speed.py).
    The Train page starts from this configuration; ``text_encoder`` only matters for datasets of words. The
    training split's embeddings are saved too (a few MB): the playground's batch summary samples from that pool,
    the size samplers see in training (:func:`app.state.pool_split`).
    """
    from fnlab import data
    from fnlab.samplers import DEFAULT_SAMPLER

    demo = next(n for n in data.available() if data.entry(n).meta.get("demo"))
    cfg = {"dataset": demo, "dataset_options": {}, "sampler": DEFAULT_SAMPLER, "epochs": DEMO_EPOCHS,
           "batch_size": 128, "dim": 64, "text_encoder": "bag", "queue_size": 8224, "seed": 0, "device": "auto",
           "eval_splits": ["train", "val", "test"]}
    cfg.update(overrides)
    return cfg


def new_run_name(config: dict) -> str:
    """``YYYYmmdd-HHMMSS-<dataset>-<sampler>-<4 hex>``."""
    ds = config.get("dataset")
    ds = Path(str(ds.get("name") if isinstance(ds, dict) else ds)).name
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{ds}-{config.get('sampler')}")[:40]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:4]}"


def start_training(config: dict, root: Path, name: str | None = None) -> str:
    """Check ``config`` and start training it in the background; returns the run name.

    Raises:
        ValueError: a bad configuration, or the name is taken.
    """
    from fnlab.training.train import TrainConfig  # torch: loaded when a run starts, not at app start

    TrainConfig.from_dict(config)  # a bad configuration fails here, in the page, not in the job
    name = name or new_run_name(config)
    if not jobs.start(root, name, config):
        raise ValueError(f"run {name!r} is being trained already")
    return name


@st.fragment(run_every=1.5)
def live_curves(root: str, name: str) -> None:
    """Training curves of run ``name`` while it trains; when it is done, the whole page is drawn again (with the
    finished run's curves, :func:`finished_curves`) and the run becomes the run of every page."""
    from fnlab.storage.runs import RunStore

    job = jobs.status(root, name)
    if job is None or job.state != "running" or name in state.run_names(Path(root)):
        if job is not None and job.state != "failed":
            state.select_run(name)
        state.refresh_runs()
        st.rerun(scope="app")
    try:
        metrics = RunStore(root).progress(name)
    except (FileNotFoundError, ValueError):
        metrics = None
    if metrics is not None and len(metrics):
        st.plotly_chart(viz.training_curves({name: metrics}), width="stretch", key=f"train_live_{name}")
    else:
        st.caption("The curves appear after the first epoch.")


def finished_curves(root: Path, name: str, *, just_trained: bool = False) -> None:
    """The training curves of a finished run, with its kept epoch and test figures."""
    if just_trained:
        st.success(f"Run **{name}** is ready: it is now the run of every page.")
    st.subheader(f"Training curves of run {name}")
    metrics = state.run_metrics(root, name)
    if not len(metrics):
        st.caption("This run recorded no per-epoch metrics.")
        return
    st.plotly_chart(viz.training_curves({name: metrics}), width="stretch", key="train_finished")
    try:
        ev = state.get_run(root, name).load_json("eval")
    except (FileNotFoundError, OSError, ValueError):
        return
    best, rsum = ev.get("best_epoch"), (ev.get("recall") or {}).get("rsum")
    rel = (ev.get("relevant_recall") or {}).get("rsum") if isinstance(ev.get("relevant_recall"), dict) else None
    parts = [f"kept epoch {best}" if best is not None else None,
             f"{ev.get('split', 'test')} rSum {rsum:.1f}" if isinstance(rsum, int | float) else None,
             f"relevant rSum {rel:.1f}" if isinstance(rel, int | float) else None]
    st.caption("; ".join(p for p in parts if p) + ". Epoch 0 (where shown) is the untrained model: your own "
               "embeddings, which a run may keep. Grey: the warm-up epochs, trained without the sampler.")
