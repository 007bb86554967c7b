"""Safe, checked readers for user files. Every error is a :class:`DatasetError` naming the file,
the field and what was expected. The reading itself is :mod:`fnlab.core.files` (never unpickles); this
module adds the dataset's field names and value checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fnlab.core import files
from fnlab.data.base import DatasetError


def _as_dataset_error(err: Exception, path: Path, field: str) -> DatasetError:
    """A :class:`fnlab.core.files.FileFormatError` re-worded as ``PATH: field 'F': ...``."""
    msg, prefix = str(err), f"{path}: "
    return DatasetError(f"{path}: field {field!r}: {msg[len(prefix):] if msg.startswith(prefix) else msg}")


def require_file(path: Path, field: str, what: str) -> Path:
    """``path`` if it is a non-empty file, else a :class:`DatasetError` / ``FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing file for field {field!r} (expected {what})")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: field {field!r}: the file is empty (expected {what})")
    return path


def load_npy(
    path: Path,
    field: str,
    *,
    ndim: tuple[int, ...] = (2,),
    kind: str = "float",
    rows: int | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Read one array from a ``.npy`` file with checks.

    Args:
        ndim: accepted numbers of dimensions.
        kind: ``"float"`` (any real numeric dtype, returned as float32) or ``"int"`` (integer dtype,
            returned as int64).
        rows: expected first dimension, if known.
        finite: refuse NaN or infinite values.

    Raises:
        DatasetError: empty, unreadable, pickled/object array, wrong dtype, shape or values.
    """
    require_file(path, field, f"a .npy array with {' or '.join(map(str, ndim))} dimensions")
    try:
        arr = files.read_npy(path, f"a plain numeric .npy array with {' or '.join(map(str, ndim))} dimensions")
    except files.FileFormatError as err:
        raise _as_dataset_error(err, Path(path), field) from None
    return check_array(arr, f"{path}", field, ndim=ndim, kind=kind, rows=rows, finite=finite)


def check_array(
    arr: np.ndarray,
    where: str,
    field: str,
    *,
    ndim: tuple[int, ...] = (2,),
    kind: str = "float",
    rows: int | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Check dtype, shape and values of an array read from ``where``; return it converted."""
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: field {field!r}: dtype {arr.dtype} is not numeric (expected {kind} values)")
    if kind == "int" and arr.dtype.kind not in "biu":
        raise DatasetError(f"{where}: field {field!r}: dtype {arr.dtype}, expected integers")
    if arr.ndim not in ndim:
        raise DatasetError(
            f"{where}: field {field!r}: shape {arr.shape}, expected {' or '.join(map(str, ndim))} dimensions"
        )
    if arr.ndim and arr.shape[0] == 0:
        raise DatasetError(f"{where}: field {field!r}: has no rows")
    if rows is not None and arr.shape[0] != rows:
        raise DatasetError(f"{where}: field {field!r}: has {arr.shape[0]} rows, expected {rows}")
    if kind == "float":
        arr = np.asarray(arr, dtype=np.float32)
        if finite and not np.isfinite(arr).all():
            raise DatasetError(f"{where}: field {field!r}: holds NaN or infinite values (expected finite numbers)")
        return arr
    return np.asarray(arr, dtype=np.int64)


def read_table(path: Path, field: str) -> pd.DataFrame:
    """A CSV or Parquet table, non-empty.

    Raises:
        DatasetError: unreadable, empty, or not ``.csv``/``.parquet``.
    """
    require_file(path, field, "a CSV or Parquet table")
    try:
        return files.read_table(path, "a CSV or Parquet table")
    except files.FileFormatError as err:
        raise _as_dataset_error(err, Path(path), field) from None


def int_column(df: pd.DataFrame, col: str, where: str, *, high: int | None = None, low: int = 0) -> np.ndarray:
    """Column ``col`` as int64, every value an integer in ``[low, high)``.

    Raises:
        DatasetError: missing column, non-numeric or non-integer values, missing values, out of range.
    """
    if col not in df.columns:
        raise DatasetError(f"{where}: missing column {col!r} (has {list(df.columns)})")
    s = df[col]
    if not (pd.api.types.is_integer_dtype(s) or pd.api.types.is_float_dtype(s)) or pd.api.types.is_bool_dtype(s):
        raise DatasetError(f"{where}: column {col!r} is not numeric (dtype {s.dtype}); expected integer indices")
    v = s.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(v).all():
        raise DatasetError(f"{where}: column {col!r} has missing, NaN or infinite values; expected integer indices")
    if not (v == np.round(v)).all():
        raise DatasetError(f"{where}: column {col!r} has non-integer values; expected integer indices")
    out = v.astype(np.int64)
    if len(out) and (out.min() < low or (high is not None and out.max() >= high)):
        bad = out[(out < low) | (out >= (high if high is not None else np.inf))][0]
        rng = f"[{low}, {high})" if high is not None else f">= {low}"
        raise DatasetError(f"{where}: column {col!r} has index {bad} outside {rng}")
    return out


def read_json(path: Path, field: str) -> dict:
    """A JSON object from ``path``."""
    require_file(path, field, "a JSON object")
    try:
        obj = files.read_json(path, "a JSON object")
    except files.FileFormatError as err:
        raise _as_dataset_error(err, Path(path), field) from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: field {field!r}: expected a JSON object, got {type(obj).__name__}")
    return obj
