"""Evaluation metrics against slow loop references written here."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fnlab.analysis.evaluate import (
    evaluate_embeddings,
    expected_calibration_error,
    fn_candidates,
    r_precision,
    reliability_bins,
    retrieval_recall,
)
from fnlab.data.base import MatchingDataset
from fnlab.posterior import GaussianPosterior


def make_case(n_a: int, caps: int, d: int, seed: int, *, with_rel: bool = True):
    rng = np.random.default_rng(seed)
    b_to_a = np.repeat(np.arange(n_a), caps)
    n_b = len(b_to_a)
    ea = rng.standard_normal((n_a, d)).astype(np.float32)
    # captions near their image, so metrics are neither 0 nor 100
    eb = (ea[b_to_a] + 0.9 * rng.standard_normal((n_b, d))).astype(np.float32)
    ea /= np.linalg.norm(ea, axis=1, keepdims=True)
    eb /= np.linalg.norm(eb, axis=1, keepdims=True)
    rel = None
    if with_rel:
        dense = rng.random((n_b, n_a)) < 0.15
        dense[np.arange(n_b), b_to_a] = True
        rel = sp.csr_matrix(dense)
    ds = MatchingDataset(name="hand", split="test", b_to_a=b_to_a, a_inputs=np.zeros((n_a, 1), np.float32),
                         b_inputs=None, a_kind="features", b_kind="features", relevance=rel)
    return ea, eb, ds


def slow_recall(ea, eb, b_to_a, rel_dense, ks=(1, 5, 10)):
    """Loop reference: rank every key with Python sorting, per query."""
    n_a, n_b = len(ea), len(eb)
    sims = ea @ eb.T
    out = {"i2t": {}, "t2i": {}}
    rel_out = {"i2t": {}, "t2i": {}}
    for k in ks:
        hit = relhit = 0
        for i in range(n_a):
            order = sorted(range(n_b), key=lambda j: -sims[i, j])[:k]
            hit += any(b_to_a[j] == i for j in order)
            relhit += any(rel_dense[j, i] for j in order)
        out["i2t"][str(k)] = 100.0 * hit / n_a
        rel_out["i2t"][str(k)] = 100.0 * relhit / n_a
        hit = relhit = 0
        for j in range(n_b):
            order = sorted(range(n_a), key=lambda i: -sims[i, j])[:k]
            hit += b_to_a[j] in order
            relhit += any(rel_dense[j, i] for i in order)
        out["t2i"][str(k)] = 100.0 * hit / n_b
        rel_out["t2i"][str(k)] = 100.0 * relhit / n_b
    for o in (out, rel_out):
        o["rsum"] = sum(o["i2t"].values()) + sum(o["t2i"].values())
    return out, rel_out


def slow_r_precision(ea, eb, rel_dense):
    sims = ea @ eb.T
    n_a, n_b = sims.shape
    i2t = []
    for i in range(n_a):
        relevant = {j for j in range(n_b) if rel_dense[j, i]}
        if not relevant:
            continue
        top = sorted(range(n_b), key=lambda j: -sims[i, j])[: len(relevant)]
        i2t.append(len(relevant.intersection(top)) / len(relevant))
    t2i = []
    for j in range(n_b):
        relevant = {i for i in range(n_a) if rel_dense[j, i]}
        top = sorted(range(n_a), key=lambda i: -sims[i, j])[: len(relevant)]
        t2i.append(len(relevant.intersection(top)) / len(relevant))
    return {"i2t": 100.0 * np.mean(i2t), "t2i": 100.0 * np.mean(t2i)}


@pytest.mark.parametrize("n_a,caps,d,seed", [(12, 5, 8, 0), (30, 2, 4, 1), (7, 1, 16, 2)])
@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_recall_matches_loop_reference(n_a, caps, d, seed, backend):
    ea, eb, ds = make_case(n_a, caps, d, seed)
    recall, rel_recall = retrieval_recall(ea, eb, ds.b_to_a, relevance=ds.relevance, backend=backend)
    ref, rel_ref = slow_recall(ea, eb, ds.b_to_a, ds.relevance.toarray())
    for got, want in ((recall, ref), (rel_recall, rel_ref)):
        for direction in ("i2t", "t2i"):
            for k in ("1", "5", "10"):
                assert got[direction][k] == pytest.approx(want[direction][k], abs=1e-9)
        assert got["rsum"] == pytest.approx(want["rsum"])
    # relevant recall counts at least what recall counts
    for direction in ("i2t", "t2i"):
        assert all(rel_recall[direction][k] >= recall[direction][k] for k in ("1", "5", "10"))


@pytest.mark.parametrize("n_a,caps,d,seed", [(12, 5, 8, 3), (25, 3, 6, 4)])
def test_r_precision_matches_loop_reference(n_a, caps, d, seed):
    ea, eb, ds = make_case(n_a, caps, d, seed)
    got = r_precision(ea, eb, ds.relevance, chunk_size=7)
    want = slow_r_precision(ea, eb, ds.relevance.toarray())
    assert got["i2t"] == pytest.approx(want["i2t"], abs=1e-9)
    assert got["t2i"] == pytest.approx(want["t2i"], abs=1e-9)


def test_recall_tolerates_ties():
    """Duplicated keys tie exactly; any order among ties is acceptable, so check bounds."""
    ea, eb, ds = make_case(10, 2, 4, 5)
    ea_dup = ea.copy()
    ea_dup[1] = ea_dup[0]  # images 0 and 1 tie for every caption
    recall, _ = retrieval_recall(ea_dup, eb, ds.b_to_a, backend="faiss")
    sims = eb @ ea_dup.T
    for k in (1, 5, 10):
        # optimistic / pessimistic ranks under any tie order
        pos = sims[np.arange(len(eb)), ds.b_to_a]
        strictly = (sims > pos[:, None] + 1e-6).sum(1)
        ties = (np.abs(sims - pos[:, None]) <= 1e-6).sum(1) - 1
        lo = 100.0 * np.mean(strictly + ties < k)
        hi = 100.0 * np.mean(strictly < k)
        assert lo - 1e-9 <= recall["t2i"][str(k)] <= hi + 1e-9


def test_perfect_embeddings_score_full_recall():
    n_a = 6
    ea = np.eye(n_a, dtype=np.float32)
    b_to_a = np.repeat(np.arange(n_a), 5)
    eb = ea[b_to_a]
    ds = MatchingDataset(name="eye", split="test", b_to_a=b_to_a, a_inputs=ea, b_inputs=eb, a_kind="features",
                         b_kind="features", relevance=sp.csr_matrix((np.ones(len(b_to_a), bool),
                                                                     (np.arange(len(b_to_a)), b_to_a)),
                                                                    shape=(len(b_to_a), n_a)))
    out = evaluate_embeddings(ea, eb, ds, sampled_fn_rate=0.25)
    assert out["recall"]["rsum"] == pytest.approx(600.0)
    assert out["r_precision"] == {"i2t": pytest.approx(100.0), "t2i": pytest.approx(100.0)}
    assert out["sampled_fn_rate"] == 0.25 and out["fn_detection"] is None


def test_fn_candidates_and_detection_against_reference():
    ea, eb, ds = make_case(15, 3, 6, 6)
    cands = fn_candidates(ea, eb, ds, top_k=4)
    sims = eb @ ea.T
    rel = ds.relevance.toarray()
    assert len(cands.query) == ds.n_b * 4
    for q, c, s, y in zip(cands.query, cands.candidate, cands.similarity, cands.label, strict=True):
        assert c != ds.b_to_a[q]
        assert s == pytest.approx(sims[q, c], abs=1e-5)
        assert y == rel[q, c]
        # at most 3 unlabelled images beat this candidate
        others = [i for i in range(ds.n_a) if i != ds.b_to_a[q]]
        assert sum(sims[q, i] > s + 1e-6 for i in others) < 4
    post = GaussianPosterior(0.6, 0.15, 0.0, 0.2, prior_pos=0.2)
    out = evaluate_embeddings(ea, eb, ds, posterior=post, fn_top_k=4)
    det = out["fn_detection_topk"]
    assert {"k", "auroc", "ap", "ece", "similarity_auroc", "similarity_ap"} <= set(det) and det["k"] == 4
    from sklearn.metrics import roc_auc_score
    probs = post.prob_false_negative(torch.from_numpy(cands.similarity.astype(np.float64))).numpy()
    assert det["auroc"] == pytest.approx(roc_auc_score(cands.label, probs))
    assert 0.0 <= det["ece"] <= 1.0


@pytest.mark.parametrize("max_pairs", [10_000, 40])
def test_fn_detection_over_the_pool_against_loop_reference(max_pairs):
    """fn_detection: every unlabelled (caption, image) pair (or a uniform sample of them)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fnlab.analysis.evaluate import pool_candidates

    ea, eb, ds = make_case(12, 3, 6, 5)
    sims = eb @ ea.T
    rel = ds.relevance.toarray()
    cands = pool_candidates(ea, eb, ds, max_pairs=max_pairs, seed=1)
    pairs = [(q, c) for q in range(ds.n_b) for c in range(ds.n_a) if c != ds.b_to_a[q]]
    if max_pairs >= ds.n_b * ds.n_a:
        assert sorted(zip(cands.query.tolist(), cands.candidate.tolist(), strict=True)) == pairs
    else:
        assert len(cands.query) <= max_pairs and len(set(zip(cands.query, cands.candidate, strict=True))) == len(cands.query)
    for q, c, s, y in zip(cands.query, cands.candidate, cands.similarity, cands.label, strict=True):
        assert c != ds.b_to_a[q] and s == pytest.approx(sims[q, c], abs=1e-5) and y == rel[q, c]
    if max_pairs >= ds.n_b * ds.n_a:
        post = GaussianPosterior(0.6, 0.15, 0.0, 0.2, prior_pos=0.2)
        det = evaluate_embeddings(ea, eb, ds, posterior=post, fn_top_k=4)["fn_detection"]
        s_ref = np.array([sims[q, c] for q, c in pairs])
        y_ref = np.array([rel[q, c] for q, c in pairs])
        p_ref = post.prob_false_negative(torch.from_numpy(s_ref)).numpy()
        assert det["auroc"] == pytest.approx(roc_auc_score(y_ref, p_ref), abs=1e-6)
        assert det["ap"] == pytest.approx(average_precision_score(y_ref, p_ref), abs=1e-6)


