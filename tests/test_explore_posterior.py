"""fnlab.analysis.explore with a fitted posterior: one P(false negative) per pair, from every signal the pair offers."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from fnlab import posterior
from fnlab.analysis import explore


def _sides(nq=30, nc=20, d=8, seed=0, relevant=True):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(nq, d)).astype(np.float32)
    c = rng.normal(size=(nc, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    pos = sp.csr_matrix((np.ones(nq, bool), (np.arange(nq), np.arange(nq) % nc)), shape=(nq, nc))
    rel = (pos + sp.random(nq, nc, density=0.1, random_state=seed, format="csr").astype(bool)).astype(bool)
    return explore.Sides(q, c, pos, sp.csr_matrix(rel) if relevant else None, "t2i")


def _slow_probs(s, post, qs, cs):
    """One pair at a time through the posterior package's own context (the obviously-correct reference)."""
    ctx = posterior.PairContext(s.queries, s.candidates, s.positives)
    return np.array([float(posterior.prob_false_negative(post, ctx.signals(np.array([q]), np.array([c])))[0])
                     for q, c in zip(qs, cs, strict=True)])


def test_sides_probabilities_match_the_pair_by_pair_reference():
    s = _sides()
    post = posterior.fit("paper", s.pair_context)
    qs, cs = np.array([0, 3, 3, 7, 29]), np.array([5, 1, 2, 19, 0])
    np.testing.assert_allclose(s.prob_false_negative(post, qs, cs), _slow_probs(s, post, qs, cs), rtol=1e-6)
    assert s.pair_context is s.pair_context  # built once


def test_ranking_shows_the_posterior_of_each_candidate_and_none_for_the_positive():
    s = _sides()
    post = posterior.fit("paper", s.pair_context)
    table, pos_rank = explore.ranking(s, 4, k=20, posterior=post)
    assert pos_rank >= 1
    lab = table["labelled_positive"].to_numpy()
    assert np.isnan(table["p_false_negative"].to_numpy()[lab]).all()
    ref = _slow_probs(s, post, np.full((~lab).sum(), 4), table["candidate"].to_numpy()[~lab])
    np.testing.assert_allclose(table["p_false_negative"].to_numpy()[~lab], ref, rtol=1e-6)


def test_sampler_summary_without_ground_truth_uses_the_posterior_of_every_pair():
    s = _sides(relevant=False)
    post = posterior.fit("paper", s.pair_context)
    b = explore.batch(s, np.array([0, 1, 2]))
    w = torch.zeros_like(b.sims)
    w[:, 5] = 1.0  # every query draws candidate 5
    out = explore.sampler_summary(b, {"fixed": w}, posterior=post, sides=s)
    expected = _slow_probs(s, post, [0, 1, 2], [5, 5, 5]).mean()
    assert out["risk_source"].iloc[0] == "posterior"
    assert abs(out["fn_risk"].iloc[0] - expected) < 1e-9
    assert abs(out["hardness"].iloc[0] - float(b.sims[:, 5].double().mean())) < 1e-9


def test_the_teaching_example_ranks_ties_as_rankings_does():
    # Exact copies: candidate 0 is an identical copy of every query's labelled candidate 1 and is a false
    # negative, so it ties with the labelled positive and ranks above it (ties go to the lower index).
    from fnlab import samplers

    rng = np.random.default_rng(0)
    nq, nc, d = 12, 16, 8
    c = rng.normal(size=(nc, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    c[0] = c[1]
    q = c[np.ones(nq, int)] + 0.3 * rng.normal(size=(nq, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    pos = sp.csr_matrix((np.ones(nq, bool), (np.arange(nq), np.ones(nq, int))), shape=(nq, nc))
    rel = pos.copy().tolil()
    rel[:, 0] = True
    s = explore.Sides(q, c, pos, sp.csr_matrix(rel), "t2i")
    post = posterior.fit("paper", s.pair_context)
    ex = explore.teaching_example(s, {"hardest": samplers.build("hardest"),
                                      "fne": samplers.build_for_run("fne", {}, posterior=post)})
    table, pos_rank = explore.ranking(s, ex["query"], k=nc)
    assert ex["positive_rank"] == pos_rank == 2  # not 1: the tied copy ranks first on Rankings too
    assert ex["false_negatives_above"] == int(table["false_negative"].to_numpy()[: pos_rank - 1].sum()) == 1
    assert explore.rankings(s, k=nc).positive_rank[ex["query"]] == pos_rank
