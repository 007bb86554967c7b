"""The single-machine engine of the scan (``scan(..., engine="local")``, the default): :func:`local_scan`.

Memory stays bounded: queries are searched in chunks (``fnlab.retrieval.similarity.topk``), the
``[Nq, Nc]`` matrix is never formed; peak memory is the float32 copies of the embeddings plus
one chunk plus the output table (``Nq * top_k`` rows).

Imports the shared parts (:mod:`~fnlab.analysis.scan.inputs`, :mod:`~fnlab.analysis.scan.fit`,
:mod:`~fnlab.analysis.scan.table`), never the Ray engine nor the package ``__init__``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fnlab.analysis.scan.fit import rowwise_dot, scan_posterior, status_fields
from fnlab.analysis.scan.inputs import (
    ScanInputError,
    announce_notes,
    check_embeddings,
    check_scan_options,
    duplicate_rows,
    input_name,
    positives_matrix,
    prepare_embeddings,
    text_inputs,
)
from fnlab.analysis.scan.table import ScanResult, suspects_table, window_thresholds
from fnlab.posterior import DEFAULT_ESTIMATOR, PairContext, check_estimator
from fnlab.retrieval.similarity import DEFAULT_CHUNK_SIZE, index_description, recall_at_k, topk

__all__ = ["local_scan"]


def local_scan(queries: np.ndarray | torch.Tensor, candidates: np.ndarray | torch.Tensor, positives: Any, *,
               top_k: int = 50, prior: Literal["auto"] | float = "auto", estimator: str = DEFAULT_ESTIMATOR,
               posterior: Any = None, device: str = "auto", chunk_size: int | None = None, normalize: bool = True,
               index: Literal["flat", "hnsw", "ivf"] = "flat", progress: bool = False,
               negative_sample: int = 100_000, seed: int = 0, names: Mapping[str, str] | None = None,
               index_params: Mapping[str, Any] | list[str] | None = None, recall_check: int = 0,
               query_texts: Any = None, candidate_texts: Any = None, text_encoder: str = "minilm",
               query_view: Any = None, candidate_view: Any = None) -> ScanResult:
    """The scan in this process; arguments, result and errors as :func:`fnlab.analysis.scan.scan` (which
    calls it for ``engine="local"``)."""
    t0 = time.perf_counter()
    names = dict(names or {})
    prior, index_params = _check_options(top_k, negative_sample, posterior, estimator, prior, index, index_params,
                                         recall_check)
    backend, dev = _resolve_backend(device, index)
    notes: list[str] = []
    q, c, pos, top_k = _read_inputs(queries, candidates, positives, top_k, names, normalize, notes)
    nq, nc = q.shape[0], c.shape[0]

    # warned at the caller of scan(): this function, then fnlab.analysis.scan.scan, then theirs
    no_pos, policy = announce_notes(pos, estimator, notes, stacklevel=4)
    texts = text_inputs(query_texts, candidate_texts, nq, nc, encoder=text_encoder, names=names, notes=notes,
                        stacklevel=4)
    _add_views(texts, query_view, candidate_view, nq, nc)
    ctx = PairContext(q, c, pos, index=index if backend == "faiss" else "flat", index_params=index_params, seed=seed,
                      window=int(top_k), **texts)

    # --- search: chunked top-k without the labelled positives
    scores, idx, faiss_index, t_search = _search(q, c, pos, ctx, top_k, backend, dev, chunk_size, progress)
    # the fit's sample and the window's thresholds read this search instead of searching again
    ctx.set_topk(scores.shape[1], scores, idx)
    # --- the posterior: fitted here on labelled pairs and a stratified sample of unlabelled pairs
    # (fnlab.posterior.fit; its top stratum is the search's rows), or the one given (a run's), applied
    # to every signal of each pair
    t_fit = time.perf_counter()
    coo = pos.tocoo()
    pos_sims = rowwise_dot(q, c, coo.row, coo.col)
    if pos_sims.size < 2:
        raise ScanInputError(f"{input_name(names, 'positives')}: {pos_sims.size} labelled pair(s); "
                             "at least 2 are needed to fit the positive distribution")
    best_pos = np.full(nq, np.nan, dtype=np.float32)
    np.fmax.at(best_pos, coo.row, pos_sims)
    post, prior_method, estimator = scan_posterior(ctx, posterior, estimator, prior, seed, notes)
    t_fit = time.perf_counter() - t_fit
    rng = np.random.default_rng(seed)  # the summary's sample of unlabelled similarities (not the fit's)
    sq, sc = ctx.draw_unlabelled(int(negative_sample), rng)
    sample_sims = ctx.similarity(sq, sc)
    recall = _recall(q, c, pos, idx, top_k, recall_check, seed)

    # --- table
    t_table = time.perf_counter()
    table, query_col = _table(post, ctx, scores, idx, best_pos)
    t_table = time.perf_counter() - t_table

    summary = _summary(table, query_col, idx, q, c, top_k, pos, no_pos, policy, estimator, prior, prior_method,
                       post, texts, sample_sims, pos_sims, normalize, index,
                       (index_description(faiss_index) if backend == "faiss" and index != "flat"
                        else {"kind": index}),
                       recall, backend, dev, seed, notes,
                       {"fit": round(t_fit, 4), "search": round(t_search, 4), "table": round(t_table, 4),
                        "total": round(time.perf_counter() - t0, 4)})
    positive_pairs = pd.DataFrame({"query": coo.row.astype(np.int64), "candidate": coo.col.astype(np.int64),
                                   "similarity": pos_sims})
    return ScanResult(table=table, summary=summary, posterior=post, positive_pairs=positive_pairs, warnings=notes)


# ------------------------------------------------------------------------------------ steps
def _check_options(top_k: Any, negative_sample: Any, posterior: Any, estimator: str, prior: Any, index: str,
                   index_params: Any, recall_check: Any) -> tuple[float | str, dict[str, Any]]:
    """The options, checked before any work. Returns the checked ``(prior, index_params)``."""
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
    return prior, index_params


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


def _read_inputs(queries: Any, candidates: Any, positives: Any, top_k: int, names: Mapping[str, str],
                 normalize: bool, notes: list[str]) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, int]:
    """Checked, float32 unit rows of both sides, the labelled pairs as CSR ``[Nq, Nc]`` and ``top_k`` capped
    at the number of candidates; duplicates noted in ``notes``."""
    q_raw = check_embeddings(queries, "queries", names)
    c_raw = check_embeddings(candidates, "candidates", names)
    if q_raw.shape[1] != c_raw.shape[1]:
        raise ScanInputError(f"dimension mismatch: {input_name(names, 'queries')} has d={q_raw.shape[1]} but "
                             f"{input_name(names, 'candidates')} has d={c_raw.shape[1]}; expected the same embedding size")
    nq, nc = q_raw.shape[0], c_raw.shape[0]
    top_k = min(int(top_k), nc)  # a query can never have more candidates than there are
    pos = positives_matrix(positives, nq, nc, names, notes)
    for key, arr in (("queries", q_raw), ("candidates", c_raw)):
        dup = duplicate_rows(arr)
        if dup:
            notes.append(f"{input_name(names, key)}: {dup} row(s) duplicate an earlier row exactly")
    q = prepare_embeddings(q_raw, "queries", names, normalize)
    c = prepare_embeddings(c_raw, "candidates", names, normalize)
    return q, c, pos, top_k


def _add_views(texts: dict[str, Any], query_view: Any, candidate_view: Any, nq: int, nc: int) -> None:
    """The second views given as embeddings, checked (one row per query / candidate), into ``texts``."""
    for side, view, n in (("query", query_view, nq), ("candidate", candidate_view, nc)):
        if view is not None:
            view = np.asarray(view)
            if view.ndim != 2 or view.shape[0] != n:
                raise ScanInputError(f"{side}_view: expected [{n}, d'] (one row per {side}), got {view.shape}")
            texts[f"{side}_view"] = view


def _search(q: np.ndarray, c: np.ndarray, pos: sp.csr_matrix, ctx: PairContext, top_k: int, backend: str,
            dev: str, chunk_size: int | None, progress: bool) -> tuple[np.ndarray, np.ndarray, Any, float]:
    """Chunked top-k of every query, labelled positives left out. Returns ``(scores [Nq, k], ids [Nq, k],
    the faiss index searched or None, seconds)``."""
    t_search = time.perf_counter()
    faiss_index = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=q.shape[0], desc="scanning queries", unit="q", dynamic_ncols=True)
    try:
        if backend == "torch":
            nc = c.shape[0]
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
    return scores, idx, faiss_index, time.perf_counter() - t_search


def _recall(q: np.ndarray, c: np.ndarray, pos: sp.csr_matrix, idx: np.ndarray, top_k: int, recall_check: int,
            seed: int) -> dict[str, Any] | None:
    """recall@top_k of the search against exact search on ``recall_check`` sampled queries (``None``: 0)."""
    if not recall_check:
        return None
    nq = q.shape[0]
    rq = np.sort(np.random.default_rng([seed, 1]).choice(nq, min(int(recall_check), nq), replace=False))
    exact = topk(q[rq], c, top_k, exclude=pos[rq], backend="faiss", chunk_size=DEFAULT_CHUNK_SIZE)[1]
    return {"queries": int(rq.size), "k": int(top_k), "recall_at_k": recall_at_k(idx[rq], exact),
            "against": "exact inner-product search (faiss IndexFlatIP), labelled positives left out"}


def _table(post: Any, ctx: PairContext, scores: np.ndarray, idx: np.ndarray,
           best_pos: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The searched rows (``-1`` ids dropped) -> the output table; also the rows' query column."""
    nq, k = scores.shape
    flat_idx = idx.ravel()
    keep = flat_idx >= 0
    query_col = np.repeat(np.arange(nq, dtype=np.int64), k)[keep]
    table = suspects_table(post, query_col, flat_idx[keep], np.tile(np.arange(1, k + 1, dtype=np.int32), nq)[keep],
                           scores.ravel()[keep], best_pos[query_col], ctx=ctx,
                           thresholds=window_thresholds(scores, ctx.window)[query_col])
    return table, query_col


def _summary(table, query_col, idx, q, c, top_k, pos, no_pos, policy, estimator, prior, prior_method, post, texts,
             sample_sims, pos_sims, normalize, index, index_info, recall, backend, dev, seed, notes,
             seconds) -> dict[str, Any]:
    p_fn = table["p_false_negative"].to_numpy()
    params = {key: (float(v) if isinstance(v, int | float | np.floating) and not isinstance(v, bool) else v)
              for key, v in post.params().items()}
    return {
        "queries_scanned": int(q.shape[0]),
        "candidates": int(c.shape[0]),
        "dim": int(q.shape[1]),
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
        "index_params": index_info,
        "recall_check": recall,
        "engine": "local",
        "backend": backend,
        "device": dev,
        "seed": int(seed),
        "seconds": seconds,
        "warnings": notes,
    }
