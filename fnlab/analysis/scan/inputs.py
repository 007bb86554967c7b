"""The scan's inputs: loading and checking queries, candidates, labelled pairs and texts, the scan's
options, and the error and warning types every engine raises (:class:`ScanInputError`, :class:`ScanWarning`).

Shared by both engines (:mod:`fnlab.analysis.scan.local`, :mod:`fnlab.analysis.scan.ray`); imports neither.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fnlab.posterior import check_prior
from fnlab.retrieval.similarity import index_params as check_index_params
from fnlab.retrieval.similarity import normalize as unit_rows

__all__ = [
    "ScanInputError",
    "ScanWarning",
    "NO_POSITIVE_POLICY",
    "load_embeddings",
    "load_positives",
    "load_texts",
    "text_inputs",
    "input_name",
    "check_embeddings",
    "prepare_embeddings",
    "duplicate_rows",
    "positives_matrix",
    "check_scan_options",
    "announce_notes",
]

NO_POSITIVE_POLICY = (
    "scanned like every query; the signals they cannot offer (margin to the positive, similarity to the "
    "positive) are left out of their posterior and their positive_similarity is NaN"
)


class ScanInputError(ValueError):
    """Bad scan input; the message names the file (or argument), the field and what was expected."""


class ScanWarning(UserWarning):
    """Suspicious but usable scan input (duplicates, queries without positives)."""


# ------------------------------------------------------------------------------------ loading
def load_embeddings(path: str | os.PathLike, field_name: str = "embeddings") -> np.ndarray:
    """Load a ``[N, d]`` float16/32/64 ``.npy`` array safely (never unpickles; :func:`fnlab.core.files.read_npy`).

    Raises:
        ScanInputError: missing/empty file, not a ``.npy`` file, truncated, object array, a folder.
    """
    from fnlab.core.files import read_npy

    try:
        return read_npy(path, "a float array [N, d] saved with numpy.save", label=field_name)
    except (ValueError, FileNotFoundError) as err:
        raise ScanInputError(str(err)) from None


def load_positives(path: str | os.PathLike) -> pd.DataFrame:
    """Read the labelled pairs table (``.csv`` or ``.parquet``) with integer ``query``, ``candidate``.

    Raises:
        ScanInputError: missing/empty/unreadable file, unknown extension, no header, missing columns, no rows.
    """
    from fnlab.core.files import read_table

    try:
        return read_table(path, "labelled pairs with integer columns query,candidate", label="positives",
                          columns=("query", "candidate"), integer_columns=("query", "candidate"))
    except (ValueError, FileNotFoundError) as err:
        raise ScanInputError(str(err)) from None


def load_texts(path: str | os.PathLike, label: str = "texts") -> list[str]:
    """Texts, one per row: a ``.txt`` file with one text a line (UTF-8), or a ``.csv`` / ``.parquet`` /
    ``.jsonl`` table with a ``text`` column.

    Raises:
        ScanInputError: missing, empty or unreadable file, no ``text`` column.
    """
    from fnlab.core.files import read_table

    p = Path(path)
    if p.suffix.lower() in (".csv", ".parquet", ".pq"):
        try:
            return [str(t) for t in read_table(p, "texts with a column 'text'", label=label, columns=("text",))["text"]]
        except (ValueError, FileNotFoundError) as err:
            raise ScanInputError(str(err)) from None
    if p.suffix.lower() == ".jsonl":
        try:
            df = pd.read_json(p, lines=True)
        except (ValueError, OSError) as err:
            raise ScanInputError(f"{p} ({label}): cannot read it as JSON lines ({err}); expected one object "
                                 "with a 'text' field a line") from None
        if "text" not in df.columns:
            raise ScanInputError(f"{p} ({label}): no field 'text'; expected one object with a 'text' field a line")
        return [str(t) for t in df["text"]]
    if not p.is_file():
        raise ScanInputError(f"{p} ({label}): no such file; expected texts, one a line (.txt) or a table with a "
                             "'text' column (.csv, .parquet, .jsonl)")
    try:
        lines = p.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ScanInputError(f"{p} ({label}): cannot read it as UTF-8 text ({err})") from None
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if not lines:
        raise ScanInputError(f"{p} ({label}): file is empty; expected one text a line")
    return lines


def text_inputs(query_texts: Any, candidate_texts: Any, nq: int, nc: int, *, encoder: str,
                names: Mapping[str, str], notes: list[str], stacklevel: int = 3) -> dict[str, Any]:
    """The :class:`fnlab.posterior.PairContext` arguments that texts give: content keys of the normalised
    texts (near-duplicate content) and a second view from ``encoder`` (:func:`fnlab.data.minilm.text_view`).

    Texts that do not match the embeddings' rows, or an encoder that cannot be loaded, cost the view (or
    that side's texts) and one line in ``notes``; the scan goes on without them. The notes added are warned
    (:class:`ScanWarning`) at ``stacklevel``, counted from this function.
    """
    from fnlab.data.minilm import EncoderError, text_view
    from fnlab.posterior.signals import text_keys

    out: dict[str, Any] = {}
    before = len(notes)
    for side, texts, n in (("query", query_texts, nq), ("candidate", candidate_texts, nc)):
        if texts is None:
            continue
        where = names.get(f"{side}_texts", f"{side} texts")
        texts = list(texts)
        if len(texts) != n:
            notes.append(f"{where}: {len(texts)} texts but {n} {side} rows; expected one text a row: the scan runs "
                         f"without the {side} texts")
            continue
        out[f"{side}_content"] = text_keys(texts)
        try:
            out[f"{side}_view"] = text_view(texts, encoder=encoder)
        except (EncoderError, ModuleNotFoundError, FileNotFoundError) as err:
            notes.append(f"{err}; the scan runs without the {side} text view (near-duplicate texts still count)")
    if "query_view" in out and "candidate_view" in out and out["query_view"].shape[1] != out["candidate_view"].shape[1]:
        notes.append("query and candidate text views differ in size; the scan uses the query view only")
        out.pop("candidate_view")
    for msg in notes[before:]:
        warnings.warn(msg, ScanWarning, stacklevel=stacklevel)
    return out


# ---------------------------------------------------------------------------------- validation
def input_name(names: Mapping[str, str], key: str) -> str:
    return f"{names[key]} ({key})" if key in names else key


def check_embeddings(arr: Any, key: str, names: Mapping[str, str]) -> np.ndarray:
    where = input_name(names, key)
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)):
        raise ScanInputError(f"{where}: expected a float16/32/64 array [N, d], got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ScanInputError(f"{where}: expected a 2-D array [N, d], got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ScanInputError(f"{where}: expected at least one row and one column, got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ScanInputError(f"{where}: {rows.size} row(s) hold NaN or infinite values "
                             f"(first rows: {rows[:5].tolist()}); expected finite floats")
    if arr.dtype.itemsize > 4:  # float64 values beyond float32's range would become inf and drop the row
        limit = float(np.finfo(np.float32).max)
        big = np.concatenate([np.abs(arr[s:s + 65536]).max(axis=1) > limit for s in range(0, arr.shape[0], 65536)])
        if big.any():
            rows = np.flatnonzero(big)
            raise ScanInputError(f"{where}: {rows.size} row(s) hold values beyond the float32 range (|x| > "
                                 f"{limit:.3g}; first rows: {rows[:5].tolist()}); the scan computes in float32: "
                                 "rescale the embeddings")
    return arr


def prepare_embeddings(arr: np.ndarray, key: str, names: Mapping[str, str], normalize: bool) -> np.ndarray:
    """float32 C-contiguous ``[N, d]`` unit rows: a copy L2-normalised by
    :func:`fnlab.retrieval.similarity.normalize`, or the input itself when its rows already are unit
    float32 (never modified: the scan only reads it).

    Raises:
        ScanInputError: with ``normalize``, rows that are all zeros (no direction to keep).
    """
    if not normalize:
        return np.array(arr, dtype=np.float32, order="C", copy=True)
    arr = np.asarray(arr, dtype=np.float32)
    zero = ~arr.any(axis=1)
    if zero.any():
        rows = np.flatnonzero(zero)
        raise ScanInputError(f"{input_name(names, key)}: {rows.size} row(s) are all zeros "
                             f"(first rows: {rows[:5].tolist()}); cannot normalise them")
    if arr.flags.c_contiguous and _unit_already(arr):
        return arr  # already unit rows (most embedding models' output): no second copy in memory
    return unit_rows(arr)


def _unit_already(arr: np.ndarray, tol: float = 1e-5, step: int = 65536) -> bool:
    """Every row of float32 ``arr`` has an L2 norm within ``tol`` of 1 (checked in blocks)."""
    for s in range(0, arr.shape[0], step):
        block = arr[s:s + step].astype(np.float64)
        if np.abs(np.sqrt(np.einsum("ij,ij->i", block, block)) - 1.0).max() > tol:
            return False
    return True


def duplicate_rows(arr: np.ndarray) -> int:
    """Number of rows that repeat an earlier row exactly."""
    a = np.ascontiguousarray(arr)
    v = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    return int(v.size - np.unique(v).size)


def positives_matrix(positives: Any, nq: int, nc: int, names: Mapping[str, str],
                      notes: list[str]) -> sp.csr_matrix:
    """Labelled pairs as a CSR ``[Nq, Nc]`` bool matrix, after checks; duplicates warned and dropped."""
    where = input_name(names, "positives")
    if sp.issparse(positives):
        if positives.shape != (nq, nc):
            raise ScanInputError(f"{where}: sparse matrix has shape {positives.shape}, expected ({nq}, {nc})")
        coo = sp.coo_matrix(positives)
        q, c = coo.row.astype(np.int64), coo.col.astype(np.int64)
    else:
        if isinstance(positives, pd.DataFrame):
            missing = [col for col in ("query", "candidate") if col not in positives.columns]
            if missing:
                raise ScanInputError(f"{where}: missing column(s) {missing}; expected integer columns "
                                     f"'query' and 'candidate' (found {list(positives.columns)})")
            cols = {}
            for col in ("query", "candidate"):
                s = positives[col]
                if not pd.api.types.is_integer_dtype(s):
                    if pd.api.types.is_float_dtype(s) and s.notna().all() and (s == np.round(s)).all():
                        s = s.astype(np.int64)
                    else:
                        raise ScanInputError(f"{where}: column {col!r} must hold integers (row indices), "
                                             f"got dtype {s.dtype}")
                cols[col] = s.to_numpy(dtype=np.int64)
            q, c = cols["query"], cols["candidate"]
        else:
            arr = np.asarray(positives)
            if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
                raise ScanInputError(f"{where}: expected an integer array [P, 2] of (query, candidate) "
                                     f"or a DataFrame; got dtype {arr.dtype}, shape {arr.shape}")
            q, c = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        for col, vals, n, side in (("query", q, nq, "queries"), ("candidate", c, nc, "candidates")):
            if vals.size and (vals.min() < 0 or vals.max() >= n):
                bad = np.flatnonzero((vals < 0) | (vals >= n))
                raise ScanInputError(f"{where}: column {col!r} has {bad.size} value(s) outside [0, {n}) "
                                     f"(there are {n} {side}; first bad rows: {bad[:5].tolist()})")
    if q.size == 0:
        raise ScanInputError(f"{where}: no labelled pairs; at least 2 are needed to fit the positive distribution")
    mat = sp.csr_matrix((np.ones(q.size, dtype=np.int32), (q, c)), shape=(nq, nc))
    mat.sum_duplicates()
    dups = int(q.size - mat.nnz)
    if dups:
        notes.append(f"{where}: {dups} duplicate (query, candidate) row(s) ignored")
    mat.data = np.ones(mat.nnz, dtype=bool)
    mat = sp.csr_matrix(mat, dtype=bool)
    mat.sort_indices()
    return mat



def check_scan_options(prior: Any, index: str, index_params: Any) -> tuple[float | str, dict[str, Any]]:
    """The prior (``"auto"`` or a float in (0, 1)) and the index parameters, checked for every engine.

    Raises:
        ScanInputError: a bad prior, an unknown index or a bad index parameter.
    """
    try:
        prior = check_prior(prior)
    except ValueError as err:
        raise ScanInputError(str(err)) from None
    if index not in ("flat", "hnsw", "ivf"):
        raise ScanInputError(f"unknown index {index!r}: expected 'flat', 'hnsw' or 'ivf'")
    try:
        return prior, check_index_params(index, index_params)
    except ValueError as err:
        raise ScanInputError(f"index_params: {err}") from None


def announce_notes(pos: sp.csr_matrix, estimator: str, notes: list[str], *,
                   stacklevel: int = 3) -> tuple[int, str]:
    """Add the note on queries without a labelled positive to ``notes`` and warn every note once
    (:class:`ScanWarning`, at ``stacklevel`` counted from this function), for every engine. Returns
    ``(queries without a positive, their policy)``."""
    no_pos = int((np.diff(pos.indptr) == 0).sum())
    policy = NO_POSITIVE_POLICY if estimator != "relative" else (
        "scanned, but their P(false negative) is NaN: the relative posterior is a function of s - s+")
    if no_pos:
        notes.append(f"{no_pos} of {pos.shape[0]} queries have no labelled positive; {policy}")
    for msg in notes:
        warnings.warn(msg, ScanWarning, stacklevel=stacklevel)
    return no_pos, policy
