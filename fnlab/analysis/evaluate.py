"""Retrieval and false-negative-detection metrics on embeddings.

All functions take L2-normalised embeddings ``emb_a [n_a, d]`` (images, side A) and
``emb_b [n_b, d]`` (captions, side B) of one split and the split's
:class:`fnlab.data.base.MatchingDataset` (``b_to_a [n_b]``, ``relevance [n_b, n_a]``).

Metrics (docs/METHODS.md, "Evaluation"):

- **Recall@K** (percent), Flickr30K/COCO protocol as in VSE++ and FNE (Li et al., ACM MM 2023,
  Sec. 4): image-to-text (``i2t``) -- an image query is correct at K if *any* of its labelled
  captions is among the top K captions; text-to-image (``t2i``) -- a caption query is correct if
  its labelled image is among the top K images. ``rsum`` is the sum of the six recalls (0..600).
- **Relevant recall@K** (percent): the same, counting *any relevant* item (ground truth) as a hit,
  so retrieving a false negative is not punished.
- **R-precision** (percent; ECCV Caption's PMRP idea): for a query with R relevant items, the
  share of relevant items among its top R; averaged over queries.
- **FN detection** (AUROC, AP, ECE of a posterior): the *candidate set* is, for every caption,
  its ``fn_top_k`` (default 10) most similar images other than its labelled image; a candidate is
  a true false negative when ``relevance[caption, image]`` holds. The posterior's
  ``prob_false_negative(similarity)`` is scored against that label with scikit-learn's
  ``roc_auc_score`` and ``average_precision_score`` and a 10-bin equal-width expected calibration
  error (ECE = sum over bins of ``|bin| / N * |mean label - mean probability|``).

Top-k retrieval goes through :func:`fnlab.retrieval.similarity.topk` (faiss by default). R-precision needs
a per-query cut-off R (up to all items), so it ranks in chunks with torch instead.

The output of :func:`evaluate_embeddings` is the JSON object of ``fnlab eval --json``; keys are
always present, ground-truth parts are ``None`` (JSON null) where the dataset has no relevance,
``fn_detection`` is ``None`` without a posterior, ``sampled_fn_rate`` is passed through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from fnlab.retrieval.similarity import topk

KS: tuple[int, ...] = (1, 5, 10)

__all__ = [
    "KS", "Candidates", "evaluate_embeddings", "retrieval_recall", "r_precision", "fn_candidates", "pool_candidates",
    "fn_detection", "expected_calibration_error", "reliability_bins",
]


def _check_embeddings(emb_a: np.ndarray, emb_b: np.ndarray, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    ea = np.ascontiguousarray(np.asarray(emb_a, dtype=np.float32))
    eb = np.ascontiguousarray(np.asarray(emb_b, dtype=np.float32))
    where = f"dataset {getattr(dataset, 'name', '?')!r} split {getattr(dataset, 'split', '?')!r}"
    if ea.ndim != 2 or eb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [n, d]; got emb_a {ea.shape}, emb_b {eb.shape}")
    if ea.shape[1] != eb.shape[1]:
        raise ValueError(f"emb_a has d={ea.shape[1]} but emb_b has d={eb.shape[1]}; expected the same size")
    if ea.shape[0] != dataset.n_a:
        raise ValueError(f"emb_a has {ea.shape[0]} rows but {where} has n_a={dataset.n_a} side-A items")
    if eb.shape[0] != dataset.n_b:
        raise ValueError(f"emb_b has {eb.shape[0]} rows but {where} has n_b={dataset.n_b} side-B items")
    if not (np.isfinite(ea).all() and np.isfinite(eb).all()):
        raise ValueError("embeddings hold NaN or infinite values")
    return ea, eb


def _sparse_lookup(mat: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``mat[rows[i, j], cols[i, j]]`` as a bool array of ``cols``' shape; ``cols == -1`` gives False."""
    rows_b = np.broadcast_to(rows, cols.shape)
    valid = cols >= 0
    out = np.zeros(cols.shape, dtype=bool)
    if valid.any():
        from fnlab.posterior import pair_member

        out[valid] = pair_member(sp.csr_matrix(mat, dtype=bool), rows_b[valid], cols[valid])
    return out


