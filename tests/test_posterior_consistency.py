"""One number per pair: eval, the scan (and so the Suspects page and its export), Rankings and a run's
posterior.json give the same P(false negative) for the same (caption, image) pair."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fnlab import data
from fnlab import posterior as P
from fnlab.analysis import explore
from fnlab.analysis.evaluate import candidate_probs, fn_candidates
from fnlab.analysis.scan import scan_dataset


@pytest.fixture(scope="module")
def split():
    ds = data.load("shapes", split="val", n_train=40, n_val=60, n_test=20, seed=3)
    rng = np.random.default_rng(0)
    # embeddings where relevance shows: captions near the images they describe, plus noise
    rel = ds.relevance.toarray().astype(np.float32)
    ea = rng.standard_normal((ds.n_a, 24)).astype(np.float32)
    eb = rel @ ea / np.maximum(rel.sum(1, keepdims=True), 1) + 0.4 * rng.standard_normal((ds.n_b, 24)).astype(np.float32)
    ea /= np.linalg.norm(ea, axis=1, keepdims=True)
    eb /= np.linalg.norm(eb, axis=1, keepdims=True)
    post = P.fit_dataset(ea, eb, ds, seed=0)
    return ds, ea, eb, post


def test_same_probability_on_every_path(split, tmp_path):
    ds, ea, eb, post = split
    # a run's posterior.json, as training writes it and the app and fnlab eval read it
    (tmp_path / "posterior.json").write_text(json.dumps(post.params()))
    stored = P.from_params(json.loads((tmp_path / "posterior.json").read_text()))

    cands = fn_candidates(ea, eb, ds, top_k=5)
    ctx = P.PairContext.from_dataset(ea, eb, ds, direction="t2i")
    from_eval = candidate_probs(cands, stored, ctx)

    table = scan_dataset(ea, eb, ds, top_k=5, posterior=stored, negative_sample=2000).table
    by_pair = table.set_index(["query", "candidate"])["p_false_negative"]
    from_scan = by_pair.loc[list(zip(cands.query, cands.candidate, strict=True))].to_numpy()
    np.testing.assert_allclose(from_scan, from_eval, atol=1e-4)

    sides = explore.sides(ds, ea, eb, "t2i")
    from_rankings = []
    for q in np.unique(cands.query)[:25]:
        t, _ = explore.ranking(sides, int(q), k=10, posterior=stored)
        t = t[~t["labelled_positive"]].set_index("candidate")["p_false_negative"]
        mine = cands.candidate[cands.query == q]
        from_rankings.append((t.loc[mine].to_numpy(), from_eval[cands.query == q]))
    for got, want in from_rankings:
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_posterior_json_round_trip_keeps_every_number(split):
    ds, ea, eb, post = split
    ctx = P.PairContext.from_dataset(ea, eb, ds)
    q, c = ctx.draw_unlabelled(300, np.random.default_rng(1))
    sig = ctx.signals(q, c)
    back = P.from_params(json.loads(json.dumps(post.params())))
    np.testing.assert_allclose(P.prob_false_negative(back, sig).numpy(), P.prob_false_negative(post, sig).numpy())
