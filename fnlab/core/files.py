"""One file layer: atomic writes, safe readers, JSON with one NaN policy, checksums, locks and
multi-file commits. Every other module of fnlab reads and writes files through here.

Policies:
  * **Atomic writes.** :func:`atomic_write` writes a hidden temporary sibling and moves it onto
    the target with ``os.replace`` (atomic on POSIX): a reader sees the old file or the new one,
    never half a file, and a failed or killed write leaves the old file untouched.
  * **Several files as one unit.** :func:`commit_files` writes every file to a temporary sibling,
    then records the renames in a journal (the commit point) and performs them; a process killed
    after the journal was written is rolled forward by :func:`recover` (the next write to the same
    target, or a reader), one killed before it leaves every old file as it was.
  * **Never unpickle.** ``.npy`` files load with ``allow_pickle=False``; the header is checked
    first, so a text file renamed ``.npy`` is reported as "not a .npy file", a truncated one as
    truncated, each naming the file.
  * **JSON: one NaN policy.** NaN and infinities are written as ``null`` (:func:`to_jsonable`),
    never as the non-standard ``NaN`` token; numpy scalars and arrays become numbers and lists.
  * **Errors name the file.** Readers raise :class:`FileFormatError` (a ``ValueError``) whose
    message starts with the path and says what was expected.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # numpy and pandas load in the functions that need them: reading JSON needs neither
    import numpy as np
    import pandas as pd

__all__ = [
    "FileFormatError",
    "atomic_write",
    "write_text",
    "write_json",
    "dumps",
    "to_jsonable",
    "read_json",
    "read_npy",
    "save_npy",
    "read_table",
    "write_table",
    "sha256_file",
    "file_lock",
    "try_lock",
    "unlock",
    "is_locked",
    "exchange",
    "commit_files",
    "recover",
    "pause_point",
]


class FileFormatError(ValueError):
    """A file that cannot be read as what was expected; the message names the file."""


# ------------------------------------------------------------------------------------- writing
def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then ``os.replace`` it onto ``path``.

    On any error (or ``KeyboardInterrupt``) the temporary file is removed and ``path`` is untouched.
    A ``RuntimeError`` raised by the writer while the disk is full (``torch.save``) is re-raised as
    an ``OSError`` naming ``path``.
    """
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        try:
            write(tmp)
        except (RuntimeError, OSError) as err:  # torch.save reports a full disk as RuntimeError
            raise _named(err, path) from None
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


#: a failed write into a folder with less free space than this is reported as a full disk
DISK_FULL_BYTES = 1 << 20


def disk_full(folder: str | os.PathLike) -> bool:
    """Whether the file system holding ``folder`` (or its nearest existing parent) has (almost) no space left."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < DISK_FULL_BYTES


def _named(err: BaseException, path: Path) -> BaseException:
    """``err`` as an ``OSError`` naming the final ``path`` (pyarrow and torch omit the file name).

    A full disk is reported as ``ENOSPC`` ("no space left on the device") however the writer said it:
    ``torch.save`` raises a ``RuntimeError`` ("unexpected pos ...", "file write failed") without an errno,
    pyarrow an ``OSError`` whose text holds "[errno 28]"; where the errno is missing, the free space of the
    folder decides (checked while the half-written temporary file still holds its space).
    """
    if isinstance(err, OSError) and err.filename is not None and ".tmp-" not in os.fspath(err.filename):
        return err
    code = err.errno if isinstance(err, OSError) else None
    text = (err.strerror if isinstance(err, OSError) and err.strerror else str(err)) or type(err).__name__
    if code is None and ("No space left" in text or "errno 28]" in text.lower() or disk_full(path.parent)):
        code = errno.ENOSPC
    if code is None:
        return OSError(f"{path}: could not write the file ({text})")
    return OSError(code, f"could not write the file ({' '.join(text.split())})", str(path))


def to_jsonable(obj: Any) -> Any:
    """``obj`` with NaN/inf as ``None``, numpy scalars/arrays as numbers/lists, paths as strings."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    np = sys.modules.get("numpy")  # no numpy object exists unless numpy is loaded
    if np is not None and isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if np is not None and isinstance(obj, np.bool_ | np.integer | np.floating):
        obj = obj.item()
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def dumps(obj: Any, *, indent: int | None = None, default: Callable[[Any], Any] | None = None) -> str:
    """JSON text of ``obj`` under the NaN policy (``null``); ``TypeError`` for what JSON cannot hold
    (unless ``default`` converts it, as in ``json.dumps``)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, default=default)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON atomically, NaN and infinities as ``null``."""
    return write_text(path, dumps(obj, indent=indent) + "\n")


