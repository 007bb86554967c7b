"""One loader for a finished run: its config, metrics, dataset splits, embeddings and posterior.

``fnlab eval`` and the app read a run through :class:`LoadedRun` only, so a pair gets the same
P(false negative), and a split the same embeddings, wherever it is shown.

* **Splits.** :attr:`LoadedRun.saved_splits` are the splits whose embeddings training saved
  (``emb_a_SPLIT.npy`` and ``emb_b_SPLIT.npy``). Any other split of the run's dataset, and ``all``
  (every split at once), is encoded on first use with the run's own model (``model.pt``, rebuilt from
  ``config.json``'s ``model_spec``), so every split can be analysed.
* **Posterior.** The run's ``posterior.json`` when it has one; otherwise the run's *own* estimator
  (``config.json`` field ``posterior``, the one training would have fitted, ``pu`` for runs that do not
  say) is fitted here on the split training fits it on (``val``), with the run's seed
  (:func:`fnlab.training.train.fit_run_posterior`). :attr:`LoadedRun.posterior_source` says which.
* **Identity.** :attr:`LoadedRun.checksum` is a digest of what the run's numbers depend on (config,
  model, embeddings, posterior; from the sha256 sums ``run.json`` recorded): caches of derived data
  (:mod:`fnlab.storage.pages`) are keyed by it, so a renamed run keeps them and a retrained one does not.

Shapes: ``embeddings(split)`` returns ``(emb_a [n_a, d], emb_b [n_b, d])`` float32 unit rows, read-only.

Example:
    >>> run = LoadedRun.open("runs/demo")                       # doctest: +SKIP
    >>> ds, (a, b) = run.dataset("test"), run.embeddings("test")  # doctest: +SKIP
    >>> post = run.posterior()                                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fnlab.core import files
from fnlab.storage.runs import CONFIG, Run, RunStore

#: the split orders a run can be analysed in; ``all`` is every split at once
SPLIT_ORDER = ("test", "val", "train", "all")
#: the split training fits the run's posterior on
POSTERIOR_SPLIT = "val"
_DERIVED_FROM = ("model.pt", "posterior.json", CONFIG)


class LoadedRun:
    """A complete run with everything analyses read (see the module docstring).

    Args:
        run: the :class:`fnlab.storage.runs.Run`.

    Thread-safe: the app shares one object between sessions; each split is loaded once.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = threading.RLock()
        self._datasets: dict[str, Any] = {}
        self._embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._posterior: tuple[Any, str] | None = None
        self._model = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike) -> LoadedRun:
        """The run in folder ``path`` (``runs/my-run``).

        Raises:
            FileNotFoundError: no such folder, or not a finished run (an interrupted one says so).
            ValueError: its marker or config is unreadable.
        """
        path = Path(path)
        if not path.is_dir():
            store, name = RunStore.for_path(path)
            if (store.staging / name).is_dir():
                store.load(name)  # raises with a hint: the run is interrupted or still being written
            raise FileNotFoundError(f"run folder {str(path)!r} does not exist")
        return cls(Run(path))

    @classmethod
    def from_store(cls, root: str | os.PathLike, name: str) -> LoadedRun:
        """Run ``name`` of the run store ``root``."""
        return cls(RunStore(root).load(name))

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def config(self) -> dict:
        return self.run.config

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per epoch (``metrics.jsonl``)."""
        return self.run.metrics

    def verify(self, *, full: bool = True) -> None:
        """Check the run's files against ``run.json`` (:meth:`fnlab.storage.runs.Run.verify`)."""
        self.run.verify(full=full)

    # ------------------------------------------------------------------ identity
    @property
    def checksum(self) -> str:
        """A digest of the files the run's numbers come from (config, model, embeddings, posterior)."""
        with self._lock:
            if getattr(self, "_checksum", None) is None:
                recorded = self.run.checksums
                parts = {}
                for f in sorted(self.run.files()):
                    if f in _DERIVED_FROM or (f.startswith("emb_") and f.endswith(".npy")):
                        rec = recorded.get(f)
                        parts[f] = rec.get("sha256") if isinstance(rec, dict) and rec.get("sha256") else \
                            files.sha256_file(self.path / f)
                self._checksum = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
            return self._checksum

    # ------------------------------------------------------------------ dataset
    @property
    def dataset_spec(self) -> dict:
        """``{"name", "root", "options"}`` from ``config.json`` (older runs: a bare name).

        Raises:
            ValueError: the config records no dataset.
        """
        spec = self.config.get("dataset")
        if isinstance(spec, str) and spec:
            return {"name": spec, "root": self.config.get("dataset_root"),
                    "options": dict(self.config.get("dataset_options") or {})}
        if not isinstance(spec, dict) or not spec.get("name"):
            raise ValueError(f"{self.path / CONFIG}: field 'dataset' must be {{'name', 'root', 'options'}}, "
                             f"got {spec!r}")
        return {"name": spec["name"], "root": spec.get("root"), "options": dict(spec.get("options") or {})}

    @property
    def saved_splits(self) -> tuple[str, ...]:
        """Splits whose embeddings training saved, in :data:`SPLIT_ORDER`."""
        have = set(self.run.files())
        return tuple(s for s in SPLIT_ORDER if f"emb_a_{s}.npy" in have and f"emb_b_{s}.npy" in have)

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split that can be analysed: the saved ones, and with the run's model every split and ``all``."""
        if not self.run.has("model.pt") or not isinstance(self.config.get("model_spec"), dict):
            return self.saved_splits
        return SPLIT_ORDER

    def dataset(self, split: str) -> Any:
        """The run's dataset, split ``split`` (a :class:`fnlab.data.base.MatchingDataset`), loaded once."""
        self._check_split(split)
        with self._lock:
            if split not in self._datasets:
                from fnlab import data

                spec = self.dataset_spec
                try:
                    self._datasets[split] = data.load(spec["name"], split=split, root=spec["root"], **spec["options"])
                except FileNotFoundError as err:
                    raise FileNotFoundError(self._missing_dataset(err)) from err
            return self._datasets[split]

    @property
    def dataset_folder(self) -> str | None:
        """The folder the run's dataset is read from: the ``root`` of a ``pairs`` or ``precomp`` dataset, or the path
        of a saved dataset folder (its name); ``None`` for a built-in dataset."""
        from fnlab import data

        spec = self.dataset_spec
        return spec["root"] or (spec["name"] if spec["name"] not in data.available() else None)

    def _missing_dataset(self, err: Exception) -> str:
        """What to say when the run's dataset cannot be found: the run, the path it records, and the way out."""
        root = self.dataset_folder
        said = f"run {self.name!r}: its dataset ({self.path / CONFIG}, field 'dataset') could not be loaded: {err}"
        if root and not os.path.isabs(root):
            said += (f". The run records the folder as {root!r}, relative to the folder it was trained from (runs "
                     f"record it absolute since 2026-12-07), and it is read from {os.getcwd()}: start the app or the "
                     "command from the folder the run was trained in")
        elif root:
            said += f". Was {root} moved or deleted? Put it back there (the run's files are checksummed, so the path " \
                    "cannot be edited), or train again on its new place"
        return said

    def _check_split(self, split: str) -> None:
        if split not in SPLIT_ORDER:
            raise ValueError(f"run {self.name!r}: unknown split {split!r}; expected one of {', '.join(SPLIT_ORDER)}")

    # ------------------------------------------------------------------ embeddings
    def embeddings(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(emb_a [n_a, d], emb_b [n_b, d])`` of ``split``: saved by training, else encoded with the run's model.

        Raises:
            FileNotFoundError: the split was not saved and the run has no model to encode it with.
            ValueError: the embeddings do not match the dataset split's sizes.
        """
        self._check_split(split)
        with self._lock:
            if split not in self._embeddings:
                if split in self.saved_splits:
                    a, b = self.run.load_array(f"emb_a_{split}"), self.run.load_array(f"emb_b_{split}")
                elif split in self.splits:
                    a, b = self._encode(split)
                else:
                    raise FileNotFoundError(
                        f"run {self.name!r}: no emb_a_{split}.npy / emb_b_{split}.npy and no model.pt to encode the "
                        f"split with (saved splits: {', '.join(self.saved_splits) or 'none'})")
                ds = self.dataset(split)
                if len(a) != ds.n_a or len(b) != ds.n_b:
                    raise ValueError(f"run {self.name!r}, split {split!r}: embeddings of {len(a)} and {len(b)} items, "
                                     f"but the dataset split has {ds.n_a} and {ds.n_b}: the dataset changed since "
                                     "the run was trained")
                a = np.ascontiguousarray(a, dtype=np.float32)
                b = np.ascontiguousarray(b, dtype=np.float32)
                a.setflags(write=False)
                b.setflags(write=False)
                self._embeddings[split] = (a, b)
            return self._embeddings[split]

    def model(self):
        """The run's trained :class:`fnlab.models.dual.DualEncoder` (``model.pt``) on the CPU, in eval mode."""
        with self._lock:
            if self._model is None:
                from fnlab.models.dual import dual_encoder_from_spec

                model = dual_encoder_from_spec(self.config["model_spec"])
                model.load_state_dict(self.run.load_state_dict("model"))
                self._model = model.eval()
            return self._model

    def _encode(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        from fnlab.models.dual import encode_side

        ds = self.dataset(split)
        model = self.model()
        return (encode_side(model, ds.a_inputs, "a", device="cpu"), encode_side(model, ds.b_inputs, "b", device="cpu"))

    # ------------------------------------------------------------------ posterior
    def posterior(self) -> Any:
        """The run's posterior: ``posterior.json``, else its own estimator fitted on ``val`` (see the module)."""
        return self._fitted()[0]

    @property
    def posterior_source(self) -> str:
        """Where :meth:`posterior` came from: ``"posterior.json"`` or ``"fitted here: ESTIMATOR on SPLIT"``."""
        return self._fitted()[1]

    @property
    def estimator(self) -> str:
        """The run's own posterior estimator (its config's ``posterior``; ``pu`` where the config is older)."""
        return str(self.config.get("posterior") or "pu")

    def _fitted(self) -> tuple[Any, str]:
        with self._lock:
            if self._posterior is None:
                from fnlab.posterior import from_params

                if self.run.has("posterior.json"):
                    self._posterior = (from_params(self.run.load_json("posterior")), "posterior.json")
                else:
                    from fnlab.data.minilm import dataset_views
                    from fnlab.training.train import fit_run_posterior

                    split = POSTERIOR_SPLIT if POSTERIOR_SPLIT in self.splits else self.splits[0]
                    a, b = self.embeddings(split)
                    ds = self.dataset(split)
                    # the texts' second view, as training read it when it wrote posterior.json
                    a_view, b_view = dataset_views(ds, self.config.get("view_encoder"))
                    post = fit_run_posterior(a, b, ds, estimator=self.estimator,
                                             seed=int(self.config.get("seed") or 0), text_view=b_view,
                                             a_view=a_view)
                    self._posterior = (post, f"fitted here: {self.estimator} on {split}")
            return self._posterior

    def __repr__(self) -> str:
        return f"LoadedRun({self.name!r}, path={str(self.path)!r})"
