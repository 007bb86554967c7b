"""Scan a user's own embeddings for suspected false negatives, at scale.

For every query, the scan ranks all candidates by cosine similarity, leaves out the query's
labelled positives and keeps the ``top_k`` best of the rest: these are the negatives a
hard-negative miner would pick, and the place where false negatives hide (FNE, Li et al.,
ACM MM 2023, Sec. 1 and 3.2). Each kept pair gets the posterior probability that it is in
fact a match, ``p_false_negative``, from :mod:`fnlab.posterior`: by default the positive-unlabelled
estimator ``"pu"``, fitted on *this* data (labelled pairs plus a stratified sample of unlabelled
pairs, prior estimated) over every signal a pair offers: its similarity, its margin to the query's
labelled positive, its similarity to that positive, the query's similarity to the candidate's own
labelled queries, and mutual rank (:class:`fnlab.posterior.PairContext`). ``posterior=`` applies
an already fitted posterior instead (e.g. a run's ``posterior.json``), so the same pair gets the
same number in the scan, ``fnlab eval`` and the app. The summary reports the posterior's AUROC and
AP against ground truth next to ranking by raw similarity where ground truth exists
(:func:`scan_dataset`), and always the estimated prior.

A query without any labelled positive is scanned like any other; signals it cannot offer (its
margin, the similarity to its positive) are marginalised out, and its ``positive_similarity`` is
NaN. The summary says how many such queries there were.

Memory stays bounded: queries are searched in chunks (``fnlab.retrieval.similarity.topk``), the
``[Nq, Nc]`` matrix is never formed; peak memory is the float32 copies of the embeddings plus
one chunk plus the output table (``Nq * top_k`` rows).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fnlab.posterior import DEFAULT_ESTIMATOR, PairContext, check_estimator, check_prior, pair_member
from fnlab.retrieval.similarity import (
    DEFAULT_CHUNK_SIZE,
    index_description,
    recall_at_k,
    topk,
)
from fnlab.retrieval.similarity import index_params as check_index_params
from fnlab.retrieval.similarity import normalize as unit_rows

__all__ = [
    "ScanResult",
    "ScanInputError",
    "ScanWarning",
    "scan",
    "scan_dataset",
    "load_embeddings",
    "load_positives",
    "write_table",
    "write_json",
    "triplets",
    "suspects_table",
    "fit_scan_posterior",
    "load_texts",
    "text_inputs",
    "NO_POSITIVE_POLICY",
    "ENGINES",
]

ENGINES = ("local", "ray")

NO_POSITIVE_POLICY = (
    "scanned like every query; the signals they cannot offer (margin to the positive, similarity to the "
    "positive) are left out of their posterior and their positive_similarity is NaN"
)


class ScanInputError(ValueError):
    """Bad scan input; the message names the file (or argument), the field and what was expected."""


class ScanWarning(UserWarning):
    """Suspicious but usable scan input (duplicates, queries without positives)."""


@dataclass
class ScanResult:
    """What :func:`scan` returns.

    Attributes:
        table: one row per (query, kept candidate): ``query`` int64, ``candidate`` int64,
            ``rank`` int32 (1 = most similar non-positive), ``similarity`` float32,
            ``positive_similarity`` float32 (best labelled positive of the query; NaN if none),
            ``p_false_negative`` float32; ``is_relevant`` bool where ground truth is known.
        summary: JSON-serialisable dict (counts, fitted parameters, timings, warnings).
        posterior: the fitted posterior (``prob_false_negative(sims)``, ``params()``).
        positive_pairs: the labelled pairs after de-duplication: ``query``, ``candidate``,
            ``similarity`` (used by :func:`triplets`).
    """

    table: pd.DataFrame
    summary: dict[str, Any]
    posterior: Any = None
    positive_pairs: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)


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
                names: Mapping[str, str], notes: list[str]) -> dict[str, Any]:
    """The :class:`fnlab.posterior.PairContext` arguments that texts give: content keys of the normalised
    texts (near-duplicate content) and a second view from ``encoder`` (:func:`fnlab.data.minilm.text_view`).

    Texts that do not match the embeddings' rows, or an encoder that cannot be loaded, cost the view (or
    that side's texts) and one line in ``notes``; the scan goes on without them.
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
        warnings.warn(msg, ScanWarning, stacklevel=3)
    return out


