"""The run store: one folder per training run holding its config, metrics, embeddings and model.

Layout of ``ROOT/``::

    ROOT/NAME/            a complete run
        config.json       the run's config (``{"dataset": {"name", "root", "options"}, "sampler": ..., ...}``)
        metrics.jsonl     one JSON object per ``log_metrics`` call (one per epoch)
        run.json          completion marker, written last: {"name", "created", "finished",
                          "files": {FILE: {"sha256", "bytes"}}} (every file of the run when it finished)
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
  * arrays load with ``allow_pickle=False`` and state dicts with ``weights_only=True``;
  * every file's sha256 is recorded in ``run.json`` and checked when the file is read
    (:meth:`Run.verify` checks them all), so a truncated ``model.pt`` or a corrupt JSON file is
    reported by name (:class:`CorruptRunError`) instead of loading;
  * a writer holds ``fcntl.flock`` on ``ROOT/.staging/.NAME.lock`` while it writes: a second
    writer of the same name is refused, and the staging folder of a *killed* writer (lock free) is
    cleared by the next :meth:`RunStore.create` instead of blocking it; :meth:`RunStore.list` with
    ``include_incomplete=True`` reports such runs as ``running`` / ``interrupted`` / ``corrupt``;
  * ``RunStore(root, overwrite=True)`` replaces a complete run of the same name only when the new
    one finalizes (an atomic exchange of the two folders), so a failed re-run keeps the old run;
  * nothing but a run is ever replaced or removed (:mod:`fnlab.core.ownership`): a folder is a run when
    its ``run.json`` fits the marker schema (:func:`fnlab.core.ownership.run_marker_problem`) and it
    holds only the run's own files; :meth:`RunStore.delete`, ``overwrite`` and the clearing of an
    interrupted run refuse anything else before any work, and remove a linked run as a link.

Example:
    >>> import numpy as np
    >>> store = RunStore("runs")
    >>> w = store.create({"dataset": {"name": "shapes"}, "sampler": {"name": "fne"}}, name="demo")
    >>> w.log_metrics({"epoch": 1, "loss": 0.4}); _ = w.save_array("emb_a_val", np.eye(3, dtype=np.float32))
    >>> run = w.finalize()
    >>> store.list()[["name", "dataset", "sampler", "loss"]].to_dict("records")
    [{'name': 'demo', 'dataset': 'shapes', 'sampler': 'fne', 'loss': 0.4}]
    >>> run.load_array("emb_a_val").shape
    (3, 3)
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnlab.core import files, ownership
from fnlab.core.files import FileFormatError, atomic_write, pause_point

if TYPE_CHECKING:  # numpy and pandas load where arrays and tables are read: listing runs needs neither
    import numpy as np
    import pandas as pd

STAGING = ".staging"
MARKER = "run.json"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
STATUSES = ("complete", "running", "interrupted", "corrupt", "not a run")
NOT_A_RUN = "not a run"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class CorruptRunError(ValueError):
    """A run file that is missing, truncated or changed since the run finished (named in the message)."""


class NotARunError(FileNotFoundError):
    """A folder without the ``run.json`` marker: never a run fnlab finished (named in the message)."""


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


def _with_ext(name: str, ext: str, what: str) -> str:
    base = name[: -len(ext)] if name.endswith(ext) else name
    validate_name(base, what)
    return base + ext


def _numeric_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Columns whose values are all numbers or null become float/int (null -> NaN: the JSON NaN policy)."""
    import pandas as pd

    for col in df.columns:
        if df[col].dtype == object:
            vals = [v for v in df[col] if v is not None]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
                df[col] = pd.to_numeric(df[col].astype(float))
    return df


def _metric_rows(folder: Path) -> list[dict[str, Any]]:
    """The rows of ``folder/metrics.jsonl`` as dicts (none when the file is missing).

    Raises:
        FileFormatError: a line that is not a JSON object (named by its number).
    """
    path = folder / METRICS
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise FileFormatError(f"{path}: line {i} is not valid JSON ({err}); expected one JSON object "
                                  "per line") from None
        if not isinstance(row, dict):
            raise FileFormatError(f"{path}: line {i} holds a JSON {type(row).__name__}; expected one JSON "
                                  "object per line")
        rows.append(row)
    return rows


def _read_metrics(folder: Path) -> pd.DataFrame:
    import pandas as pd

    return _numeric_columns(pd.DataFrame(_metric_rows(folder)))


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": files.sha256_file(path), "bytes": path.stat().st_size}