def test_ece_against_loop_reference():
    rng = np.random.default_rng(0)
    p = rng.random(500)
    y = rng.random(500) < p ** 2
    total = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        in_bin = [(pi, yi) for pi, yi in zip(p, y, strict=True) if lo <= pi < hi or (b == 9 and pi == 1.0)]
        if in_bin:
            total += len(in_bin) / 500 * abs(np.mean([t[1] for t in in_bin]) - np.mean([t[0] for t in in_bin]))
    assert expected_calibration_error(p, y) == pytest.approx(total)
    # a perfectly calibrated constant predictor
    assert expected_calibration_error(np.full(4, 0.5), np.array([0, 1, 0, 1])) == pytest.approx(0.0)


def test_reliability_bins_match_slow_reference():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    bins = reliability_bins(p, y, n_bins=5)
    for row in bins:
        m = (p >= row["lo"]) & ((p < row["hi"]) | (row["hi"] >= 1.0))
        assert row["count"] == m.sum()
        assert row["frac_positive"] == pytest.approx(y[m].mean()) and row["mean_p"] == pytest.approx(p[m].mean())
    assert sum(row["count"] for row in bins) == 400
    ece = sum(row["count"] / 400 * abs(row["frac_positive"] - row["mean_p"]) for row in bins)
    assert expected_calibration_error(p, y, n_bins=5) == pytest.approx(ece)
    with pytest.raises(ValueError):
        reliability_bins([0.1, 0.2], [1])


