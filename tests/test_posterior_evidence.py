"""The pu posterior's parts against slow references: the duplicate group, label frequency, the linear
evidence's contributions, second-view and content signals, the window, the reasons in words."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from fnlab import posterior as P
from fnlab.posterior.duplicates import DuplicateGroup, z_scale
from fnlab.posterior.labelfreq import match_share
from fnlab.posterior.linear import LinearEvidence, features_of
from fnlab.posterior.pu import PUPosterior


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------ duplicate group
def test_duplicate_group_finds_a_separated_top_group_and_matches_the_mixture_posterior():
    rng = np.random.default_rng(0)
    bulk = np.concatenate([rng.normal(0.9, 0.15, 6000), rng.normal(1.3, 0.1, 3000)])
    copies = rng.normal(2.6, 0.08, 60)
    g = DuplicateGroup.fit(np.concatenate([bulk, copies]))
    assert g.found and abs(g.share - 60 / 9060) < 0.003
    # responsibilities against a slow reference over the fitted components
    z = np.linspace(0.0, 2.5, 26)
    dens = np.stack([w * norm.pdf(z, m, s) for w, m, s in zip(g.weights, g.means, g.stds, strict=True)])
    np.testing.assert_allclose(g.prob(z), dens[-1] / dens.sum(0), rtol=1e-6, atol=1e-9)
    # never falls as z rises; above the group's mean it holds
    zz = np.linspace(-1, 6, 300)
    assert np.all(np.diff(np.nan_to_num(g.prob(zz))) >= -1e-12)
    assert g.prob(np.array([6.0]))[0] == pytest.approx(g.prob(np.array([g.means[-1]]))[0])
    back = DuplicateGroup.from_params(g.params())
    np.testing.assert_allclose(back.prob(z), g.prob(z))


def test_duplicate_group_finds_nothing_in_a_continuum():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0.8, 0.15, 8000), rng.gamma(2.0, 0.1, 2000) + 0.9])  # skewed, one bulk
    g = DuplicateGroup.fit(x)
    assert not g.found and np.all(g.prob(x) == 0)


def test_z_scale_caps_identical_rows():
    assert np.isfinite(z_scale(np.array([1.0, -1.0, 0.5]))).all()
    assert math.isnan(z_scale(np.array([np.nan]))[0])


# ------------------------------------------------------------------ label frequency
def test_match_share_recovers_a_planted_share_when_labelled_pairs_are_a_random_sample():
    rng = np.random.default_rng(0)
    for share in (0.05, 0.3):
        n = 40_000
        y = rng.random(n) < share
        x = np.where(y, rng.normal(1.0, 0.5, n), rng.normal(-1.0, 0.5, n))[:, None]
        lab = rng.normal(1.0, 0.5, 3000)[:, None]  # SCAR in this signal
        got, c = match_share(lab, x)
        assert share * 0.8 < got < share * 1.25, (share, got)
        assert c == pytest.approx(3000 / (3000 + y.sum()), rel=0.15)


def test_match_share_is_nan_without_enough_rows():
    got, c = match_share(np.ones((5, 1)), np.zeros((100, 1)))
    assert math.isnan(got) and math.isnan(c)


# ------------------------------------------------------------------ linear evidence
def test_linear_contributions_add_up_to_the_marginal_log_density_ratio():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(2)
    names = ("margin", "query_neighbour", "view_query_neighbour")
    a = rng.standard_normal((3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    means = np.array([[-0.3, 0.2, 0.1], [0.0, 0.7, 0.5]])
    lin = LinearEvidence(names, means, cov, 0.1)
    n = 50
    sig = P.PairSignals.of(torch.from_numpy(rng.uniform(0, 1, n)), torch.from_numpy(rng.uniform(0, 1, n)),
                           query_neighbour=torch.from_numpy(np.where(np.arange(n) % 4 == 0, np.nan,
                                                                     rng.uniform(0, 1, n))),
                           view_query_neighbour=torch.from_numpy(rng.uniform(0, 1, n)))
    terms, base = lin.contributions(sig)
    total = base + sum(torch.nan_to_num(t) for t in terms.values())
    torch.testing.assert_close(total, lin.log_odds(sig))
    x = features_of(sig, names).numpy()
    for i in range(n):
        o = ~np.isnan(x[i])
        ref = (math.log(0.1 / 0.9) + multivariate_normal(means[1][o], cov[np.ix_(o, o)]).logpdf(x[i][o])
               - multivariate_normal(means[0][o], cov[np.ix_(o, o)]).logpdf(x[i][o]))
        assert float(total[i]) == pytest.approx(ref, abs=1e-8)


def test_window_shift_applies_inside_the_window_only_and_checks_the_window():
    lin = LinearEvidence(("margin",), np.array([[-0.3], [0.0]]), np.array([[0.01]]), 0.05, window_shift=2.0, window=5)
    s = torch.tensor([0.8, 0.6], dtype=torch.float64)
    sig = P.PairSignals.of(s, torch.tensor([0.8, 0.8], dtype=torch.float64),
                           query_threshold=torch.tensor([0.7, 0.7], dtype=torch.float64))
    sig.window = 5
    no = P.PairSignals.of(s, torch.tensor([0.8, 0.8], dtype=torch.float64))
    diff = lin.log_odds(sig) - lin.log_odds(no)
    torch.testing.assert_close(diff, torch.tensor([2.0, 0.0], dtype=torch.float64))
    sig.window = 10
    with pytest.raises(ValueError, match="window=5"):
        lin.log_odds(sig)


def test_window_drop_marginalises_the_margin_inside_the_window_only():
    """Inside the window (``s >= query_threshold``) a dropped feature is marginalised out exactly as a missing one;
    outside it counts; the field survives a round trip through params."""
    from scipy.stats import multivariate_normal

    names = ("margin", "query_neighbour")
    means = np.array([[-0.3, 0.2], [0.0, 0.7]])
    cov = np.array([[0.04, 0.01], [0.01, 0.09]])
    lin = LinearEvidence(names, means, cov, 0.1, window_shift=0.5, window=5, window_drop=("margin",))
    rng = np.random.default_rng(4)
    n = 40
    s = torch.from_numpy(rng.uniform(0.2, 0.9, n))
    sig = P.PairSignals.of(s, torch.from_numpy(rng.uniform(0.2, 0.9, n)),
                           query_neighbour=torch.from_numpy(rng.uniform(0, 1, n)),
                           query_threshold=torch.full((n,), 0.55, dtype=torch.float64))
    sig.window = 5
    x = features_of(sig, names).numpy()
    got = lin.log_odds(sig).numpy()
    for i in range(n):
        inside = float(s[i]) >= 0.55
        o = np.array([not inside, True])
        ref = (math.log(0.1 / 0.9) + (0.5 if inside else 0.0)
               + multivariate_normal(means[1][o], cov[np.ix_(o, o)]).logpdf(x[i][o])
               - multivariate_normal(means[0][o], cov[np.ix_(o, o)]).logpdf(x[i][o]))
        assert got[i] == pytest.approx(ref, abs=1e-8)
    back = LinearEvidence.from_params(lin.params())
    assert back.window_drop == ("margin",)
    np.testing.assert_allclose(back.log_odds(sig).numpy(), got)
    assert "query_threshold" in LinearEvidence(names, means, cov, 0.1, window_drop=("margin",)).signals


# ------------------------------------------------------------------ signals: second view, content
def slow_view_signals(qv, cv, pos, qk, ck, qi, ci, leave):
    dense = pos.toarray()
    out = {k: [] for k in ("view_similarity", "view_positive_similarity", "view_positive_neighbour",
                           "view_query_neighbour", "positive_duplicate", "query_duplicate")}
    for a, b in zip(qi, ci, strict=True):
        ps = [p for p in np.flatnonzero(dense[a]) if not (leave and p == b)]
        qs = [x for x in np.flatnonzero(dense[:, b]) if x != a]
        out["view_similarity"].append(float(qv[a] @ cv[b]))
        out["view_positive_similarity"].append(max((float(qv[a] @ cv[p]) for p in ps), default=math.nan))
        out["view_positive_neighbour"].append(max((float(cv[b] @ cv[p]) for p in ps), default=math.nan))
        out["view_query_neighbour"].append(max((float(qv[a] @ qv[x]) for x in qs), default=math.nan))
        out["positive_duplicate"].append(max((float(ck[b] == ck[p]) for p in ps), default=math.nan))
        out["query_duplicate"].append(max((float(qk[a] == qk[x]) for x in qs), default=math.nan))
    return {k: np.array(v) for k, v in out.items()}


@settings(max_examples=20, deadline=None)
@given(nq=st.integers(3, 10), nc=st.integers(3, 10), seed=st.integers(0, 10**6), leave=st.booleans())
def test_view_and_content_signals_match_brute_force(nq, nc, seed, leave):
    rng = np.random.default_rng(seed)
    q, c = unit(rng.standard_normal((nq, 4))), unit(rng.standard_normal((nc, 4)))
    qv, cv = unit(rng.standard_normal((nq, 3))), unit(rng.standard_normal((nc, 3)))
    qk, ck = rng.integers(0, 3, nq), rng.integers(0, 3, nc)  # repeated content keys
    dense = rng.random((nq, nc)) < 0.4
    dense[0, 0] = dense[1, 0] = True  # a candidate with two labelled queries
    pos = sp.csr_matrix(dense)
    ctx = P.PairContext(q, c, pos, query_view=qv, candidate_view=cv, query_content=qk, candidate_content=ck)
    if leave:
        qi, ci = pos.nonzero()
    else:
        qi, ci = rng.integers(0, nq, 25), rng.integers(0, nc, 25)
    got = ctx.signals(qi, ci, leave_pair_out=leave)
    for name, ref in slow_view_signals(qv, cv, pos, qk, ck, qi, ci, leave).items():
        np.testing.assert_allclose(got.numpy(name), ref, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=name)


@settings(max_examples=30, deadline=None)
@given(n_left=st.integers(1, 12), n_right=st.integers(1, 40), total=st.integers(0, 60), seed=st.integers(0, 10**6),
       step=st.integers(1, 7), block_entries=st.integers(1, 100))
def test_set_products_match_brute_force_on_both_paths(n_left, n_right, total, seed, step, block_entries):
    """Few distinct left rows against few right rows take the blocked matrix product, many against many the
    chunked gather; both give each entry's dot product."""
    from fnlab.posterior.signals import _set_products

    rng = np.random.default_rng(seed)
    left = rng.standard_normal((n_left, 5)).astype(np.float32)
    right = rng.standard_normal((n_right, 5)).astype(np.float32)
    li, members = rng.integers(0, n_left, total), rng.integers(0, n_right, total)
    got = _set_products(left, li, right, members, step=step, block_entries=block_entries)
    ref = np.array([float(np.dot(left[a].astype(np.float64), right[b].astype(np.float64)))
                    for a, b in zip(li, members, strict=True)])
    assert got.shape == (total,) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_text_keys_see_through_case_spacing_and_punctuation():
    from fnlab.posterior.signals import row_keys, text_keys

    k = text_keys(["Quick tomato soup.", "quick  tomato SOUP", "vegan tomato soup"])
    assert k[0] == k[1] != k[2]
    r = row_keys(np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0]], dtype=np.float32))
    assert r[0] == r[1] != r[2]