def save_npy(path: str | os.PathLike, arr: np.ndarray) -> Path:
    """Write one plain array as ``.npy`` atomically (object arrays refused: they would need pickling)."""
    import numpy as np

    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise TypeError(f"{path}: object arrays are not stored (they would need pickling)")

    def write(t: Path) -> None:
        with open(t, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)

    return atomic_write(path, write)


TABLE_FORMATS = ("parquet", "csv", "jsonl")


def table_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``fmt``, or the format named by the extension of ``path`` (``.json`` -> jsonl), else parquet."""
    if fmt:
        if fmt not in TABLE_FORMATS:
            raise FileFormatError(f"{path}: unknown table format {fmt!r}; expected one of {list(TABLE_FORMATS)}")
        return fmt
    ext = Path(path).suffix.lower().lstrip(".")
    return {"csv": "csv", "jsonl": "jsonl", "json": "jsonl"}.get(ext, "parquet")


def table_writer(df: pd.DataFrame, fmt: str) -> Callable[[Path], None]:
    """A ``write(tmp)`` function for :func:`atomic_write` / :func:`commit_files`."""
    if fmt not in TABLE_FORMATS:
        raise FileFormatError(f"unknown table format {fmt!r}; expected one of {list(TABLE_FORMATS)}")
    return {"parquet": lambda t: df.to_parquet(t, index=False), "csv": lambda t: df.to_csv(t, index=False),
            "jsonl": lambda t: df.to_json(t, orient="records", lines=True)}[fmt]


def write_table(path: str | os.PathLike, df: pd.DataFrame, fmt: str | None = None) -> Path:
    """Write ``df`` as parquet, csv or jsonl (``fmt`` or the extension) atomically."""
    return atomic_write(path, table_writer(df, table_format(path, fmt)))


# ------------------------------------------------------------------------------------- reading
def _require_file(path: Path, what: str, suffix: str = "") -> None:
    if path.is_dir():
        raise FileFormatError(f"{path}{suffix}: is a folder; expected {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}{suffix}: file not found; expected {what}")
    if path.stat().st_size == 0:
        raise FileFormatError(f"{path}{suffix}: file is empty; expected {what}")


def read_json(path: str | os.PathLike, what: str = "a JSON file") -> Any:
    """Parse the JSON file at ``path``; errors name the file (never the bare decoder text)."""
    path = Path(path)
    _require_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path}: not valid JSON ({err}); expected {what}") from None


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _npy_header(fh: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    import numpy as np

    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    return np.lib.format._read_array_header(fh, version)  # (3, 0): utf-8 field names


def _read_npy(fh: BinaryIO, size: int, where: str, what: str, mmap_path: Path | None,
              mmap_mode: str | None) -> np.ndarray:
    import numpy as np

    magic = fh.read(6)
    if magic.startswith(_ZIP_MAGIC):
        raise FileFormatError(f"{where}: is a .npz archive; expected {what} (a single array saved with np.save)")
    if magic != _NPY_MAGIC:
        raise FileFormatError(f"{where}: not a .npy file (not a readable NumPy array: no NumPy header at the "
                              f"start); expected {what}")
    fh.seek(0)
    try:
        shape, fortran, dtype = _npy_header(fh)
    except (ValueError, EOFError, SyntaxError) as err:
        raise FileFormatError(f"{where}: corrupt .npy header ({err}); expected {what}") from None
    if dtype.hasobject:
        raise FileFormatError(f"{where}: holds a pickled/object array (Python objects), which fnlab never "
                              f"loads; expected {what}")
    need = fh.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < need:
        raise FileFormatError(f"{where}: truncated .npy file ({size} bytes, its header {shape} {dtype} needs "
                              f"{need}); expected {what}")
    if mmap_path is not None and mmap_mode:
        return np.load(mmap_path, allow_pickle=False, mmap_mode=mmap_mode)
    fh.seek(0)
    try:
        return np.lib.format.read_array(fh, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise FileFormatError(f"{where}: not a readable .npy array ({err}); expected {what}") from None


def read_npy(source: str | os.PathLike | bytes, what: str = "a numeric array", *, name: str | None = None,
             label: str | None = None, mmap_mode: str | None = None) -> np.ndarray:
    """One array from a ``.npy`` file (or its bytes), never unpickled, every fault naming the file.

    Args:
        source: a path, or the file's bytes (an upload; ``name`` names it in messages).
        what: what was expected, for messages (``"a float array [N, d]"``).
        label: the file's role, shown after its name (``"queries"`` -> ``Q.npy (queries): ...``).
        mmap_mode: passed to ``np.load`` for paths (``"r"``), after the checks.

    Raises:
        FileNotFoundError: no such file. FileFormatError: a folder, empty, not a ``.npy`` file, an
        ``.npz`` archive, an object (pickled) array, truncated or corrupt.
    """
    suffix = f" ({label})" if label else ""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        where = (name or "uploaded file") + suffix
        if not data:
            raise FileFormatError(f"{where}: file is empty; expected {what}")
        return _read_npy(io.BytesIO(data), len(data), where, what, None, None)
    path = Path(source)
    _require_file(path, what, suffix)
    with open(path, "rb") as fh:
        return _read_npy(fh, path.stat().st_size, f"{path}{suffix}", what, path, mmap_mode)


def _looks_headerless(columns: Iterable[Any]) -> bool:
    """Whether every column name parses as a number (a CSV whose first data row became the header)."""
    cols = [str(c) for c in columns]
    if not cols:
        return False
    for c in cols:
        try:
            float(c.split(".")[0] if c.count(".") > 1 else c)  # pandas renames duplicates "0.1" -> "0.1.1"
        except ValueError:
            return False
    return True


def read_table(source: str | os.PathLike | bytes, what: str = "a table", *, name: str | None = None,
               label: str | None = None, columns: Iterable[str] = (),
               integer_columns: Iterable[str] = ()) -> pd.DataFrame:
    """A non-empty ``.csv`` / ``.parquet`` (``.pq``) table, with the given columns.

    Args:
        source: a path, or the file's bytes (then ``name`` gives the file name and its extension).
        what: what the table is, for messages (``"labelled pairs"``).
        label: the file's role, shown after its name (``"positives"``).
        columns: required column names; a CSV without them whose header is numbers is reported as
            lacking its header line (``query,candidate``).
        integer_columns: columns that must hold an integer in every row (ids); returned as int64. An empty
            cell (NaN), a fraction or a text is reported by column and row.

    Raises:
        FileNotFoundError: no such file. FileFormatError: folder, empty, unknown extension,
        unreadable, no rows, missing columns, a non-integer in an integer column.
    """
    import pandas as pd

    columns = list(columns)
    role = f" ({label})" if label else ""
    if isinstance(source, bytes | bytearray | memoryview):
        where = (name or "uploaded table") + role
        suffix = Path(name or "").suffix.lower()
        data = bytes(source)
        if not data:
            raise FileFormatError(f"{where}: file is empty; expected {what}")
        handle: Any = io.BytesIO(data)
    else:
        path = Path(source)
        _require_file(path, f"{what} (.csv or .parquet)", role)
        where, suffix, handle = f"{path}{role}", path.suffix.lower(), path
    try:
        if suffix == ".csv":
            df = pd.read_csv(handle)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(handle)
        else:
            raise FileFormatError(f"{where}: unknown extension {suffix!r}; expected {what} as .csv or .parquet")
    except FileFormatError:
        raise
    except Exception as err:  # pandas / pyarrow raise many types for malformed files
        msg = str(err).splitlines()[0] if str(err) else ""
        raise FileFormatError(f"{where}: not a readable {suffix.lstrip('.') or 'table'} file "
                              f"({type(err).__name__}: {msg}); expected {what}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        header = ",".join(columns)
        if suffix == ".csv" and _looks_headerless(df.columns):
            raise FileFormatError(f"{where}: no header line; expected {what} with a first line '{header}' "
                                  f"(found the values {[str(c) for c in df.columns]} where the header should be)")
        raise FileFormatError(f"{where}: missing column(s) {missing}; expected {what} with columns "
                              f"{columns} (found {[str(c) for c in df.columns]})")
    if len(df) == 0:
        raise FileFormatError(f"{where}: no rows (only a header); expected {what}")
    for col in integer_columns:
        df[col] = _integer_column(df[col], col, where, csv=suffix == ".csv")
    return df


def _integer_column(values: pd.Series, col: str, where: str, *, csv: bool) -> pd.Series:
    """``values`` as int64, or a FileFormatError naming the column and the first bad row."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(np.int64)
    numeric = pd.to_numeric(values, errors="coerce") if not pd.api.types.is_bool_dtype(values) else \
        pd.Series(np.nan, index=values.index)
    bad = numeric.isna() | ~np.isfinite(numeric.fillna(0)) | (numeric.fillna(0) % 1 != 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raw = values.iloc[i]
        raw = raw.item() if isinstance(raw, np.generic) else raw
        shown = "is empty (NaN)" if pd.isna(raw) else f"holds {raw!r}"
        line = f" (line {i + 2} of the file)" if csv else ""
        raise FileFormatError(f"{where}: column {col!r}, row {i}{line} {shown}; expected an integer id in every "
                              f"row ({int(bad.sum())} such row(s))")
    return numeric.astype(np.int64)


# ---------------------------------------------------------------------------------- integrity
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def try_lock(path: str | os.PathLike, *, blocking: bool = False) -> int | None:
    """Open ``path`` (created if missing) and take an exclusive ``fcntl.flock`` on it.

    Returns the open file descriptor (pass it to :func:`unlock`), or ``None`` when ``blocking`` is
    False and another holder has it. The kernel drops the lock when the holder dies, so a killed
    process never leaves a stale lock. A lock file that its holder removed while we waited is
    detected (inode check) and the lock retaken on the new file, so :func:`unlock` may remove it.
    """
    path = Path(path)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was tidied away (empty) between the two calls: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file meanwhile: lock the current one


def unlock(fd: int, *, remove: str | os.PathLike | None = None) -> None:
    """Release a lock taken by :func:`try_lock`; ``remove`` deletes the lock file first (while held)."""
    try:
        if remove is not None:
            Path(remove).unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(path: str | os.PathLike) -> bool:
    """Whether some process holds the :func:`try_lock` lock on ``path`` right now."""
    if not Path(path).exists():
        return False
    fd = try_lock(path)
    if fd is None:
        return True
    unlock(fd)
    return False


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, remove: bool = True) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if missing) for the ``with`` body.

    ``remove``: delete the lock file when done (safe: :func:`try_lock` re-checks the inode it locked).
    """
    fd = try_lock(path, blocking=True)
    assert fd is not None
    try:
        yield
    finally:
        unlock(fd, remove=path if remove else None)


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system cannot (not Linux, old glibc, a file system without support);
    the caller then falls back to two renames.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(os.path.abspath(a)), at_fdcwd, os.fsencode(os.path.abspath(b)),
                   rename_exchange)
    return rc == 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _journal(key: Path) -> Path:
    return key.with_name(f".{key.name}.commit.json")


def _lockfile(key: Path) -> Path:
    return key.with_name(f".{key.name}.lock")


def _roll_forward(journal: Path) -> None:
    try:
        renames = json.loads(journal.read_text(encoding="utf-8"))["renames"]
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)  # a journal is written atomically: unreadable means not ours
        return
    for tmp, final in renames if isinstance(renames, list) else []:
        if _own_temp(tmp, final) and os.path.exists(tmp):
            os.replace(tmp, final)
    journal.unlink(missing_ok=True)


def _own_temp(tmp: Any, final: Any) -> bool:
    """Whether ``tmp`` is a temporary sibling fnlab wrote for ``final`` (:func:`_tmp_sibling`): a journal only ever
    moves such a file onto its own final name, never anything else (a journal copied elsewhere, or forged)."""
    if not isinstance(tmp, str) or not isinstance(final, str) or not os.path.isabs(tmp):
        return False
    t, f = Path(tmp), Path(final)
    return t.parent == f.parent and t.name.startswith(f".{f.name}.tmp-")


def recover(key: str | os.PathLike) -> bool:
    """Finish a :func:`commit_files` to ``key`` that a killed process left half done.

    Returns whether a pending commit was rolled forward. Safe to call at any time, from readers too.
    """
    key = Path(key)
    journal = _journal(key)
    if not journal.exists():
        return False
    with file_lock(_lockfile(key)):
        if not journal.exists():
            return False
        _roll_forward(journal)
        return True


def _remove_dead_temps(final: Path) -> None:
    """Delete ``.NAME.tmp-PID-*`` siblings that a process killed before its commit left behind."""
    if not final.parent.is_dir():
        return
    for tmp in final.parent.glob(f".{glob_escape(final.name)}.tmp-*"):
        try:
            pid = int(tmp.name[len(final.name) + 6:].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            continue  # alive, another user's


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped."""
    import glob

    return glob.escape(text)


