"""What the app shows, computed without any UI: rankings, similarity samples, sampler comparisons.

Everything takes a dataset split and its embeddings (``emb_a`` images, ``emb_b`` captions, L2-normalised)
and a *direction*: ``"t2i"`` (queries are captions, candidates images) or ``"i2t"`` (queries are
images, candidates captions). Ground truth (``relevance``) is used only where the dataset has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from fnlab.core.status import FALSE_NEGATIVE, POSITIVE, TRUE_NEGATIVE, UNKNOWN
from fnlab.data.base import MatchingDataset
from fnlab.data.minilm import DEFAULT_ENCODER
from fnlab.retrieval.similarity import normalize

DIRECTIONS = {"t2i": "text → image", "i2t": "image → text"}


def direction_labels(ds: MatchingDataset) -> dict[str, str]:
    """Words for the two directions of ``ds``: :data:`DIRECTIONS` for images with text, else from its
    modalities (``"query → document"`` / ``"document → query"`` for text on both sides).

    ``"t2i"`` always means side-B queries over side-A candidates, ``"i2t"`` the reverse.
    """
    if (ds.a_modality, ds.b_modality) == ("image", "text"):
        return dict(DIRECTIONS)
    n = ds.nouns
    return {"t2i": f"{n.b} → {n.a}", "i2t": f"{n.a} → {n.b}"}


#: roles of a table's pairs and the dataset side they come from, per direction
_ROLE_SIDES = {"t2i": {"query": "b", "candidate": "a"}, "i2t": {"query": "a", "candidate": "b"}}


def with_content(table: pd.DataFrame, ds: MatchingDataset, *, direction: str | None = None) -> pd.DataFrame:
    """``table`` (columns ``query``, ``candidate``: item indices within ``ds``'s split, as a scan, a ranking
    or a review export has them) with what each item is, beside its index: ``query_id``, ``candidate_id``
    (the items' ids in the full dataset: the rows of a ``pairs`` folder's ``b.npy``/``a.npy``) and, where
    the dataset has them, ``query_text``/``candidate_text``, ``..._image_path`` and ``..._label``
    (:func:`fnlab.data.display.side_content`). Each new column sits after its index column.

    Args:
        table: the pairs; a ``direction`` column (``t2i``/``i2t`` per row) wins over ``direction``.
        ds: the split the indices refer to.
        direction: ``"t2i"`` (queries are side B; the default) or ``"i2t"``.

    Raises:
        ValueError: an unknown direction, or an index outside the split (naming the column).
    """
    from fnlab.data.display import side_content

    out = table.copy()
    if "direction" in out.columns:
        dirs = out["direction"].astype(str).to_numpy()
    else:
        dirs = np.full(len(out), direction or "t2i", dtype=object)
    bad = sorted(set(dirs) - set(_ROLE_SIDES))
    if bad:
        raise ValueError(f"unknown direction {bad[0]!r}: expected one of {list(_ROLE_SIDES)}")
    content = {"a": side_content(ds, "a"), "b": side_content(ds, "b")}
    sizes = {"a": ds.n_a, "b": ds.n_b}
    for role in ("query", "candidate"):
        if role not in out.columns:
            raise ValueError(f"table lacks column {role!r}: expected item indices of the {ds.split!r} split")
        idx = out[role].to_numpy(dtype=np.int64)
        side_of_row = np.array([_ROLE_SIDES[d][role] for d in dirs], dtype=object)
        new: dict[str, np.ndarray] = {}
        for side in ("a", "b"):
            rows = side_of_row == side
            if not rows.any():
                continue
            if (idx[rows] < 0).any() or (idx[rows] >= sizes[side]).any():
                raise ValueError(f"column {role!r} has indices outside [0, {sizes[side]}), the {ds.nouns.side(side)} "
                                 f"of split {ds.split!r}; expected indices of that split")
            for col, values in content[side].items():
                name = f"{role}_{col}"
                if name not in new:
                    new[name] = np.full(len(out), None if values.dtype == object else -1, dtype=values.dtype)
                new[name][rows] = values[idx[rows]]
        at = out.columns.get_loc(role) + 1
        for name, values in new.items():
            if name in out.columns:
                out = out.drop(columns=name)
            out.insert(min(at, len(out.columns)), name, values)
            at += 1
    return out


@dataclass(frozen=True)
class Sides:
    """Queries and candidates of one direction, with their pair masks.

    Attributes:
        queries: ``[Nq, d]`` float32 unit vectors.
        candidates: ``[Nc, d]`` float32 unit vectors.
        positives: ``[Nq, Nc]`` sparse bool, the labelled pairs.
        relevant: ``[Nq, Nc]`` sparse bool ground truth (includes the labelled pairs), or ``None``.
        direction: ``"t2i"`` or ``"i2t"``.
    """

    queries: np.ndarray
    candidates: np.ndarray
    positives: sp.csr_matrix
    relevant: sp.csr_matrix | None
    direction: str
    dataset: MatchingDataset | None = None  # for the texts' second view, where a posterior reads one
    view_encoder: str = DEFAULT_ENCODER  # the encoder of that view (the run's ``view_encoder``; default: the bundled one)

    @cached_property
    def content(self) -> dict:
        """``query_content`` and ``candidate_content`` (:meth:`fnlab.data.base.MatchingDataset.content_keys`) of
        these sides, as a run's posterior read them in its fit; empty without the dataset."""
        if self.dataset is None or not hasattr(self.dataset, "content_keys"):
            return {}
        q_side, c_side = ("b", "a") if self.direction == "t2i" else ("a", "b")
        return {"query_content": self.dataset.content_keys(q_side),
                "candidate_content": self.dataset.content_keys(c_side)}

    @cached_property
    def pair_context(self):
        """The :class:`fnlab.posterior.PairContext` of these sides (built once), for a posterior's pair signals."""
        from fnlab.posterior import PairContext

        return PairContext(self.queries, self.candidates, self.positives, **self.content)

    @cached_property
    def view_context(self):
        """:attr:`pair_context` with the texts' second view (:func:`fnlab.data.minilm.dataset_views`, encoded:
        the captions', and side A's where it has texts in the same space)."""
        from fnlab.data.minilm import dataset_views
        from fnlab.posterior import PairContext

        a_view, b_view = dataset_views(self.dataset, self.view_encoder) if self.dataset is not None else (None, None)
        q_view, c_view = (b_view, a_view) if self.direction == "t2i" else (a_view, b_view)
        views = {k: v for k, v in (("query_view", q_view), ("candidate_view", c_view)) if v is not None}
        return PairContext(self.queries, self.candidates, self.positives, **views, **self.content)

    def context_for(self, posterior):
        """The context whose signals ``posterior`` reads (with the text view if it reads one), in its window."""
        ctx = self.view_context if any(n.startswith("view_") for n in posterior.signals) else self.pair_context
        if posterior.window is not None:
            ctx.window = posterior.window
        return ctx

    def prob_false_negative(self, posterior, query: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """``[N]`` P(false negative) of pairs ``(query[i], candidate[i])`` under ``posterior``, from every signal
        the pair offers (similarity, margin to the query's positive, neighbours...)."""
        from fnlab.posterior import prob_false_negative

        sig = self.context_for(posterior).signals(np.asarray(query, dtype=np.int64),
                                                  np.asarray(candidate, dtype=np.int64), names=posterior.signals)
        return prob_false_negative(posterior, sig).double().numpy()

    def why(self, posterior, query: np.ndarray, candidate: np.ndarray) -> list[str]:
        """Why each pair is suspected, in words (:mod:`fnlab.posterior.reasons`); "" below P = 0.05."""
        from fnlab.posterior.reasons import explain

        sig = self.context_for(posterior).signals(np.asarray(query, dtype=np.int64),
                                                  np.asarray(candidate, dtype=np.int64), names=posterior.signals)
        return explain(posterior, sig)

    @property
    def false_negatives(self) -> sp.csr_matrix | None:
        if self.relevant is None:
            return None
        fn = self.relevant.astype(np.int8) - self.positives.astype(np.int8)
        fn.data = fn.data > 0
        fn.eliminate_zeros()
        return sp.csr_matrix(fn, dtype=bool)


def sides(ds: MatchingDataset, emb_a: np.ndarray, emb_b: np.ndarray, direction: str, *,
          view_encoder: str | None = None) -> Sides:
    """Arrange a split's embeddings as queries and candidates (``view_encoder``: the encoder of the texts' second
    view, where a posterior reads one; ``None``: the bundled MiniLM).

    Raises:
        ValueError: unknown direction or embeddings that do not match the split's sizes.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}: expected one of {list(DIRECTIONS)}")
    if len(emb_a) != ds.n_a or len(emb_b) != ds.n_b:
        raise ValueError(f"embeddings have {len(emb_a)} images and {len(emb_b)} captions, but split "
                         f"{ds.split!r} has {ds.n_a} and {ds.n_b}")
    lab = ds.labelled_matrix().tocsr()
    rel = ds.relevance
    a, b = normalize(np.asarray(emb_a, dtype=np.float32)), normalize(np.asarray(emb_b, dtype=np.float32))
    enc = view_encoder or DEFAULT_ENCODER
    if direction == "t2i":
        return Sides(b, a, lab, rel, direction, ds, enc)
    return Sides(a, b, lab.T.tocsr(), None if rel is None else rel.T.tocsr(), direction, ds, enc)


def _row(m: sp.csr_matrix | None, q: int, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    if m is not None:
        out[m.indices[m.indptr[q]:m.indptr[q + 1]]] = True
    return out


def ranking(s: Sides, q: int, *, k: int = 20, posterior=None) -> tuple[pd.DataFrame, int]:
    """Top-``k`` candidates of query ``q`` over the whole candidate set, positives included.

    Returns:
        ``(table, positive_rank)``: table columns ``rank, candidate, similarity, labelled_positive,
        false_negative (bool or None), status, p_false_negative`` (NaN without posterior), ``why`` (the
        evidence behind P in words, :mod:`fnlab.posterior.reasons`);
        ``positive_rank`` is the 1-based rank of the best labelled positive.

    Raises:
        IndexError: ``q`` out of range.
    """
    nq, nc = len(s.queries), len(s.candidates)
    if not 0 <= q < nq:
        raise IndexError(f"query {q} out of range [0, {nq})")
    sims = s.candidates @ s.queries[q]
    order = np.argsort(-sims, kind="stable")
    pos = _row(s.positives, q, nc)
    fn = _row(s.false_negatives, q, nc) if s.relevant is not None else None
    pos_rank = int(np.flatnonzero(pos[order])[0]) + 1 if pos.any() else -1
    top = order[: min(k, nc)]
    status = np.where(pos[top], POSITIVE, TRUE_NEGATIVE if fn is not None else UNKNOWN).astype(object)
    if fn is not None:
        status[fn[top]] = FALSE_NEGATIVE
    p_fn = np.full(len(top), np.nan)
    why = [""] * len(top)
    if posterior is not None:
        p_fn = s.prob_false_negative(posterior, np.full(len(top), q), top)
        p_fn[pos[top]] = np.nan  # a labelled positive is not a candidate false negative
        why = [("" if is_pos else w) for w, is_pos in zip(s.why(posterior, np.full(len(top), q), top), pos[top],
                                                          strict=True)]
    table = pd.DataFrame({
        "rank": np.arange(1, len(top) + 1), "candidate": top, "similarity": sims[top],
        "labelled_positive": pos[top], "false_negative": fn[top] if fn is not None else None,
        "status": status, "p_false_negative": p_fn, "why": why,
    })
    return table, pos_rank


@dataclass(frozen=True)
class SimilaritySample:
    """Similarities of one split: labelled positives, a negative sample, ground-truth false negatives.

    ``hard`` / ``hard_is_fn`` are each query's top non-positive candidates and whether each is truly
    relevant: the pairs a sampler actually chooses from, used for calibration.
    """

    positive: np.ndarray
    negative: np.ndarray
    false_negative: np.ndarray | None
    hard: np.ndarray
    hard_is_fn: np.ndarray | None
    hardest: np.ndarray
    hard_query: np.ndarray | None = None  # [H] query index of each hard pair
    hard_candidate: np.ndarray | None = None  # [H] candidate index of each hard pair
    hard_pos: np.ndarray | None = None  # [H] its query's best labelled-positive similarity


def similarity_sample(s: Sides, *, max_negatives: int = 200_000, hard_k: int = 10, seed: int = 0) -> SimilaritySample:
    """Positive, negative and false-negative similarities of a split (all pairs when small enough)."""
    rng = np.random.default_rng(seed)
    nq, nc = len(s.queries), len(s.candidates)
    pos_coo = s.positives.tocoo()
    positive = np.einsum("ij,ij->i", s.queries[pos_coo.row], s.candidates[pos_coo.col])
    fnm = s.false_negatives
    fn_sims = None
    if fnm is not None:
        c = fnm.tocoo()
        fn_sims = np.einsum("ij,ij->i", s.queries[c.row], s.candidates[c.col])
    # Negatives: random unlabelled pairs (labelled positives dropped).
    n_draw = min(max_negatives, nq * nc)
    qi, ci = rng.integers(0, nq, n_draw), rng.integers(0, nc, n_draw)
    keep = ~np.asarray(s.positives[qi, ci]).ravel().astype(bool)
    negative = np.einsum("ij,ij->i", s.queries[qi[keep]], s.candidates[ci[keep]])
    # Hard candidates: each query's top non-positive candidates.
    from fnlab.retrieval.similarity import topk

    k = min(hard_k, max(1, nc - 1))
    scores, idx = topk(s.queries, s.candidates, k, exclude=s.positives)
    valid = idx >= 0
    hard = scores[valid]
    rows = np.broadcast_to(np.arange(nq)[:, None], idx.shape)[valid]
    hard_is_fn = None
    if s.relevant is not None:
        hard_is_fn = np.asarray(s.relevant[rows, idx[valid]]).ravel().astype(bool)
    hardest = scores[:, 0][valid[:, 0]]
    best_pos = np.full(nq, np.nan, dtype=np.float64)  # each query's best labelled-positive similarity
    np.fmax.at(best_pos, pos_coo.row, positive.astype(np.float64))
    return SimilaritySample(positive, negative, fn_sims, hard, hard_is_fn, hardest, hard_query=rows,
                            hard_candidate=idx[valid], hard_pos=best_pos[rows])


@dataclass(frozen=True)
class Batch:
    """A batch of queries against the whole candidate set, as tensors for samplers.

    ``sims [B, M]``, ``pos_sims [B]`` (best labelled positive), ``positive_mask`` and ``relevant_mask``
    ``[B, M]`` bool (the latter ``None`` without ground truth).
    """

    queries: np.ndarray
    sims: torch.Tensor
    pos_sims: torch.Tensor
    positive_mask: torch.Tensor
    relevant_mask: torch.Tensor | None

    @property
    def false_negative_mask(self) -> torch.Tensor | None:
        if self.relevant_mask is None:
            return None
        return self.relevant_mask & ~self.positive_mask


def batch(s: Sides, queries: np.ndarray) -> Batch:
    """Similarities of ``queries`` (indices) to every candidate, with masks."""
    q = np.asarray(queries, dtype=np.int64)
    if q.size == 0 or q.min() < 0 or q.max() >= len(s.queries):
        raise IndexError(f"query indices must lie in [0, {len(s.queries)})")
    sims = torch.from_numpy(s.queries[q] @ s.candidates.T)
    pmask = torch.from_numpy(s.positives[q].toarray().astype(bool))
    rmask = torch.from_numpy(s.relevant[q].toarray().astype(bool)) if s.relevant is not None else None
    pos_sims = torch.where(pmask, sims, torch.full_like(sims, -torch.inf)).max(dim=1).values
    pos_sims = torch.where(torch.isfinite(pos_sims), pos_sims, sims.max(dim=1).values)
    return Batch(q, sims, pos_sims, pmask, rmask)


def sampler_weights(b: Batch, samplers: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """``name -> [B, M]`` weights of each built sampler on the batch, each called with the batch's
    :class:`~fnlab.retrieval.hooks.SampleContext` (samplers that need ground truth get it, or are left out)."""
    from fnlab.retrieval.hooks import SampleContext

    out = {}
    for name, smp in samplers.items():
        needs = bool(getattr(smp, "needs_relevance", False))
        if needs and b.relevant_mask is None:
            continue
        ctx = SampleContext(positive_mask=b.positive_mask, relevant_mask=b.relevant_mask if needs else None)
        out[name] = smp.weights(b.sims, b.pos_sims, b.positive_mask, ctx=ctx)
    return out


def sampler_summary(b: Batch, weights: Mapping[str, torch.Tensor], *, posterior=None,
                    sides: Sides | None = None, p_fn: torch.Tensor | np.ndarray | None = None) -> pd.DataFrame:
    """Hardness and false-negative risk of each sampler, as expectations under its sampling distribution.

    ``hardness`` = expected similarity of a sampled negative; ``fn_risk`` = expected share of sampled
    negatives that are truly relevant (ground truth), or, without ground truth, their expected posterior
    P(FN) (column ``risk_source`` says which). Averaged over the batch's queries. ``sides`` (the batch's
    :class:`Sides`) lets the posterior use every signal of a pair, not only its similarity and margin;
    ``p_fn`` (``[B, M]``, :func:`pool_probabilities`) gives those probabilities computed once instead.
    """
    fn = b.false_negative_mask
    rows = []
    for name, w in weights.items():
        p = w.double()
        p = p / p.sum(dim=1, keepdim=True).clamp_min(1e-300)
        hard = float((p * b.sims.double()).sum(1).mean())
        if fn is not None:
            risk, src = float((p * fn.double()).sum(1).mean()), "ground truth"
        elif p_fn is not None:
            risk, src = float((p * torch.as_tensor(p_fn, dtype=torch.float64)).sum(1).mean()), "posterior"
        elif posterior is not None:
            if sides is not None:
                nq, nc = b.sims.shape
                qq = np.repeat(b.queries, nc)
                cc = np.tile(np.arange(nc), nq)
                p_fn = torch.from_numpy(sides.prob_false_negative(posterior, qq, cc).reshape(nq, nc))
            else:
                from fnlab.posterior import prob_false_negative

                p_fn = prob_false_negative(posterior, b.sims.double(), b.pos_sims.double()[:, None])
            risk, src = float((p * p_fn).sum(1).mean()), "posterior"
        else:
            risk, src = float("nan"), "none"
        rows.append({"sampler": name, "hardness": hard, "fn_risk": risk, "risk_source": src})
    return pd.DataFrame(rows, columns=["sampler", "hardness", "fn_risk", "risk_source"])


def pool_probabilities(b: Batch, posterior, s: Sides) -> np.ndarray:
    """``[B, M]`` P(false negative) of every pair of batch ``b`` (its queries against all candidates of ``s``),
    from every signal a pair offers; labelled positives get 0."""
    nq, nc = b.sims.shape
    qq = np.repeat(b.queries, nc)
    cc = np.tile(np.arange(nc), nq)
    p = s.prob_false_negative(posterior, qq, cc).reshape(nq, nc)
    p[b.positive_mask.numpy()] = 0.0
    return p


# ------------------------------------------------------------------ every query's ranking at once
@dataclass(frozen=True)
class Rankings:
    """Every query's top ``k`` candidates of one direction, labelled positives included.

    Attributes:
        candidates: ``[Nq, k]`` int32 candidate indices, most similar first (ties by index); ``-1`` pads
            rows when there are fewer than ``k`` candidates.
        similarity: ``[Nq, k]`` float32 cosine similarities.
        p_false_negative: ``[Nq, k]`` float32 posterior P(false negative); NaN at labelled positives (not a
            candidate false negative), at padding, and everywhere without a posterior.
        positive_rank: ``[Nq]`` int32 1-based rank of each query's best labelled positive among all
            candidates (it may lie beyond ``k``); ``-1`` for a query without one.
    """

    candidates: np.ndarray
    similarity: np.ndarray
    p_false_negative: np.ndarray
    positive_rank: np.ndarray

    @property
    def k(self) -> int:
        return int(self.candidates.shape[1])

    def table(self, s: Sides, q: int, k: int | None = None) -> tuple[pd.DataFrame, int]:
        """Query ``q``'s top ``k`` (at most :attr:`k`) as :func:`ranking` returns it: ``(table, positive_rank)``.

        Raises:
            IndexError: ``q`` out of range.
        """
        nq = len(self.positive_rank)
        if not 0 <= int(q) < nq:
            raise IndexError(f"query {q} out of range [0, {nq})")
        k = self.k if k is None else max(1, min(int(k), self.k))
        q = int(q)
        top = self.candidates[q, :k]
        keep = top >= 0
        top = top[keep].astype(np.int64)
        nc = len(s.candidates)
        pos = _row(s.positives, q, nc)[top]
        fn = _row(s.false_negatives, q, nc)[top] if s.relevant is not None else None
        status = np.where(pos, POSITIVE, TRUE_NEGATIVE if fn is not None else UNKNOWN).astype(object)
        if fn is not None:
            status[fn] = FALSE_NEGATIVE
        table = pd.DataFrame({
            "rank": np.arange(1, len(top) + 1), "candidate": top,
            "similarity": self.similarity[q, :k][keep].astype(np.float64),
            "labelled_positive": pos, "false_negative": fn if fn is not None else None, "status": status,
            "p_false_negative": self.p_false_negative[q, :k][keep].astype(np.float64),
        })
        return table, int(self.positive_rank[q])


def rankings(s: Sides, *, k: int = 50, posterior=None, chunk: int = 512) -> Rankings:
    """Every query's top ``k`` candidates with similarity and posterior (see :class:`Rankings`).

    The same numbers :func:`ranking` gives one query at a time, for all queries in chunks of ``chunk``
    rows: memory ``O(chunk * Nc)``. The posterior is evaluated on the ``Nq * k`` shown pairs only.
    """
    nq, nc = len(s.queries), len(s.candidates)
    k = max(1, int(k))
    kk = min(k, nc)
    cand = np.full((nq, k), -1, dtype=np.int32)
    sim = np.full((nq, k), np.nan, dtype=np.float32)
    pos_rank = np.full(nq, -1, dtype=np.int32)
    pos_csr = s.positives.tocsr()
    for start in range(0, nq, chunk):
        rows = np.arange(start, min(start + chunk, nq))
        sims = s.queries[rows] @ s.candidates.T  # [B, Nc]
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < nc else np.tile(np.arange(nc), (len(rows), 1))
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -part_sims), axis=1)  # similarity descending, ties by index (as ranking())
        top = np.take_along_axis(part, order, axis=1)
        cand[rows, :kk] = top
        sim[rows, :kk] = np.take_along_axis(sims, top, axis=1)
        for i, q in enumerate(rows):
            p = pos_csr.indices[pos_csr.indptr[q]:pos_csr.indptr[q + 1]]
            if len(p):
                best = p[np.argmax(sims[i, p])]
                b = sims[i, best]
                pos_rank[q] = int((sims[i] > b).sum() + (sims[i, :best] == b).sum()) + 1
    p_fn = np.full((nq, k), np.nan, dtype=np.float32)
    if posterior is not None:
        qq = np.repeat(np.arange(nq), kk)
        cc = cand[:, :kk].ravel().astype(np.int64)
        labelled = np.asarray(pos_csr[qq, cc]).ravel().astype(bool)
        vals = np.full(len(qq), np.nan)
        if (~labelled).any():
            vals[~labelled] = s.prob_false_negative(posterior, qq[~labelled], cc[~labelled])
        p_fn[:, :kk] = vals.reshape(nq, kk)
    return Rankings(cand, sim, p_fn, pos_rank)


# ------------------------------------------------------------------ the example query a lesson opens on
#: the example query's labelled positive ranks at most this high
EXAMPLE_MAX_RANK = 3
#: ... and FNE draws a false negative for it at most this share of the time (hardest: every time)
EXAMPLE_MAX_FNE_RISK = 0.25
#: ... and FNE's mean weight on one of its false negatives is at most this share of its mean weight on one of
#: its true negatives, among the top :data:`EXAMPLE_TOP` candidates: the bars show FNE's effect
EXAMPLE_MAX_CONTRAST = 0.5
EXAMPLE_TOP = 20


def teaching_example(s: Sides, samplers: Mapping[str, object], *, max_queries: int = 4096,
                     chunk: int = 256) -> dict | None:
    """The query of ``s`` that shows the false-negative story best; ``None`` without ground truth.

    ``samplers`` must hold ``"hardest"`` and ``"fne"`` (built, FNE with the run's posterior). A query scores, in
    order of importance: its labelled positive ranks in the top :data:`EXAMPLE_MAX_RANK`; at least one
    ground-truth false negative ranks above it; hardest mining's pick (its most similar unlabelled candidate)
    is a false negative; FNE draws a false negative at most :data:`EXAMPLE_MAX_FNE_RISK` of the time; and FNE's
    weight visibly avoids the false negatives among its top :data:`EXAMPLE_TOP` (mean weight per false negative
    at most :data:`EXAMPLE_MAX_CONTRAST` of the mean per true negative). Among the queries with the best score,
    the one where FNE's effect is largest (the lowest contrast, then the largest drop in false-negative risk
    from hardest to FNE) wins; the first ``max_queries`` queries are considered.

    Returns:
        ``query``, ``positive`` (its best-ranked labelled candidate), ``false_negative`` (its best-ranked false
        negative), ``positive_rank``, ``false_negatives_above``, ``hardest_pick_is_fn``, ``fne_fn_risk``,
        ``hardest_fn_risk`` (the probability that each draws a false negative for this query), ``fne_contrast``
        and ``checks`` (how many of the five criteria it meets).
    """
    if s.relevant is None or s.false_negatives is None or s.false_negatives.nnz == 0:
        return None
    best, best_key = None, None
    for start in range(0, min(len(s.queries), max_queries), chunk):
        qs = np.arange(start, min(start + chunk, len(s.queries), max_queries))
        b = batch(s, qs)
        sims, pos, fn = b.sims.numpy(), b.positive_mask.numpy(), b.false_negative_mask.numpy()
        pos_sims = np.where(pos, sims, -np.inf)
        best_idx = pos_sims.argmax(axis=1)
        best_pos = pos_sims[np.arange(len(qs)), best_idx]
        # ranked as ranking() ranks: similarity descending, ties by candidate index (an exact copy of the
        # labelled positive with a lower index ranks above it)
        ahead = (sims > best_pos[:, None]) | ((sims == best_pos[:, None])
                                              & (np.arange(sims.shape[1]) < best_idx[:, None]))
        above = (fn & ahead).sum(axis=1)
        pos_rank = ahead.sum(axis=1) + 1
        pick = np.where(pos, -np.inf, sims).argmax(axis=1)
        pick_is_fn = fn[np.arange(len(qs)), pick]
        probs = {}
        for name, w in sampler_weights(b, samplers).items():
            w = w.double()
            probs[name] = (w / w.sum(dim=1, keepdim=True).clamp_min(1e-300)).numpy()
        risk = {n: (p * fn).sum(axis=1) for n, p in probs.items()}
        # FNE's mean weight per false negative vs per true negative among the top candidates
        order = np.argsort(-sims, axis=1, kind="stable")[:, :EXAMPLE_TOP]
        top_fn = np.take_along_axis(fn, order, axis=1)
        top_tn = ~np.take_along_axis(fn | pos, order, axis=1)
        top_p = np.take_along_axis(probs["fne"], order, axis=1)
        on_fn = np.where(top_fn, top_p, 0).sum(1) / np.maximum(top_fn.sum(1), 1)
        on_tn = np.where(top_tn, top_p, 0).sum(1) / np.maximum(top_tn.sum(1), 1)
        contrast = np.where((top_fn.sum(1) > 0) & (on_tn > 0), on_fn / np.maximum(on_tn, 1e-300), np.inf)
        checks = ((pos_rank <= EXAMPLE_MAX_RANK).astype(int) * 16 + (above >= 1) * 8 + pick_is_fn * 4
                  + (risk["fne"] <= EXAMPLE_MAX_FNE_RISK) * 2 + (contrast <= EXAMPLE_MAX_CONTRAST))
        for i in range(len(qs)):
            key = (int(checks[i]), -float(min(contrast[i], 1e9)), float(risk["hardest"][i] - risk["fne"][i]))
            if best_key is None or key > best_key:
                fn_sims = np.where(fn[i], sims[i], -np.inf)
                best_key = key
                best = {"query": int(qs[i]), "positive": int(np.argmax(np.where(pos[i], sims[i], -np.inf))),
                        "false_negative": int(np.argmax(fn_sims)) if np.isfinite(fn_sims).any() else None,
                        "positive_rank": int(pos_rank[i]), "false_negatives_above": int(above[i]),
                        "hardest_pick_is_fn": bool(pick_is_fn[i]), "fne_fn_risk": float(risk["fne"][i]),
                        "hardest_fn_risk": float(risk["hardest"][i]),
                        "fne_contrast": float(contrast[i]) if np.isfinite(contrast[i]) else None,
                        "checks": int(bin(int(checks[i])).count("1"))}
    return best