def test_text_keys_keep_the_punctuation_that_changes_what_a_text_says():
    from fnlab.posterior.signals import text_keys

    # found on Debian's package descriptions: "GNU C++ compiler" read as the same content as "GNU C compiler"
    pairs = [("GNU C++ compiler", "GNU C compiler"), ("written in C#", "written in C"), ("version 3.5", "version 35"),
             ("-5 degrees", "5 degrees"), ("50% off", "50 off"), ("1,000 items", "1000 items")]
    for a, b in pairs:
        k = text_keys([a, b])
        assert k[0] != k[1], (a, b)
    same = ["\u00abHello\u00bb, \u201cworld\u201d!", "hello world", "Hello (world)", "hello -- world."]
    assert len(set(text_keys(same).tolist())) == 1


def slow_normalise_text(text: str) -> str:
    """One character at a time: drop Unicode punctuation except ``# % & @ * / \\``, keeping ``. , :`` between
    decimal digits and ``-`` before one that does not follow a word character."""
    import unicodedata

    t = unicodedata.normalize("NFKC", text).casefold()
    out = []
    for i, ch in enumerate(t):
        if not unicodedata.category(ch).startswith("P") or ch in "#%&@*/\\":
            out.append(ch)
            continue
        prev, nxt = (t[i - 1] if i else ""), (t[i + 1] if i + 1 < len(t) else "")
        starts_number = ch == "-" and not (prev.isalnum() or prev == "_")
        separates_digits = ch in ".,:" and prev.isdecimal()
        if nxt.isdecimal() and (starts_number or separates_digits):
            out.append(chr(0xE000 + ord(ch)))
    return " ".join("".join(out).split())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aBc C+#-.,:_%/5 3\t'\"\u00ab\u00bb\u2014\u2019\u00e9\u00bd\u0663\u2026!?()", max_size=30))
