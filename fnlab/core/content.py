"""Content keys: equal integers where two rows hold the same content, byte for byte, or two texts the same text
up to case, spacing and sentence marks.

Used where identity of content matters more than closeness of features: an exact copy of a labelled item
(:meth:`fnlab.data.base.MatchingDataset.content_keys`, the posterior's ``positive_duplicate`` signal).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np

__all__ = ["merge_keys", "normalise_text", "row_keys", "text_keys"]


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


#: punctuation that changes what a text says, kept: "C++" / "C#" / "C", "50%" / "50", "and/or" / "andor"
#: (symbols such as ``+ = < > $ ~`` are not punctuation and are kept anyway)
_MEANINGFUL_PUNCTUATION = frozenset("#%&@*/\\")
#: a mark before a digit: kept where it is a decimal or thousands separator between digits ("3.5" is not "35")
#: or a minus sign that starts a number ("-5" is not "5"); see :func:`_shield_numeric_mark`
_MARK_BEFORE_DIGIT = re.compile(r"[.,:-](?=\d)")


def _shield_numeric_mark(match: re.Match) -> str:
    """The numeric mark as a private-use character of its own (a symbol, which the deletions leave alone)."""
    mark, at = match.group(), match.start()
    before = match.string[at - 1] if at else " "
    numeric = before.isdecimal() if mark != "-" else not (before.isalnum() or before == "_")
    return chr(0xE000 + ord(mark)) if numeric else mark


def _is_typographic(ch: str) -> bool:
    """Unicode punctuation (categories P*) outside :data:`_MEANINGFUL_PUNCTUATION`: quotes, brackets, dashes,
    sentence marks (symbols are not punctuation)."""
    return ch not in _MEANINGFUL_PUNCTUATION and unicodedata.category(ch).startswith("P")


#: ASCII's typographic punctuation, deleted by ``str.translate``; the rest of Unicode's by :data:`_NON_ASCII_MARKS`
_ASCII_TYPOGRAPHIC = {i: None for i in range(128) if _is_typographic(chr(i))}
_NON_ASCII_MARKS = re.compile(r"[^\w\s\x00-\x7f]+")


def normalise_text(text: str) -> str:
    """Case folded, typographic punctuation dropped, runs of white space made one space: what a near-duplicate
    text (case, spacing, quotes, sentence marks) shares with the original. Punctuation that changes what a text
    says is kept, so that "GNU C++ compiler" and "GNU C compiler", or "3.5" and "35", stay different texts."""
    t = unicodedata.normalize("NFKC", str(text)).casefold()
    t = _MARK_BEFORE_DIGIT.sub(_shield_numeric_mark, t).translate(_ASCII_TYPOGRAPHIC)
    if not t.isascii():
        t = _NON_ASCII_MARKS.sub(lambda m: "".join(ch for ch in m.group() if not _is_typographic(ch)), t)
    return " ".join(t.split())


def text_keys(texts: Any) -> np.ndarray:
    """``[N]`` int64 content keys of texts, equal where their normalised forms (:func:`normalise_text`) are."""
    norm = np.asarray([normalise_text(t) for t in texts], dtype=object)
    if norm.size == 0:
        return np.zeros(0, np.int64)
    _, inverse = np.unique(norm.astype(str), return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).ravel()
