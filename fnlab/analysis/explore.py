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
    dataset: MatchingDataset | None = None  # for the captions' text view, where a posterior reads one

    @cached_property
    def pair_context(self):
        """The :class:`fnlab.posterior.PairContext` of these sides (built once), for a posterior's pair signals."""
        from fnlab.posterior import PairContext

        return PairContext(self.queries, self.candidates, self.positives)

    @cached_property
    def view_context(self):
        """:attr:`pair_context` with the captions' text view (:func:`fnlab.data.minilm.dataset_text_view`)."""
        from fnlab.data.minilm import dataset_text_view
        from fnlab.posterior import PairContext

        view = dataset_text_view(self.dataset) if self.dataset is not None else None
        key = "query_view" if self.direction == "t2i" else "candidate_view"
        return PairContext(self.queries, self.candidates, self.positives, **({key: view} if view is not None else {}))

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


def sides(ds: MatchingDataset, emb_a: np.ndarray, emb_b: np.ndarray, direction: str) -> Sides:
    """Arrange a split's embeddings as queries and candidates.

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
    if direction == "t2i":
        return Sides(b, a, lab, rel, direction, ds)
    return Sides(a, b, lab.T.tocsr(), None if rel is None else rel.T.tocsr(), direction, ds)


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
                    sides: Sides | None = None) -> pd.DataFrame:
    """Hardness and false-negative risk of each sampler, as expectations under its sampling distribution.

    ``hardness`` = expected similarity of a sampled negative; ``fn_risk`` = expected share of sampled
    negatives that are truly relevant (ground truth), or, without ground truth, their expected posterior
    P(FN) (column ``risk_source`` says which). Averaged over the batch's queries. ``sides`` (the batch's
    :class:`Sides`) lets the posterior use every signal of a pair, not only its similarity and margin.
    """
    fn = b.false_negative_mask
    rows = []
    for name, w in weights.items():
        p = w.double()
        p = p / p.sum(dim=1, keepdim=True).clamp_min(1e-300)
        hard = float((p * b.sims.double()).sum(1).mean())
        if fn is not None:
            risk, src = float((p * fn.double()).sum(1).mean()), "ground truth"
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