def retrieval_recall(emb_a: np.ndarray, emb_b: np.ndarray, b_to_a: np.ndarray, *,
                     relevance: sp.csr_matrix | None = None, ks: Sequence[int] = KS,
                     backend: str = "faiss") -> tuple[dict, dict | None]:
    """Recall@K in both directions (percent) and, with ``relevance``, relevant recall@K.

    Args:
        emb_a: ``[n_a, d]`` unit rows; emb_b: ``[n_b, d]`` unit rows.
        b_to_a: ``[n_b]`` labelled image of each caption.
        relevance: ``[n_b, n_a]`` sparse bool ground truth, or ``None``.
        ks: cut-offs.

    Returns:
        ``(recall, relevant_recall)``, each ``{"i2t": {"1": r, ...}, "t2i": {...}, "rsum": x}``;
        ``relevant_recall`` is ``None`` without relevance.
    """
    b_to_a = np.asarray(b_to_a, dtype=np.int64)
    n_a, n_b = emb_a.shape[0], emb_b.shape[0]
    kmax = max(ks)
    # i2t: image queries over captions
    _, idx_i2t = topk(emb_a, emb_b, min(kmax, n_b), backend=backend)
    lab_i2t = np.where(idx_i2t >= 0, b_to_a[np.maximum(idx_i2t, 0)] == np.arange(n_a)[:, None], False)
    # t2i: caption queries over images
    _, idx_t2i = topk(emb_b, emb_a, min(kmax, n_a), backend=backend)
    lab_t2i = idx_t2i == b_to_a[:, None]

    def pack(hit_i2t: np.ndarray, hit_t2i: np.ndarray) -> dict:
        out: dict[str, Any] = {"i2t": {}, "t2i": {}}
        for k in ks:
            out["i2t"][str(k)] = float(100.0 * hit_i2t[:, :k].any(1).mean()) if n_a else 0.0
            out["t2i"][str(k)] = float(100.0 * hit_t2i[:, :k].any(1).mean()) if n_b else 0.0
        out["rsum"] = float(sum(out["i2t"].values()) + sum(out["t2i"].values()))
        return out

    recall = pack(lab_i2t, lab_t2i)
    if relevance is None:
        return recall, None
    rel = sp.csr_matrix(relevance, dtype=bool)
    rel_t = rel.T.tocsr()  # [n_a, n_b]
    rel_i2t = _sparse_lookup(rel_t, np.arange(n_a)[:, None], idx_i2t)
    rel_t2i = _sparse_lookup(rel, np.arange(n_b)[:, None], idx_t2i)
    return recall, pack(rel_i2t, rel_t2i)


def _r_precision_one_side(queries: torch.Tensor, keys: torch.Tensor, rel: sp.csr_matrix,
                          chunk_size: int) -> float:
    counts = np.diff(rel.indptr)
    total, n_used = 0.0, 0
    for start in range(0, queries.shape[0], chunk_size):
        stop = min(start + chunk_size, queries.shape[0])
        r = torch.from_numpy(counts[start:stop]).to(queries.device)
        keep = r > 0
        if not bool(keep.any()):
            continue
        sims = queries[start:stop] @ keys.T  # [c, Nk]
        order = torch.argsort(sims, dim=1, descending=True)
        dense = torch.from_numpy(rel[start:stop].toarray()).to(queries.device)
        hits = dense.gather(1, order).cumsum(1)  # [c, Nk] relevant found within top j+1
        at_r = hits.gather(1, (r.clamp(min=1) - 1).unsqueeze(1)).squeeze(1).double()
        prec = at_r / r.clamp(min=1).double()
        total += float(prec[keep].sum())
        n_used += int(keep.sum())
    return 100.0 * total / n_used if n_used else 0.0


