"""Caption tokenisation: words to token ids for the small text encoders.

Token ids are ``int64``; index 0 is ``"<pad>"`` (padding) and 1 is ``"<unk>"`` (a word
outside the vocabulary). Words are lower-cased runs of letters and digits.

Example:
    >>> vocab = build_vocab(["a red circle", "a blue square"])
    >>> encode(["a red square", "a green circle"], vocab).tolist()
    [[2, 5, 6], [2, 1, 4]]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD = "<pad>"
UNK = "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words (runs of ``[a-z0-9]``) of ``text``."""
    return _WORD.findall(str(text).lower())


def build_vocab(texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> list[str]:
    """Vocabulary ``["<pad>", "<unk>", words...]``, words by falling frequency then alphabetically.

    Args:
        texts: captions.
        min_count: words seen fewer times become ``<unk>``.
        max_size: keep at most this many entries (including the two special ones).
    """
    counts = Counter(w for t in texts for w in tokenize(t))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    vocab = [PAD, UNK, *words]
    return vocab[:max_size] if max_size else vocab


def encode(texts: Sequence[str], vocab: Sequence[str], *, max_len: int | None = None) -> np.ndarray:
    """Token ids ``[n, L]`` int64, right-padded with 0; ``L`` is the longest caption (at most ``max_len``).

    Raises:
        ValueError: the vocabulary does not start with ``<pad>``, ``<unk>``.
    """
    if len(vocab) < 2 or vocab[0] != PAD or vocab[1] != UNK:
        raise ValueError(f"field 'vocab' must start with {PAD!r}, {UNK!r}; got {list(vocab[:2])}")
    index = {w: i for i, w in enumerate(vocab)}
    rows = [[index.get(w, 1) for w in tokenize(t)] for t in texts]
    longest = max((len(r) for r in rows), default=0)
    width = max(1, min(longest, max_len) if max_len else longest)
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        r = r[:width]
        out[i, : len(r)] = r
    return out


def decode(ids: np.ndarray, vocab: Sequence[str]) -> str:
    """The words of one row of token ids (padding dropped)."""
    return " ".join(vocab[int(i)] for i in np.asarray(ids).ravel() if int(i) != 0)