def commit_files(writers: Mapping[str | os.PathLike, Callable[[Path], None]]) -> list[Path]:
    """Write several files as one unit: all of them replaced, or none.

    Each ``writers[path](tmp)`` writes a temporary sibling of ``path``; when all succeeded, the list
    of renames is written to a journal beside the first path (``.NAME.commit.json``; the commit
    point), the renames are done and the journal removed, all under ``fcntl.flock`` on
    ``.NAME.lock``. So:

    * a writer that fails (full disk, read-only folder, ...) removes every temporary file and
      leaves every old file untouched;
    * a process killed before the journal was written leaves the old files as they were (and a
      hidden temporary file); one killed after it is finished by :func:`recover`, which the next
      ``commit_files`` to the same first path calls, as may any reader;
    * two processes committing to the same first path are serialised: the set on disk is always
      one writer's complete set (the last one to commit).

    Returns:
        the final paths, in the order given.
    """
    finals = [Path(p) for p in writers]
    if not finals:
        return []
    if len({os.path.abspath(p) for p in finals}) != len(finals):
        raise ValueError(f"commit_files: the same path is given twice ({[str(p) for p in finals]})")
    key = finals[0]
    recover(key)
    for final in finals:
        _remove_dead_temps(final)
    tmps: list[Path] = []
    try:
        for final, write in zip(finals, writers.values(), strict=True):
            tmp = _tmp_sibling(final)
            tmps.append(tmp)
            try:
                write(tmp)
            except (RuntimeError, OSError) as err:
                raise _named(err, final) from None
            if not tmp.is_file():
                raise ValueError(f"commit_files: the writer of {final} wrote no file")
            _fsync(tmp)
            pause_point("commit:file-written")
        with file_lock(_lockfile(key)):
            journal = _journal(key)
            if journal.exists():
                _roll_forward(journal)
            write_text(journal, json.dumps({"renames": [[os.path.abspath(t), os.path.abspath(f)]
                                                        for t, f in zip(tmps, finals, strict=True)]}))
            _fsync(journal)
            pause_point("commit:journal-written")
            _roll_forward(journal)
    except BaseException:
        if not _journal(key).exists():
            for tmp in tmps:
                tmp.unlink(missing_ok=True)
        raise
    return finals


def pause_point(stage: str) -> None:
    """Test hook for crash tests: pause forever at ``stage`` so a test can ``kill -9`` the process there.

    Active only where the environment sets ``FNLAB_TEST_PAUSE=stage`` and ``FNLAB_TEST_PAUSE_FILE=PATH``:
    the process then writes its pid to ``PATH`` and sleeps. Stages: ``commit:file-written``,
    ``commit:journal-written`` (:func:`commit_files`), ``run:file-written``, ``run:before-finalize``,
    ``run:marker-written`` (:mod:`fnlab.storage.runs`).
    """
    if os.environ.get("FNLAB_TEST_PAUSE") != stage:
        return
    import time

    Path(os.environ["FNLAB_TEST_PAUSE_FILE"]).write_text(str(os.getpid()))
    while True:  # pragma: no cover - killed by the test
        time.sleep(0.05)