def _not_a_run(path: Path) -> str:
    """Why ``path`` does not load as a run (it has no ``run.json``)."""
    if path.exists() and not path.is_dir():
        return f"{path}: not a run (a file, not a run folder)"
    if (path / CONFIG).is_file():
        return f"{path}: an incomplete run (no {MARKER}: it never finished, or was copied before it did)"
    return f"{path}: not a run (no {MARKER}, the marker fnlab train writes when a run finishes)"


class _Files:
    """Reading and atomic writing of named files inside one folder."""

    path: Path

    def _file(self, name: str, ext: str, what: str) -> Path:
        return self.path / _with_ext(name, ext, what)

    def _check(self, filename: str) -> None:
        """Hook: verify ``filename`` before it is read (complete runs check their checksums)."""

    # writers
    def save_json(self, name: str, obj: Any) -> Path:
        """Write ``NAME.json`` atomically (NaN and infinities as ``null``)."""
        return files.write_json(self._file(name, ".json", "JSON name"), obj)

    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        """Write ``NAME.parquet`` atomically."""
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"save_table({name!r}): expected a pandas DataFrame, got {type(df).__name__}")
        return files.write_table(self._file(name, ".parquet", "table name"), df, "parquet")

    # readers
    def load_array(self, name: str, *, mmap_mode: str | None = None) -> np.ndarray:
        """``NAME.npy`` (never unpickled)."""
        path = self._file(name, ".npy", "array name")
        self._check(path.name)
        return files.read_npy(path, "a numeric array saved by fnlab", mmap_mode=mmap_mode)

    def load_json(self, name: str) -> Any:
        """``NAME.json``."""
        path = self._file(name, ".json", "JSON name")
        self._check(path.name)
        return files.read_json(path, "a JSON file written by fnlab")

    def load_table(self, name: str) -> pd.DataFrame:
        """``NAME.parquet``."""
        import pandas as pd

        path = self._file(name, ".parquet", "table name")
        self._check(path.name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise FileFormatError(f"{path}: not a readable Parquet table ({type(err).__name__}: {err})") from None

    def load_state_dict(self, name: str = "model", map_location: Any = "cpu") -> dict:
        """``NAME.pt`` loaded with ``torch.load(weights_only=True)``."""
        import torch

        path = self._file(name, ".pt", "state dict name")
        self._check(path.name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # a damaged zip raises RuntimeError, pickle errors UnpicklingError
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise FileFormatError(f"{path}: not a readable PyTorch state dict ({msg})") from None

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
        info: the parsed completion marker (``created``, ``finished``, ``files``).

    Raises (constructor):
        NotARunError: no ``run.json`` (not a folder fnlab finished a run in).
        FileFormatError / CorruptRunError: ``run.json`` unreadable or not of the marker's schema (wrong types,
        a file entry outside the run), ``config.json`` unreadable or changed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name
        if not (self.path / MARKER).is_file():
            raise NotARunError(_not_a_run(self.path))
        self.info = files.read_json(self.path / MARKER, "the run's completion marker (a JSON object)")
        problem = ownership.run_marker_problem(self.info)
        if problem is not None:
            raise CorruptRunError(f"{self.path / MARKER}: {problem}; expected the completion marker fnlab train writes")
        self._check(CONFIG)
        self.config = files.read_json(self.path / CONFIG, "the run's config (a JSON object)")

    @property
    def checksums(self) -> dict[str, dict]:
        """``{file: {"sha256", "bytes"}}`` recorded when the run finished (empty for older runs)."""
        rec = self.info.get("files")
        return rec if isinstance(rec, dict) else {}

    def _check(self, filename: str, *, full: bool = True) -> None:
        rec = self.checksums.get(filename)
        if rec is None:
            return
        path = self.path / filename
        if not path.is_file():
            raise CorruptRunError(f"{path}: missing; run {self.name!r} recorded it in {MARKER} when it finished")
        size = path.stat().st_size
        if size != rec.get("bytes"):
            raise CorruptRunError(f"{path}: {size} bytes, but {MARKER} recorded {rec.get('bytes')} when the run "
                                  "finished: the file is truncated or was changed")
        if full and files.sha256_file(path) != rec.get("sha256"):
            raise CorruptRunError(f"{path}: its sha256 differs from the one {MARKER} recorded when the run "
                                  "finished: the file is corrupt or was changed")

    def verify(self, *, full: bool = True) -> None:
        """Check every recorded file (size, and sha256 when ``full``).

        Raises:
            CorruptRunError: the first missing, truncated or changed file, by name.
        """
        for filename in sorted(self.checksums):
            self._check(filename, full=full)

    def _record(self, path: Path) -> Path:
        """Record a file added to (or replaced in) the complete run in ``run.json``."""
        with files.file_lock(self.path / f".{MARKER}.lock"):
            info = files.read_json(self.path / MARKER, "the run's completion marker")
            if isinstance(info.get("files"), dict):
                info["files"][path.name] = _file_record(path)
                files.write_json(self.path / MARKER, info)
                self.info = info
        return path

    def save_json(self, name: str, obj: Any) -> Path:
        return self._record(super().save_json(name, obj))

    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        return self._record(super().save_table(name, df))

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per ``log_metrics`` call (per epoch: ``epoch``, ``loss``, ``val_rsum``...)."""
        self._check(METRICS)
        return _read_metrics(self.path)

    def __repr__(self) -> str:
        return f"Run({self.name!r}, path={str(self.path)!r})"


class RunWriter(_Files):
    """A run being written into ``ROOT/.staging/NAME``; :meth:`finalize` moves it into place.

    The writer holds the lock ``ROOT/.staging/.NAME.lock`` from creation to finalize / abort.
    """

    def __init__(self, store: RunStore, name: str, config: dict, lock_fd: int):
        self.store = store
        self.name = name
        self.path = store.staging / name
        self.final_path = store.root / name
        self.created = datetime.now(UTC).isoformat(timespec="seconds")
        self._metrics: list[str] = []
        self._closed = False
        self._lock_fd: int | None = lock_fd
        self.config = config
        try:
            self.path.mkdir(parents=True, exist_ok=False)
            files.write_json(self.path / CONFIG, config)
        except BaseException:
            self.abort()
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"run {self.name!r} is already finalized or aborted")

    def _release(self) -> None:
        if self._lock_fd is not None:
            files.unlock(self._lock_fd, remove=self.store._lock_path(self.name))
            self._lock_fd = None
            self.store._tidy()

    def log_metrics(self, metrics: dict) -> None:
        """Append one row (e.g. one epoch) to ``metrics.jsonl`` (the whole file replaced atomically)."""
        self._check_open()
        if not isinstance(metrics, dict):
            raise TypeError(f"log_metrics expects a dict, got {type(metrics).__name__}")
        self._metrics.append(files.dumps(metrics))
        files.write_text(self.path / METRICS, "\n".join(self._metrics) + "\n")

    def save_array(self, name: str, arr: np.ndarray) -> Path:
        """Write ``NAME.npy`` atomically (plain arrays only, never pickled)."""
        import numpy as np

        self._check_open()
        path = self._file(name, ".npy", "array name")
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise TypeError(f"save_array({name!r}): object arrays are not stored (they would need pickling)")
        return files.save_npy(path, arr)

    def save_state_dict(self, name: str, state_dict: dict) -> Path:
        """Write ``NAME.pt`` atomically (``torch.save`` of a state dict of tensors)."""
        self._check_open()
        import torch

        def write(t: Path) -> None:
            torch.save(state_dict, t)
            pause_point("run:file-written")

        return atomic_write(self._file(name, ".pt", "state dict name"), write)

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
        """Write the completion marker (with every file's sha256) and move the run into ``ROOT/NAME``.

        With ``store.overwrite`` an existing complete run of that name is exchanged with the new one
        atomically and then deleted.

        Raises:
            FileExistsError: a run with this name exists and the store does not overwrite.
            ownership.OwnershipError: the name is now taken by something that is not a run fnlab wrote.
        """
        self._check_open()
        self.store.check_target(self.name)  # again: the folder may have changed while the run was written
        pause_point("run:before-finalize")
        recorded = {p.name: _file_record(p) for p in sorted(self.path.iterdir())
                    if p.is_file() and not p.name.startswith(".") and p.name != MARKER}
        marker = {"name": self.name, "created": self.created,
                  "finished": datetime.now(UTC).isoformat(timespec="seconds"), "files": recorded}
        files.write_json(self.path / MARKER, marker)
        pause_point("run:marker-written")
        if os.path.lexists(self.final_path):  # the old run (checked above): swapped out, then removed
            if files.exchange(self.path, self.final_path):
                old = self.path
            else:
                old = self.store.staging / f".replaced-{self.name}-{uuid.uuid4().hex[:6]}"
                os.replace(self.final_path, old)
                os.replace(self.path, self.final_path)
            _remove_quietly(old, ownership.RUN, self.store.staging)
        else:
            os.replace(self.path, self.final_path)
        self._closed = True
        self._release()
        return Run(self.final_path)

    def abort(self) -> None:
        """Delete the staging folder; the run never appears."""
        if not self._closed:
            _remove_quietly(self.path, ownership.STAGED_RUN, self.store.staging)
            self._closed = True
        self._release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _remove_quietly(path: Path, kind: ownership.Kind, inside: Path) -> None:
    """Remove fnlab's own ``path`` (:func:`fnlab.core.ownership.remove`); anything it does not recognise stays."""
    try:
        ownership.remove(path, kind, inside=inside)
    except (OSError, ValueError):
        pass


def _auto_name(config: dict) -> str:
    def pick(key: str) -> str:
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("name")
        v = Path(str(v)).name if v else key
        return re.sub(r"[^A-Za-z0-9_-]+", "-", v).strip("-")[:24] or key

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{pick('dataset')}-{pick('sampler')}-{uuid.uuid4().hex[:4]}"


def split_run_path(path: str | os.PathLike) -> tuple[Path, str]:
    """``(run store root, run name)`` of a run folder path such as ``runs/my-run``.

    A run is named by its folder path everywhere in the CLI (``train --out``, ``eval``, ``runs
    show``, ``runs rm``); a bare name means ``./NAME``.

    Raises:
        ValueError: no final path component (``runs/``, ``.``) or an invalid name.
    """
    p = Path(path)
    if not p.name or p.name in (".", ".."):
        raise ValueError(f"run path {str(path)!r}: expected a run folder path such as runs/my-run")
    validate_name(p.name, f"run name (last part of {str(path)!r})")
    parent = p.parent if str(p.parent) else Path(".")
    if ".." in parent.parts:  # resolved first: runs/a/../b is runs/b (and never creates runs/a)
        parent = Path(os.path.realpath(parent))
    return parent, p.name


class RunStore:
    """Runs under ``root`` (default ``runs``): create, list, load, delete, watch progress.

    Args:
        root: the store folder.
        overwrite: :meth:`create` accepts the name of a complete run, which the new run replaces
            when it finalizes (``fnlab train --overwrite``).
    """

    def __init__(self, root: str | Path = "runs", *, overwrite: bool = False):
        self.root = Path(root)
        self.staging = self.root / STAGING
        self.overwrite = overwrite

    @classmethod
    def for_path(cls, path: str | os.PathLike, *, overwrite: bool = False) -> tuple[RunStore, str]:
        """``(store, name)`` for a run folder path (see :func:`split_run_path`)."""
        root, name = split_run_path(path)
        return cls(root, overwrite=overwrite), name

    def _path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def _lock_path(self, name: str) -> Path:
        return self.staging / f".{name}.lock"

    def _tidy(self) -> None:
        """Remove the staging folder once it is empty (nothing left behind in a folder the user named)."""
        try:
            os.rmdir(self.staging)
        except OSError:
            pass  # in use, or already gone

    def create(self, config: dict, name: str | None = None) -> RunWriter:
        """Start a run in the staging folder and write its ``config.json``.

        A staging folder left by a killed writer of the same name is removed first.

        Raises:
            ValueError: an invalid name; TypeError: the config is not JSON-serialisable;
            FileExistsError: the name is taken by a complete run (unless ``overwrite``) or by a run
            another process is writing right now.
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        files.dumps(config)  # fail before creating anything
        name = validate_name(name) if name is not None else _auto_name(config)
        self.check_target(name)
        self.staging.mkdir(parents=True, exist_ok=True)
        fd = None
        for _ in range(20):  # a listing (is_running) holds the lock for microseconds: retry briefly
            fd = files.try_lock(self._lock_path(name))
            if fd is not None:
                break
            time.sleep(0.025)
        if fd is None:
            raise FileExistsError(f"run {name!r} in {self.root} is being written by another process right now; "
                                  "wait for it to finish or choose another name")
        try:
            leftover = self.staging / name
            if os.path.lexists(leftover):  # a killed writer's folder: we hold the lock, so nobody is writing it
                ownership.remove(leftover, ownership.STAGED_RUN, inside=self.staging)
            return RunWriter(self, name, config, fd)
        except BaseException:
            files.unlock(fd, remove=self._lock_path(name))
            raise

    def check_target(self, name: str, *, label: str | None = None) -> None:
        """Refuse, before any work, a run name whose folder cannot be written: the store is a file, the name
        is taken by something that is not a run fnlab wrote (:data:`fnlab.core.ownership.RUN`), or by a run
        while the store does not ``overwrite``.

        Raises:
            NotADirectoryError, ownership.OwnershipError (a ValueError), FileExistsError.
        """
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"run store {self.root}: exists and is not a folder")
        target = self._path(name)
        if not os.path.lexists(target):
            return
        ownership.check(target, ownership.RUN, inside=self.root, label=label, action="replace")
        if not self.overwrite:
            raise FileExistsError(f"run {name!r} already exists in {self.root} (use --overwrite to replace it, "
                                  f"or remove it with: fnlab runs rm {target})")

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

    def is_running(self, name: str) -> bool:
        """Whether a process is writing run ``name`` right now (it holds the run's lock)."""
        return files.is_locked(self._lock_path(validate_name(name)))

    def exists(self, name: str) -> bool:
        return (self._path(name) / MARKER).is_file()

    def load(self, name: str) -> Run:
        """A complete run.

        Raises:
            ValueError: invalid name; FileNotFoundError: no such complete run.
        """
        path = self._path(name)
        if not path.is_dir():
            hint = ""
            if (self.staging / name).is_dir():
                hint = (" (it is still being written)" if self.is_running(name) else
                        " (it was interrupted: remove it with fnlab runs rm, or train again with the same --out)")
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

    def _row(self, name: str, folder: Path, status: str, *, verify: bool = False) -> dict[str, Any]:
        row: dict[str, Any] = {"name": name, "status": status, "created": None, "dataset": None, "sampler": None}
        problem = None
        try:
            if status == "complete":
                run = Run(folder)
                run.verify(full=verify)  # sizes only unless asked: cheap enough for a listing
                run._check(METRICS)
                config, created, metrics = run.config, run.info.get("created"), _metric_rows(folder)
            else:
                config = files.read_json(folder / CONFIG) if (folder / CONFIG).is_file() else {}
                created = datetime.fromtimestamp(folder.stat().st_mtime, UTC).isoformat(timespec="seconds")
                metrics = _metric_rows(folder)
        except (OSError, ValueError) as err:
            row["status"] = "corrupt" if status == "complete" else status
            problem = str(err)
            config, created, metrics = {}, None, []
            try:  # still show what the run was, where its config is readable
                config = files.read_json(folder / CONFIG)
                created = files.read_json(folder / MARKER).get("created")
            except (OSError, ValueError, AttributeError):
                pass
        if not isinstance(config, dict):
            config = {}
        if not isinstance(created, str):
            created = None
        ds, sampler = config.get("dataset"), config.get("sampler")
        row.update(created=created, dataset=ds.get("name") if isinstance(ds, dict) else ds,
                   sampler=sampler.get("name") if isinstance(sampler, dict) else sampler)
        last = {k: None for m in metrics for k in m}  # every metric of the run, its last value
        last.update(metrics[-1] if metrics else {})
        row.update({k: v for k, v in last.items() if k not in row})
        row["problem"] = problem
        return row

    def _not_runs(self) -> list[dict[str, Any]]:
        """Folders of the store that are not runs (no ``run.json``): listed, never loaded."""
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.iterdir()):
            if p.name.startswith(".") or not p.is_dir() or (p / MARKER).is_file():
                continue
            out.append({"name": p.name, "status": NOT_A_RUN, "created": None, "dataset": None, "sampler": None,
                        "problem": _not_a_run(p).split(": ", 1)[1].removeprefix("not a run (").rstrip(")")})
        return out

    def rows(self, *, include_incomplete: bool = False, verify: bool = False) -> list[dict[str, Any]]:
        """:meth:`list` as plain dicts, newest first (read without numpy or pandas: ``fnlab runs list``)."""
        rows = [self._row(name, self.root / name, "complete", verify=verify) for name in self.names()]
        if include_incomplete:
            rows += self._not_runs()
            rows += [self._row(name, self.staging / name, "running" if self.is_running(name) else "interrupted")
                     for name in self.in_progress()]
        else:
            rows = [{k: v for k, v in r.items() if k not in ("status", "problem")} for r in rows
                    if r["status"] == "complete"]
        return sorted(rows, key=lambda r: (r["created"] or "", r["name"]), reverse=True)

    def list(self, *, include_incomplete: bool = False, verify: bool = False) -> pd.DataFrame:
        """Runs, newest first: ``name, created, dataset, sampler`` and the last metrics row.

        Args:
            include_incomplete: also list runs that are ``running``, ``interrupted`` (in staging, no
                writer alive) or ``corrupt`` (a marker that is unreadable or breaks its schema, an unreadable
                config or metrics, a recorded file of the wrong size), and folders of the store that are
                ``not a run`` (no ``run.json``: empty, copied in, someone else's), with columns ``status`` and
                ``problem``. Without it, only readable complete runs are listed.
            verify: check every recorded file's sha256 too (a flipped bit), not only its size.
        """
        import pandas as pd

        rows = self.rows(include_incomplete=include_incomplete, verify=verify)
        cols = ["name", "created", "dataset", "sampler"]
        if include_incomplete:
            cols = ["name", "status", "created", "dataset", "sampler"]
        if not rows:
            return pd.DataFrame(columns=cols + (["problem"] if include_incomplete else []))
        df = pd.DataFrame(rows)
        metrics = _numeric_columns(df.drop(columns=[c for c in [*cols, "problem"] if c in df.columns]))
        return df.assign(**{c: metrics[c] for c in metrics.columns})

    def rename(self, name: str, new_name: str) -> Run:
        """Rename complete run ``name`` to ``new_name`` (one ``rename`` of its folder; its ``run.json`` then records
        the new name). Only a run fnlab wrote is renamed (:data:`fnlab.core.ownership.RUN`); everything it holds
        (review decisions included) moves with it.

        Raises:
            ValueError: an invalid name; FileNotFoundError: no such complete run; FileExistsError: ``new_name`` is
            taken (by anything), or a process is writing either name right now; ownership.OwnershipError: not a run
            fnlab wrote.
        """
        src, dst = self._path(name), self._path(validate_name(new_name, "new run name"))
        if not (src / MARKER).is_file():
            raise FileNotFoundError(f"no run named {name!r} in {self.root}")
        ownership.check(src, ownership.RUN, inside=self.root, action="rename")
        if os.path.lexists(dst) or os.path.lexists(self.staging / new_name):
            raise FileExistsError(f"cannot rename {name!r} to {new_name!r}: {new_name!r} already exists in {self.root}")
        self.staging.mkdir(parents=True, exist_ok=True)
        locks = []
        try:
            for n in (name, new_name):
                fd = files.try_lock(self._lock_path(n))
                if fd is None:
                    raise FileExistsError(f"run {n!r} in {self.root} is being written by another process right now")
                locks.append((fd, n))
            if os.path.lexists(dst):
                raise FileExistsError(f"cannot rename {name!r} to {new_name!r}: {new_name!r} already exists")
            os.rename(src, dst)
            with files.file_lock(dst / f".{MARKER}.lock"):
                info = files.read_json(dst / MARKER, "the run's completion marker")
                if isinstance(info, dict):
                    info["name"] = new_name
                    files.write_json(dst / MARKER, info)
        finally:
            for fd, n in locks:
                files.unlock(fd, remove=self._lock_path(n))
            self._tidy()
        return Run(dst)

    def delete(self, name: str) -> None:
        """Remove run ``name``: complete, corrupt, or interrupted (its staging folder).

        Only a run fnlab wrote is removed (:data:`fnlab.core.ownership.RUN`: a ``run.json`` of its own and
        nothing but the run's files); anything else is refused before anything is removed. A linked run is
        removed as a link (what it points to stays). Each folder disappears from its name at once.

        Raises:
            FileNotFoundError: no such run; FileExistsError: a process is writing it right now;
            ownership.OwnershipError (a ValueError): not a run, or a run holding files fnlab did not write.
        """
        path = self._path(name)
        staged = self.staging / name
        found = [p for p in (path, staged) if os.path.lexists(p)]
        if not found:
            raise FileNotFoundError(f"no run named {name!r} in {self.root}")
        for folder in found:  # every check before anything is removed
            ownership.check(folder, ownership.RUN if folder == path else ownership.STAGED_RUN,
                            inside=self.root if folder == path else self.staging, action="remove")
        fd = files.try_lock(self._lock_path(name)) if self.staging.is_dir() else None
        if self.staging.is_dir() and fd is None:
            raise FileExistsError(f"run {name!r} in {self.root} is being written by another process right now; "
                                  "it cannot be removed until that process ends")
        try:
            for folder in found:
                ownership.remove(folder, ownership.RUN if folder == path else ownership.STAGED_RUN,
                                 inside=self.root if folder == path else self.staging)
        finally:
            if fd is not None:
                files.unlock(fd, remove=self._lock_path(name))
            self._tidy()