def test_normalise_text_matches_its_slow_reference(text):
    from fnlab.posterior.signals import normalise_text

    assert normalise_text(text) == slow_normalise_text(text)


def test_context_refuses_views_of_the_wrong_size():
    x = unit(np.random.default_rng(0).standard_normal((6, 4)))
    pos = sp.eye(3, 3, format="csr", dtype=bool)
    with pytest.raises(ValueError, match="query_view"):
        P.PairContext(x[:3], x[3:], pos, query_view=np.ones((2, 5)))
    with pytest.raises(ValueError, match="one space"):
        P.PairContext(x[:3], x[3:], pos, query_view=np.ones((3, 5)), candidate_view=np.ones((3, 4)))


# ------------------------------------------------------------------ reasons, status
def planted_copies(seed=0, nq=300, nc=600, d=32, n_dup=30):
    rng = np.random.default_rng(seed)
    c = unit(rng.standard_normal((nc, d)))
    q = unit(c[:nq] + 0.6 * rng.standard_normal((nq, d)) / np.sqrt(d))
    for i in range(n_dup):
        c[nq + i] = unit((c[i] + 0.05 * rng.standard_normal(d) / np.sqrt(d))[None])[0]
    c[nq + n_dup] = c[n_dup]  # one identical copy
    pos = sp.csr_matrix((np.ones(nq, bool), (np.arange(nq), np.arange(nq))), shape=(nq, nc))
    return q, c, pos


