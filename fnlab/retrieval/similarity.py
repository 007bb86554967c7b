"""Similarities and exact (or approximate) top-k retrieval, chunked and device-aware.

Everything in fnlab that ranks candidates for a query (evaluation recall, the false-negative
scan, kNN graphs for UMAP) goes through :func:`topk`. Similarities are inner products; on
L2-normalised rows (:func:`normalize`) they are cosine similarities, as in FNE (Li et al.,
ACM MM 2023, Sec. 3), which scores image-text pairs by the cosine of their embeddings.

Two backends give the same exact result (up to the order of tied scores):

- ``"faiss"`` (default): ``faiss.IndexFlatIP``, exhaustive inner-product search on CPU with
  BLAS; or any prebuilt faiss index passed as ``index=`` (see :func:`build_index` for the
  approximate HNSW / IVF options, meant for millions of candidates).
- ``"torch"``: chunked ``queries @ keys.T`` followed by ``torch.topk``, on CUDA when present.

Memory is bounded by the keys plus one chunk: the ``[Nq, Nk]`` matrix is never formed.

Labelled positives are left out of the ranking with ``exclude``: a sparse ``[Nq, Nk]`` matrix
(or one array of key indices per query). The faiss backend searches ``k + m`` neighbours,
where ``m`` is the largest number of excluded keys of any query in the chunk, and filters;
the torch backend sets excluded similarities to ``-inf`` before ``topk``. Rows with fewer
than ``k`` remaining candidates are padded with score ``-inf`` and index ``-1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

Backend = Literal["faiss", "torch"]
IndexKind = Literal["flat", "hnsw", "ivf"]

DEFAULT_CHUNK_SIZE = 4096

__all__ = [
    "normalize",
    "topk",
    "build_index",
    "as_exclude_matrix",
    "INDEX_PARAMS",
    "index_params",
    "index_description",
    "merge_topk",
    "recall_at_k",
    "DEFAULT_CHUNK_SIZE",
]


def normalize(x: np.ndarray | torch.Tensor, *, eps: float = 1e-12) -> np.ndarray | torch.Tensor:
    """L2-normalise the rows of ``x`` (``[..., d]``), numpy or torch; returns the same type.

    The one row normalisation of fnlab (the encoders' outputs, the scan's inputs, the app's sides,
    the maps).

    * torch: ``x / max(||x||, eps)``, differentiable (the encoders call it in their forward pass;
      the same arithmetic as ``torch.nn.functional.normalize``); keeps the dtype (float16 and
      bfloat16 are computed in float32 and cast back; integers come back float32).
    * numpy: a new C-contiguous array, float64 for float64 input and float32 otherwise, computed in
      blocks of 65,536 rows: each row is divided by its largest absolute entry before the squared
      norm, so rows like ``1e20 * v`` or ``1e-30 * v`` neither overflow nor underflow. All-zero rows
      stay zero. The input is not modified.

    Example:
        >>> normalize(np.array([[3.0, 4.0]], dtype=np.float32))
        array([[0.6, 0.8]], dtype=float32)
    """
    if isinstance(x, torch.Tensor):
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        if not work.is_floating_point():
            work = work.float()
        out = work / work.norm(dim=-1, keepdim=True).clamp_min(eps)
        return out.to(x.dtype) if x.is_floating_point() else out
    arr = np.asarray(x)
    out = np.array(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32, order="C", copy=True)
    rows = out.reshape(-1, out.shape[-1]) if out.ndim != 2 else out  # a view: edited in place
    step = 65536
    for s in range(0, rows.shape[0], step):
        block = rows[s:s + step]
        scale = np.abs(block).max(axis=1) if block.shape[1] else np.zeros(block.shape[0], block.dtype)
        block /= np.where(scale == 0, 1, scale)[:, None]
        block /= np.maximum(np.sqrt(np.einsum("ij,ij->i", block, block)), eps)[:, None]
    return out


# --------------------------------------------------------------------------- helpers
def _as_float_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, d], got shape {tuple(t.shape)}")
    return t.float() if t.dtype != torch.float32 else t


def _as_float32_numpy(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, d], got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_pair(qshape: Sequence[int], kshape: Sequence[int], qname: str, kname: str) -> None:
    if qshape[1] != kshape[1]:
        raise ValueError(
            f"dimension mismatch: {qname} has d={qshape[1]} but {kname} has d={kshape[1]}; "
            "both must be embeddings of the same size"
        )


def as_exclude_matrix(exclude: sp.spmatrix | Sequence[np.ndarray] | None, n_queries: int,
                      n_keys: int) -> sp.csr_matrix | None:
    """Turn ``exclude`` (sparse ``[Nq, Nk]`` or one index array per query) into a canonical CSR.

    Raises:
        ValueError: wrong shape, wrong length, or key indices outside ``[0, n_keys)``.
    """
    if exclude is None:
        return None
    if sp.issparse(exclude):
        if exclude.shape != (n_queries, n_keys):
            raise ValueError(f"exclude has shape {exclude.shape}, expected ({n_queries}, {n_keys}) = [Nq, Nk]")
        mat = sp.csr_matrix(exclude, dtype=bool, copy=True)
    else:
        rows = list(exclude)
        if len(rows) != n_queries:
            raise ValueError(f"exclude has {len(rows)} rows, expected one array of key indices per query ({n_queries})")
        lengths = np.array([len(np.atleast_1d(r)) for r in rows], dtype=np.int64)
        cols = (np.concatenate([np.atleast_1d(np.asarray(r, dtype=np.int64)) for r in rows])
                if lengths.sum() else np.zeros(0, dtype=np.int64))
        if cols.size and (cols.min() < 0 or cols.max() >= n_keys):
            raise ValueError(f"exclude holds key indices outside [0, {n_keys}) (min {cols.min()}, max {cols.max()})")
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        mat = sp.csr_matrix((np.ones(cols.size, dtype=bool), cols, indptr), shape=(n_queries, n_keys))
    mat.sum_duplicates()
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat


def _filter_excluded(scores: np.ndarray, idx: np.ndarray, excl_rows: sp.csr_matrix,
                     k: int, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop excluded (row, key) pairs from a ``[B, k']`` result and keep the first ``k`` per row."""
    b = scores.shape[0]
    valid = idx >= 0
    if excl_rows.nnz:
        row_of = np.repeat(np.arange(b, dtype=np.int64), np.diff(excl_rows.indptr))
        excl_keys = row_of * n_keys + excl_rows.indices.astype(np.int64)  # sorted: CSR rows, sorted cols
        cand_keys = np.arange(b, dtype=np.int64)[:, None] * n_keys + np.where(valid, idx, 0)
        pos = np.searchsorted(excl_keys, cand_keys)
        pos = np.minimum(pos, excl_keys.size - 1)
        valid &= excl_keys[pos] != cand_keys
    # stable sort puts valid entries first, keeping their score order
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    out_s = np.take_along_axis(scores, order, axis=1)
    out_i = np.take_along_axis(idx, order, axis=1)
    keep = np.take_along_axis(valid, order, axis=1)
    out_s = np.where(keep, out_s, -np.inf).astype(np.float32)
    out_i = np.where(keep, out_i, -1).astype(np.int64)
    if out_s.shape[1] < k:  # fewer keys than k: pad
        pad = k - out_s.shape[1]
        out_s = np.concatenate([out_s, np.full((b, pad), -np.inf, np.float32)], axis=1)
        out_i = np.concatenate([out_i, np.full((b, pad), -1, np.int64)], axis=1)
    return out_s, out_i


