"""Posteriors: Bayes' rule vs the official formula, running stats vs the official meters,
monotonicity, and calibration on planted data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlab import posterior as P


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width bins (the textbook definition)."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels, dtype=float)
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.mean() * abs(probs[sel].mean() - labels[sel].mean())
    return float(total)


def test_gaussian_matches_official_formula():
    post = P.GaussianPosterior(0.6, 0.08, 0.1, 0.12, prior_pos=1e-4)
    s = torch.linspace(-0.5, 1.0, 61, dtype=torch.float64)
    got = post.prob_false_negative(s)
    for x, g in zip(s.tolist(), got.tolist(), strict=True):
        pp = math.exp(-((x - 0.6) ** 2) / (2 * 0.08**2)) / math.sqrt(2 * math.pi * 0.08**2)
        pn = math.exp(-((x - 0.1) ** 2) / (2 * 0.12**2)) / math.sqrt(2 * math.pi * 0.12**2)
        want = pp / (pp + 9999 * pn) if pp + pn > 0 else 0.0
        assert g == pytest.approx(want, rel=1e-9, abs=1e-300)
    assert got.dtype == torch.float64 and post.prob_false_negative(s.float()).dtype == torch.float32


@settings(max_examples=40, deadline=None)
@given(mp=st.floats(0.2, 0.9), gap=st.floats(0.05, 0.8), sp=st.floats(0.02, 0.3), sn=st.floats(0.02, 0.3),
       prior=st.floats(1e-5, 0.5))
def test_posterior_monotone_between_the_means(mp, gap, sp, sn, prior):
    post = P.GaussianPosterior(mp, sp, mp - gap, sn, prior_pos=prior)
    s = torch.linspace(mp - gap, mp, 200, dtype=torch.float64)
    lo = post.log_odds(s)
    assert (lo[1:] >= lo[:-1] - 1e-9).all()
    if sp == sn:
        s = torch.linspace(-1, 1, 200, dtype=torch.float64)
        lo = post.log_odds(s)
        assert (lo[1:] >= lo[:-1] - 1e-9).all()


# ------------------------------------------------------------------ running statistics
class OfficialMeters:
    """Per-row transcription of the official AverageSims/VarianceSims/average_sims_scores."""

    def __init__(self):
        self.pos_sum = self.pos_cnt = self.neg_sum = self.neg_cnt = 0.0
        self.pvar_sum = self.pvar_cnt = self.nvar_sum = self.nvar_cnt = 0.0

    def update(self, scores: list[list[float]]):
        b = len(scores)
        conf = []
        for i in range(b):
            row = scores[i]
            col = [scores[k][i] for k in range(b)]
            if max(range(b), key=lambda j: row[j]) == i and max(range(b), key=lambda k: col[k]) == i:
                hi2t = max(row[j] for j in range(b) if j != i)
                ht2i = max(col[k] for k in range(b) if k != i)
                conf.append((row[i], hi2t, ht2i))
        for p, n1, n2 in conf:
            self.pos_sum += p
            self.pos_cnt += 1
            self.neg_sum += n1 + n2
            self.neg_cnt += 2
        for p, n1, n2 in conf:
            self.pvar_sum += (p - self.pos_sum / self.pos_cnt) ** 2
            self.pvar_cnt += 1
            for n in (n1, n2):
                self.nvar_sum += (n - self.neg_sum / self.neg_cnt) ** 2
                self.nvar_cnt += 1


def batches(n: int, b: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.nn.functional.normalize(torch.randn(b, 8, generator=g, dtype=torch.float64), dim=1)
        y = torch.nn.functional.normalize(x + 0.7 * torch.randn(b, 8, generator=g, dtype=torch.float64), dim=1)
        yield x @ y.T


@pytest.mark.parametrize("b", [4, 16, 32])
def test_running_stats_match_official_meters(b):
    stats, ref = P.RunningGaussianStats(min_count=20), OfficialMeters()
    for scores in batches(6, b, seed=b):
        stats.update(scores)
        ref.update(scores.tolist())
    assert stats.count == ref.pos_cnt > 0
    post = stats.posterior()
    assert post.pos_mean == pytest.approx(ref.pos_sum / ref.pos_cnt)
    assert post.neg_mean == pytest.approx(ref.neg_sum / ref.neg_cnt)
    assert post.pos_std == pytest.approx(math.sqrt(ref.pvar_sum / (ref.pvar_cnt - 1)))
    assert post.neg_std == pytest.approx(math.sqrt(ref.nvar_sum / (ref.nvar_cnt - 1)))
    assert stats.pos_mean == post.pos_mean and post.prior_pos == 1e-4


def test_running_stats_ready_reset_and_exact_variance():
    stats = P.RunningGaussianStats(min_count=5, variance="exact")
    scores = torch.eye(3, dtype=torch.float64) * 0.5 + torch.tensor([[0.1, 0.2, 0.0], [0.0, 0.1, 0.3], [0.2, 0.0, 0.1]],
                                                                     dtype=torch.float64)
    assert stats.update(scores) == 3 and not stats.ready
    stats.update(scores * 1.1)
    assert stats.count == 6 and stats.ready
    pos = torch.cat([scores.diagonal(), (scores * 1.1).diagonal()])
    assert stats.posterior().pos_std == pytest.approx(float(pos.std()))
    p = stats.prob_false_negative(torch.tensor([0.0, 0.6]))
    assert p.shape == (2,) and p[1] > p[0]
    assert stats.params()["count"] == 6
    stats.reset()
    assert stats.count == 0 and not stats.ready


def test_running_stats_ids_and_direct_form():
    scores = torch.tensor([[0.9, 0.85, 0.1], [0.8, 0.95, 0.2], [0.1, 0.3, 0.7]])
    ids = torch.tensor([5, 5, 7])  # items 0 and 1 share an image: not negatives of each other
    pos, neg = P.RunningGaussianStats.confident_pairs(scores, ids)
    assert pos.tolist() == pytest.approx([0.9, 0.95, 0.7])
    assert neg.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.1, 0.3, 0.2])
    stats = P.RunningGaussianStats()
    stats.update(pos, neg)
    assert stats.count == 3
    with pytest.raises(ValueError, match="square"):
        stats.update(torch.zeros(2, 3))


# ------------------------------------------------------------------ calibration, planted data
def planted(seed: int, n_neg=6000, prior=0.04, n_lab=400):
    rng = np.random.default_rng(seed)
    n_fn = int(n_neg * prior / (1 - prior))
    neg = rng.normal(0.15, 0.1, n_neg)
    fn = rng.normal(0.6, 0.07, n_fn)
    unl = np.concatenate([neg, fn])
    y = np.concatenate([np.zeros(n_neg), np.ones(n_fn)])
    lab = rng.normal(0.6, 0.07, n_lab)
    hardest_neg = rng.normal(0.15, 0.1, 500)
    return lab, hardest_neg, unl, y, n_fn / len(unl)


@pytest.mark.parametrize("anchored", [True, False])
def test_similarity_mixtures_calibrated_on_planted_data(anchored):
    lab, negs, unl, y, prior = planted(seed=1)
    post = P.MixturePosterior.fit_em(lab, unl, neg_sims=negs, anchored_positive=anchored)
    p = post.prob_false_negative(torch.from_numpy(unl)).numpy()
    assert post.prior_pos == pytest.approx(prior, rel=0.2)
    assert ece(p, y) < 0.02
    # the paper's fixed prior is far off on the same data
    paper = P.GaussianPosterior.fit(lab, negs, prior_pos=1e-4)
    assert ece(paper.prob_false_negative(torch.from_numpy(unl)).numpy(), y) > 3 * ece(p, y)
    # and the fit survives a round trip through params()
    again = P.from_params(post.params())
    torch.testing.assert_close(again.prob_false_negative(torch.from_numpy(unl)), torch.from_numpy(p).double())


def test_mixture_follows_false_negatives_that_sit_below_the_positives():
    # false negatives are less similar than labelled positives: the free positive component
    # moves towards them, the anchored one cannot
    rng = np.random.default_rng(3)
    neg, fn = rng.normal(0.1, 0.1, 8000), rng.normal(0.45, 0.07, 400)
    unl, y = np.concatenate([neg, fn]), np.r_[np.zeros(8000), np.ones(400)]
    lab = rng.normal(0.6, 0.07, 400)
    mix = P.MixturePosterior.fit_em(lab, unl, neg_sims=neg[:500])
    anc = P.MixturePosterior.fit_em(lab, unl, neg_sims=neg[:500], anchored_positive=True)
    t = torch.from_numpy(unl)
    assert ece(mix.prob_false_negative(t).numpy(), y) < ece(anc.prob_false_negative(t).numpy(), y)
    assert mix.pos_mean < 0.6 and mix.converged_


def test_fit_names_and_errors_come_from_the_registry():
    import scipy.sparse as sp

    rng = np.random.default_rng(2)
    x = rng.standard_normal((120, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ctx = P.PairContext(x[:60], x[60:], sp.eye(60, format="csr", dtype=bool))
    assert P.available()[0] == P.DEFAULT_ESTIMATOR == "pu"
    assert sorted(P.available()) == ["mixture", "paper", "pu", "relative"]
    with pytest.raises(ValueError, match="valid names: pu, mixture, paper, relative"):
        P.fit("gaussian", ctx)
    with pytest.raises(ValueError, match="unknown parameter"):
        P.fit("pu", ctx, bogus=1)
    with pytest.raises(ValueError, match="prior"):
        P.fit("paper", ctx, prior=1.5)
    assert P.fit("paper", ctx).prior_pos == 1e-4
    assert P.fit("mixture", ctx, prior=0.01).prior_pos == 0.01
    for name in P.available():
        assert P.describe(name) and isinstance(P.param_specs(name), list)
    # posterior.json of older runs still loads, under today's names
    old = {"estimator": "gaussian", "pos_mean": 0.5, "pos_std": 0.1, "neg_mean": 0.1, "neg_std": 0.1, "prior_pos": 0.01}
    assert P.from_params(old).estimator == "paper"


def test_from_params_validates():
    with pytest.raises(ValueError, match="missing field 'neg_std'"):
        P.from_params({"pos_mean": 0.5, "pos_std": 0.1, "neg_mean": 0.1, "prior_pos": 0.1})
    with pytest.raises(ValueError, match="'pos_std' must be a number"):
        P.from_params({"pos_mean": 0.5, "pos_std": "x", "neg_mean": 0.1, "neg_std": 0.1, "prior_pos": 0.1})
    with pytest.raises(ValueError, match="unknown estimator"):
        P.from_params({"estimator": "kde", "pos_mean": 0.5, "pos_std": 0.1, "neg_mean": 0.1, "neg_std": 0.1,
                       "prior_pos": 0.1})
    g = P.GaussianPosterior(0.5, 0.1, 0.1, 0.1, 0.01)
    assert P.from_params(g.params()) == g


# ------------------------------------------------------------------ EM against a slow reference
def reference_em(pos, unl, neg, *, prior=None, anchored=False, anchor_weight=1.0, tol=1e-13, max_iter=100_000,
                 min_std=1e-3, bounds=(1e-7, 0.5)):
    """Plain EM, textbook formulas (scipy log-densities, weighted averages), run to a tight fixed point.

    Returns ``((pi, mu+, sd+, mu-, sd-), iterations)``."""
    from scipy.stats import norm

    mu_p, sd_p = pos.mean(), max(pos.std(ddof=1), min_std)
    mu_n, sd_n = neg.mean(), max(neg.std(ddof=1), min_std)
    pi = 0.05 if prior is None else prior
    for it in range(1, max_iter + 1):  # noqa: B007 - returned
        la = np.log(pi) + norm.logpdf(unl, mu_p, sd_p)
        lb = np.log1p(-pi) + norm.logpdf(unl, mu_n, sd_n)
        r = np.exp(la - np.logaddexp(la, lb))  # P(positive component | s)
        new_pi = pi if prior is not None else float(np.clip(r.mean(), *bounds))
        new_mu_p, new_sd_p = mu_p, sd_p
        if not anchored:
            w = np.concatenate([np.full(pos.size, anchor_weight), r])
            v = np.concatenate([pos, unl])
            new_mu_p = np.average(v, weights=w)
            new_sd_p = max(math.sqrt(np.average((v - new_mu_p) ** 2, weights=w)), min_std)
        new_mu_n = np.average(unl, weights=1 - r)
        new_sd_n = max(math.sqrt(np.average((unl - new_mu_n) ** 2, weights=1 - r)), min_std)
        old = np.array([mu_p, sd_p, mu_n, sd_n])
        new = np.array([new_mu_p, new_sd_p, new_mu_n, new_sd_n])
        done = np.abs(new - old).max() <= tol and abs(new_pi - pi) <= tol * pi
        pi, mu_p, sd_p, mu_n, sd_n = new_pi, new_mu_p, new_sd_p, new_mu_n, new_sd_n
        if done:
            break
    return np.array([pi, mu_p, sd_p, mu_n, sd_n]), it


def planted_mixture(kind: str, n=5000, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "separated":  # 4% false negatives well above the negatives
        unl = np.r_[rng.normal(0.15, 0.1, int(n * 0.96)), rng.normal(0.6, 0.07, int(n * 0.04))]
        lab = rng.normal(0.6, 0.07, 1000)
    else:  # 1% false negatives inside the negatives' tail: EM converges slowly
        unl = np.r_[rng.normal(0.3, 0.12, int(n * 0.99)), rng.normal(0.5, 0.1, int(n * 0.01))]
        lab = rng.normal(0.55, 0.1, 1000)
    return lab, unl, rng.normal(unl.mean(), unl.std(), 500)


EM_CASES = [
    ("separated", {"anchored_positive": True}),
    ("separated", {}),
    ("separated", {"anchor_weight": 2.0}),
    ("separated", {"prior": 0.01}),
    ("overlap", {"anchored_positive": True}),
    ("overlap", {}),
    ("overlap", {"prior": 0.002, "anchored_positive": True}),
]


@pytest.mark.parametrize("kind,opts", EM_CASES, ids=[f"{k}-{'-'.join(o) or 'free'}" for k, o in EM_CASES])
def test_em_matches_slow_reference(kind, opts):
    lab, unl, neg = planted_mixture(kind)
    want, ref_iters = reference_em(lab, unl, neg, prior=opts.get("prior"), tol=1e-12,
                                   anchored=opts.get("anchored_positive", False),
                                   anchor_weight=opts.get("anchor_weight", 1.0))
    tight = P.MixturePosterior.fit_em(lab, unl, neg_sims=neg, tol=1e-11, max_iter=10_000, **opts)
    got = np.array([tight.prior_pos, tight.pos_mean, tight.pos_std, tight.neg_mean, tight.neg_std])
    assert tight.converged_
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    # the default tolerance lands close to the fixed point, in fewer EM steps than plain EM needs
    loose = P.MixturePosterior.fit_em(lab, unl, neg_sims=neg, **opts)
    got = np.array([loose.prior_pos, loose.pos_mean, loose.pos_std, loose.neg_mean, loose.neg_std])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-3)
    np.testing.assert_allclose(got[1:], want[1:], atol=1e-5)
    _, plain_iters = reference_em(lab, unl, neg, prior=opts.get("prior"), anchored=opts.get("anchored_positive", False),
                                  anchor_weight=opts.get("anchor_weight", 1.0), tol=1e-6)
    assert loose.converged_ and loose.n_iter_ <= plain_iters + 2
    # the reported log-likelihood is that of the returned parameters
    from scipy.stats import norm
    pi, mp, sp, mn, sn = got
    ll = np.logaddexp(np.log(pi) + norm.logpdf(unl, mp, sp), np.log1p(-pi) + norm.logpdf(unl, mn, sn)).sum()
    assert loose.log_likelihood_ == pytest.approx(ll, rel=1e-10)
    if kind == "overlap" and "prior" not in opts:
        assert ref_iters > 100  # the slow case, where acceleration matters


def _anchors_with_offsets(seed=0, n_anchors=400, per_anchor=50, fn_rate=0.1):
    """Planted data where each anchor has its own similarity offset (generic vs specific queries):
    positives and false negatives sit near the anchor's offset + 0.5, negatives near offset + 0.0."""
    rng = np.random.default_rng(seed)
    offset = rng.uniform(-0.3, 0.3, n_anchors)
    pos = offset + 0.5 + 0.05 * rng.standard_normal(n_anchors)
    is_fn = rng.random((n_anchors, per_anchor)) < fn_rate
    sims = offset[:, None] + np.where(is_fn, 0.5, 0.0) + 0.05 * rng.standard_normal((n_anchors, per_anchor))
    return pos, sims, is_fn