# ---------------------------------------------------------------------------------- validation
def _where(names: Mapping[str, str], key: str) -> str:
    return f"{names[key]} ({key})" if key in names else key


def _check_embeddings(arr: Any, key: str, names: Mapping[str, str]) -> np.ndarray:
    where = _where(names, key)
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


def _prepare(arr: np.ndarray, key: str, names: Mapping[str, str], normalize: bool) -> np.ndarray:
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
        raise ScanInputError(f"{_where(names, key)}: {rows.size} row(s) are all zeros "
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


def _duplicate_rows(arr: np.ndarray) -> int:
    """Number of rows that repeat an earlier row exactly."""
    a = np.ascontiguousarray(arr)
    v = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    return int(v.size - np.unique(v).size)


def _positives_matrix(positives: Any, nq: int, nc: int, names: Mapping[str, str],
                      notes: list[str]) -> sp.csr_matrix:
    """Labelled pairs as a CSR ``[Nq, Nc]`` bool matrix, after checks; duplicates warned and dropped."""
    where = _where(names, "positives")
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


def _rowwise_dot(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, step: int = 65536) -> np.ndarray:
    out = np.empty(ia.size, dtype=np.float32)
    for s in range(0, ia.size, step):
        out[s:s + step] = np.einsum("ij,ij->i", a[ia[s:s + step]], b[ib[s:s + step]])
    return out


# ------------------------------------------------------------------------------------ fitting
def fit_scan_posterior(estimator: str, prior: float | str, ctx: Any, *, seed: int = 0):
    """The scan's posterior fit: :func:`fnlab.posterior.fit` on the scan's :class:`PairContext`,
    calibrated for the rows the scan shows (``window`` = the context's window, the scan's ``top_k``) where
    the estimator has that parameter.

    One entry point for every engine (local, ``fnlab.analysis.scale.ray_scan``).

    Returns:
        ``(posterior, description of the method)``; apply it with :func:`suspects_table`.

    Raises:
        ScanInputError: the estimator cannot be fitted on these inputs.
    """
    from fnlab import posterior as post_mod

    extra = {"window": ctx.window} if any(p.name == "window" for p in post_mod.param_specs(estimator)) else {}
    try:
        post = post_mod.fit(estimator, ctx, prior=prior, seed=seed, **extra)
    except ValueError as err:
        raise ScanInputError(f"posterior estimator {estimator!r}: {err}") from None
    how = f"fnlab.posterior.fit({estimator!r}, prior={prior!r}): {post_mod.describe(estimator)}"
    return post, how


#: rows whose posterior is computed at once when the table is written (bounds the float64 signals)
TABLE_CHUNK_ROWS = 1 << 20


def scan_posterior(ctx: Any, posterior: Any, estimator: str, prior: float | str, seed: int,
                   notes: list[str]) -> tuple[Any, str, str]:
    """The posterior a scan applies, for every engine: ``posterior`` when given (a run's), else
    :func:`fit_scan_posterior` on the scan's context; the context's and the posterior's notes are
    added to ``notes`` once each. Returns ``(posterior, how its prior was set, estimator name)``."""
    if posterior is None:
        post, prior_method = fit_scan_posterior(estimator, prior, ctx, seed=seed)
    else:
        post, prior_method = posterior, "given (fitted elsewhere, e.g. a run's posterior.json)"
        estimator = post.estimator
    if post.window is not None and post.window != ctx.window:
        # a posterior calibrated for another window (a run's, for its top 10): pairs are placed in its window
        notes.append(f"the posterior is calibrated for each query's top {post.window} candidates; rows ranked "
                     f"below that get its pool calibration")
        ctx.window = post.window
    if not post.status.calibrated:
        notes.append(f"P(false negative) is {post.status}: read it as a ranking, not as a probability")
    for msg in ctx.notes + list(post.notes):
        if msg not in notes:
            notes.append(msg)
    return post, prior_method, estimator


def suspects_table(posterior: Any, query: np.ndarray, candidate: np.ndarray, rank: np.ndarray,
                   similarity: np.ndarray, positive_similarity: np.ndarray, *, ctx: Any = None,
                   thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """Kept (query, candidate) rows -> the scan's output table, with ``p_false_negative``.

    The one place a fitted posterior is applied to scanned rows; the local scan and the Ray
    engine (per batch) both call it, so both write the same columns and values.

    Args:
        posterior: from :func:`fit_scan_posterior` (or :attr:`ScanResult.posterior`).
        query, candidate: ``[R]`` int64 ids; rank: ``[R]`` int (1 = most similar non-positive);
        similarity: ``[R]`` float32; positive_similarity: ``[R]`` float32 (NaN without a positive).
        ctx: the :class:`fnlab.posterior.PairContext` of the scan: with it the posterior sees every
            signal of each pair; without, only the similarity and the positive similarity.
        thresholds: ``[R]`` each row's query's ``window``-th unlabelled similarity (``window``: the
            posterior's), from the scan's own search; without it the context searches for them.

    Returns:
        DataFrame ``query, candidate, rank, similarity, positive_similarity, p_false_negative``, ``why``
        (the evidence behind P in words, for rows with P >= 0.05: :mod:`fnlab.posterior.reasons`).
    """
    from fnlab.posterior import PairSignals, prob_false_negative
    from fnlab.posterior.reasons import explain

    sims = np.ascontiguousarray(similarity, dtype=np.float32)
    best = np.ascontiguousarray(positive_similarity, dtype=np.float32)
    query = np.asarray(query, dtype=np.int64)
    candidate = np.asarray(candidate, dtype=np.int64)
    p_fn = np.empty(sims.shape, dtype=np.float32)
    why = np.full(sims.shape, "", dtype=object)
    for i in range(0, sims.size, TABLE_CHUNK_ROWS):  # signals are float64 [rows, m]: bound their memory
        part = slice(i, i + TABLE_CHUNK_ROWS)
        if ctx is not None:
            # the searched score, as written
            signals = ctx.signals(query[part], candidate[part], names=posterior.signals, similarity=sims[part])
            if thresholds is not None and signals.query_threshold is not None:
                signals.query_threshold = torch.from_numpy(np.asarray(thresholds[part], np.float64))
        else:
            signals = PairSignals.of(torch.from_numpy(sims[part]), torch.from_numpy(best[part]))
        p_fn[part] = prob_false_negative(posterior, signals).double().numpy()
        why[part] = explain(posterior, signals, probs=p_fn[part])
    return pd.DataFrame({
        "query": query,
        "candidate": candidate,
        "rank": np.asarray(rank, dtype=np.int32),
        "similarity": sims,
        "positive_similarity": best,
        "p_false_negative": p_fn,
        "why": why,
    })


def window_thresholds(scores: np.ndarray, window: int) -> np.ndarray:
    """``[Nq]`` each query's ``window``-th best unlabelled similarity from a scan's ``scores [Nq, k]``
    (``-inf`` where a query has fewer candidates; ``k`` below ``window``: every row is in the window)."""
    if scores.shape[1] < window:
        return np.full(scores.shape[0], -np.inf, dtype=np.float32)
    col = scores[:, window - 1]
    return np.where(np.isfinite(col), col, -np.inf).astype(np.float32)


def status_fields(post: Any) -> dict[str, Any]:
    """The summary's account of the posterior's calibration (every engine): ``status`` ("calibrated" or
    "uncalibrated: rank only"), ``status_reason``, ``calibration_window`` (each query's top candidates it
    is calibrated for; ``None``: not window-specific) and ``prior_window`` (the share of matches it puts
    among them, where it has one)."""
    out = {"status": post.status.label, "status_reason": post.status.reason, "calibration_window": post.window}
    prior_window = post.params().get("prior_window")
    if prior_window is not None:
        out["prior_window"] = float(prior_window)
    return out


# ---------------------------------------------------------------------------------------- scan
def announce_notes(pos: sp.csr_matrix, estimator: str, notes: list[str]) -> tuple[int, str]:
    """Add the note on queries without a labelled positive to ``notes`` and warn every note once
    (:class:`ScanWarning`), for every engine. Returns ``(queries without a positive, their policy)``."""
    no_pos = int((np.diff(pos.indptr) == 0).sum())
    policy = NO_POSITIVE_POLICY if estimator != "relative" else (
        "scanned, but their P(false negative) is NaN: the relative posterior is a function of s - s+")
    if no_pos:
        notes.append(f"{no_pos} of {pos.shape[0]} queries have no labelled positive; {policy}")
    for msg in notes:
        warnings.warn(msg, ScanWarning, stacklevel=3)
    return no_pos, policy


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


def _resolve_backend(device: str, index: str) -> tuple[str, str]:
    from fnlab.core.device import resolve_device

    dev = resolve_device(device)
    if index != "flat":
        if dev.type == "cuda" and device != "auto":
            raise ScanInputError(f"index {index!r} runs on the CPU (faiss-cpu); use --device cpu or --index flat")
        return "faiss", "cpu"
    if dev.type == "cuda":
        return "torch", str(dev)
    return "faiss", "cpu"


def scan(queries: np.ndarray | torch.Tensor, candidates: np.ndarray | torch.Tensor, positives: Any, *,
         top_k: int = 50, prior: Literal["auto"] | float = "auto", estimator: str = DEFAULT_ESTIMATOR, posterior: Any = None,
         device: str = "auto", chunk_size: int | None = None, normalize: bool = True,
         index: Literal["flat", "hnsw", "ivf"] = "flat", progress: bool = False,
         negative_sample: int = 100_000, seed: int = 0, names: Mapping[str, str] | None = None,
         index_params: Mapping[str, Any] | list[str] | None = None, recall_check: int = 0,
         engine: str = "local", query_texts: Any = None, candidate_texts: Any = None,
         text_encoder: str = "minilm", query_view: Any = None, candidate_view: Any = None,
         **engine_options: Any) -> ScanResult:
    """Flag suspected false negatives: each query's top-k non-positive candidates with P(FN).

    Args:
        queries: ``[Nq, d]`` float16/32/64 (captions, queries; B side).
        candidates: ``[Nc, d]`` float (images, documents; A side).
        positives: labelled pairs: DataFrame with integer columns ``query``, ``candidate``
            (several per query allowed), an integer array ``[P, 2]``, or a sparse ``[Nq, Nc]``.
        top_k: candidates kept per query (after removing its labelled positives).
        prior: P(pos) of an unlabelled pair, or ``"auto"`` to estimate it (module docstring).
        estimator: posterior estimator (:func:`fnlab.posterior.available`; default ``"pu"``), checked
            before any work.
        posterior: an already fitted posterior to apply instead of fitting one (``estimator`` and
            ``prior`` are then ignored), e.g. ``fnlab.posterior.from_params(run's posterior.json)``.
        device: ``"auto"`` (CUDA + torch matmul when present, else faiss on CPU), ``"cpu"``, ``"cuda"``.
        chunk_size: queries per search chunk (default 4096 for faiss; bounded by memory for torch).
        normalize: L2-normalise both sides first (cosine similarity).
        index: ``"flat"`` exact inner product, or approximate ``"hnsw"`` / ``"ivf"`` (faiss, CPU).
        progress: show a tqdm progress bar on stderr.
        negative_sample: size of the random sample of non-positive pairs (negative fit, prior).
        seed: seeds the random sample (and IVF training): equal seeds give equal results.
        names: file names for error messages, keys ``queries``, ``candidates``, ``positives``.
        index_params: parameters of the approximate index (``{"nprobe": 64}`` or ``["nprobe=64"]``;
            :data:`fnlab.retrieval.similarity.INDEX_PARAMS`: ``nlist``/``nprobe`` for ivf, ``M``/``efConstruction``/
            ``efSearch`` for hnsw).
        recall_check: measure recall@top_k of the index against exact search on this many sampled
            queries (seeded by ``seed``); the summary's ``recall_check`` holds it (0: not measured).
        engine: ``"local"`` (this process) or ``"ray"`` (:func:`fnlab.analysis.scale.ray_scan.ray_scan`: queries
            and candidates may also be folders of Parquet/.npy shards; ``engine_options`` such as
            ``out``, ``ray_address``, ``candidate_shards``, ``workers``, ``batch_size`` go there).
        query_texts, candidate_texts: one text per query / candidate row, where a side has text: the
            posterior then also reads near-duplicate texts and a second view of them (``text_encoder``:
            ``"minilm"``, the bundled all-MiniLM-L6-v2, or a local sentence-transformers folder). Texts that
            do not match the rows, or an encoder that cannot load: a note, and the scan runs without them.
        query_view, candidate_view: the second view as embeddings already computed (``[Nq, d']``,
            ``[Nc, d']``), instead of encoding texts (e.g. :func:`fnlab.data.minilm.dataset_text_view`).

    Returns:
        :class:`ScanResult` with ``table`` (sorted by query, then rank) and ``summary``.

    Raises:
        ScanInputError: mismatched dimensions, NaN/inf or all-zero rows, out-of-range or
            non-integer pair indices, empty input, fewer than 2 labelled pairs, bad options.

    Warns:
        ScanWarning: duplicate pairs or embedding rows, queries without labelled positives.

    Example:
        >>> rng = np.random.default_rng(0); c = rng.standard_normal((50, 8)); q = c[:10] + 0.1
        >>> res = scan(q, c, pd.DataFrame({"query": range(10), "candidate": range(10)}), top_k=3)
        >>> list(res.table.columns)[:4]
        ['query', 'candidate', 'rank', 'similarity']
    """
    if engine not in ENGINES:
        raise ScanInputError(f"unknown engine {engine!r}: expected one of {list(ENGINES)}")
    if engine == "ray":
        from fnlab.analysis.scale.ray_scan import ray_scan

        if any(v is not None for v in (query_texts, candidate_texts, query_view, candidate_view)):
            raise ScanInputError("texts (--texts) and text views: available with engine='local' only")
        return ray_scan(queries, candidates, positives, top_k=top_k, prior=prior, estimator=estimator,
                        posterior=posterior, normalize=normalize, index=index, index_params=index_params, recall_check=recall_check,
                        progress=progress, negative_sample=negative_sample, seed=seed, names=names,
                        chunk_size=chunk_size, device=device, **engine_options)
    if engine_options:
        raise ScanInputError(f"options {sorted(engine_options)} are for engine='ray' only")
    t0 = time.perf_counter()
    names = dict(names or {})
    if not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ScanInputError(f"top_k must be a positive integer, got {top_k!r}")
    if not isinstance(negative_sample, int | np.integer) or negative_sample < 2:
        raise ScanInputError(f"negative_sample must be an integer >= 2 (random unlabelled pairs that fit the "
                             f"negative distribution and the prior), got {negative_sample!r}")
    if posterior is None:
        try:
            check_estimator(estimator)
        except ValueError as err:
            raise ScanInputError(str(err)) from None
    prior, index_params = check_scan_options(prior, index, index_params)
    if not isinstance(recall_check, int | np.integer) or recall_check < 0:
        raise ScanInputError(f"recall_check must be a non-negative integer (queries), got {recall_check!r}")
    backend, dev = _resolve_backend(device, index)
    notes: list[str] = []

    q_raw = _check_embeddings(queries, "queries", names)
    c_raw = _check_embeddings(candidates, "candidates", names)
    if q_raw.shape[1] != c_raw.shape[1]:
        raise ScanInputError(f"dimension mismatch: {_where(names, 'queries')} has d={q_raw.shape[1]} but "
                             f"{_where(names, 'candidates')} has d={c_raw.shape[1]}; expected the same embedding size")
    nq, nc, d = q_raw.shape[0], c_raw.shape[0], q_raw.shape[1]
    top_k = min(int(top_k), nc)  # a query can never have more candidates than there are
    pos = _positives_matrix(positives, nq, nc, names, notes)
    for key, arr in (("queries", q_raw), ("candidates", c_raw)):
        dup = _duplicate_rows(arr)
        if dup:
            notes.append(f"{_where(names, key)}: {dup} row(s) duplicate an earlier row exactly")
    q = _prepare(q_raw, "queries", names, normalize)
    c = _prepare(c_raw, "candidates", names, normalize)
    del q_raw, c_raw

    no_pos, policy = announce_notes(pos, estimator, notes)
    texts = text_inputs(query_texts, candidate_texts, nq, nc, encoder=text_encoder, names=names, notes=notes)
    for side, view, n in (("query", query_view, nq), ("candidate", candidate_view, nc)):
        if view is not None:
            view = np.asarray(view)
            if view.ndim != 2 or view.shape[0] != n:
                raise ScanInputError(f"{side}_view: expected [{n}, d'] (one row per {side}), got {view.shape}")
            texts[f"{side}_view"] = view
    ctx = PairContext(q, c, pos, index=index if backend == "faiss" else "flat", index_params=index_params, seed=seed,
                      window=int(top_k), **texts)

    # --- search: chunked top-k without the labelled positives
    t_search = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=nq, desc="scanning queries", unit="q", dynamic_ncols=True)
    try:
        if backend == "torch":
            cs = chunk_size or max(1, min(DEFAULT_CHUNK_SIZE, (1 << 28) // max(nc, 1)))
            scores, idx = topk(q, c, top_k, exclude=pos, backend="torch", chunk_size=cs, device=dev,
                               progress=bar.update if bar else None)
        else:
            faiss_index = ctx.candidate_index()  # built once, shared with the fit (None: exact search)
            scores, idx = topk(q, None if faiss_index is not None else c, top_k, exclude=pos, backend="faiss",
                               chunk_size=chunk_size or DEFAULT_CHUNK_SIZE, index=faiss_index,
                               progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    t_search = time.perf_counter() - t_search
    # the fit's sample and the window's thresholds read this search instead of searching again
    ctx.set_topk(scores.shape[1], scores, idx)
    # --- the posterior: fitted here on labelled pairs and a stratified sample of unlabelled pairs
    # (fnlab.posterior.fit; its top stratum is the search's rows), or the one given (a run's), applied
    # to every signal of each pair
    t_fit = time.perf_counter()
    coo = pos.tocoo()
    pos_sims = _rowwise_dot(q, c, coo.row, coo.col)
    if pos_sims.size < 2:
        raise ScanInputError(f"{_where(names, 'positives')}: {pos_sims.size} labelled pair(s); "
                             "at least 2 are needed to fit the positive distribution")
    best_pos = np.full(nq, np.nan, dtype=np.float32)
    np.fmax.at(best_pos, coo.row, pos_sims)
    post, prior_method, estimator = scan_posterior(ctx, posterior, estimator, prior, seed, notes)
    t_fit = time.perf_counter() - t_fit
    rng = np.random.default_rng(seed)  # the summary's sample of unlabelled similarities (not the fit's)
    sq, sc = ctx.draw_unlabelled(int(negative_sample), rng)
    sample_sims = ctx.similarity(sq, sc)

    recall = None
    if recall_check:
        rq = np.sort(np.random.default_rng([seed, 1]).choice(nq, min(int(recall_check), nq), replace=False))
        exact = topk(q[rq], c, top_k, exclude=pos[rq], backend="faiss", chunk_size=DEFAULT_CHUNK_SIZE)[1]
        recall = {"queries": int(rq.size), "k": int(top_k), "recall_at_k": recall_at_k(idx[rq], exact),
                  "against": "exact inner-product search (faiss IndexFlatIP), labelled positives left out"}

    # --- table
    t_table = time.perf_counter()
    k = scores.shape[1]
    flat_idx = idx.ravel()
    keep = flat_idx >= 0
    query_col = np.repeat(np.arange(nq, dtype=np.int64), k)[keep]
    table = suspects_table(post, query_col, flat_idx[keep], np.tile(np.arange(1, k + 1, dtype=np.int32), nq)[keep],
                           scores.ravel()[keep], best_pos[query_col], ctx=ctx,
                           thresholds=window_thresholds(scores, ctx.window)[query_col])
    p_fn = table["p_false_negative"].to_numpy()
    t_table = time.perf_counter() - t_table

    params = {key: (float(v) if isinstance(v, int | float | np.floating) and not isinstance(v, bool) else v)
              for key, v in post.params().items()}
    summary: dict[str, Any] = {
        "queries_scanned": int(nq),
        "candidates": int(nc),
        "dim": int(d),
        "top_k": int(top_k),
        "rows": int(len(table)),
        "labelled_pairs": int(pos.nnz),
        "queries_without_positive": no_pos,
        "queries_without_positive_policy": policy,
        "suspects_above_0.5": int((p_fn > 0.5).sum()),
        "suspects_above_0.9": int((p_fn > 0.9).sum()),
        "queries_with_suspect_above_0.5": int(np.unique(query_col[p_fn > 0.5]).size),
        # queries whose scanned list holds fewer than top_k negatives (few candidates left after their positives)
        "too_few_negatives": int((idx < 0).any(axis=1).sum()),
        "estimator": estimator,
        "prior": prior if prior == "auto" else float(prior),
        "prior_estimated": float(post.prior_pos),
        **status_fields(post),
        "signals": list(post.signals),
        "text_view": [side for side in ("query", "candidate") if f"{side}_view" in texts],
        "prior_method": prior_method,
        "posterior": params,
        "negative_sample_size": int(sample_sims.size),
        "positive_similarity_mean": float(pos_sims.mean()),
        "sample_similarity_mean": float(sample_sims.mean()) if sample_sims.size else None,
        "normalized": bool(normalize),
        "index": index,
        "index_params": (index_description(faiss_index) if backend == "faiss" and index != "flat"
                         else {"kind": index}),
        "recall_check": recall,
        "engine": "local",
        "backend": backend,
        "device": dev,
        "seed": int(seed),
        "seconds": {"fit": round(t_fit, 4), "search": round(t_search, 4), "table": round(t_table, 4),
                    "total": round(time.perf_counter() - t0, 4)},
        "warnings": notes,
    }
    positive_pairs = pd.DataFrame({"query": coo.row.astype(np.int64), "candidate": coo.col.astype(np.int64),
                                   "similarity": pos_sims})
    return ScanResult(table=table, summary=summary, posterior=post, positive_pairs=positive_pairs, warnings=notes)


def scan_dataset(emb_a: np.ndarray | torch.Tensor, emb_b: np.ndarray | torch.Tensor, dataset, *,
                 text_view: bool = True, **kw) -> ScanResult:
    """:func:`scan` on a :class:`fnlab.data.base.MatchingDataset`: queries are B items (captions),
    candidates A items (images), positives the labelled pairs ``b_to_a``.

    Where the dataset has ground truth (``relevance``), the table gets a bool column
    ``is_relevant`` and the summary the share of suspects that are truly relevant
    (``precision_above_0.5``) and the share of false negatives inside the scanned top-k
    that score above 0.5 (``fn_recall_above_0.5_in_top_k``).

    Args:
        emb_a: ``[n_a, d]``; emb_b: ``[n_b, d]``; ``**kw``: options of :func:`scan`.
        text_view: where the captions have text, give the posterior their second view
            (:func:`fnlab.data.minilm.dataset_text_view`); with a given posterior, only if it reads one.

    Raises:
        ScanInputError: embedding rows do not match the dataset's item counts.
    """
    for key, emb, n in (("emb_a", emb_a, dataset.n_a), ("emb_b", emb_b, dataset.n_b)):
        if np.asarray(emb.shape)[0] != n:
            raise ScanInputError(f"{key}: {emb.shape[0]} rows but dataset {dataset.name!r} split "
                                 f"{dataset.split!r} has {n} items on that side; expected one row per item")
    positives = pd.DataFrame({"query": np.arange(dataset.n_b, dtype=np.int64), "candidate": dataset.b_to_a})
    kw.setdefault("names", {"queries": "emb_b", "candidates": "emb_a", "positives": f"dataset {dataset.name!r}"})
    given = kw.get("posterior")
    if text_view and kw.get("query_view") is None and (given is None or any(n.startswith("view_")
                                                                           for n in given.signals)):
        from fnlab.data.minilm import EncoderError, dataset_text_view

        try:  # the captions' second view (the shipped MiniLM embeddings of the *-precomp sets, never re-encoded)
            kw["query_view"] = dataset_text_view(dataset)
        except (EncoderError, ModuleNotFoundError, FileNotFoundError) as err:
            warnings.warn(f"{err}; the scan runs without the caption text view", ScanWarning, stacklevel=2)
    res = scan(emb_b, emb_a, positives, **kw)
    if dataset.relevance is not None:
        rel = sp.csr_matrix(dataset.relevance, dtype=bool)
        rel.sort_indices()
        t = res.table
        t["is_relevant"] = pair_member(rel, t["query"].to_numpy(), t["candidate"].to_numpy())
        sus = t["p_false_negative"].to_numpy() > 0.5
        fn_in = t["is_relevant"].to_numpy()
        res.summary["relevant_in_top_k"] = int(fn_in.sum())
        res.summary["false_negatives_total"] = int(rel.nnz - dataset.n_b)
        res.summary["precision_above_0.5"] = float(fn_in[sus].mean()) if sus.any() else None
        res.summary["fn_recall_above_0.5_in_top_k"] = float(sus[fn_in].mean()) if fn_in.any() else None
        res.summary["detection_in_top_k"] = detection_vs_similarity(
            fn_in, t["p_false_negative"].to_numpy(), t["similarity"].to_numpy())
    return res


def detection_vs_similarity(labels: np.ndarray, probs: np.ndarray, sims: np.ndarray) -> dict[str, Any]:
    """AUROC and AP of the posterior next to ranking by raw similarity, on the same pairs (ground truth).

    Shapes: ``[N]`` each. Returns ``{"posterior": {"auroc", "ap"}, "similarity": {...}, "ap_gain"}``
    (``None`` values where the pairs hold one class only).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels, dtype=np.int64)
    both = 0 < y.sum() < y.size

    def score(v: np.ndarray) -> dict[str, float | None]:
        v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=-1.0)
        return {"auroc": float(roc_auc_score(y, v)) if both else None,
                "ap": float(average_precision_score(y, v)) if both else None}

    post, raw = score(probs), score(sims)
    gain = None if post["ap"] is None else post["ap"] - raw["ap"]
    return {"posterior": post, "similarity": raw, "ap_gain": gain}


# ------------------------------------------------------------------------------------ exports
def triplets(result: ScanResult, *, threshold: float = 0.5, num_negatives: int = 3) -> pd.DataFrame:
    """Mined hard negatives with the suspects removed, in sentence-transformers' triplet layout.

    ``sentence_transformers.util.mine_hard_negatives(output_format="triplet")`` writes one row per
    (anchor, positive, negative) with columns ``anchor``, ``positive``, ``negative``; here they
    hold row indices (queries for ``anchor``, candidates for ``positive``/``negative``) plus the
    scores ``positive_score``, ``negative_score`` (cosine similarities to the anchor) and the
    negative's ``p_false_negative``. For every labelled pair, the ``num_negatives`` best-ranked
    scanned negatives with ``p_false_negative <= threshold`` are used (its "top" sampling).
    Anchors whose scanned negatives are all suspects get no row (as mine_hard_negatives drops
    anchors without enough valid negatives); ``out.attrs["too_few_negatives"]`` counts the anchors left
    with fewer than ``num_negatives``.

    Args:
        result: a :class:`ScanResult` (its ``table`` and ``positive_pairs``).
        threshold: suspects with ``p_false_negative > threshold`` are never used as negatives.
        num_negatives: negatives per (anchor, positive) pair.

    Returns:
        DataFrame ``[anchor, positive, negative, positive_score, negative_score, p_false_negative]``,
        sorted by anchor, positive, then the negative's rank.
    """
    if num_negatives < 1:
        raise ScanInputError(f"num_negatives must be >= 1, got {num_negatives}")
    if result.positive_pairs is None:
        raise ScanInputError("this ScanResult has no positive_pairs; run fnlab.analysis.scan.scan to get one")
    t = result.table
    neg = t[t["p_false_negative"] <= threshold]
    neg = neg.sort_values(["query", "rank"], kind="stable").groupby("query", sort=False).head(num_negatives)
    neg = neg.rename(columns={"query": "anchor", "candidate": "negative", "similarity": "negative_score"})
    pairs = result.positive_pairs.rename(columns={"query": "anchor", "candidate": "positive",
                                                  "similarity": "positive_score"})
    out = pairs.merge(neg[["anchor", "negative", "negative_score", "p_false_negative", "rank"]], on="anchor",
                      how="inner")
    out = out.sort_values(["anchor", "positive", "rank"], kind="stable").drop(columns="rank")
    # anchors left with fewer than num_negatives after the suspects were removed (mine_hard_negatives' count)
    short = int((neg.groupby("anchor").size().reindex(pairs["anchor"].unique(), fill_value=0) < num_negatives).sum())
    out = out[["anchor", "positive", "negative", "positive_score", "negative_score",
               "p_false_negative"]].reset_index(drop=True)
    out.attrs["too_few_negatives"] = short
    return out


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``df`` as parquet, csv or jsonl atomically (:func:`fnlab.core.files.write_table`).

    ``fmt`` defaults to the extension of ``path``. On any error no file is left at ``path``.
    """
    from fnlab.core import files

    p = Path(path)
    try:
        fmt = files.table_format(p, fmt)
    except ValueError as err:
        raise ScanInputError(str(err)) from None
    p.parent.mkdir(parents=True, exist_ok=True)
    return files.write_table(p, df, fmt)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN written as null: :func:`fnlab.core.files.write_json`)."""
    from fnlab.core import files

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return files.write_json(p, obj, indent=2)


def _jsonable(obj: Any) -> Any:
    from fnlab.core.files import to_jsonable

    return to_jsonable(obj)
