"""Exact-duplicate texts as positives: the text-identity mask for text datasets.

Two queries with the same text are the same query, and two documents with the same text the same document; a
contrastive loss that treats one copy as a negative of the other's anchor repels a true match. Their embeddings do
not show it reliably (an encoder trained with dropout embeds two copies differently, so ``s == 1`` misses them):
only the texts do, as GISTEmbed's and sentence-transformers' in-batch deduplication learned (their issues #2756,
#3260). :func:`text_identity_labels` lifts the labelled pairs over exact-duplicate texts; training then counts every
lifted pair as a positive of the pool, not as a negative (``fnlab.training.objective.SampledObjective``).

Rows of one query (a pooled dataset's ``b_meta["query_group"]``, :mod:`fnlab.data.pooling`) are grouped the same way,
whatever the modality. Texts apply to datasets whose query side is text (``b_meta["text"]``) and whose candidate side is not images
(documents, with or without ``a_meta["a_text"]``): a ``pairs`` folder with a ``text`` column. Image-caption sets
(``shapes``, ``shapes-precomp``) are left as they are: their identical captions of different images are the
false negatives those sets are built to measure.

Example:
    >>> import pandas as pd
    >>> from fnlab.data.base import MatchingDataset
    >>> ds = MatchingDataset("t", "train", np.array([0, 1]), np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32),
    ...                      "features", "features", b_meta=pd.DataFrame({"text": ["same", "same"]}),
    ...                      a_meta=pd.DataFrame({"a_text": ["doc one", "doc two"]}))
    >>> text_identity_labels(ds).toarray().astype(int).tolist()
    [[1, 1], [1, 1]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["text_groups", "text_identity_labels"]


def text_groups(texts: Any) -> np.ndarray:
    """``[n]`` int64: one group per distinct non-empty text (exact string equality); each empty or missing text is
    a group of its own."""
    out = np.empty(len(texts), dtype=np.int64)
    seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        if t is None or (isinstance(t, float) and np.isnan(t)) or str(t) == "":
            out[i] = len(seen) + i + len(texts)  # unique: never equal to a text's group
            continue
        out[i] = seen.setdefault(str(t), len(seen))
    _, out = np.unique(out, return_inverse=True)
    return out.astype(np.int64)


def _one_hot(groups: np.ndarray) -> sp.csr_matrix:
    n = len(groups)
    return sp.csr_matrix((np.ones(n, dtype=np.int64), (np.arange(n), groups)), shape=(n, int(groups.max()) + 1 if n else 0))


def text_identity_labels(ds: Any) -> sp.csr_matrix | None:
    """``[n_b, n_a]`` bool: the pairs ``(q, d)`` with a query ``q'`` of the same text (or query group) as ``q`` labelled
    with a document ``d'`` of the same text as ``d``; ``None`` when the dataset has neither groups nor texts to read
    (module docstring) or no duplicate adds a pair to the labelled ones."""
    texts = getattr(ds, "a_modality", None) != "image" and "text" in ds.b_meta.columns
    if "query_group" in ds.b_meta.columns:
        gb = np.unique(ds.b_meta["query_group"].to_numpy(), return_inverse=True)[1].astype(np.int64)
    elif texts:
        gb = text_groups(ds.b_meta["text"].tolist())
    else:
        return None
    ga = (text_groups(ds.a_meta["a_text"].tolist()) if texts and "a_text" in ds.a_meta.columns
          else np.arange(ds.n_a, dtype=np.int64))
    labels = sp.csr_matrix((np.ones(ds.n_b, dtype=np.int64), (np.arange(ds.n_b), ds.b_to_a)), shape=(ds.n_b, ds.n_a))
    hb, ha = _one_hot(gb), _one_hot(ga)
    lifted = (hb @ (hb.T @ labels @ ha) @ ha.T).astype(bool).tocsr()
    if lifted.nnz == labels.astype(bool).nnz:
        return None
    return lifted