def test_reasons_name_the_near_copy_and_the_identical_content():
    q, c, pos = planted_copies()
    ctx = P.PairContext(q, c, pos)
    post = P.fit("pu", ctx, seed=0)
    sig = ctx.signals(np.array([0, 30, 5]), np.array([300, 330, 7]))
    why = post.explain(sig)
    pn = float(sig.positive_neighbour[0])
    assert why[0] == f"near-copy of the labelled positive ({pn:.2f})" and pn > 0.99
    assert why[1] == "same content as the labelled positive"
    assert why[2] == ""  # nothing raised its P


def test_too_few_labelled_pairs_give_rank_only_with_the_reason():
    q, c, _ = planted_copies()
    pos = sp.csr_matrix((np.ones(3, bool), (np.arange(3), np.arange(3))), shape=(300, 600))
    post = P.fit("pu", P.PairContext(q, c, pos), seed=0)
    assert not post.status.calibrated and "3 labelled pairs" in post.status.reason
    back = P.from_params(post.params())
    assert str(back.status) == str(post.status)


def test_pu_parts_combine_as_either_evidence():
    q, c, pos = planted_copies()
    ctx = P.PairContext(q, c, pos)
    post = P.fit("pu", ctx, seed=0)
    sig = ctx.signals(np.arange(50), np.arange(300, 350))
    parts = post.parts(sig)
    group = torch.nan_to_num(parts.get("group", torch.zeros(50, dtype=torch.float64)))
    copy = torch.nan_to_num(parts["copy"])
    torch.testing.assert_close(post.prob_false_negative(sig).double(), 1 - (1 - group) * (1 - copy))
    assert isinstance(post, PUPosterior)


