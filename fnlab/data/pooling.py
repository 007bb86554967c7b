"""Pooling bias, simulated: labels exist only where a weak retriever put the pair in the judged pool.

A test collection is judged by pooling (TREC; MS MARCO's annotators saw a BM25-based ranking): a pair is labelled
relevant only when it is relevant *and* a pooling retriever ranked the candidate high enough to be shown. The
relevant pairs the pool missed look exactly like negatives (Cai et al., "Hard Negatives or False Negatives:
Correcting Pooling Bias in Training Neural Ranking Models", CIKM 2022). :func:`apply_pooling` turns a dataset with
ground truth into its pooled version:

1. a weak retriever scores every (query, candidate) pair of the split (:func:`weak_scores`: the independent view's
   cosine plus Gaussian noise of standard deviation ``pooling_noise``, seeded);
2. each query's judged set is its top ``pooling_depth`` candidates;
3. its labels are the relevant candidates of the judged set (``relevance`` is the ground truth); a query whose judged
   set holds no relevant candidate has no label and leaves the split (as queries without a judged passage do);
4. a query with ``m`` labels becomes ``m`` rows, one per labelled candidate (fnlab's one-label-per-row layout), with
   ``b_meta["query_group"]``: rows of one group are one query, so each row's labelled candidate is a positive of its
   sibling rows (``fnlab.data.identity``), never a negative.

The dataset records the pooling in ``b_meta`` (one row per query row): ``judged`` (the judged candidate ids, best
first), ``pool_ranked`` (the retriever's top ``pooling_record`` ids, best first: the provenance a selection model
learns from) and ``query_group``. Ground truth (``relevance``) is kept for evaluation: the planted false negatives are
the relevant pairs outside the judged sets.

The weak retriever is MiniLM, as the guide model's view (:func:`caption_view_scores`): on ``shapes-precomp`` and
``digits-precomp`` a caption against an image's *other* captions (the shipped caption embeddings); on a ``pairs``
folder of sentence embeddings the two sides' own embeddings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["POOLING_DEFAULTS", "POOLING_KEYS", "apply_pooling", "caption_view_scores", "pooling_options",
           "weak_scores"]

#: the pooling options every loader with this option accepts (``pooling_depth = 0``: off)
POOLING_DEFAULTS = dict(pooling_depth=0, pooling_noise=0.05, pooling_record=100, pooling_seed=0)
POOLING_KEYS = tuple(POOLING_DEFAULTS)
#: built-in datasets whose caption inputs are MiniLM embeddings
MINILM_CAPTIONS = ("shapes-precomp", "digits-precomp")


def pooling_options(options: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a loader's ``options`` into (the rest, the pooling options with their defaults), checked.

    Raises:
        ValueError: a pooling option of the wrong type or range (naming it).
    """
    rest = {k: v for k, v in options.items() if k not in POOLING_DEFAULTS}
    pool = {**POOLING_DEFAULTS, **{k: v for k, v in options.items() if k in POOLING_DEFAULTS}}
    for key in ("pooling_depth", "pooling_record", "pooling_seed"):
        v = pool[key]
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer) or int(v) != v or int(v) < 0:
            raise ValueError(f"{where}: option {key!r} must be a non-negative integer, got {v!r}")
        pool[key] = int(v)
    v = pool["pooling_noise"]
    if isinstance(v, bool) or not isinstance(v, int | float | np.number) or float(v) < 0:
        raise ValueError(f"{where}: option 'pooling_noise' must be a number >= 0, got {v!r}")
    pool["pooling_noise"] = float(v)
    if pool["pooling_depth"] and pool["pooling_record"] < pool["pooling_depth"]:
        raise ValueError(f"{where}: option 'pooling_record' ({pool['pooling_record']}) must be at least "
                         f"'pooling_depth' ({pool['pooling_depth']})")
    return rest, pool


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def caption_view_scores(g_b: np.ndarray, g_a: np.ndarray | None, b_to_a: np.ndarray, n_a: int,
                        chunk: int = 2048) -> np.ndarray:
    """``[n_b, n_a]`` float32 scores of every (query, candidate) pair in one view, unit rows ``g_b [n_b, d]``:
    ``g_b[q] . g_a[a]`` where the candidate side has its own view, else the ``max`` over candidate ``a``'s labelled
    queries ``c != q`` of ``g_b[q] . g_b[c]`` (``-1`` for a candidate with no other query). Row chunks: never an
    ``[n_b, n_b]`` matrix at once."""
    g_b = _unit(g_b)
    n_b = g_b.shape[0]
    if g_a is not None:
        g_a = _unit(g_a)
        return np.concatenate([g_b[i:i + chunk] @ g_a.T for i in range(0, n_b, chunk)]).astype(np.float32)
    owner = np.asarray(b_to_a, dtype=np.int64)
    order = np.argsort(owner, kind="stable")  # queries grouped by their candidate
    groups, starts = np.unique(owner[order], return_index=True)
    out = np.full((n_b, n_a), -1.0, dtype=np.float32)
    for i in range(0, n_b, chunk):
        rows = np.arange(i, min(i + chunk, n_b))
        s = g_b[rows] @ g_b.T
        s[np.arange(len(rows)), rows] = -np.inf  # a query is no evidence about its own candidate
        out[np.ix_(rows, groups)] = np.maximum(np.maximum.reduceat(s[:, order], starts, axis=1), -1.0)
    return out