# --------------------------------------------------------------------------- indexes
#: Documented parameters of the approximate indexes: name -> (default, minimum, help).
#: ``nlist``'s default ``None`` means ``4 * sqrt(Nk)`` cells (faiss' rule of thumb, at least 39 keys a cell).
INDEX_PARAMS: dict[str, dict[str, tuple[int | None, int, str]]] = {
    "flat": {},
    "hnsw": {
        "M": (32, 2, "links per node of the HNSW graph (memory ~ Nk * M * 8 bytes on top of the vectors)"),
        "efConstruction": (80, 1, "candidate list while building the graph (build time, graph quality)"),
        "efSearch": (128, 1, "candidate list while searching (recall against speed; at least k is used)"),
    },
    "ivf": {
        "nlist": (None, 1, "k-means cells the keys are split into (default 4 * sqrt(Nk), at most Nk / 39)"),
        "nprobe": (32, 1, "cells searched per query (recall against speed; at most nlist)"),
    },
}


def index_params(kind: str, params: Mapping[str, object] | Sequence[str] | None = None) -> dict[str, int | None]:
    """Validate the parameters of an index and fill in the defaults of :data:`INDEX_PARAMS`.

    Args:
        kind: ``"flat"``, ``"hnsw"`` or ``"ivf"``.
        params: a mapping ``{"nprobe": 32}`` or ``KEY=VALUE`` strings (``["nprobe=32"]``, as the
            command line's ``--index-param``); unknown keys, values that are not integers, or values
            below the minimum are refused. Names are matched case-insensitively (``efsearch``).

    Returns:
        every parameter of ``kind`` with its value (defaults where not given).

    Raises:
        ValueError: unknown kind, unknown parameter, non-integer value, value below its minimum.

    Example:
        >>> index_params("ivf", ["nprobe=8"])
        {'nlist': None, 'nprobe': 8}
    """
    if kind not in INDEX_PARAMS:
        raise ValueError(f"unknown index kind {kind!r}: expected one of {sorted(INDEX_PARAMS)}")
    spec = INDEX_PARAMS[kind]
    given: dict[str, object] = {}
    if params is not None:
        if isinstance(params, Mapping):
            given = dict(params)
        else:
            for item in params:
                if not isinstance(item, str) or "=" not in item:
                    raise ValueError(f"index parameter {item!r}: expected KEY=VALUE, e.g. nprobe=32")
                key, value = item.split("=", 1)
                given[key.strip()] = value.strip()
    by_lower = {name.lower(): name for name in spec}
    out: dict[str, int | None] = {name: default for name, (default, _, _) in spec.items()}
    for key, value in given.items():
        name = by_lower.get(str(key).lower())
        if name is None:
            allowed = ", ".join(spec) if spec else "none (exact search has no parameters)"
            raise ValueError(f"unknown parameter {key!r} for index {kind!r}; expected: {allowed}")
        try:
            as_int = int(str(value)) if not isinstance(value, int | np.integer) else int(value)
        except ValueError:
            raise ValueError(f"index parameter {name}={value!r}: expected an integer") from None
        if isinstance(value, float) and value != as_int:
            raise ValueError(f"index parameter {name}={value!r}: expected an integer")
        low = spec[name][1]
        if as_int < low:
            raise ValueError(f"index parameter {name}={as_int}: expected an integer >= {low}")
        out[name] = as_int
    return out


