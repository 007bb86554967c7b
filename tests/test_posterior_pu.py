"""fnlab.posterior: pair signals against brute force, the PU mixture on planted data, one fitting path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from fnlab import posterior as P
from fnlab.analysis.evaluate import expected_calibration_error as ece
from fnlab.posterior.linear import LinearEvidence, features_of
from fnlab.posterior.pu import PUPosterior


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def slow_signals(q, c, pos, qi, ci, leave_pair_out):
    """Obviously-correct loops over the definitions in fnlab.posterior.signals."""
    dense = pos.toarray()
    out = {k: [] for k in ("similarity", "positive_similarity", "positive_neighbour", "query_neighbour")}
    for a, b in zip(qi, ci, strict=True):
        out["similarity"].append(float(q[a] @ c[b]))
        ps = [p for p in np.flatnonzero(dense[a]) if not (leave_pair_out and p == b)]
        out["positive_similarity"].append(max((float(q[a] @ c[p]) for p in ps), default=math.nan))
        out["positive_neighbour"].append(max((float(c[b] @ c[p]) for p in ps), default=math.nan))
        qs = [x for x in np.flatnonzero(dense[:, b]) if x != a]
        out["query_neighbour"].append(max((float(q[a] @ q[x]) for x in qs), default=math.nan))
    return {k: np.array(v) for k, v in out.items()}


@settings(max_examples=25, deadline=None)
@given(nq=st.integers(2, 12), nc=st.integers(2, 12), density=st.floats(0.05, 0.6), seed=st.integers(0, 10**6),
       leave=st.booleans())
def test_signals_match_brute_force(nq, nc, density, seed, leave):
    rng = np.random.default_rng(seed)
    q, c = unit(rng.standard_normal((nq, 5))), unit(rng.standard_normal((nc, 5)))
    pos = sp.csr_matrix(rng.random((nq, nc)) < density)
    ctx = P.PairContext(q, c, pos, hubness_k=3)
    if leave:
        qi, ci = pos.nonzero()
        if qi.size == 0:
            return
    else:
        qi, ci = rng.integers(0, nq, 30), rng.integers(0, nc, 30)
    got = ctx.signals(qi, ci, leave_pair_out=leave)
    want = slow_signals(q, c, pos, qi, ci, leave)
    for name, ref in want.items():
        if name in ctx.signal_names:
            np.testing.assert_allclose(got.numpy(name), ref, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=name)
    hub = np.sort(c @ q.T, axis=1)[:, ::-1][:, :3].mean(1)
    np.testing.assert_allclose(got.numpy("candidate_hubness"), hub[ci], rtol=1e-5, atol=1e-5)
    # pair_member agrees with the dense matrix
    np.testing.assert_array_equal(P.pair_member(pos, qi, ci), pos.toarray()[qi, ci])


def test_draw_unlabelled_never_returns_a_labelled_pair_and_is_seeded():
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((30, 4)))
    pos = sp.csr_matrix(rng.random((10, 20)) < 0.5)
    ctx = P.PairContext(x[:10], x[10:], pos)
    a = ctx.draw_unlabelled(500, np.random.default_rng(1))
    b = ctx.draw_unlabelled(500, np.random.default_rng(1))
    assert not pos.toarray()[a[0], a[1]].any()
    np.testing.assert_array_equal(a[0], b[0])


@settings(max_examples=25, deadline=None)
@given(nq=st.integers(2, 12), nc=st.integers(3, 15), density=st.floats(0.0, 0.5), top_k=st.integers(1, 4),
       seed=st.integers(0, 10**6))
def test_a_small_pool_enters_the_fit_whole(nq, nc, density, top_k, seed):
    """Where the pool holds at most n_random pairs, the uniform stratum is every unlabelled pair outside each
    query's top-k, once, weight 1: with the top-k stratum, every unlabelled pair exactly once, weights summing
    to their number."""
    from fnlab.posterior.pu import stratified_unlabelled_sample

    rng = np.random.default_rng(seed)
    q, c = unit(rng.standard_normal((nq, 4))), unit(rng.standard_normal((nc, 4)))
    dense = rng.random((nq, nc)) < density
    dense[0, 0] = dense[0, 1] = False  # at least one unlabelled pair
    ctx = P.PairContext(q, c, sp.csr_matrix(dense))
    uq, uc, w = stratified_unlabelled_sample(ctx, top_k=top_k, n_random=nq * nc, max_queries=nq, rng=rng)
    pairs = sorted(zip(uq.tolist(), uc.tolist(), strict=True))
    unlabelled = sorted(zip(*np.nonzero(~dense), strict=True))
    assert pairs == [(int(a), int(b)) for a, b in unlabelled]  # each once (ties in similarity aside: none here)
    assert w.sum() == pytest.approx(ctx.n_unlabelled)
    np.testing.assert_allclose(w, 1.0)


def test_log_odds_marginalises_missing_features_exactly():
    rng = np.random.default_rng(0)
    names = ("similarity", "margin", "positive_neighbour")
    a = rng.standard_normal((3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    post = PUPosterior(linear=LinearEvidence(names, np.array([[0.1, -0.3, 0.4], [0.6, 0.0, 0.8]]), cov, 0.05))
    s = rng.uniform(-0.5, 1.0, 40)
    sp_ = rng.uniform(0.2, 1.0, 40)
    pn = rng.uniform(0.0, 1.0, 40)
    pn[::3] = np.nan  # some pairs lack the signal
    sig = P.PairSignals.of(torch.from_numpy(s), torch.from_numpy(sp_), positive_neighbour=torch.from_numpy(pn))
    got = post.log_odds(sig).numpy()
    x = np.stack([s, s - sp_, pn], 1)
    want = []
    for row in x:
        o = ~np.isnan(row)
        lp = multivariate_normal(post.linear.means[1][o], cov[np.ix_(o, o)]).logpdf(row[o])
        ln = multivariate_normal(post.linear.means[0][o], cov[np.ix_(o, o)]).logpdf(row[o])
        want.append(math.log(0.05 / 0.95) + lp - ln)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)
    # a caller offering only s and s+ (the FNE sampler) gets the (s, margin) marginal
    only = post.log_odds(P.PairSignals.of(torch.from_numpy(s), torch.from_numpy(sp_))).numpy()
    ref = [math.log(0.05 / 0.95) + multivariate_normal(post.linear.means[1][:2], cov[:2, :2]).logpdf(r[:2])
           - multivariate_normal(post.linear.means[0][:2], cov[:2, :2]).logpdf(r[:2]) for r in x]
    np.testing.assert_allclose(only, ref, rtol=1e-8, atol=1e-8)


def planted_retrieval(seed=0, nq=300, nc=600, d=32, n_dup=60, dup_noise=0.03):
    """One-positive retrieval: queries near their document; some documents duplicated (unlabelled matches)."""
    rng = np.random.default_rng(seed)
    c = unit(rng.standard_normal((nc, d)))
    q = unit(c[:nq] + 0.6 * rng.standard_normal((nq, d)) / np.sqrt(d))
    truth = np.zeros((nq, nc), dtype=bool)
    truth[np.arange(nq), np.arange(nq)] = True
    for i in range(n_dup):
        j = nq + i
        c[j] = unit((c[i] + dup_noise * rng.standard_normal(d) / np.sqrt(d))[None])[0]
        truth[i, j] = True
    pos = sp.csr_matrix((np.ones(nq, bool), (np.arange(nq), np.arange(nq))), shape=(nq, nc))
    return q, c, pos, truth


def test_pu_finds_duplicates_of_the_positive_with_a_calibrated_prior():
    q, c, pos, truth = planted_retrieval()
    ctx = P.PairContext(q, c, pos)
    post = P.fit("pu", ctx, seed=0)
    true_prior = (truth.sum() - pos.nnz) / (truth.size - pos.nnz)
    assert true_prior / 2 < post.prior_pos < true_prior * 2
    qi, ci = np.nonzero(~pos.toarray())
    p = P.prob_false_negative(post, ctx.signals(qi, ci)).numpy()
    y = truth[qi, ci]
    assert p[y].min() > 0.9 and np.quantile(p[~y], 0.999) < 0.1
    assert ece(p, y) < 0.01
    # what P covers is said: only copies can be seen as matches here (an edited copy keeps P near 0)
    assert any("a low P says 'not a copy', not 'not a match'" in n for n in post.notes), post.notes
    # seeded: the same fit twice
    again = P.fit("pu", ctx, seed=0)
    assert again.params() == post.params()
    # and it survives a round trip through params() (a run's posterior.json)
    back = P.from_params(post.params())
    np.testing.assert_allclose(P.prob_false_negative(back, ctx.signals(qi[:500], ci[:500])).numpy(), p[:500])
    assert post.share_trusted and back.share_trusted  # planted copies: nothing contradicts the window's share
    untrusted = post.params() | {"share_trusted": False}
    assert not P.from_params(untrusted).share_trusted
    assert P.from_params({k: v for k, v in untrusted.items() if k != "share_trusted"}).share_trusted  # older files


def test_pu_prior_tracks_the_planted_share_of_false_negatives():
    for n_dup in (20, 120):
        q, c, pos, truth = planted_retrieval(seed=n_dup, n_dup=n_dup)
        post = P.fit("pu", P.PairContext(q, c, pos))
        true_prior = (truth.sum() - pos.nnz) / (truth.size - pos.nnz)
        assert true_prior / 2 < post.prior_pos < 2 * true_prior, (n_dup, post.prior_pos, true_prior)


def test_features_of_marks_missing_signals_nan():
    sig = P.PairSignals.of(torch.tensor([0.5, 0.2]), torch.tensor([0.7, float("nan")]))
    x = features_of(sig, ("similarity", "margin", "mutual"))
    assert torch.allclose(x[0, :2], torch.tensor([0.5, -0.2], dtype=torch.float64))
    assert torch.isnan(x[1, 1]) and torch.isnan(x[:, 2]).all()


def test_paper_estimator_is_fnes_gaussians_with_the_fixed_prior():
    q, c, pos, _ = planted_retrieval(nq=100, nc=200, n_dup=10)
    ctx = P.PairContext(q, c, pos)
    post = P.fit("paper", ctx)
    _, _, lab = ctx.positive_similarities()
    hardest = ctx.topk_unlabelled(1)[0][:, 0]
    ref = P.GaussianPosterior.fit(lab, hardest, prior_pos=1e-4)
    assert post == ref and post.estimator == "paper"
    s = torch.linspace(-1, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(P.prob_false_negative(post, s), ref.prob_false_negative(s))


@pytest.mark.parametrize("name", ["pu", "relative", "mixture", "paper"])
def test_every_estimator_fits_from_a_context_and_round_trips(name):
    q, c, pos, _ = planted_retrieval(nq=80, nc=160, n_dup=8)
    ctx = P.PairContext(q, c, pos)
    post = P.fit(name, ctx, seed=1)
    qi, ci = ctx.draw_unlabelled(200, np.random.default_rng(0))
    sig = ctx.signals(qi, ci)
    p = P.prob_false_negative(post, sig)
    assert p.shape == (200,) and bool(((p >= 0) & (p <= 1)).all())
    back = P.from_params(post.params())
    torch.testing.assert_close(P.prob_false_negative(back, sig).double(), p.double())


def test_best_bin_prior_recovers_a_planted_proportion_and_matches_a_slow_reference():
    from fnlab.posterior.gmm import best_bin_prior

    rng = np.random.default_rng(0)
    lab = rng.normal(0.0, 0.05, 2000)  # positives' margins
    for pi in (0.02, 0.1):
        n = 60_000
        k = int(pi * n)
        unl = np.concatenate([rng.normal(0.0, 0.05, k), rng.normal(-0.4, 0.1, n - k)])
        w = np.full(n, 3.0)  # pool weights: a constant scale changes nothing
        est = best_bin_prior(lab, unl, w)
        assert pi / 2 < est < 2 * pi, (pi, est)

    # slow reference: the same minimum over the same thresholds, by plain loops
    unl = rng.normal(-0.3, 0.2, 500)
    w = rng.uniform(0.5, 2.0, 500)
    lab = rng.normal(0.0, 0.1, 80)
    n_eff = w.sum() ** 2 / (w * w).sum()
    c_u, c_p = math.sqrt(math.log(40) / (2 * n_eff)), math.sqrt(math.log(40) / (2 * lab.size))
    want = 0.5
    for t in np.quantile(lab, np.linspace(0.0, 0.95, 40)):
        q_p = sum(v >= t for v in lab) / lab.size
        q_u = sum(wi for v, wi in zip(unl, w, strict=True) if v >= t) / w.sum()
        if q_p - c_p > 0:
            want = min(want, (q_u + c_u) / (q_p - c_p))
    assert best_bin_prior(lab, unl, w) == pytest.approx(max(want, 1e-7))


def planted_image_text(seed=0, n_groups=40, per_group=5, caps=3, d=24):
    """Image-text with several captions an image and designated positives.

    Images fall in groups (what a caption can say); every caption of an image matches every image
    of its group (the false negatives), but it is written for one image, so it lies closer to that
    one (the designated positive). Captions differ in how generic they are: the noise, hence the
    similarity scale, varies by caption, so raw similarity is not comparable across queries.
    """
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_groups, d)))
    group = np.repeat(np.arange(n_groups), per_group)
    img = unit(centres[group] + rng.standard_normal((group.size, d)) / np.sqrt(d))
    owner = np.repeat(np.arange(group.size), caps)
    noise = rng.uniform(0.3, 1.6, owner.size)[:, None]
    cap = unit(0.5 * centres[group[owner]] + 0.5 * img[owner] + noise * rng.standard_normal((owner.size, d)) / np.sqrt(d))
    pos = sp.csr_matrix((np.ones(owner.size, bool), (np.arange(owner.size), owner)), shape=(owner.size, group.size))
    truth = group[owner][:, None] == group[None, :]
    return cap, img, pos, truth


def test_pu_with_several_captions_an_image_uses_the_margin_and_beats_similarity():
    from sklearn.metrics import average_precision_score, roc_auc_score

    q, c, pos, truth = planted_image_text()
    ctx = P.PairContext(q, c, pos)
    post = P.fit("pu", ctx, seed=0)
    assert post.features_ == ("margin", "query_neighbour")  # labelled pairs show query_neighbour
    qi, ci = np.nonzero(~pos.toarray())
    y = truth[qi, ci]
    sig = ctx.signals(qi, ci)
    p = P.prob_false_negative(post, sig).numpy()
    ap, ap_sim = average_precision_score(y, p), average_precision_score(y, sig.numpy("similarity"))
    assert ap > ap_sim + 0.03, (ap, ap_sim)
    assert roc_auc_score(y, p) > roc_auc_score(y, sig.numpy("similarity"))
    true_prior = y.mean()
    assert true_prior / 2 < post.prior_pos < 2 * true_prior, (post.prior_pos, true_prior)
    assert ece(p, y) < 0.02


def test_score_is_the_log_density_ratio_with_missing_features_marginalised():
    from fnlab.posterior.gmm import log_density_ratio as _score

    rng = np.random.default_rng(3)
    means = np.array([[0.0, 0.2, -0.1], [0.5, 0.6, 0.3]])
    a = rng.standard_normal((3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    covs = np.stack([cov, cov + 0.1 * np.eye(3)])
    x = rng.standard_normal((20, 3))
    x[::3, 1] = np.nan
    x[::5, 2] = np.nan
    want = []
    for row in x:
        o = ~np.isnan(row)
        want.append(multivariate_normal(means[1][o], covs[1][np.ix_(o, o)]).logpdf(row[o])
                    - multivariate_normal(means[0][o], covs[0][np.ix_(o, o)]).logpdf(row[o]))
    np.testing.assert_allclose(_score(x, means, covs), want, rtol=1e-9, atol=1e-9)


def test_context_with_an_approximate_index_searches_with_it_and_pickles_without_it():
    import pickle

    q, c, pos, _ = planted_retrieval(nq=200, nc=400, n_dup=20)
    exact = P.PairContext(q, c, pos)
    approx = P.PairContext(q, c, pos, index="ivf", index_params={"nprobe": 64})
    assert exact.candidate_index() is None and approx.candidate_index() is approx.candidate_index()
    s_exact, i_exact = exact.topk_unlabelled(5)
    s_approx, i_approx = approx.topk_unlabelled(5)
    np.testing.assert_array_equal(i_approx, i_exact)  # every cell probed: the same ranking
    np.testing.assert_allclose(s_approx, s_exact, atol=1e-5)
    back = pickle.loads(pickle.dumps(approx))  # as sent to Ray workers: the faiss index stays behind
    assert back._candidate_index is None and back.candidate_index() is not None


def test_a_second_view_the_labels_do_not_separate_is_left_out():
    """A view of unrelated texts (random here) carries no evidence: the fit ignores it, and P stays calibrated
    (it had made every scanned pair look like a match: label frequency on a feature that cannot tell
    labelled from unlabelled pairs apart says "all of them")."""
    q, c, pos, truth = planted_image_text()
    rng = np.random.default_rng(5)
    noise_view = unit(rng.standard_normal((q.shape[0], 16)))
    ctx = P.PairContext(q, c, pos, query_view=noise_view)
    post = P.fit("pu", ctx, seed=0)
    assert not any(f.startswith("view_") for f in post.features_), post.features_
    qi, ci = np.nonzero(~pos.toarray())
    y = truth[qi, ci]
    p = P.prob_false_negative(post, ctx.signals(qi, ci)).numpy()
    assert ece(p, y) < 0.02
    assert y.mean() / 2 < post.prior_pos < 2 * y.mean()


@settings(max_examples=40, deadline=None)
@given(n_l=st.integers(0, 12), n_u=st.integers(0, 12), seed=st.integers(0, 10**6))
def test_weighted_auroc_matches_the_pairwise_definition(n_l, n_u, seed):
    from fnlab.posterior.pu import _weighted_auroc

    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 5, n_l).astype(float)  # small integers: ties happen
    unl = rng.integers(0, 5, n_u).astype(float)
    w = rng.uniform(0.1, 3.0, n_u)
    if n_l:
        lab[rng.random(n_l) < 0.2] = np.nan
    got = _weighted_auroc(lab, unl, w)
    a = lab[np.isfinite(lab)]
    if not a.size or not n_u:
        assert got == 0.5
        return
    ref = np.mean([sum(wj * (1.0 if x > u else 0.5 if x == u else 0.0) for u, wj in zip(unl, w, strict=True)) / w.sum()
                   for x in a])
    assert got == pytest.approx(ref, abs=1e-12)


def test_labelled_lead_is_one_half_under_random_labelling_and_flags_labels_above_the_matches():
    """The check behind MAX_LABELLED_LEAD: window rows weighted by P (here the truth) against labelled pairs. Where
    labelled pairs are a random sample of the matches it reads 0.5; where matches sit one standard deviation below
    the labelled pairs it reads Phi(1 / sqrt(2)) = 0.76; it is the largest over the columns, with its name."""
    from scipy.stats import norm

    from fnlab.posterior.pu import _labelled_lead, _weighted_auroc

    rng = np.random.default_rng(0)
    n = 20_000
    lab = rng.normal(1.0, 1.0, (4000, 2))
    is_match = rng.random(n) < 0.3
    random_labels = np.where(is_match[:, None], rng.normal(1.0, 1.0, (n, 2)), rng.normal(-1.0, 1.0, (n, 2)))
    lead, _ = _labelled_lead(lab, random_labels, is_match.astype(float), ("a", "b"))
    assert lead == pytest.approx(0.5, abs=0.02)
    biased = random_labels.copy()
    biased[:, 1] = np.where(is_match, rng.normal(0.0, 1.0, n), rng.normal(-1.0, 1.0, n))
    lead, name = _labelled_lead(lab, biased, is_match.astype(float), ("a", "b"))
    assert name == "b" and lead == pytest.approx(norm.cdf(1 / math.sqrt(2)), abs=0.02)
    assert lead == _weighted_auroc(lab[:, 1], biased[:, 1], is_match.astype(float))
    assert _labelled_lead(lab, biased, np.zeros(n), ("a", "b"))[0] == 0.5  # no row called a match: nothing to say


def test_monotone_mixture_curve_against_a_slow_reference():
    """pu's curve for queries without a positive: at each s the smallest raw posterior at s or above (dense
    sweep), ordered by similarity inside flat stretches, never above the raw posterior."""
    from fnlab.posterior.mixture import MixturePosterior
    from fnlab.posterior.pu import TIE_SLOPE, _monotone

    rng = np.random.default_rng(0)
    # unequal variances (the negatives wider): the raw posterior turns down in the upper tail
    mix = MixturePosterior.fit_em(rng.normal(0.75, 0.05, 300), np.r_[rng.normal(0.45, 0.15, 3000),
                                                                      rng.normal(0.75, 0.05, 150)])
    s = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64)
    raw = mix.prob_false_negative(s).double()
    assert (raw[1:] < raw[:-1] - 1e-12).any()  # the raw curve does turn down: the test has a tail to fix
    dense = torch.linspace(-1.0, 1.0, 40001, dtype=torch.float64)
    dense_p = mix.prob_false_negative(dense).double()
    want = torch.stack([torch.minimum(raw[i], dense_p[dense >= s[i]].min()) for i in range(s.numel())])
    got = _monotone(mix, s)
    np.testing.assert_allclose(got.numpy(), (want * (1 - TIE_SLOPE * (1 - s))).numpy(), rtol=2e-3, atol=1e-12)
    assert (got <= raw + 1e-15).all()
    pos = got > 0
    assert (got[pos][1:] > got[pos][:-1]).all()  # strictly increasing: ranked as similarity ranks
    # and still in the scan table's float32, for rows 1e-5 apart in similarity (a slope of 1e-4 tied them)
    fine = torch.linspace(0.6, 0.61, 1001, dtype=torch.float64)
    in_table = _monotone(mix, fine).float()
    assert (in_table[1:] > in_table[:-1]).all()


def planted_second_answers(seed=0, nq=300, nc=600, d=32, n_second=60):
    """One-positive retrieval whose unlabelled matches are second answers: documents as close to their query as
    the labelled one, but no copies of it (so no labelled pair shows a transitive signal and no near-copy group
    exists: nothing but similarity tells a match)."""
    rng = np.random.default_rng(seed)
    q = unit(rng.standard_normal((nq, d)))
    c = unit(rng.standard_normal((nc, d)))
    c[:nq] = unit(q + 0.6 * rng.standard_normal((nq, d)) / np.sqrt(d) * 2)
    truth = np.zeros((nq, nc), dtype=bool)
    truth[np.arange(nq), np.arange(nq)] = True
    for i in range(n_second):
        c[nq + i] = unit((q[i] + 0.6 * rng.standard_normal(d) / np.sqrt(d) * 2)[None])[0]
        truth[i, nq + i] = True
    pos = sp.csr_matrix((np.ones(nq, bool), (np.arange(nq), np.arange(nq))), shape=(nq, nc))
    return q, c, pos, truth


def test_where_only_similarity_tells_a_match_p_ranks_by_it_and_says_uncalibrated():
    """Before: no transitive signal and no near-copy group gave P ~ 0 for every pair with the status
    'calibrated', which reads as 'no false negatives' where 20% of queries have one in their top rows."""
    q, c, pos, truth = planted_second_answers()
    ctx = P.PairContext(q, c, pos, window=10)
    post = P.fit("pu", ctx, seed=0, window=10)
    assert post.linear is None and not (post.copies is not None and post.copies.found)
    assert post.similar_only and not post.share_trusted
    assert not post.status.calibrated and "nothing but similarity" in post.status.reason
    ctx.window = 10
    qi, ci = np.nonzero(~pos.toarray())
    sig = ctx.signals(qi, ci)
    p = P.prob_false_negative(post, sig).double().numpy()
    s = sig.similarity.double().numpy()
    order = np.argsort(s, kind="stable")
    assert (np.diff(p[order]) >= -1e-8).all()  # ordered as similarity orders (never against it, beyond rounding)
    y = truth[qi, ci]
    assert p[y].mean() > 10 * p[~y].mean()  # the second answers are not all at P ~ 0
    back = P.from_params(post.params())
    assert back.similar_only and not back.status.calibrated
    np.testing.assert_allclose(P.prob_false_negative(back, ctx.signals(qi[:500], ci[:500])).numpy(), p[:500], rtol=1e-6)
    assert not P.from_params({k: v for k, v in post.params().items() if k != "similar_only"}).similar_only
    # where near-copies exist, the copy evidence is used and similarity alone is not
    q2, c2, pos2, _ = planted_retrieval()
    assert not P.fit("pu", P.PairContext(q2, c2, pos2), seed=0).similar_only



@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), shift=st.floats(-3.0, 3.0), scale=st.floats(0.2, 3.0), seed=st.integers(0, 10**6))
def test_optimum_at_floor_is_the_sign_of_the_slope_at_prior_zero(n, shift, scale, seed):
    """The mixture log-likelihood ``sum_i w_i log(1 - pi + pi exp(llr_i))`` has its maximum over ``pi`` at 0 exactly
    when its slope at 0 is not positive: checked against the slope summed plainly and against the likelihood on a grid."""
    from fnlab.posterior.gmm import _optimum_at_floor

    rng = np.random.default_rng(seed)
    llr = shift + scale * rng.standard_normal(n)
    w = rng.uniform(0.1, 2.0, n)
    slope = float((w * (np.exp(llr) - 1.0)).sum())
    assert _optimum_at_floor(llr, w) == (slope <= 0) or abs(slope) < 1e-9 * w.sum()
    grid = np.linspace(0.0, 0.999, 400)
    ll = (w[None, :] * np.log1p(grid[:, None] * np.expm1(llr)[None, :])).sum(1)
    if _optimum_at_floor(llr, w) and slope < -1e-6:
        assert ll.argmax() == 0
    if slope > 1e-6:
        assert ll[1:].max() > ll[0]
    assert not _optimum_at_floor(np.r_[llr, np.inf], np.r_[w, 1.0])  # a non-finite ratio: no shortcut


def test_em_whose_prior_runs_to_its_floor_takes_the_shortcut_to_the_same_fixed_point(monkeypatch):
    """Labelled rows with a mode no unlabelled row shares: the free prior decays to its floor. The shortcut (the
    slope test once the labelled rows decide the positive component) ends at the fixed point the full iterations
    reach, in fewer iterations."""
    from fnlab.posterior import gmm

    rng = np.random.default_rng(3)
    lab = np.c_[rng.normal(0.6, 0.1, 100), rng.normal(0.5, 0.1, 100)]
    unl = np.c_[rng.normal(0.3, 0.2, 10_000), rng.normal(0.2, 0.2, 10_000)]
    unl[rng.random(10_000) < 0.1, 1] = np.nan  # missing entries, as transitive signals have
    w = rng.uniform(0.5, 1.5, unl.shape[0])
    fast = gmm.fit_em(lab, unl, w, prior=None, max_iter=2000, tol=1e-9)
    monkeypatch.setattr(gmm, "BOUNDARY_SHARE", 0.0)  # never take the shortcut
    slow = gmm.fit_em(lab, unl, w, prior=None, max_iter=2000, tol=1e-9)
    assert fast[0] == slow[0] == gmm.PRIOR_FLOOR and fast[4] and slow[4]
    np.testing.assert_allclose(fast[1], slow[1], atol=1e-8)
    np.testing.assert_allclose(fast[2], slow[2], atol=1e-8)
    assert fast[3] < 0.5 * slow[3], (fast[3], slow[3])
