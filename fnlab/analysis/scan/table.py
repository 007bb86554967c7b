"""The scan's result: :class:`ScanResult`, the output table (:func:`suspects_table`, the one place a fitted
posterior is applied to scanned rows), detection against ground truth, and the exports (triplets, files).

Shared by both engines; imports neither.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fnlab.analysis.scan.inputs import ScanInputError

__all__ = [
    "ScanResult",
    "TABLE_CHUNK_ROWS",
    "suspects_table",
    "window_thresholds",
    "detection_vs_similarity",
    "triplets",
    "write_table",
    "write_json",
]


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


#: rows whose posterior is computed at once when the table is written (bounds the float64 signals)
TABLE_CHUNK_ROWS = 1 << 20


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
def triplets(result: ScanResult, *, threshold: float = 0.5, num_negatives: int = 3,
             query_texts: Sequence[str] | None = None, candidate_texts: Sequence[str] | None = None) -> pd.DataFrame:
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
        query_texts, candidate_texts: one text a query / candidate row, where the data have them: the rows then
            carry ``anchor_text`` / ``positive_text`` and ``negative_text`` beside the indices, the texts
            sentence-transformers trains on.

    Returns:
        DataFrame ``[anchor, positive, negative, positive_score, negative_score, p_false_negative]`` (plus the
        text columns where texts are given), sorted by anchor, positive, then the negative's rank.

    Raises:
        ScanInputError: texts that do not give one text to every query / candidate row the rows name.
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
    for texts, columns, side in ((query_texts, ("anchor",), "query"),
                                 (candidate_texts, ("positive", "negative"), "candidate")):
        if texts is None:
            continue
        texts = np.asarray(list(texts), dtype=object)
        for col in columns:
            idx = out[col].to_numpy()
            if len(idx) and int(idx.max()) >= len(texts):
                raise ScanInputError(f"{side} texts: {len(texts)} texts, but the triplets name {side} row "
                                     f"{int(idx.max())}; expected one text a {side} row")
            out[f"{col}_text"] = texts[idx] if len(idx) else np.empty(0, dtype=object)
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
