"""The run store: one folder per training run holding its config, metrics, embeddings and model.

Layout of ``ROOT/``::

    ROOT/NAME/            a complete run
        config.json       the run's config (``{"dataset": {"name", "root", "options"}, "sampler": ..., ...}``)
        metrics.jsonl     one JSON object per ``log_metrics`` call (one per epoch)
        run.json          completion marker: {"name", "created", "finished"}, written last
        *.npy *.json *.parquet *.pt   arrays, JSON objects, tables, state dicts
    ROOT/.staging/NAME/   a run still being written (or one that was interrupted)

Safety:
  * every file is written to a temporary name in the same folder and moved into place with
    ``os.replace`` (atomic on POSIX), so a reader never sees half a file;
  * a run is written in ``.staging`` and renamed into ``ROOT`` by :meth:`RunWriter.finalize`, after
    the ``run.json`` marker; :meth:`RunStore.list` and :meth:`RunStore.load` only see runs with the
    marker, so an interrupted run never loads;
  * run and file names are validated (letters, digits, ``._-``; not hidden, no ``/``, no ``..``, not
    absolute, not empty), so nothing can be written or read outside ``ROOT``;
  * arrays load with ``allow_pickle=False`` and state dicts with ``weights_only=True``.

Example:
    >>> store = RunStore("runs")                                         # doctest: +SKIP
    >>> w = store.create({"dataset": {"name": "shapes"}, "sampler": {"name": "fne"}})
    >>> w.log_metrics({"epoch": 1, "loss": 0.4}); w.save_array("emb_a_val", emb)
    >>> run = w.finalize(); store.list()
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STAGING = ".staging"
MARKER = "run.json"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_name(name: str, what: str = "run name") -> str:
    """Return ``name`` if it is a safe single path component, else raise ``ValueError``.

    Accepted: 1-128 characters from letters, digits, ``.``, ``_``, ``-``, starting with a letter or
    digit, without ``..``. So no ``/``, no absolute path, no hidden name, no parent reference.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit, without '..' or '/'"
        )
    return name


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then ``os.replace`` it onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def _with_ext(name: str, ext: str, what: str) -> str:
    base = name[: -len(ext)] if name.endswith(ext) else name
    validate_name(base, what)
    return base + ext


def _read_metrics(folder: Path) -> pd.DataFrame:
    path = folder / METRICS
    if not path.is_file():
        return pd.DataFrame()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows)