def weak_scores(ds: Any) -> np.ndarray:
    """``[n_b, n_a]`` the pooling retriever's scores before noise (module docstring).

    Raises:
        ValueError: the dataset offers no such view.
    """
    if ds.name in MINILM_CAPTIONS and ds.b_kind == "features":
        return caption_view_scores(ds.b_inputs, None, ds.b_to_a, ds.n_a)
    if (ds.a_kind == ds.b_kind == "features" and ds.a_inputs is not None
            and ds.a_inputs.shape[1] == ds.b_inputs.shape[1]):
        return caption_view_scores(ds.b_inputs, ds.a_inputs, ds.b_to_a, ds.n_a)
    raise ValueError(f"pooling: dataset {ds.name!r} has no view for a pooling retriever (its two sides must be "
                     "embeddings of one space, or MiniLM captions)")


def apply_pooling(ds: Any, *, pooling_depth: int, pooling_noise: float = 0.05, pooling_record: int = 100,
                  pooling_seed: int = 0) -> Any:
    """The pooled version of one split ``ds`` (module docstring); ``ds`` itself when ``pooling_depth`` is 0.

    Raises:
        ValueError: no ground truth, or no query keeps a label.
    """
    if not pooling_depth:
        return ds
    if ds.relevance is None:
        raise ValueError(f"pooling: dataset {ds.name!r} has no ground truth (relevance) to pool")
    scores = weak_scores(ds)
    rng = np.random.default_rng([int(pooling_seed), 17])
    if pooling_noise > 0:
        scores = scores + rng.normal(0.0, pooling_noise, size=scores.shape).astype(np.float32)
    record = min(int(pooling_record), ds.n_a)
    top = np.argpartition(-scores, record - 1, axis=1)[:, :record]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(top, order, axis=1)  # [n_b, record] best first
    judged = ranked[:, :pooling_depth]
    rel = sp.csr_matrix(ds.relevance, dtype=bool)
    hit = np.asarray(rel[np.repeat(np.arange(ds.n_b), judged.shape[1]), judged.ravel()]).reshape(judged.shape)
    rows, cols = np.nonzero(hit)  # row-major: queries in order, labels best-ranked first
    if not rows.size:
        raise ValueError(f"pooling: no query of {ds.name!r} has a relevant candidate in its top {pooling_depth}")
    labelled = judged[rows, cols]
    b_meta = ds.b_meta.iloc[rows].reset_index(drop=True) if len(ds.b_meta) else pd.DataFrame(index=range(rows.size))
    b_meta["query_group"] = rows.astype(np.int64)
    b_meta["judged"] = list(judged[rows])
    b_meta["pool_ranked"] = list(ranked[rows])
    return replace(ds, b_to_a=labelled.astype(np.int64), b_inputs=None if ds.b_inputs is None else ds.b_inputs[rows],
                   relevance=rel[rows], b_meta=b_meta, b_ids=np.asarray(ds.b_ids)[rows])