def r_precision(emb_a: np.ndarray, emb_b: np.ndarray, relevance: sp.csr_matrix, *,
                chunk_size: int = 1024, device: str | torch.device = "cpu") -> dict[str, float]:
    """R-precision (percent) in both directions.

    For query q with R_q relevant items (ground truth, labelled pair included), the share of
    relevant items among its top R_q; averaged over queries with R_q > 0. ``i2t``: image queries,
    relevance column-wise; ``t2i``: caption queries, relevance row-wise.

    Shapes: ``emb_a [n_a, d]``, ``emb_b [n_b, d]``, ``relevance [n_b, n_a]``.
    """
    ta = torch.from_numpy(np.ascontiguousarray(emb_a, dtype=np.float32)).to(device)
    tb = torch.from_numpy(np.ascontiguousarray(emb_b, dtype=np.float32)).to(device)
    rel = sp.csr_matrix(relevance, dtype=bool)
    return {
        "i2t": _r_precision_one_side(ta, tb, rel.T.tocsr(), chunk_size),
        "t2i": _r_precision_one_side(tb, ta, rel, chunk_size),
    }


@dataclass
class Candidates:
    """Unlabelled candidates of the FN-detection protocol (all ``[N]`` flat arrays).

    Attributes:
        query: caption index (side B); candidate: image index (side A); rank: 0-based rank among
        the caption's unlabelled images; similarity: cosine; positive_similarity: the caption's
        similarity to its labelled image; label: ground-truth relevance (``None`` if unknown).
    """

    query: np.ndarray
    candidate: np.ndarray
    rank: np.ndarray
    similarity: np.ndarray
    positive_similarity: np.ndarray
    label: np.ndarray | None


def fn_candidates(emb_a: np.ndarray, emb_b: np.ndarray, dataset: Any, *, top_k: int = 10,
                  backend: str = "faiss") -> Candidates:
    """Each caption's ``top_k`` most similar images other than its labelled image.

    Shapes: ``emb_a [n_a, d]``, ``emb_b [n_b, d]`` -> :class:`Candidates` of ``n_b * min(top_k, n_a - 1)``.
    """
    ea, eb = _check_embeddings(emb_a, emb_b, dataset)
    if top_k < 1:
        raise ValueError(f"fn_top_k must be at least 1, got {top_k}")
    k = max(1, min(top_k, dataset.n_a - 1))
    scores, idx = topk(eb, ea, k, exclude=dataset.labelled_matrix(), backend=backend)
    q = np.repeat(np.arange(dataset.n_b), k).reshape(dataset.n_b, k)
    valid = idx >= 0
    pos = np.einsum("ij,ij->i", eb, ea[dataset.b_to_a])
    label = None
    if dataset.relevance is not None:
        label = _sparse_lookup(dataset.relevance, np.arange(dataset.n_b)[:, None], idx)[valid]
    return Candidates(
        query=q[valid], candidate=idx[valid], rank=np.broadcast_to(np.arange(k), idx.shape)[valid],
        similarity=scores[valid].astype(np.float32), positive_similarity=np.broadcast_to(pos[:, None], idx.shape)[valid],
        label=label,
    )


