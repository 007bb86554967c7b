"""Training from the app: a progress bar and live curves around ``fnlab.train.train``."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app import state
from fnlab import viz

DEMO_EPOCHS = 3


def demo_config(**overrides) -> dict:
    """A short run on the sample data (shapes), sized to finish in under a minute on 2 CPU cores."""
    # The shapes generator with a smaller training split (600 images, 3000 captions); val/test as in the
    # sample data. The full 2000-image training split takes ~3 min for 3 epochs on 2 busy cores.
    cfg = {"dataset": "shapes", "dataset_options": {"n_train": 600}, "sampler": "fne", "epochs": DEMO_EPOCHS,
           "batch_size": 128, "dim": 64, "text_encoder": "bag", "queue_size": 1024, "seed": 0, "device": "auto"}
    cfg.update(overrides)
    return cfg


def _callback_class():
    train = state.need("fnlab.train", "Training")

    class StreamlitProgress(train.Callback):
        """Drives a progress bar, a status line and live curves."""

        def __init__(self) -> None:
            self.bar = st.progress(0.0, text="Preparing the data and the model…")
            self.chart = st.empty()
            self.rows: list[dict] = []
            self.total = 1
            self.t0 = time.perf_counter()

        def on_train_start(self, config, info) -> None:
            self.total = max(1, int(info.get("epochs", 1)) * int(info.get("steps_per_epoch", 1)))
            self.bar.progress(0.0, text=f"Training on {info.get('device', 'cpu')}…")

        def on_step(self, epoch, step, steps, loss) -> None:
            done = ((epoch - 1) * steps + step) / self.total
            if step == steps or step % 5 == 0:
                self.bar.progress(min(1.0, done), text=f"epoch {epoch}, step {step}/{steps}, loss {loss:.3f}, "
                                                       f"{time.perf_counter() - self.t0:.0f} s")

        def on_epoch_end(self, epoch, metrics) -> None:
            self.rows.append({"epoch": epoch, **metrics})
            self.chart.plotly_chart(viz.training_curves({"this run": pd.DataFrame(self.rows)}),
                                    width="stretch", key=f"train_live_{epoch}")

        def on_train_end(self, run) -> None:
            self.bar.progress(1.0, text=f"Done in {time.perf_counter() - self.t0:.0f} s")

    return StreamlitProgress


def run_training(config: dict, root: Path, name: str | None = None):
    """Train ``config`` into ``root`` with a progress bar; returns the finished run.

    Raises:
        ValueError: a bad configuration (shown by the caller as ``st.error``).
    """
    train = state.need("fnlab.train", "Training")
    runs = state.need("fnlab.runs", "The run store")
    cfg = train.TrainConfig.from_dict(config)
    Path(root).mkdir(parents=True, exist_ok=True)
    store = runs.RunStore(root)
    if name is not None and store.exists(name):
        raise ValueError(f"a run named {name!r} already exists in {root}")
    run = train.train(cfg, callbacks=[_callback_class()()], store=store, name=name)
    state._run_names.clear()
    return run