def test_relative_posterior_beats_a_global_one_when_anchors_differ():
    from sklearn.metrics import roc_auc_score

    from fnlab.posterior import MixturePosterior, RelativePosterior

    pos, sims, is_fn = _anchors_with_offsets()
    unl_pos = np.repeat(pos[:, None], sims.shape[1], axis=1)
    rel = RelativePosterior.fit(pos, sims.ravel(), unl_pos.ravel(), seed=0)
    glob = MixturePosterior.fit_em(pos, sims.ravel(), neg_sims=sims.ravel(), anchored_positive=True)
    p_rel = rel.prob_false_negative(torch.from_numpy(sims), torch.from_numpy(pos)[:, None]).numpy()
    p_glob = glob.prob_false_negative(torch.from_numpy(sims)).numpy()
    auc_rel = roc_auc_score(is_fn.ravel(), p_rel.ravel())
    auc_glob = roc_auc_score(is_fn.ravel(), p_glob.ravel())
    assert auc_rel > 0.99 and auc_rel > auc_glob
    assert rel.prior_pos == pytest.approx(is_fn.mean(), rel=0.25)
    # monotone in s for a fixed positive, and a function of s - s+ only
    s = torch.linspace(-0.5, 1.0, 50, dtype=torch.float64)
    p = rel.prob_false_negative(s, torch.tensor(0.5, dtype=torch.float64))
    assert torch.all(p[1:] >= p[:-1] - 1e-12)
    torch.testing.assert_close(rel.prob_false_negative(s + 0.1, torch.tensor(0.6, dtype=torch.float64)), p)