# ------------------------------------------------------------------ the training pool's view signals
def test_pool_view_signals_are_the_pool_signals_in_the_view_space():
    from fnlab.posterior.pool import PAIRWISE_MAX, PoolEvidence

    g = torch.Generator().manual_seed(0)

    def u(n, d):
        x = torch.randn(n, d, generator=g)
        return x / x.norm(dim=1, keepdim=True)

    b, m = 6, 40
    anchors, cands, partners = u(b, 4), u(m, 4), u(m, 4)
    views = {"anchor_view": u(b, 3), "candidate_view": u(m, 3), "partner_view": u(m, 3)}
    cand_ids = torch.randint(0, 9, (m,), generator=g)
    partner_ids = torch.randint(0, b + 3, (m,), generator=g)
    mask = torch.randint(0, 9, (b,), generator=g)[:, None] == cand_ids[None, :]
    ev = PoolEvidence(anchors, cands, partners, cand_ids, partner_ids, torch.arange(b), mask, **views)
    # the same pool with the view as its embeddings: the plain signals there are the view signals here
    twin = PoolEvidence(views["anchor_view"], views["candidate_view"], views["partner_view"], cand_ids, partner_ids,
                        torch.arange(b), mask)
    rows, cols = torch.meshgrid(torch.arange(b), torch.arange(m), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    got = ev.signals(("view_positive_neighbour", "view_query_neighbour"), rows, cols)
    want = twin.signals(("positive_neighbour", "query_neighbour"), rows, cols)
    torch.testing.assert_close(got["view_positive_neighbour"], want["positive_neighbour"], equal_nan=True)
    torch.testing.assert_close(got["view_query_neighbour"], want["query_neighbour"], equal_nan=True)
    assert rows.numel() <= PAIRWISE_MAX
    plain = PoolEvidence(anchors, cands, partners, cand_ids, partner_ids, torch.arange(b), mask)
    assert plain.signals(("view_query_neighbour",), rows, cols) == {}  # no view: nothing offered
    with pytest.raises(ValueError, match="candidate_view"):
        PoolEvidence(anchors, cands, partners, cand_ids, partner_ids, torch.arange(b), mask,
                     candidate_view=u(m - 1, 3))


def test_random_embeddings_with_a_few_labels_flag_nothing():
    """No structure, 200 labelled pairs of 2,000 queries: no pair may look like a confident match (the
    queries without a positive are judged against labelled similarities, never above what they back)."""
    rng = np.random.default_rng(0)
    q, c = unit(rng.standard_normal((2000, 32))), unit(rng.standard_normal((2000, 32)))
    pos = sp.csr_matrix((np.ones(200, bool), (np.arange(200), np.arange(200))), shape=(2000, 2000))
    ctx = P.PairContext(q, c, pos)
    post = P.fit("pu", ctx, seed=0)
    s, idx = ctx.topk_unlabelled(10)
    p = post.prob_false_negative(ctx.signals(np.repeat(np.arange(2000), 10), idx.ravel())).numpy()
    assert p.max() < 0.5 and post.prior_pos < 1e-4