def pool_candidates(emb_a: np.ndarray, emb_b: np.ndarray, dataset: Any, *, max_pairs: int = 2_000_000,
                    seed: int = 0) -> Candidates:
    """Every unlabelled (caption, image) pair of the split: the pool FNE's posterior weighs.

    FNE applies ``P_fn`` to every entry of its candidate pool (batch plus memory queue), so the
    posterior's detection quality and calibration are measured over unlabelled pairs drawn
    uniformly, not only over the hardest ones. Splits with more than ``max_pairs`` unlabelled pairs
    use a seeded uniform sample of ``max_pairs`` of them. ``rank`` is ``-1`` (not ranked).

    Shapes: ``emb_a [n_a, d]``, ``emb_b [n_b, d]`` -> :class:`Candidates` of up to ``max_pairs``.
    """
    ea, eb = _check_embeddings(emb_a, emb_b, dataset)
    n_b, n_a = dataset.n_b, dataset.n_a
    if n_b * n_a <= max_pairs:
        q, c = np.divmod(np.arange(n_b * n_a, dtype=np.int64), n_a)
    else:
        rng = np.random.default_rng(seed)
        flat = rng.choice(n_b * n_a, size=max_pairs, replace=False)
        q, c = np.divmod(flat.astype(np.int64), n_a)
    keep = c != dataset.b_to_a[q]
    q, c = q[keep], c[keep]
    if n_b * n_a <= max_pairs:
        sims = (eb @ ea.T)[q, c].astype(np.float32)
    else:  # row pairs in blocks: never a [max_pairs, d] copy of the embeddings
        sims = np.concatenate([np.einsum("ij,ij->i", eb[q[i:i + 65536]], ea[c[i:i + 65536]])
                               for i in range(0, len(q), 65536)]).astype(np.float32)
    pos = np.einsum("ij,ij->i", eb, ea[dataset.b_to_a])
    label = None
    if dataset.relevance is not None:
        label = _sparse_lookup(dataset.relevance, q[:, None], c[:, None])[:, 0]
    return Candidates(query=q, candidate=c, rank=np.full(q.shape, -1, dtype=np.int64), similarity=sims,
                      positive_similarity=pos[q].astype(np.float32), label=label)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins on [0, 1]: ``sum_b |B_b| / N * |mean(y_b) - mean(p_b)|``."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probs and labels must have the same length, got {p.shape} and {y.shape}")
    if p.size == 0:
        return 0.0
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(sum_y - sum_p).sum() / p.size)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins on [0, 1] (the bins of :func:`expected_calibration_error`): ``{"lo", "hi", "count",
    "mean_p", "frac_positive"}`` per non-empty bin, lowest first. ``probs``, ``labels``: ``[N]``.

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probs and labels must have the same length, got {p.shape} and {y.shape}")
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    cnt = np.bincount(bins, minlength=n_bins)
    sp_ = np.bincount(bins, weights=p, minlength=n_bins)
    sy = np.bincount(bins, weights=y, minlength=n_bins)
    return [{"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": int(cnt[b]), "mean_p": float(sp_[b] / cnt[b]),
             "frac_positive": float(sy[b] / cnt[b])} for b in range(n_bins) if cnt[b]]


def candidate_probs(candidates: Candidates, posterior: Any, context: Any) -> np.ndarray:
    """``[N]`` P(false negative) of the candidate pairs under ``posterior``, from every signal the
    :class:`fnlab.posterior.PairContext` offers (the same numbers a scan and the app show)."""
    from fnlab.posterior import prob_false_negative

    signals = context.signals(candidates.query, candidates.candidate, names=posterior.signals)
    return prob_false_negative(posterior, signals).double().cpu().numpy().ravel()