def test_mismatched_embeddings_raise():
    ea, eb, ds = make_case(5, 2, 4, 7)
    with pytest.raises(ValueError, match="emb_a has 4 rows"):
        evaluate_embeddings(ea[:4], eb, ds)
    with pytest.raises(ValueError, match="d=3"):
        evaluate_embeddings(ea[:, :3], eb, ds)
    ea_bad = ea.copy()
    ea_bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_embeddings(ea_bad, eb, ds)


def test_no_relevance_gives_nulls():
    ea, eb, ds = make_case(8, 2, 4, 8, with_rel=False)
    out = evaluate_embeddings(ea, eb, ds, posterior=GaussianPosterior(0.5, 0.1, 0.0, 0.1))
    assert out["relevant_recall"] is None and out["r_precision"] is None and out["fn_detection"] is None
    assert set(out) == {"recall", "relevant_recall", "r_precision", "fn_detection", "sampled_fn_rate"}


def test_fn_detection_passes_anchor_positives_to_a_relative_posterior():
    from sklearn.metrics import roc_auc_score

    from fnlab.analysis.evaluate import pool_candidates
    from fnlab.posterior import RelativePosterior

    ea, eb, ds = make_case(12, 3, 6, 5)
    cands = pool_candidates(ea, eb, ds)
    rel = RelativePosterior.fit(cands.positive_similarity, cands.similarity, cands.positive_similarity)
    det = evaluate_embeddings(ea, eb, ds, posterior=rel)["fn_detection"]
    d = torch.from_numpy((cands.similarity - cands.positive_similarity).astype(np.float64))
    want = rel.prob_false_negative(d, torch.zeros(()))  # a function of s - s+ only
    assert det["auroc"] == pytest.approx(roc_auc_score(cands.label, want.numpy()), abs=1e-6)
