"""Content keys: equal integers where two rows hold the same content, byte for byte.

Used where identity of content matters more than closeness of features: an exact copy of a labelled item
(:meth:`fnlab.data.base.MatchingDataset.content_keys`, the posterior's ``positive_duplicate`` signal).
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge_keys", "row_keys"]


def row_keys(x: np.ndarray) -> np.ndarray:
    """``[N]`` int64 keys, equal exactly where the rows of ``x [N, d]`` are identical (byte for byte).

    Example:
        >>> row_keys(np.array([[1, 2], [3, 4], [1, 2]])).tolist()
        [0, 1, 0]
    """
    a = np.ascontiguousarray(x)
    if a.shape[0] == 0:
        return np.zeros(0, np.int64)
    rows = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, inverse = np.unique(rows, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).ravel()


def merge_keys(*keys: np.ndarray) -> np.ndarray:
    """``[N]`` int64 keys equal where any of the given key arrays (each ``[N]``) is: two rows share content if
    they share it by any one of the keys, and, transitively, through rows in between (connected components).

    Example:
        >>> merge_keys(np.array([0, 0, 1, 2]), np.array([5, 6, 6, 7])).tolist()
        [0, 0, 0, 1]
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(keys[0]) if keys else 0
    if n == 0:
        return np.zeros(0, np.int64)
    rows, cols, offset = [], [], n
    for k in keys:
        k = np.asarray(k, dtype=np.int64)
        if k.shape != (n,):
            raise ValueError(f"merge_keys: every key array must have shape ({n},), got {k.shape}")
        _, dense = np.unique(k, return_inverse=True)
        rows.append(np.arange(n))
        cols.append(offset + dense.ravel())
        offset += int(dense.max()) + 1
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = sp.csr_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    _, out = np.unique(labels[:n], return_inverse=True)
    return np.asarray(out, dtype=np.int64).ravel()
