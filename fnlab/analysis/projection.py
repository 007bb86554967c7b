"""2-D maps of embeddings: UMAP on the exact faiss kNN graph, cached on disk.

UMAP's own nearest-neighbour search (pynndescent) is the slow, compile-heavy part of a first fit.
fnlab already has exact inner-product neighbours from faiss, so :func:`umap_2d` hands UMAP that graph
(``precomputed_knn``; column 0 is the point itself, distance ``1 - cosine``) and skips that step. The
README's app figures give the times measured.

Results are cached on disk under a hash of the embeddings and the parameters, so a map is computed
once per run and reused across sessions. ``umap`` is imported lazily: importing fnlab stays fast.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fnlab.core.files import atomic_write
from fnlab.retrieval.similarity import normalize


def default_cache_dir() -> Path:
    """``$FNLAB_CACHE/umap`` (default ``.fnlab_cache/umap``), read at call time."""
    return Path(os.environ.get("FNLAB_CACHE", ".fnlab_cache")) / "umap"


def knn_graph(emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of every row among all rows (faiss inner product on unit vectors).

    Returns:
        ``(indices [N, k] int64, distances [N, k] float32)`` with column 0 the point itself (distance 0)
        and ``distance = 1 - cosine`` clipped at 0, the layout UMAP's ``precomputed_knn`` expects.
    """
    import faiss

    x = normalize(np.asarray(emb, dtype=np.float32))
    n = x.shape[0]
    k = min(k, n)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = index.search(x, k)
    # With duplicate rows faiss may list a twin before the point itself: put self first.
    rows = np.arange(n)
    not_first = idx[:, 0] != rows
    if not_first.any():
        for r in np.flatnonzero(not_first):
            others = [j for j in idx[r] if j != r][: k - 1]
            idx[r] = [r, *others]
            sims[r] = [1.0, *(x[others] @ x[r]).tolist()]
    dists = np.clip(1.0 - sims, 0.0, None).astype(np.float32)
    dists[:, 0] = 0.0
    return idx.astype(np.int64), dists


def _cache_key(emb: np.ndarray, params: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    a = np.ascontiguousarray(emb, dtype=np.float32)
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
    h.update(repr(sorted(params.items())).encode())
    return h.hexdigest()[:32]


def _cache_path(emb: np.ndarray, k: int, random_state: int | None, min_dist: float,
                cache_dir: str | os.PathLike | None) -> Path | None:
    if isinstance(cache_dir, str) and cache_dir == "auto":
        cache_dir = default_cache_dir()
    if cache_dir is None:
        return None
    params = {"n_neighbors": k, "random_state": random_state, "min_dist": float(min_dist), "v": 1}
    return Path(cache_dir) / f"{_cache_key(emb, params)}.npy"


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    try:
        out = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged cache file is recomputed and replaced
    return out if out.shape == (n, 2) else None


def cached_umap(emb: np.ndarray, *, n_neighbors: int = 15, random_state: int | None = None, min_dist: float = 0.1,
                cache_dir: str | os.PathLike | None = "auto") -> np.ndarray | None:
    """The map :func:`umap_2d` would return with these arguments if it is on disk already, else ``None``
    (never computes anything: a page can show :func:`pca_2d` meanwhile)."""
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] < 3:
        return None
    k = int(max(2, min(n_neighbors, emb.shape[0] - 1)))
    path = _cache_path(emb, k, random_state, min_dist, cache_dir)
    return _load_cached(path, emb.shape[0]) if path is not None and path.exists() else None


def pca_2d(emb: np.ndarray) -> np.ndarray:
    """``[N, 2]`` float32 projection of the unit-normalised rows on their two principal axes (instant; a stand-in
    while UMAP computes). Signs are fixed so the largest coordinate of each axis is positive."""
    x = normalize(np.asarray(emb, dtype=np.float32))
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:2].T
    out *= np.where(np.abs(out.max(0)) >= np.abs(out.min(0)), 1.0, -1.0)
    return out.astype(np.float32)