def test_relative_posterior_round_trip_and_errors():
    from fnlab.posterior import RelativePosterior, from_params

    pos, sims, _ = _anchors_with_offsets(seed=1, n_anchors=100)
    unl_pos = np.repeat(pos[:, None], sims.shape[1], axis=1)
    rel = RelativePosterior.fit(pos, sims.ravel(), unl_pos.ravel())
    again = from_params(rel.params())
    s, sp_ = torch.from_numpy(sims[:5]), torch.from_numpy(pos[:5])[:, None]
    torch.testing.assert_close(again.prob_false_negative(s, sp_), rel.prob_false_negative(s, sp_))
    with pytest.raises(ValueError, match="positive similarity"):
        rel.prob_false_negative(s)
    with pytest.raises(ValueError, match="unlabelled_pos_sims"):
        RelativePosterior.fit(pos, sims.ravel(), unl_pos.ravel()[:-1])


def test_fne_sampler_passes_anchor_positives_to_a_relative_posterior():
    from fnlab.posterior import RelativePosterior
    from fnlab.samplers import build

    pos, sims, is_fn = _anchors_with_offsets(seed=2, n_anchors=200)
    unl_pos = np.repeat(pos[:, None], sims.shape[1], axis=1)
    rel = RelativePosterior.fit(pos, sims.ravel(), unl_pos.ravel())
    s = torch.from_numpy(sims).float()
    mask = torch.zeros_like(s, dtype=torch.bool)
    w = build("fne", posterior=rel, mode="calibrated", margin=10.0).weights(s, torch.from_numpy(pos).float(), mask)
    # calibrated mode removes almost all weight from the planted false negatives
    share_on_fn = (w * torch.from_numpy(is_fn)).sum() / w.sum()
    assert float(share_on_fn) < 0.02