#: Keys sampled per k-means cell to train an ivf index. faiss warns below 39 and caps at 256; k-means
#: cost grows with the sample, and 64 a cell places the centroids as well as 256 for search (the
#: recall of ``bench/scan_scale.py million`` is measured with it).
IVF_TRAIN_PER_CELL = 64


def build_index(keys: np.ndarray | torch.Tensor, kind: IndexKind = "flat", *,
                params: Mapping[str, object] | Sequence[str] | None = None, hnsw_m: int | None = None,
                ef_construction: int | None = None, ef_search: int | None = None, nlist: int | None = None,
                nprobe: int | None = None, seed: int = 0):
    """Build a faiss inner-product index over ``keys`` ``[Nk, d]`` (float32 copy).

    Args:
        kind: ``"flat"`` exact (``IndexFlatIP``); ``"hnsw"`` approximate graph index
            (``IndexHNSWFlat``, Malkov & Yashunin, TPAMI 2020, inner-product metric; parameters
            ``M``, ``efConstruction``, ``efSearch``); ``"ivf"`` approximate inverted lists
            (``IndexIVFFlat``, Jegou et al., TPAMI 2011: ``nlist`` k-means cells trained with
            ``seed`` on a sample of at most :data:`IVF_TRAIN_PER_CELL` keys a cell, searching the ``nprobe`` nearest cells).
        params: parameters of :data:`INDEX_PARAMS` (mapping or ``KEY=VALUE`` strings), validated
            by :func:`index_params`. The keyword arguments ``hnsw_m``, ``ef_construction``,
            ``ef_search``, ``nlist``, ``nprobe`` are older spellings of the same.

    Returns:
        a faiss index holding the keys, usable as ``topk(..., index=...)``.

    Raises:
        ValueError: unknown kind or parameter, bad value, empty keys.
    """
    import faiss

    legacy = {"M": hnsw_m, "efConstruction": ef_construction, "efSearch": ef_search, "nlist": nlist,
              "nprobe": nprobe}
    merged = dict(params) if isinstance(params, Mapping) else dict(index_params(kind, params)) if params else {}
    merged = {key: value for key, value in merged.items() if value is not None}
    for key, value in legacy.items():
        if value is not None and key in INDEX_PARAMS.get(kind, {}):
            merged.setdefault(key, value)
    p = index_params(kind, merged)
    arr = _as_float32_numpy(keys, "keys")
    n, d = arr.shape
    if n == 0:
        raise ValueError("keys is empty: cannot build an index over 0 candidates")
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, p["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = p["efConstruction"]
        index.hnsw.efSearch = p["efSearch"]
    else:  # ivf
        cells = p["nlist"] if p["nlist"] is not None else int(4 * np.sqrt(n))
        cells = int(max(1, min(cells, n // 39 if n >= 39 else 1)))  # faiss wants >= 39 points per cell
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        cap = IVF_TRAIN_PER_CELL * cells
        train = arr if n <= cap else arr[np.sort(rng.choice(n, cap, replace=False))]
        index.train(train)
        index.nprobe = min(p["nprobe"], cells)
    index.add(arr)
    return index


def index_description(index) -> dict[str, object]:
    """The parameters a built faiss index actually uses (``nlist`` after clipping, etc.), for summaries."""
    import faiss

    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexHNSW):
        return {"kind": "hnsw", "M": int(base.hnsw.nb_neighbors(1)), "efConstruction": int(base.hnsw.efConstruction),
                "efSearch": int(base.hnsw.efSearch)}
    if isinstance(base, faiss.IndexIVF):
        return {"kind": "ivf", "nlist": int(base.nlist), "nprobe": int(base.nprobe)}
    return {"kind": "flat"}


def merge_topk(scores_a: np.ndarray, idx_a: np.ndarray, scores_b: np.ndarray, idx_b: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact merge of two top-k lists of the same queries (e.g. from two candidate shards).

    The k best of the union of the two lists are the k best overall, because each list holds
    its shard's k best. Ties keep list ``a`` first (then the order within each list), so merging
    shards in order reproduces a single search up to the order of tied scores. Padding
    (index ``-1``, score ``-inf``) sorts last.

    Args:
        scores_a, idx_a: ``[B, ka]`` float32 / int64 (global key indices), decreasing scores.
        scores_b, idx_b: ``[B, kb]``.
        k: entries kept per row.

    Returns:
        ``(scores [B, k], indices [B, k])``.
    """
    s = np.concatenate([scores_a, scores_b], axis=1)
    i = np.concatenate([idx_a, idx_b], axis=1)
    key = np.where(i >= 0, s, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")[:, :k]
    out_s = np.take_along_axis(key, order, axis=1).astype(np.float32)
    out_i = np.take_along_axis(i, order, axis=1).astype(np.int64)
    out_i[~np.isfinite(out_s)] = -1
    if out_s.shape[1] < k:
        pad = k - out_s.shape[1]
        out_s = np.concatenate([out_s, np.full((s.shape[0], pad), -np.inf, np.float32)], axis=1)
        out_i = np.concatenate([out_i, np.full((s.shape[0], pad), -1, np.int64)], axis=1)
    return out_s, out_i


def recall_at_k(approx_idx: np.ndarray, exact_idx: np.ndarray) -> float:
    """recall@k of an approximate search: the share of the exact top-k found in the approximate top-k.

    ``sum_q |A_q & E_q| / sum_q |E_q|`` over queries, with padding (``-1``) ignored; the usual
    definition of ANN benchmarks (Aumuller et al., ann-benchmarks, 2020).

    Args:
        approx_idx: ``[Nq, k]`` int indices from the approximate index; exact_idx: ``[Nq, k]``.

    Returns:
        recall in [0, 1] (1.0 when the exact lists are all padding).
    """
    a = np.asarray(approx_idx, dtype=np.int64)
    e = np.asarray(exact_idx, dtype=np.int64)
    if a.shape[0] != e.shape[0]:
        raise ValueError(f"approx_idx has {a.shape[0]} rows but exact_idx has {e.shape[0]}")
    found = total = 0
    for row_a, row_e in zip(a, e, strict=True):
        want = row_e[row_e >= 0]
        total += want.size
        found += int(np.isin(want, row_a[row_a >= 0]).sum())
    return 1.0 if total == 0 else found / total


# --------------------------------------------------------------------------- top-k
def topk(queries: np.ndarray | torch.Tensor, keys: np.ndarray | torch.Tensor | None, k: int, *,
         exclude: sp.spmatrix | Sequence[np.ndarray] | None = None, backend: Backend = "faiss",
         chunk_size: int = DEFAULT_CHUNK_SIZE, index=None, device: str | torch.device = "auto",
         progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` keys of every query by inner product, leaving out excluded pairs.

    Args:
        queries: ``[Nq, d]`` float (numpy or torch; float16/32/64). Not normalised here:
            call :func:`normalize` first for cosine similarity.
        keys: ``[Nk, d]`` float, or ``None`` when ``index`` is given.
        k: neighbours per query (``k > Nk`` is allowed; the rest is padding).
        exclude: pairs removed from the ranking (labelled positives): sparse ``[Nq, Nk]`` or one
            array of key indices per query.
        backend: ``"faiss"`` (exact ``IndexFlatIP``, or ``index``) or ``"torch"`` (chunked matmul).
        chunk_size: queries per chunk; memory is ``O(Nk d + chunk_size * Nk)`` for torch and
            ``O(Nk d + chunk_size * (k + max excluded))`` for faiss.
        index: a prebuilt faiss index over the keys (:func:`build_index`); faiss backend only.
        device: torch backend only: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        progress: called with the number of queries done after each chunk.

    Returns:
        ``(scores, indices)``: numpy ``[Nq, k]`` float32 in decreasing order and ``[Nq, k]``
        int64; padding is ``-inf`` / ``-1``. Tied scores may come in either order.

    Raises:
        ValueError: shapes or dimensions disagree, ``k < 1``, unknown backend, bad ``exclude``.

    Example:
        >>> q = normalize(np.eye(3, dtype=np.float32)); s, i = topk(q, q, 1, exclude=[[0], [1], [2]])
        >>> i.shape, bool((i[:, 0] != np.arange(3)).all())
        ((3, 1), True)
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if backend not in ("faiss", "torch"):
        raise ValueError(f"unknown backend {backend!r}: expected 'faiss' or 'torch'")
    if keys is None and index is None:
        raise ValueError("give keys or a prebuilt index")
    if index is not None and backend != "faiss":
        raise ValueError("index= is a faiss index: use backend='faiss'")
    if backend == "faiss":
        return _topk_faiss(queries, keys, k, exclude, chunk_size, index, progress)
    return _topk_torch(queries, keys, k, exclude, chunk_size, device, progress)


def _topk_faiss(queries, keys, k, exclude, chunk_size, index, progress):
    import faiss

    q = _as_float32_numpy(queries, "queries")
    if index is None:
        kk = _as_float32_numpy(keys, "keys")
        _check_pair(q.shape, kk.shape, "queries", "keys")
        index = faiss.IndexFlatIP(kk.shape[1])
        if kk.shape[0]:
            index.add(kk)
    elif q.shape[1] != index.d:
        raise ValueError(f"dimension mismatch: queries have d={q.shape[1]} but the index has d={index.d}")
    nq, nk = q.shape[0], int(index.ntotal)
    excl = as_exclude_matrix(exclude, nq, nk)
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    indices = np.full((nq, k), -1, dtype=np.int64)
    if nk == 0:
        return scores, indices
    for start in range(0, nq, chunk_size):
        stop = min(start + chunk_size, nq)
        rows = excl[start:stop] if excl is not None else None
        extra = int(np.diff(rows.indptr).max()) if rows is not None and rows.nnz else 0
        search_k = min(k + extra, nk)
        s, i = index.search(q[start:stop], search_k)
        if rows is not None and rows.nnz or search_k < k or (i < 0).any():
            s, i = _filter_excluded(s, i, rows if rows is not None else sp.csr_matrix((stop - start, nk), dtype=bool),
                                    k, nk)
        scores[start:stop], indices[start:stop] = s[:, :k], i[:, :k]
        if progress is not None:
            progress(stop - start)
    return scores, indices


def _topk_torch(queries, keys, k, exclude, chunk_size, device, progress):
    from fnlab.core.device import resolve_device

    dev = resolve_device(device)
    q = _as_float_tensor(queries, "queries")
    kt = _as_float_tensor(keys, "keys").to(dev)
    _check_pair(q.shape, kt.shape, "queries", "keys")
    nq, nk = q.shape[0], kt.shape[0]
    excl = as_exclude_matrix(exclude, nq, nk)
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    indices = np.full((nq, k), -1, dtype=np.int64)
    if nk == 0:
        return scores, indices
    kk = min(k, nk)
    with torch.no_grad():
        for start in range(0, nq, chunk_size):
            stop = min(start + chunk_size, nq)
            sims = q[start:stop].to(dev) @ kt.T  # [B, Nk]
            if excl is not None:
                rows = excl[start:stop]
                if rows.nnz:
                    r = np.repeat(np.arange(stop - start), np.diff(rows.indptr))
                    sims[torch.from_numpy(r).to(dev), torch.from_numpy(rows.indices.astype(np.int64)).to(dev)] = -torch.inf
            s, i = torch.topk(sims, kk, dim=1)
            s_np = s.cpu().numpy().astype(np.float32)
            i_np = i.cpu().numpy().astype(np.int64)
            i_np[~np.isfinite(s_np)] = -1  # excluded entries that had to fill the top-k
            s_np[i_np < 0] = -np.inf
            scores[start:stop, :kk], indices[start:stop, :kk] = s_np, i_np
            if progress is not None:
                progress(stop - start)
    return scores, indices