def umap_2d(
    emb: np.ndarray,
    *,
    n_neighbors: int = 15,
    random_state: int | None = None,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    min_dist: float = 0.1,
    cache_dir: str | os.PathLike | None = "auto",
) -> np.ndarray:
    """UMAP of ``emb`` to 2-D with cosine geometry, on the exact faiss kNN graph.

    Args:
        emb: ``[N, d]`` float embeddings (normalised here; N >= 3).
        n_neighbors: UMAP neighbourhood size (capped at ``N - 1``).
        random_state: fixes the layout; ``None`` lets UMAP use its parallel (faster) paths.
        knn: optional precomputed ``(indices, distances)`` with at least ``n_neighbors`` columns and column 0
            the point itself; computed with :func:`knn_graph` when absent.
        cache_dir: folder for the on-disk cache (``None`` disables it; ``"auto"``: :func:`default_cache_dir`). The key hashes the embeddings and every
            parameter, so a cached map is reused only for the same inputs. With ``random_state=None`` the
            first layout computed is the one kept.

    Returns:
        ``[N, 2]`` float32 coordinates.

    Raises:
        ValueError: fewer than 3 rows, not 2-D, or NaN / infinite values.

    Example (skipped by the doctest run: umap's first call in a process compiles for about a minute):
        >>> xy = umap_2d(np.random.default_rng(0).normal(size=(200, 16)), random_state=0)  # doctest: +SKIP
        >>> xy.shape  # doctest: +SKIP
        (200, 2)
    """
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"umap_2d needs a 2-D array [N, d], got shape {emb.shape}")
    n = emb.shape[0]
    if n < 3:
        raise ValueError(f"umap_2d needs at least 3 points, got {n}")
    if not np.isfinite(emb).all():
        raise ValueError("umap_2d: embeddings hold NaN or infinite values")
    k = int(max(2, min(n_neighbors, n - 1)))
    path = _cache_path(emb, k, random_state, min_dist, cache_dir)
    if path is not None and path.exists():
        out = _load_cached(path, n)
        if out is not None:
            return out
    if knn is None:
        knn = knn_graph(emb, k)
    idx, dist = np.asarray(knn[0], dtype=np.int64), np.asarray(knn[1], dtype=np.float32)
    if idx.shape != dist.shape or idx.shape[0] != n or idx.shape[1] < k:
        raise ValueError(f"knn must be two [N={n}, >={k}] arrays, got {idx.shape} and {dist.shape}")
    idx, dist = np.ascontiguousarray(idx[:, :k]), np.ascontiguousarray(dist[:, :k])

    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no NNDescent search index": we never call transform()
        reducer = umap.UMAP(
            n_neighbors=k, n_components=2, metric="cosine", min_dist=min_dist, random_state=random_state,
            precomputed_knn=(idx, dist), init="spectral" if n > k + 2 else "random",
        )
        out = np.asarray(reducer.fit_transform(normalize(np.asarray(emb, dtype=np.float32))), dtype=np.float32)
    if path is not None:
        try:  # the cache is an optimisation: a failed write is not an error
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda t: _save_npy(t, out))
        except OSError:
            pass
    return out


def selection_to_ids(event: Any) -> list[int]:
    """Row ids of the points in a Streamlit plotly selection event.

    Reads ``custom_data[0]`` of each selected point (the row id put there by
    :func:`fnlab.analysis.viz.embedding_scatter`), because plotly's point indices count within each trace.
    Accepts the object returned by ``st.plotly_chart(..., on_select="rerun")``, its ``selection`` or a plain
    dict; returns sorted unique ids, ``[]`` for no selection.
    """
    if event is None:
        return []
    sel = _get(event, "selection", event)
    points = _get(sel, "points", None) or []
    ids: set[int] = set()
    for p in points:
        cd = _get(p, "customdata", None)
        if cd is None:
            cd = _get(p, "custom_data", None)
        if cd is None:
            continue
        if isinstance(cd, Mapping):
            # plotly serialises a numpy customdata row as {"0": id, "1": ...}
            cd = [v for _, v in sorted(cd.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 1 << 30)]
        if isinstance(cd, Iterable) and not isinstance(cd, str | bytes):
            cd = list(cd)
            if not cd:
                continue
            cd = cd[0]
        try:
            ids.add(int(cd))
        except (TypeError, ValueError):
            continue
    return sorted(ids)


def _get(obj: Any, key: str, default: Any) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    try:
        return obj[key]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, key, default)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