class _Files:
    """Reading and atomic writing of named files inside one folder."""

    path: Path

    def _file(self, name: str, ext: str, what: str) -> Path:
        return self.path / _with_ext(name, ext, what)

    # writers
    def save_json(self, name: str, obj: Any) -> Path:
        """Write ``NAME.json`` atomically."""
        return _write_text(self._file(name, ".json", "JSON name"), json.dumps(obj, default=_json_default, indent=1))

    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        """Write ``NAME.parquet`` atomically."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"save_table({name!r}): expected a pandas DataFrame, got {type(df).__name__}")
        return atomic_write(self._file(name, ".parquet", "table name"), lambda t: df.to_parquet(t, index=False))

    # readers
    def load_array(self, name: str, *, mmap_mode: str | None = None) -> np.ndarray:
        """``NAME.npy`` (never unpickled)."""
        return np.load(self._file(name, ".npy", "array name"), allow_pickle=False, mmap_mode=mmap_mode)

    def load_json(self, name: str) -> Any:
        """``NAME.json``."""
        return json.loads(self._file(name, ".json", "JSON name").read_text(encoding="utf-8"))

    def load_table(self, name: str) -> pd.DataFrame:
        """``NAME.parquet``."""
        return pd.read_parquet(self._file(name, ".parquet", "table name"))

    def load_state_dict(self, name: str = "model", map_location: Any = "cpu") -> dict:
        """``NAME.pt`` loaded with ``torch.load(weights_only=True)``."""
        import torch

        return torch.load(self._file(name, ".pt", "state dict name"), map_location=map_location, weights_only=True)

    def has(self, filename: str) -> bool:
        """Whether file ``filename`` (with extension) exists in this folder."""
        validate_name(filename, "file name")
        return (self.path / filename).is_file()

    def files(self) -> list[str]:
        """Names of the files in this folder (temporary files excluded)."""
        return sorted(p.name for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))


class Run(_Files):
    """A complete run, read from ``ROOT/NAME``.

    Attributes:
        name: the run name.
        path: its folder.
        config: the parsed ``config.json``.
        info: the parsed completion marker (``created``, ``finished``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name
        if not (self.path / MARKER).is_file():
            raise FileNotFoundError(f"run {self.name!r} at {self.path} is incomplete (no {MARKER}): it never finished")
        self.info = json.loads((self.path / MARKER).read_text(encoding="utf-8"))
        self.config = json.loads((self.path / CONFIG).read_text(encoding="utf-8"))

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per ``log_metrics`` call (per epoch: ``epoch``, ``loss``, ``val_rsum``...)."""
        return _read_metrics(self.path)

    def __repr__(self) -> str:
        return f"Run({self.name!r}, path={str(self.path)!r})"


class RunWriter(_Files):
    """A run being written into ``ROOT/.staging/NAME``; :meth:`finalize` moves it into place."""

    def __init__(self, store: RunStore, name: str, config: dict):
        self.store = store
        self.name = name
        self.path = store.staging / name
        self.final_path = store.root / name
        self.created = datetime.now(UTC).isoformat(timespec="seconds")
        self._metrics: list[str] = []
        self._closed = False
        self.config = config
        self.path.mkdir(parents=True, exist_ok=False)
        _write_text(self.path / CONFIG, json.dumps(config, default=_json_default, indent=1))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"run {self.name!r} is already finalized or aborted")

    def log_metrics(self, metrics: dict) -> None:
        """Append one row (e.g. one epoch) to ``metrics.jsonl`` (the whole file replaced atomically)."""
        self._check_open()
        if not isinstance(metrics, dict):
            raise TypeError(f"log_metrics expects a dict, got {type(metrics).__name__}")
        self._metrics.append(_dumps(metrics))
        _write_text(self.path / METRICS, "\n".join(self._metrics) + "\n")

    def save_array(self, name: str, arr: np.ndarray) -> Path:
        """Write ``NAME.npy`` atomically (plain arrays only, never pickled)."""
        self._check_open()
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise TypeError(f"save_array({name!r}): object arrays are not stored (they would need pickling)")

        def write(t: Path) -> None:
            with open(t, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

        return atomic_write(self._file(name, ".npy", "array name"), write)

    def save_state_dict(self, name: str, state_dict: dict) -> Path:
        """Write ``NAME.pt`` atomically (``torch.save`` of a state dict of tensors)."""
        self._check_open()
        import torch

        return atomic_write(self._file(name, ".pt", "state dict name"), lambda t: torch.save(state_dict, t))

    def save_json(self, name: str, obj: Any) -> Path:
        self._check_open()
        return super().save_json(name, obj)

    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        self._check_open()
        return super().save_table(name, df)

    @property
    def metrics(self) -> pd.DataFrame:
        return _read_metrics(self.path)

    def finalize(self) -> Run:
        """Write the completion marker and rename the run into ``ROOT/NAME`` (atomic).

        Raises:
            FileExistsError: a complete run with this name appeared meanwhile.
        """
        self._check_open()
        if self.final_path.exists():
            raise FileExistsError(f"run {self.name!r} already exists in {self.store.root}")
        marker = {"name": self.name, "created": self.created,
                  "finished": datetime.now(UTC).isoformat(timespec="seconds")}
        _write_text(self.path / MARKER, json.dumps(marker, indent=1))
        os.replace(self.path, self.final_path)
        self._closed = True
        return Run(self.final_path)

    def abort(self) -> None:
        """Delete the staging folder; the run never appears."""
        if not self._closed:
            shutil.rmtree(self.path, ignore_errors=True)
            self._closed = True

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _auto_name(config: dict) -> str:
    def pick(key: str) -> str:
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("name")
        v = Path(str(v)).name if v else key
        return re.sub(r"[^A-Za-z0-9_-]+", "-", v).strip("-")[:24] or key

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{pick('dataset')}-{pick('sampler')}-{uuid.uuid4().hex[:4]}"


class RunStore:
    """Runs under ``root`` (default ``runs``): create, list, load, watch progress."""

    def __init__(self, root: str | Path = "runs"):
        self.root = Path(root)
        self.staging = self.root / STAGING

    def _path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def create(self, config: dict, name: str | None = None) -> RunWriter:
        """Start a run in the staging folder and write its ``config.json``.

        Raises:
            ValueError: an invalid name; FileExistsError: the name is taken (complete or in progress);
            TypeError: the config is not JSON-serialisable.
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        json.dumps(config, default=_json_default)  # fail before creating anything
        name = validate_name(name) if name is not None else _auto_name(config)
        if (self.root / name).exists() or (self.staging / name).exists():
            raise FileExistsError(f"run {name!r} already exists in {self.root}")
        self.staging.mkdir(parents=True, exist_ok=True)
        return RunWriter(self, name, config)

    def names(self) -> list[str]:
        """Names of the complete runs."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MARKER).is_file()
        )

    def in_progress(self) -> list[str]:
        """Names of runs being written (or interrupted) in the staging folder."""
        if not self.staging.is_dir():
            return []
        return sorted(p.name for p in self.staging.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))

    def exists(self, name: str) -> bool:
        return (self._path(name) / MARKER).is_file()

    def load(self, name: str) -> Run:
        """A complete run.

        Raises:
            ValueError: invalid name; FileNotFoundError: no such complete run.
        """
        path = self._path(name)
        if not path.is_dir():
            hint = " (it is still being written or was interrupted)" if (self.staging / name).is_dir() else ""
            raise FileNotFoundError(f"no run named {name!r} in {self.root}{hint}")
        return Run(path)

    def progress(self, name: str) -> pd.DataFrame:
        """Metrics so far of run ``name``, being written or complete (empty if none yet).

        Raises:
            ValueError: invalid name; FileNotFoundError: no such run.
        """
        validate_name(name)
        for folder in (self.staging / name, self.root / name):
            if folder.is_dir():
                return _read_metrics(folder)
        raise FileNotFoundError(f"no run named {name!r} in {self.root}")

    def list(self) -> pd.DataFrame:
        """Complete runs, newest first: ``name, created, dataset, sampler`` and the last metrics row."""
        rows = []
        for name in self.names():
            try:
                run = Run(self.root / name)
                config = run.config
                last = run.metrics.iloc[-1].to_dict() if len(run.metrics) else {}
            except (OSError, ValueError):
                continue  # unreadable run: skip rather than fail the listing
            ds, sampler = config.get("dataset"), config.get("sampler")
            rows.append({
                "name": name,
                "created": run.info.get("created"),
                "dataset": ds.get("name") if isinstance(ds, dict) else ds,
                "sampler": sampler.get("name") if isinstance(sampler, dict) else sampler,
                **{k: v for k, v in last.items() if k not in ("name", "created", "dataset", "sampler")},
            })
        cols = ["name", "created", "dataset", "sampler"]
        if not rows:
            return pd.DataFrame(columns=cols)
        df = pd.DataFrame(rows)
        return df.sort_values(["created", "name"], ascending=False, kind="stable").reset_index(drop=True)

    def delete(self, name: str) -> None:
        """Remove a complete run (renamed out first, so it disappears atomically)."""
        path = self._path(name)
        if not path.is_dir():
            raise FileNotFoundError(f"no run named {name!r} in {self.root}")
        trash = self.staging / f".deleted-{name}-{uuid.uuid4().hex[:6]}"
        self.staging.mkdir(parents=True, exist_ok=True)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