def fn_detection(candidates: Candidates, posterior: Any, context: Any = None) -> dict[str, Any]:
    """AUROC, AP, ECE and reliability bins of the posterior on the candidates, with the AUROC and AP
    of ranking the same pairs by raw similarity next to them (what the posterior adds).

    ``context``: the split's :class:`fnlab.posterior.PairContext` (every signal); without it the
    posterior sees the similarity and the positive similarity only. AUROC and AP are ``None``
    when the candidates hold only one class.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if candidates.label is None:
        raise ValueError("FN detection needs ground-truth relevance; the dataset has none")
    if context is not None:
        probs = candidate_probs(candidates, posterior, context)
    else:
        from fnlab.posterior import prob_false_negative

        probs = prob_false_negative(posterior, torch.from_numpy(candidates.similarity.astype(np.float64)),
                                    torch.from_numpy(candidates.positive_similarity.astype(np.float64)))
        probs = probs.double().cpu().numpy().ravel()
    y = candidates.label.astype(np.int64)
    both = 0 < y.sum() < y.size
    sims = candidates.similarity.astype(np.float64)
    return {
        "auroc": float(roc_auc_score(y, probs)) if both else None,
        "ap": float(average_precision_score(y, probs)) if both else None,
        "ece": expected_calibration_error(probs, y),
        "similarity_auroc": float(roc_auc_score(y, sims)) if both else None,
        "similarity_ap": float(average_precision_score(y, sims)) if both else None,
        "mean_p": float(probs.mean()) if probs.size else None,
        "true_rate": float(y.mean()) if y.size else None,
        "reliability": reliability_bins(probs, y),
    }


def evaluate_embeddings(emb_a: np.ndarray, emb_b: np.ndarray, dataset: Any, *, posterior: Any = None,
                        sampled_fn_rate: float | None = None, ks: Sequence[int] = KS, fn_top_k: int = 10,
                        backend: str = "faiss", text_view: np.ndarray | None = None,
                        a_view: np.ndarray | None = None) -> dict[str, Any]:
    """All metrics of one split, as the JSON object of ``fnlab eval --json``.

    Args:
        emb_a: ``[n_a, d]`` L2-normalised side-A embeddings of ``dataset``.
        emb_b: ``[n_b, d]`` L2-normalised side-B embeddings.
        dataset: the split (:class:`fnlab.data.base.MatchingDataset`).
        posterior: anything with ``prob_false_negative(sims)`` (:mod:`fnlab.posterior`), or ``None``.
        sampled_fn_rate: share of sampled training negatives that were truly relevant (passed through).
        fn_top_k: candidates per caption for FN detection.
        text_view: ``[n_b, d']`` a second view of the captions (:func:`fnlab.data.minilm.dataset_text_view`),
            for a posterior fitted with one; ``a_view``: ``[n_a, d']`` one of side A's texts in the same space
            (:func:`fnlab.data.minilm.dataset_side_view`).

    Returns:
        ``{"recall": {"i2t": {"1","5","10"}, "t2i": {...}, "rsum"}, "relevant_recall": same or None,
        "r_precision": {"i2t", "t2i"} or None, "fn_detection": {"auroc", "ap", "ece"} or None,
        "sampled_fn_rate": float or None}``; recalls and R-precision in percent. ``fn_detection`` also
        holds the posterior's ``status`` ("calibrated" or "uncalibrated: rank only") and its reason. ``fn_detection`` is
        measured over every unlabelled pair of the split (:func:`pool_candidates`, the pool the FNE
        posterior weighs); where it is given, ``fn_detection_topk`` holds the same metrics over each
        caption's ``fn_top_k`` most similar unlabelled images (:func:`fn_candidates`, a scan's view:
        the near misses, far harder to tell apart).

    Raises:
        ValueError: embeddings do not match the dataset (message names which and what was expected).
    """
    ea, eb = _check_embeddings(emb_a, emb_b, dataset)
    recall, rel_recall = retrieval_recall(ea, eb, dataset.b_to_a, relevance=dataset.relevance, ks=ks,
                                          backend=backend)
    out: dict[str, Any] = {"recall": recall, "relevant_recall": rel_recall, "r_precision": None,
                           "fn_detection": None,
                           "sampled_fn_rate": None if sampled_fn_rate is None else float(sampled_fn_rate)}
    if dataset.relevance is not None:
        out["r_precision"] = r_precision(ea, eb, dataset.relevance)
        if posterior is not None and dataset.n_a > 1:
            from fnlab.posterior import PairContext

            content = ({"query_content": dataset.content_keys("b"), "candidate_content": dataset.content_keys("a")}
                       if hasattr(dataset, "content_keys") else {})  # as the run's fit read them
            ctx = PairContext.from_dataset(ea, eb, dataset, direction="t2i", window=posterior.window or fn_top_k,
                                           query_view=text_view, a_view=a_view, **content)
            out["fn_detection"] = fn_detection(pool_candidates(ea, eb, dataset), posterior, ctx)
            out["fn_detection"]["prior_estimated"] = float(posterior.prior_pos)
            out["fn_detection"]["status"] = posterior.status.label
            out["fn_detection"]["status_reason"] = posterior.status.reason
            top = fn_detection(fn_candidates(ea, eb, dataset, top_k=fn_top_k, backend=backend), posterior, ctx)
            out["fn_detection_topk"] = {"k": int(fn_top_k), **top}
    return out
