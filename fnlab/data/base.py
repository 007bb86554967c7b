"""The one dataset type of fnlab: two-sided matching data with optional ground truth.

Side A holds the items that are matched *to* (images), side B the items that are
matched *from* (captions, queries). Every B item has exactly one labelled A item
(``b_to_a``); an A item may have several B items (5 captions per image in
Flickr30K/COCO). Where ground truth is known, ``relevance`` says which (B, A)
pairs truly match: a relevant pair that is not labelled is a **false negative**
(FNE, Li et al., ACM MM 2023, Sec. 1).

A ``MatchingDataset`` is always one split: its items are numbered ``0..n_a-1`` and
``0..n_b-1`` within that split. Loaders (``fnlab.data.load``) cut splits out of a
full dataset with :meth:`MatchingDataset.subset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

AKind = Literal["pixels", "features"]
BKind = Literal["tokens", "features"]
Modality = Literal["image", "text", "item"]
#: what a side's items are, for wording: ``image`` (pixels or image files), ``text``, or a neutral ``item``
MODALITIES = ("image", "text", "item")


class DatasetError(ValueError):
    """Bad dataset input. The message names the file, the field and what was expected."""


@dataclass(frozen=True)
class GroundTruthStats:
    """False-negative statistics of a split, as printed by ``fnlab data info``."""

    items_a: int
    items_b: int
    labelled_pairs: int
    relevant_pairs: int | None
    fn_per_query_mean: float | None
    fn_per_query_max: int | None
    share_queries_with_fn: float | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Nouns:
    """What to call the items of each side, for the app and reports (lower case).

    ``a``/``a_plural``: side A (``image``, ``document`` or ``candidate``); ``b``/``b_plural``: side B
    (``caption`` for text beside images, ``query`` otherwise, ``query image`` for images).
    """

    a: str
    a_plural: str
    b: str
    b_plural: str

    def side(self, side: str, *, plural: bool = True) -> str:
        """The noun of side ``"a"`` or ``"b"``."""
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        return getattr(self, f"{side}_plural" if plural else side)


_A_NOUNS = {"image": ("image", "images"), "text": ("document", "documents"), "item": ("candidate", "candidates")}


def nouns_for(a_modality: str, b_modality: str) -> Nouns:
    """The :class:`Nouns` of a dataset whose sides hold ``a_modality`` and ``b_modality`` items.

    Example:
        >>> nouns_for("image", "text").b_plural, nouns_for("text", "text").a_plural
        ('captions', 'documents')
    """
    for name, m in (("a_modality", a_modality), ("b_modality", b_modality)):
        if m not in MODALITIES:
            raise ValueError(f"{name} must be one of {', '.join(MODALITIES)}, got {m!r}")
    a, a_pl = _A_NOUNS[a_modality]
    if b_modality == "image":
        b, b_pl = "query image", "query images"
    elif b_modality == "text" and a_modality == "image":
        b, b_pl = "caption", "captions"
    else:
        b, b_pl = "query", "queries"
    return Nouns(a, a_pl, b, b_pl)


def _has_values(meta: pd.DataFrame, column: str) -> bool:
    """Whether ``meta`` has ``column`` with at least one non-empty value."""
    if column not in meta.columns or not len(meta):
        return False
    col = meta[column]
    return bool((col.notna() & (col.astype(str).str.len() > 0)).any())


def derive_modality(kind: str, meta: pd.DataFrame, side: str) -> str:
    """A side's modality from what the data provides: pixels or ``image_path`` -> ``image``; token ids,
    ``text`` (side B) or ``a_text`` (side A) -> ``text``; otherwise ``item``."""
    if kind == "pixels" or _has_values(meta, "image_path"):
        return "image"
    if kind == "tokens" or _has_values(meta, "a_text" if side == "a" else "text"):
        return "text"
    return "item"


@dataclass
class MatchingDataset:
    """One split of a two-sided matching dataset.

    Attributes:
        name: dataset name (``shapes``, ``digits``, ``precomp``, ``pairs``...).
        split: split name (``train``, ``val``, ``test`` or ``all``).
        b_to_a: ``[n_b]`` int64, the labelled A item of each B item.
        a_inputs: encoder inputs of side A: pixels ``[n_a, C, H, W]`` (uint8 or float32 in [0, 1])
            when ``a_kind == "pixels"``, features ``[n_a, d_a]`` float32 when ``"features"``.
        b_inputs: encoder inputs of side B: token ids ``[n_b, L]`` int64 (0 is padding) when
            ``b_kind == "tokens"``, features ``[n_b, d_b]`` float32 when ``"features"``.
        a_kind, b_kind: what the inputs are.
        relevance: ``[n_b, n_a]`` sparse bool CSR, ground truth (includes the labelled pairs),
            or ``None`` when unknown.
        a_meta: one row per A item, for display (``label``, attribute columns, ``image_path``...).
        b_meta: one row per B item, for display; column ``text`` where captions exist.
        vocab: token strings for ``b_inputs`` (index 0 is padding, 1 unknown) when tokens.
        a_ids, b_ids: ``[n_a]``, ``[n_b]`` int64 ids of the items in the full dataset.
        spec: how to rebuild the dataset, ``{"name", "root", "options"}`` (set by
            :func:`fnlab.data.load`; ``fnlab.data.spec_of`` reads it), or ``None``.
        inputs_are_embeddings: the feature inputs are embeddings that already rank the pairs (a user's
            own ``pairs`` folder), so models start from them (:mod:`fnlab.models.heads`) instead of
            learning a projection from random init.
        a_modality, b_modality: what each side's items are (``image``, ``text`` or ``item``), declared by
            the loader or, when ``None``, derived from the data (:func:`derive_modality`); :attr:`nouns`
            turns them into words for the app.
    """

    name: str
    split: str
    b_to_a: np.ndarray
    a_inputs: np.ndarray | None
    b_inputs: np.ndarray | None
    a_kind: AKind
    b_kind: BKind
    relevance: sp.csr_matrix | None = None
    a_meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    b_meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    vocab: list[str] | None = None
    a_ids: np.ndarray | None = None
    b_ids: np.ndarray | None = None
    spec: dict | None = None
    inputs_are_embeddings: bool = False
    a_modality: Modality | None = None
    b_modality: Modality | None = None

    def __post_init__(self) -> None:
        self.b_to_a = np.asarray(self.b_to_a, dtype=np.int64)
        if self.a_modality is None:
            self.a_modality = derive_modality(self.a_kind, self.a_meta, "a")
        if self.b_modality is None:
            self.b_modality = derive_modality(self.b_kind, self.b_meta, "b")
        if self.a_ids is None:
            self.a_ids = np.arange(self.n_a, dtype=np.int64)
        if self.b_ids is None:
            self.b_ids = np.arange(self.n_b, dtype=np.int64)
        if self.relevance is not None:
            self.relevance = sp.csr_matrix(self.relevance, dtype=bool)
        self.validate()

    # ------------------------------------------------------------------ sizes
    @property
    def n_a(self) -> int:
        if self.a_inputs is not None:
            return int(self.a_inputs.shape[0])
        return int(len(self.a_meta))

    @property
    def n_b(self) -> int:
        return int(self.b_to_a.shape[0])

    @property
    def nouns(self) -> Nouns:
        """What to call each side's items (``images``/``captions``, ``documents``/``queries``...)."""
        return nouns_for(self.a_modality, self.b_modality)

    @property
    def has_ground_truth(self) -> bool:
        return self.relevance is not None

    def a_to_b(self) -> list[np.ndarray]:
        """For each A item, the indices of its labelled B items."""
        order = np.argsort(self.b_to_a, kind="stable")
        counts = np.bincount(self.b_to_a, minlength=self.n_a)
        return np.split(order, np.cumsum(counts)[:-1])

    def labelled_matrix(self) -> sp.csr_matrix:
        """``[n_b, n_a]`` sparse bool: the labelled pairs."""
        data = np.ones(self.n_b, dtype=bool)
        return sp.csr_matrix((data, (np.arange(self.n_b), self.b_to_a)), shape=(self.n_b, self.n_a))

    def false_negative_matrix(self) -> sp.csr_matrix | None:
        """``[n_b, n_a]`` sparse bool: relevant but not labelled pairs, or ``None``."""
        if self.relevance is None:
            return None
        fn = self.relevance.astype(np.int8) - self.labelled_matrix().astype(np.int8)
        fn.data = fn.data > 0
        fn.eliminate_zeros()
        return sp.csr_matrix(fn, dtype=bool)

    # ------------------------------------------------------------- statistics
    def stats(self) -> GroundTruthStats:
        """Items, labelled and relevant pairs, false negatives per query (queries are B items)."""
        fn = self.false_negative_matrix()
        if fn is None:
            return GroundTruthStats(self.n_a, self.n_b, self.n_b, None, None, None, None)
        per_query = np.diff(fn.indptr)
        return GroundTruthStats(
            items_a=self.n_a,
            items_b=self.n_b,
            labelled_pairs=self.n_b,
            relevant_pairs=int(self.relevance.nnz),
            fn_per_query_mean=float(per_query.mean()) if self.n_b else 0.0,
            fn_per_query_max=int(per_query.max()) if self.n_b else 0,
            share_queries_with_fn=float((per_query > 0).mean()) if self.n_b else 0.0,
        )

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check shapes and indices; raise :class:`DatasetError` naming the field."""
        where = f"dataset {self.name!r} split {self.split!r}"
        if self.b_to_a.ndim != 1:
            raise DatasetError(f"{where}: field 'b_to_a' must be 1-D, got shape {self.b_to_a.shape}")
        n_a = self.n_a
        if self.n_b and (self.b_to_a.min() < 0 or self.b_to_a.max() >= n_a):
            raise DatasetError(
                f"{where}: field 'b_to_a' has indices outside [0, {n_a}) "
                f"(min {self.b_to_a.min()}, max {self.b_to_a.max()})"
            )
        if self.b_inputs is not None and self.b_inputs.shape[0] != self.n_b:
            raise DatasetError(
                f"{where}: field 'b_inputs' has {self.b_inputs.shape[0]} rows, expected {self.n_b} (one per B item)"
            )
        for fname, arr in (("a_inputs", self.a_inputs), ("b_inputs", self.b_inputs)):
            if arr is not None and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                raise DatasetError(f"{where}: field {fname!r} holds NaN or infinite values")
        if self.relevance is not None:
            if self.relevance.shape != (self.n_b, n_a):
                raise DatasetError(
                    f"{where}: field 'relevance' has shape {self.relevance.shape}, expected ({self.n_b}, {n_a})"
                )
            labelled = self.labelled_matrix()
            if (labelled.multiply(self.relevance)).nnz != self.n_b:
                raise DatasetError(f"{where}: field 'relevance' must include every labelled pair")
        for fname, ids, n in (("a_ids", self.a_ids, n_a), ("b_ids", self.b_ids, self.n_b)):
            if np.asarray(ids).shape != (n,):
                raise DatasetError(f"{where}: field {fname!r} has shape {np.asarray(ids).shape}, expected ({n},)")
        if len(self.a_meta) not in (0, n_a):
            raise DatasetError(f"{where}: field 'a_meta' has {len(self.a_meta)} rows, expected {n_a}")
        if len(self.b_meta) not in (0, self.n_b):
            raise DatasetError(f"{where}: field 'b_meta' has {len(self.b_meta)} rows, expected {self.n_b}")
        for fname, m in (("a_modality", self.a_modality), ("b_modality", self.b_modality)):
            if m not in MODALITIES:
                raise DatasetError(f"{where}: field {fname!r} must be one of {', '.join(MODALITIES)}, got {m!r}")

    # ---------------------------------------------------------------- subsets
    def subset(self, a_items: np.ndarray, split: str) -> MatchingDataset:
        """The split made of A items ``a_items`` and all their labelled B items, renumbered."""
        a_items = np.asarray(a_items, dtype=np.int64)
        a_new = np.full(self.n_a, -1, dtype=np.int64)
        a_new[a_items] = np.arange(len(a_items))
        b_items = np.flatnonzero(a_new[self.b_to_a] >= 0)
        relevance = None
        if self.relevance is not None:
            relevance = self.relevance[b_items][:, a_items]
        return replace(
            self,
            split=split,
            b_to_a=a_new[self.b_to_a[b_items]],
            a_inputs=None if self.a_inputs is None else self.a_inputs[a_items],
            b_inputs=None if self.b_inputs is None else self.b_inputs[b_items],
            relevance=relevance,
            a_meta=self.a_meta.iloc[a_items].reset_index(drop=True) if len(self.a_meta) else self.a_meta,
            b_meta=self.b_meta.iloc[b_items].reset_index(drop=True) if len(self.b_meta) else self.b_meta,
            a_ids=self.a_ids[a_items],
            b_ids=self.b_ids[b_items],
        )

    def content_keys(self, side: str) -> np.ndarray:
        """``[n]`` int64 content keys of side ``"a"`` or ``"b"``: equal where two items' encoder inputs are identical
        (the same pixels, token ids or feature row), so that training can tell an exact copy from a near neighbour
        whatever its features look like in a momentum queue, and, where the side has texts (``text`` beside side B,
        ``a_text`` beside side A), where their normalised texts are (case, spacing and sentence marks aside:
        :func:`fnlab.core.content.normalise_text`, the near-duplicate content a scan reads). A side without
        inputs or texts: every item its own key."""
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        from fnlab.core.content import merge_keys, row_keys

        x, n = (self.a_inputs, self.n_a) if side == "a" else (self.b_inputs, self.n_b)
        keys = np.arange(n, dtype=np.int64) if x is None else row_keys(np.ascontiguousarray(x).reshape(n, -1))
        column, meta = ("a_text", self.a_meta) if side == "a" else ("text", self.b_meta)
        if column not in meta.columns or len(meta) != n:
            return keys
        from fnlab.core.content import text_keys

        texts = meta[column].fillna("").astype(str).to_numpy(dtype=object)
        blank = np.asarray([not t.strip() for t in texts], dtype=bool)
        if blank.all():
            return keys
        by_text = text_keys(texts)
        by_text = np.where(blank, by_text.max() + 1 + np.arange(n), by_text)  # an empty text matches nothing
        return merge_keys(keys, by_text)

    def captions(self) -> list[str] | None:
        """Caption text of every B item, where known."""
        if "text" in self.b_meta.columns:
            return self.b_meta["text"].astype(str).tolist()
        return None
