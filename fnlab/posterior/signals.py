"""The evidence a (query, candidate) pair offers that it is an unlabelled match.

FNE (Li et al., ACM MM 2023, Sec. 3.2) looks at one number per pair, the similarity ``s(q, c)``.
A dataset offers more, all of it computable from the embeddings and the labelled pairs alone
(never ground truth), and cheap: a few dot products per pair, never an ``[Nq, Nc]`` matrix.

==========================  ===============================================================
signal                      what it is (``p``: a labelled positive of ``q``; ``q'``: a labelled query of ``c``)
==========================  ===============================================================
``similarity``              ``s(q, c)``
``positive_similarity``     ``s+ = max_p s(q, p)``: the margin ``s - s+`` measures ``c`` against the
                            query's own positive (a generic query is close to everything)
``positive_neighbour``      ``max_p s(c, p)`` in the candidate space: a near-duplicate of the
                            labelled positive is almost surely a match
``query_neighbour``         ``max_q' s(q, q')`` in the query space: does the query resemble the
                            candidate's own labelled queries (in image-text: its captions)?
``candidate_hubness``       mean similarity of ``c`` to its ``k`` nearest queries: ``s - hubness``
                            says whether ``q`` is among ``c``'s own nearest queries (mutual rank,
                            as CSLS, Conneau et al. 2018)
``positive_duplicate``      1 if ``c`` has the same content as a labelled positive ``p`` (same
                            normalised text, or identical embedding rows), else 0
``query_duplicate``         1 if ``q`` has the same content as a labelled query ``q'`` of ``c``, else 0
``query_threshold``         the similarity of ``q``'s ``window``-th most similar unlabelled candidate:
                            ``s >= query_threshold`` places the pair among the rows a scan of
                            ``window`` candidates a query shows
==========================  ===============================================================

**A second view.** Where a side has text, a pretrained sentence encoder that training did not shape
(MiniLM, :mod:`fnlab.data.minilm`; the guide model of GISTEmbed, Solatorio 2024, and the denoising
cross-check of RocketQA, Qu et al. 2021) embeds it again: ``query_view [Nq, d']`` and/or
``candidate_view [Nc, d']``. The transitive signals are then also computed in that space, leaving the
pair out in the same way:

==============================  ===========================================================
signal                          needs
==============================  ===========================================================
``view_similarity``             both views (one space: text-text): ``s'(q, c)``
``view_positive_similarity``    both views: ``max_p s'(q, p)`` (the view's margin)
``view_positive_neighbour``     the candidate view: ``max_p s'(c, p)`` (candidate text against the
                                labelled positive's text)
``view_query_neighbour``        the query view: ``max_q' s'(q, q')`` (in image-text: the caption
                                against the candidate image's other labelled captions)
==============================  ===========================================================

For a labelled pair ``(q, p)`` the signals are computed *leaving the pair out*: ``s+`` is the
best *other* positive of ``q``, ``positive_neighbour`` uses the other positives, and
``query_neighbour`` the other labelled queries of ``p``. That is what the same pair would show
had it not been labelled, which is what a positive-unlabelled estimator needs. Where a signal has
no value (a query with a single positive, a candidate nobody labelled) it is NaN.

:class:`PairContext` holds one retrieval problem (query and candidate embeddings, labelled pairs)
and computes :class:`PairSignals` for any list of pairs; :meth:`PairContext.draw_unlabelled` draws
random unlabelled pairs for the posterior fits and the scans.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from fnlab.core.content import normalise_text, row_keys, text_keys  # noqa: F401 - normalise_text: re-exported

__all__ = ["SIGNALS", "VIEW_SIGNALS", "PairSignals", "PairContext", "pair_member", "row_keys", "text_keys"]

#: above this many queries, candidate hubness is measured against a seeded sample of them
HUBNESS_MAX_QUERIES = 50_000

#: every signal a posterior may use, in a fixed order
SIGNALS = ("similarity", "positive_similarity", "positive_neighbour", "query_neighbour", "candidate_hubness",
           "positive_duplicate", "query_duplicate", "view_similarity", "view_positive_similarity",
           "view_positive_neighbour", "view_query_neighbour", "query_threshold")

#: the signals computed in the second view, and which sides' views each needs
VIEW_SIGNALS = {"view_similarity": ("query", "candidate"), "view_positive_similarity": ("query", "candidate"),
                "view_positive_neighbour": ("candidate",), "view_query_neighbour": ("query",)}


def pair_member(mat: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``mat[rows[i], cols[i]] != 0`` for each i, without densifying (``mat``: CSR with sorted indices).

    Shapes: ``rows``, ``cols`` ``[N]`` int -> ``[N]`` bool.
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    cols = np.asarray(cols, dtype=np.int64).ravel()
    if not mat.has_sorted_indices:
        mat = mat.copy()
        mat.sort_indices()
    start, stop = mat.indptr[rows], mat.indptr[rows + 1]
    out = np.zeros(rows.shape, dtype=bool)
    busy = stop > start
    if busy.any():
        # one binary search per pair inside its row's slice of the sorted column indices
        keys = rows[busy].astype(np.int64) * mat.shape[1] + cols[busy]
        flat = np.repeat(np.arange(mat.shape[0], dtype=np.int64), np.diff(mat.indptr)) * mat.shape[1] + mat.indices
        pos = np.searchsorted(flat, keys)
        pos = np.minimum(pos, flat.size - 1)
        out[busy] = flat[pos] == keys
    return out


def _view(view: Any, n: int, name: str) -> np.ndarray | None:
    """A second-view embedding as float32 unit rows ``[n, d']``, or ``None``.

    Raises:
        ValueError: a shape that does not fit ``n`` rows, or non-finite values.
    """
    if view is None:
        return None
    v = np.asarray(view, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] != n:
        raise ValueError(f"{name} has shape {v.shape}, expected [{n}, d'] (one row per item)")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norm, 1e-12))


def _keys(keys: Any, n: int, name: str) -> np.ndarray | None:
    if keys is None:
        return None
    k = np.asarray(keys)
    if k.shape != (n,) or not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"{name} must be [{n}] integers (content keys), got {k.dtype} {k.shape}")
    return k.astype(np.int64)


@dataclass
class PairSignals:
    """Signals of a set of pairs; every field broadcasts against ``similarity`` (any shape).

    ``similarity`` is required; any other field may be ``None`` (not offered) or NaN per entry
    (not defined for that pair). Fields are tensors (float32 or float64, any device).

    Example:
        >>> sig = PairSignals(torch.tensor([[0.7, 0.2]]), positive_similarity=torch.tensor([[0.8]]))
        >>> sig.offered()
        ('similarity', 'positive_similarity')
    """

    similarity: torch.Tensor
    positive_similarity: torch.Tensor | None = None
    positive_neighbour: torch.Tensor | None = None
    query_neighbour: torch.Tensor | None = None
    candidate_hubness: torch.Tensor | None = None
    positive_duplicate: torch.Tensor | None = None
    query_duplicate: torch.Tensor | None = None
    view_similarity: torch.Tensor | None = None
    view_positive_similarity: torch.Tensor | None = None
    view_positive_neighbour: torch.Tensor | None = None
    view_query_neighbour: torch.Tensor | None = None
    query_threshold: torch.Tensor | None = None
    #: the window ``query_threshold`` was computed for (:class:`PairContext` ``window``)
    window: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "window":
                continue
            v = getattr(self, f.name)
            if v is not None and not isinstance(v, torch.Tensor):
                setattr(self, f.name, torch.as_tensor(np.asarray(v, dtype=np.float64)))

    @classmethod
    def of(cls, sims: Any, pos_sims: Any = None, **others: Any) -> PairSignals:
        """Signals from a similarity array (``[*]``) and optional other signals by name."""
        return cls(similarity=sims if isinstance(sims, torch.Tensor) else torch.as_tensor(np.asarray(sims)),
                   positive_similarity=pos_sims, **others)

    def offered(self) -> tuple[str, ...]:
        """Names of the signals present (not ``None``)."""
        return tuple(name for name in SIGNALS if getattr(self, name) is not None)

    def without(self, *names: str) -> PairSignals:
        """A copy with the named signals removed (``None``)."""
        unknown = set(names) - set(SIGNALS[1:])
        if unknown:
            raise ValueError(f"unknown signal(s) {sorted(unknown)}; expected some of {list(SIGNALS[1:])}")
        return replace(self, **{n: None for n in names})

    def select(self, mask: np.ndarray) -> PairSignals:
        """The signals of the entries where ``mask`` (over a flat ``similarity``) holds."""
        m = torch.as_tensor(np.asarray(mask, dtype=bool))
        return PairSignals(**{n: (None if getattr(self, n) is None else getattr(self, n)[m]) for n in SIGNALS},
                           window=self.window)

    def numpy(self, name: str) -> np.ndarray | None:
        """One signal as a float64 numpy array broadcast to ``similarity``'s shape (``None`` if absent)."""
        v = getattr(self, name)
        if v is None:
            return None
        return np.broadcast_to(v.detach().cpu().double().numpy(), tuple(self.similarity.shape))


class PairContext:
    """One retrieval problem: query and candidate embeddings and the labelled pairs.

    Args:
        queries: ``[Nq, d]`` unit rows (captions in text-to-image).
        candidates: ``[Nc, d]`` unit rows (images).
        positives: ``[Nq, Nc]`` sparse bool, the labelled pairs.
        signals: the signals to compute (default: all of :data:`SIGNALS`); ``similarity`` is always on.
        hubness_k: neighbours of each candidate among the queries for ``candidate_hubness``.
        query_keys: ``[Nq, d]`` the queries as the candidates' encoder holds them, for ``query_neighbour``
            (default: ``queries``). A training pool compares an online anchor with the momentum features
            stored beside a candidate (:mod:`fnlab.posterior.pool`); a posterior fitted for that pool
            reads the same comparison here.
        index: the faiss index kind of the context's own searches (``"flat"`` exact, ``"ivf"`` or
            ``"hnsw"``, :func:`fnlab.retrieval.similarity.build_index`), with ``index_params``: a scan with an
            approximate index fits its posterior with the same kind of search, so the fit never
            costs more than the scan. :meth:`candidate_index` is built once and shared.
        query_view, candidate_view: ``[Nq, d']``, ``[Nc, d']`` second-view embeddings (module docstring),
            or ``None``; rows are L2-normalised here.
        query_content, candidate_content: ``[N]`` integer content keys (equal keys: the same content, e.g.
            :func:`text_keys` of the texts); default: identical embedding rows (:func:`row_keys`).
        window: the candidates a query shows in a scan, for ``query_threshold`` (a posterior fitted for a
            scan of ``window`` rows a query reads it).

    Raises:
        ValueError: shapes that do not agree.
    """

    def __init__(self, queries: np.ndarray, candidates: np.ndarray, positives: sp.spmatrix, *,
                 signals: tuple[str, ...] | None = None, hubness_k: int = 10, index: str = "flat",
                 index_params: Any = None, seed: int = 0, query_keys: np.ndarray | None = None,
                 query_view: np.ndarray | None = None, candidate_view: np.ndarray | None = None,
                 query_content: np.ndarray | None = None, candidate_content: np.ndarray | None = None,
                 window: int = 10) -> None:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        c = np.ascontiguousarray(candidates, dtype=np.float32)
        if q.ndim != 2 or c.ndim != 2 or q.shape[1] != c.shape[1]:
            raise ValueError(f"queries {q.shape} and candidates {c.shape} must be [N, d] with the same d")
        qk = q if query_keys is None else np.ascontiguousarray(query_keys, dtype=np.float32)
        if qk.shape != q.shape:
            raise ValueError(f"query_keys has shape {qk.shape}, expected the queries' {q.shape}")
        pos = sp.csr_matrix(positives, dtype=bool)
        if pos.shape != (q.shape[0], c.shape[0]):
            raise ValueError(f"positives has shape {pos.shape}, expected [{q.shape[0]}, {c.shape[0]}]")
        pos.sort_indices()
        wanted = tuple(SIGNALS if signals is None else signals)
        unknown = set(wanted) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signal(s) {sorted(unknown)}; expected some of {list(SIGNALS)}")
        self.queries, self.candidates, self.positives, self.query_keys = q, c, pos, qk
        self.positives_t = pos.T.tocsr()
        self.positives_t.sort_indices()
        self.query_view = _view(query_view, q.shape[0], "query_view")
        self.candidate_view = _view(candidate_view, c.shape[0], "candidate_view")
        if (self.query_view is not None and self.candidate_view is not None
                and self.query_view.shape[1] != self.candidate_view.shape[1]):
            raise ValueError(f"query_view has d={self.query_view.shape[1]} but candidate_view d="
                             f"{self.candidate_view.shape[1]}; expected one space (the same encoder)")
        self._content = {"query": _keys(query_content, q.shape[0], "query_content"),
                         "candidate": _keys(candidate_content, c.shape[0], "candidate_content")}
        self.hubness_k = int(hubness_k)
        if int(window) < 1:
            raise ValueError(f"window must be a positive number of candidates a query, got {window}")
        self.window = int(window)
        self._hubness: np.ndarray | None = None
        self._topk: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.index_kind, self.index_params, self.seed = index, index_params, int(seed)
        self._candidate_index = None
        self.notes: list[str] = []
        self.signal_names = self._available(wanted)

    def _available(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        """The signals of ``wanted`` this context can compute (``similarity`` always); a note for each
        transitive signal no labelled pair can show."""
        sides = {"query": self.query_view is not None, "candidate": self.candidate_view is not None}
        multi_query = bool((np.diff(self.positives_t.indptr) >= 2).any())  # a candidate with two labelled queries
        any_positive = bool((np.diff(self.positives.indptr) >= 1).any())
        out = []
        for name in SIGNALS:
            if name != "similarity" and name not in wanted:
                continue
            if name in VIEW_SIGNALS and not all(sides[side] for side in VIEW_SIGNALS[name]):
                continue
            if name in ("query_neighbour", "view_query_neighbour", "query_duplicate") and not multi_query:
                # no candidate has two labelled queries: no labelled pair can show this signal
                self.notes.append(f"signal {name} dropped: no candidate has two or more labelled queries")
                continue
            if name in ("positive_neighbour", "view_positive_neighbour", "positive_duplicate") and not any_positive:
                self.notes.append(f"signal {name} dropped: no query has a labelled positive")
                continue
            out.append(name)
        return tuple(out)

    @property
    def views(self) -> tuple[str, ...]:
        """The sides that carry a second view (``"query"``, ``"candidate"``)."""
        return tuple(side for side, v in (("query", self.query_view), ("candidate", self.candidate_view))
                     if v is not None)

    def content_keys(self, side: str) -> np.ndarray:
        """``[N]`` int64 content keys of ``side`` (``"query"`` or ``"candidate"``): equal keys, same content.

        The keys given (``query_content`` / ``candidate_content``: e.g. hashes of normalised texts,
        :func:`text_keys`), else the identity of the embedding rows (:func:`row_keys`), computed once.
        """
        if self._content[side] is None:
            self._content[side] = row_keys(self.queries if side == "query" else self.candidates)
        return self._content[side]

    @classmethod
    def from_dataset(cls, emb_a: np.ndarray, emb_b: np.ndarray, dataset: Any, *, direction: str = "t2i",
                     **kw: Any) -> PairContext:
        """The context of a :class:`fnlab.data.base.MatchingDataset` split in one direction.

        ``"t2i"``: captions (B) query images (A); ``"i2t"``: images query captions. A second view of the
        captions (``query_view``, e.g. :func:`fnlab.data.minilm.dataset_text_view`) is given for the
        captions' side: the queries in ``"t2i"``, the candidates in ``"i2t"``; ``a_view``, one of side A's texts
        in the same space (a text-text folder's documents, :func:`fnlab.data.minilm.dataset_side_view`), for the
        other side.
        """
        lab = dataset.labelled_matrix()
        a_view = kw.pop("a_view", None)
        if direction == "t2i":
            if a_view is not None:
                kw["candidate_view"] = a_view
            return cls(emb_b, emb_a, lab, **kw)
        if direction == "i2t":
            view = kw.pop("query_view", None)
            if view is not None:
                kw["candidate_view"] = view
            if a_view is not None:
                kw["query_view"] = a_view
            return cls(emb_a, emb_b, lab.T, **kw)
        raise ValueError(f"unknown direction {direction!r}: expected 't2i' or 'i2t'")

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (sent to Ray workers): the faiss index is left out and rebuilt where needed."""
        state = self.__dict__.copy()
        state["_candidate_index"] = None
        return state

    # ------------------------------------------------------------------ sizes and lookups
    @property
    def n_queries(self) -> int:
        return self.queries.shape[0]

    @property
    def n_candidates(self) -> int:
        return self.candidates.shape[0]

    @property
    def n_unlabelled(self) -> int:
        """Unlabelled (query, candidate) pairs: the pool a posterior is applied to."""
        return self.n_queries * self.n_candidates - self.positives.nnz

    def is_labelled(self, q: np.ndarray, c: np.ndarray) -> np.ndarray:
        return pair_member(self.positives, q, c)

    def similarity(self, q: np.ndarray, c: np.ndarray, step: int = 65536) -> np.ndarray:
        """``s(q[i], c[i])`` for each pair, in blocks (``[N]`` float32)."""
        q, c = np.asarray(q, dtype=np.int64), np.asarray(c, dtype=np.int64)
        out = np.empty(q.shape, dtype=np.float32)
        for i in range(0, q.size, step):
            out[i:i + step] = np.einsum("ij,ij->i", self.queries[q[i:i + step]], self.candidates[c[i:i + step]])
        return out

    def positive_similarities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(query, candidate, similarity)`` of every labelled pair."""
        coo = self.positives.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64), self.similarity(coo.row, coo.col)

    def topk_unlabelled(self, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar unlabelled candidates of every query, or of the queries ``rows``:
        ``(scores [N, k], idx [N, k])`` (``idx`` -1 where a query has fewer)."""
        k = int(max(1, min(k, self.n_candidates)))
        from fnlab.retrieval.similarity import topk

        cached = min((kk for kk in self._topk if kk >= k), default=None)  # a wider search holds this one
        if cached is not None:
            scores, idx = self._topk[cached]
            scores, idx = scores[:, :k], idx[:, :k]
            return (scores, idx) if rows is None else (scores[np.asarray(rows, dtype=np.int64)],
                                                       idx[np.asarray(rows, dtype=np.int64)])
        index = self.candidate_index()
        keys = None if index is not None else self.candidates
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            return topk(self.queries[rows], keys, k, exclude=self.positives[rows], backend="faiss", index=index)
        self._topk[k] = topk(self.queries, keys, k, exclude=self.positives, backend="faiss", index=index)
        return self._topk[k]

    def set_topk(self, k: int, scores: np.ndarray, idx: np.ndarray) -> None:
        """Hand the context a top-``k`` search of every query done elsewhere (the scan's own, labelled
        positives left out): ``scores [Nq, k]``, ``idx [Nq, k]`` as :func:`fnlab.retrieval.similarity.topk`
        returns them. Later look-ups of ``k`` or fewer neighbours read it instead of searching again."""
        if scores.shape != (self.n_queries, int(k)) or idx.shape != scores.shape:
            raise ValueError(f"set_topk: expected [{self.n_queries}, {k}] scores and indices, got {scores.shape}, "
                             f"{idx.shape}")
        self._topk[int(k)] = (scores, idx)

    def query_threshold(self, k: int) -> np.ndarray:
        """``[Nq]`` the similarity of each query's ``k``-th most similar unlabelled candidate (``-inf`` for a
        query with fewer): a pair with ``s`` at least this sits in the query's top ``k``. From the
        context's own top-``k`` search, done once."""
        scores, idx = self.topk_unlabelled(k)
        return np.where(idx[:, -1] >= 0, scores[:, -1], -np.inf).astype(np.float32)

    def candidate_index(self):
        """The faiss index over the candidates for an approximate ``index`` kind (built once), else ``None``."""
        if self.index_kind == "flat":
            return None
        if self._candidate_index is None:
            from fnlab.retrieval.similarity import build_index

            self._candidate_index = build_index(self.candidates, self.index_kind, params=self.index_params,
                                                seed=self.seed)
        return self._candidate_index

    def candidate_hubness(self) -> np.ndarray:
        """``[Nc]`` mean similarity of each candidate to its ``hubness_k`` nearest queries."""
        if self._hubness is None:
            from fnlab.retrieval.similarity import topk

            queries, k = self.queries, max(1, min(self.hubness_k, self.n_queries))
            if self.n_queries > HUBNESS_MAX_QUERIES:
                # a large scan: the same rank among a seeded sample of queries (k scaled to the sample)
                # instead of a second full search of every candidate against every query
                pick = np.sort(np.random.default_rng(0).choice(self.n_queries, HUBNESS_MAX_QUERIES, replace=False))
                queries = self.queries[pick]
                k = max(1, round(k * HUBNESS_MAX_QUERIES / self.n_queries))
            if self.index_kind == "flat":
                scores, _ = topk(self.candidates, queries, k, backend="faiss")
            else:  # the same kind of approximate search, over the (sampled) queries
                from fnlab.retrieval.similarity import build_index

                index = build_index(queries, self.index_kind, params=self.index_params, seed=self.seed)
                scores, _ = topk(self.candidates, None, k, backend="faiss", index=index)
            self._hubness = np.where(np.isfinite(scores), scores, np.nan).mean(1).astype(np.float32)
        return self._hubness

    # ------------------------------------------------------------------ drawing pairs
    def draw_unlabelled(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (query, candidate) pairs drawn uniformly, with replacement, among unlabelled pairs.

        The draw of the posterior fits and of the scans' sample (the evaluation's pool sample and the
        app's similarity sample draw their own). Returns two ``[n]`` int64 arrays (empty where every
        pair is labelled).
        """
        n = int(n)
        if n <= 0 or self.n_unlabelled <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        qs, cs, have = [], [], 0
        while have < n:
            m = int((n - have) * 1.1) + 16
            q = rng.integers(0, self.n_queries, size=m)
            c = rng.integers(0, self.n_candidates, size=m)
            keep = ~self.is_labelled(q, c)
            qs.append(q[keep])
            cs.append(c[keep])
            have += int(keep.sum())
        return np.concatenate(qs)[:n], np.concatenate(cs)[:n]

    # ------------------------------------------------------------------ signals
    def signals(self, q: np.ndarray, c: np.ndarray, *, leave_pair_out: bool = False,
                names: tuple[str, ...] | None = None, similarity: np.ndarray | None = None) -> PairSignals:
        """The signals of pairs ``(q[i], c[i])`` (module docstring); ``leave_pair_out`` for labelled pairs.

        ``names``: only these signals (those the context offers; e.g. a posterior's ``signals``), the
        similarity always; default every signal the context offers. ``similarity``: the pairs' similarities
        where the caller has them already (a search's scores), used as they are.

        Shapes: ``q``, ``c`` ``[N]`` int -> :class:`PairSignals` of ``[N]`` float64 tensors.
        """
        q = np.asarray(q, dtype=np.int64).ravel()
        c = np.asarray(c, dtype=np.int64).ravel()
        sims = self.similarity(q, c) if similarity is None else np.asarray(similarity).ravel()
        out: dict[str, np.ndarray] = {"similarity": sims.astype(np.float64)}
        for name in self.signal_names[1:]:
            if names is not None and name not in names:
                continue
            out[name] = self._signal(name, q, c, leave_pair_out)
        return PairSignals(**{k: torch.from_numpy(v) for k, v in out.items()},
                           window=self.window if "query_threshold" in out else None)

    def _signal(self, name: str, q: np.ndarray, c: np.ndarray, leave_pair_out: bool) -> np.ndarray:
        """One signal of the pairs ``(q, c)``, ``[N]`` float64 (NaN: not defined for that pair)."""
        excl_c = c if leave_pair_out else None
        excl_q = q if leave_pair_out else None
        qv, cv = self.query_view, self.candidate_view
        if name == "positive_similarity":
            return self._max_over_set(self.queries, q, self.positives, self.candidates, exclude=excl_c)
        if name == "positive_neighbour":
            return self._max_over_set(self.candidates, c, self.positives, self.candidates, set_rows=q, exclude=excl_c)
        if name == "query_neighbour":
            return self._max_over_set(self.queries, q, self.positives_t, self.query_keys, set_rows=c, exclude=excl_q,
                                      drop_self=q)
        if name == "candidate_hubness":
            return self.candidate_hubness()[c].astype(np.float64)
        if name == "positive_duplicate":
            keys = self.content_keys("candidate")
            return self._max_over_set(keys, c, self.positives, keys, set_rows=q, exclude=excl_c, equal=True)
        if name == "query_duplicate":
            keys = self.content_keys("query")
            return self._max_over_set(keys, q, self.positives_t, keys, set_rows=c, exclude=excl_q, drop_self=q,
                                      equal=True)
        if name == "view_similarity":
            return np.einsum("ij,ij->i", qv[q], cv[c]).astype(np.float64)
        if name == "view_positive_similarity":
            return self._max_over_set(qv, q, self.positives, cv, exclude=excl_c)
        if name == "view_positive_neighbour":
            return self._max_over_set(cv, c, self.positives, cv, set_rows=q, exclude=excl_c)
        if name == "view_query_neighbour":
            return self._max_over_set(qv, q, self.positives_t, qv, set_rows=c, exclude=excl_q, drop_self=q)
        if name == "query_threshold":
            return self.query_threshold(self.window)[q].astype(np.float64)
        raise ValueError(f"unknown signal {name!r}")

    @staticmethod
    def _max_over_set(left: np.ndarray, left_idx: np.ndarray, sets: sp.csr_matrix, right: np.ndarray, *,
                      set_rows: np.ndarray | None = None, exclude: np.ndarray | None = None,
                      drop_self: np.ndarray | None = None, equal: bool = False, step: int = 1 << 20) -> np.ndarray:
        """``max_{j in sets[row_i], j != exclude_i} left[left_idx_i] . right[j]`` per pair (NaN: empty set).

        ``set_rows`` picks each pair's row of ``sets`` (default ``left_idx``). ``drop_self`` also
        leaves out ``j == drop_self_i`` (a query is not its own neighbour). ``equal``: ``left`` and
        ``right`` are ``[N]`` content keys and the value is 1.0 where they are equal, else 0.0.
        """
        rows = left_idx if set_rows is None else np.asarray(set_rows, dtype=np.int64)
        n = rows.size
        counts = np.diff(sets.indptr)[rows]
        out = np.full(n, np.nan)
        total = int(counts.sum())
        if total == 0:
            return out
        pair_of = np.repeat(np.arange(n, dtype=np.int64), counts)
        # position of each expanded entry inside its row slice
        offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        members = sets.indices[np.repeat(sets.indptr[rows], counts) + offsets].astype(np.int64)
        li = left_idx[pair_of]
        if equal:
            vals = (left[li] == right[members]).astype(np.float64)
        else:
            vals = _set_products(left, li, right, members, step=step)
        bad = np.zeros(total, dtype=bool)
        if exclude is not None:
            bad |= members == np.asarray(exclude, dtype=np.int64)[pair_of]
        if drop_self is not None:
            bad |= members == np.asarray(drop_self, dtype=np.int64)[pair_of]
        vals[bad] = -np.inf
        starts = np.cumsum(counts) - counts
        has = counts > 0
        best = np.maximum.reduceat(vals, starts[has]) if has.any() else np.zeros(0)
        best[~np.isfinite(best)] = np.nan
        out[has] = best
        return out


#: dense products of a block of distinct left rows with every right row take at most this many entries
_BLOCK_ENTRIES = 1 << 22


def _set_products(left: np.ndarray, li: np.ndarray, right: np.ndarray, members: np.ndarray, *,
                  step: int = 1 << 20, block_entries: int = _BLOCK_ENTRIES) -> np.ndarray:
    """``left[li[k]] . right[members[k]]`` for every expanded entry ``k``, ``[total]`` float64.

    Many entries share few distinct left rows (a sample's pairs have a few thousand queries; each expands to
    its labelled set): then one matrix product of those rows (or of every left row, where that product is
    small) with every right row, read at the entries, costs far less than gathering two ``[total, d]``
    arrays; each product holds at most ``block_entries`` values.
    Otherwise the entries' rows are gathered in chunks of ``step``.

    Shapes: ``left [L, d]``, ``right [R, d]``, ``li``, ``members`` ``[total]`` int -> ``[total]``.
    """
    total = li.size
    if left.shape[0] * right.shape[0] <= block_entries:  # every product at once: no need to find the rows used
        return (left @ right.T)[li, members].astype(np.float64)
    uniq, inv = np.unique(li, return_inverse=True)
    vals = np.empty(total, dtype=np.float64)
    if uniq.size * right.shape[0] > 8 * total:
        for i in range(0, total, step):
            vals[i:i + step] = np.einsum("ij,ij->i", left[li[i:i + step]], right[members[i:i + step]])
        return vals
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(0, uniq.size + 1))
    block = max(1, block_entries // max(1, right.shape[0]))
    right_t = np.ascontiguousarray(right.T)
    for b0 in range(0, uniq.size, block):
        b1 = min(uniq.size, b0 + block)
        products = left[uniq[b0:b1]] @ right_t  # [b1 - b0, n_right]
        at = order[bounds[b0]:bounds[b1]]
        vals[at] = products[inv[at] - b0, members[at]]
    return vals
