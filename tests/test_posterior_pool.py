"""The transitive signals of a training pool (fnlab.posterior.pool) against slow loops, against the split-level
definitions (PairContext) and as FNE reads them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlab import posterior as P
from fnlab import samplers as S
from fnlab.posterior.linear import LinearEvidence
from fnlab.posterior.pool import PoolEvidence
from fnlab.posterior.pu import PUPosterior
from fnlab.retrieval.hooks import SampleContext


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def random_pool(b: int, m: int, n_items: int, seed: int) -> PoolEvidence:
    g = torch.Generator().manual_seed(seed)
    d = 4
    anchors, cands, partners = (unit(torch.randn(n, d, generator=g)) for n in (b, m, m))
    cand_ids = torch.randint(0, n_items, (m,), generator=g)
    partner_ids = torch.randint(0, b + 3, (m,), generator=g)  # some partners are anchors themselves
    anchor_ids = torch.arange(b)
    anchor_item = torch.randint(0, n_items, (b,), generator=g)
    positive_mask = anchor_item[:, None] == cand_ids[None, :]
    keys = torch.randint(0, max(1, m // 2), (m,), generator=g)  # content keys: some slots share content
    return PoolEvidence(anchors, cands, partners, cand_ids, partner_ids, anchor_ids, positive_mask, candidate_keys=keys)


def as_ctx(ev: PoolEvidence) -> SampleContext:
    """The sampler-call context holding a pool's features and ids (the content of ``ev``)."""
    return SampleContext(anchors=ev.anchors, candidates=ev.candidates, partners=ev.partners, anchor_ids=ev.anchor_ids,
                         candidate_ids=ev.candidate_ids, partner_ids=ev.partner_ids, positive_mask=ev.positive_mask)


def slow_pool_signals(ev: PoolEvidence, i: int, j: int) -> tuple[float, float, float]:
    """The module docstring's definitions, one pair at a time."""
    m = ev.candidates.shape[0]
    pos = [p for p in range(m) if ev.positive_mask[i, p]]
    pn = max((float(ev.candidates[j] @ ev.candidates[p]) for p in pos), default=math.nan)
    same = [k for k in range(m) if ev.candidate_ids[k] == ev.candidate_ids[j] and ev.partner_ids[k] != ev.anchor_ids[i]]
    qn = max((float(ev.anchors[i] @ ev.partners[k]) for k in same), default=math.nan)
    dup = float(any(ev.candidate_keys[j] == ev.candidate_keys[p] for p in pos)) if pos else math.nan
    return pn, qn, dup


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 6), m=st.integers(1, 15), n_items=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_pool_signals_match_slow_loops(b, m, n_items, seed):
    ev = random_pool(b, m, n_items, seed)
    rows, cols = torch.meshgrid(torch.arange(b), torch.arange(m), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    got = ev.signals(("positive_neighbour", "query_neighbour", "positive_duplicate"), rows, cols)
    want = np.array([slow_pool_signals(ev, int(i), int(j)) for i, j in zip(rows, cols, strict=True)]).reshape(-1, 3)
    np.testing.assert_allclose(got["positive_neighbour"].numpy(), want[:, 0], rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got["query_neighbour"].numpy(), want[:, 1], rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(got["positive_duplicate"].numpy(), want[:, 2])


@pytest.mark.parametrize("direction", ["t2i", "i2t"])
def test_a_pool_holding_the_whole_split_gives_the_split_level_signals(direction):
    """A queue that holds every (image, caption) pair of a split: each unlabelled pair's pool signals are
    those :class:`PairContext` computes with ``query_keys`` (the momentum copy of the queries)."""
    rng = np.random.default_rng(3)
    n_img, per = 6, 3
    b_to_a = np.repeat(np.arange(n_img), per)  # caption -> its image
    n_cap = b_to_a.size
    img_q, img_k = (unit(torch.from_numpy(rng.standard_normal((n_img, 5)))).float() for _ in range(2))
    cap_q, cap_k = (unit(torch.from_numpy(rng.standard_normal((n_cap, 5)))).float() for _ in range(2))
    lab = sp.csr_matrix((np.ones(n_cap, bool), (np.arange(n_cap), b_to_a)), shape=(n_cap, n_img))
    slots_img, slots_cap = torch.from_numpy(b_to_a), torch.arange(n_cap)
    if direction == "t2i":  # captions (online) over the images of the pool, each stored beside a caption
        anchors, anchor_ids = cap_q, torch.arange(n_cap)
        ev = PoolEvidence(anchors, img_k[slots_img], cap_k, slots_img, slots_cap, anchor_ids,
                          torch.from_numpy(b_to_a)[:, None] == slots_img[None, :])
        ctx = P.PairContext(cap_q.numpy(), img_k.numpy(), lab, query_keys=cap_k.numpy())
        cand_of_slot = slots_img
    else:  # images (online) over the captions of the pool, each stored beside its image
        anchors, anchor_ids = img_q, torch.arange(n_img)
        ev = PoolEvidence(anchors, cap_k, img_k[slots_img], slots_cap, slots_img, anchor_ids,
                          anchor_ids[:, None] == slots_img[None, :])
        ctx = P.PairContext(img_q.numpy(), cap_k.numpy(), lab.T.tocsr(), query_keys=img_k.numpy())
        cand_of_slot = slots_cap
    rows, cols = (~ev.positive_mask).nonzero(as_tuple=True)
    got = ev.signals(("positive_neighbour", "query_neighbour"), rows, cols)
    want = ctx.signals(rows.numpy(), cand_of_slot[cols].numpy())
    for name in ("positive_neighbour", "query_neighbour"):
        if name in ctx.signal_names:
            np.testing.assert_allclose(got[name].numpy(), want.numpy(name), rtol=1e-5, atol=1e-6, equal_nan=True,
                                       err_msg=name)
    assert {"t2i": "query_neighbour", "i2t": "positive_neighbour"}[direction] in ctx.signal_names


def test_query_keys_replace_the_queries_in_query_neighbour_only():
    rng = np.random.default_rng(0)
    q, k, c = (unit(torch.from_numpy(rng.standard_normal((n, 4)))).numpy() for n in (5, 5, 3))
    pos = sp.csr_matrix(np.eye(5, 3, dtype=bool) | np.eye(5, 3, k=-2, dtype=bool))
    plain, keyed = P.PairContext(q, c, pos), P.PairContext(q, c, pos, query_keys=k)
    qi, ci = np.array([0, 1, 4]), np.array([2, 0, 1])
    a, b = plain.signals(qi, ci), keyed.signals(qi, ci)
    np.testing.assert_allclose(a.numpy("similarity"), b.numpy("similarity"))
    np.testing.assert_allclose(a.numpy("positive_neighbour"), b.numpy("positive_neighbour"), equal_nan=True)
    dense = pos.toarray()
    want = [max((float(q[i] @ k[x]) for x in np.flatnonzero(dense[:, j]) if x != i), default=math.nan)
            for i, j in zip(qi, ci, strict=True)]
    np.testing.assert_allclose(b.numpy("query_neighbour"), want, rtol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="query_keys"):
        P.PairContext(q, c, pos, query_keys=k[:4])


def test_fne_reads_the_pool_signals_its_posterior_was_fitted_on():
    """Calibrated FNE with the pool's features and ids in the call's context: P over (margin, query_neighbour) from the pool, not the
    query_neighbour marginalised; without a pool, or in paper mode, the call is unchanged."""
    ev = random_pool(4, 30, 5, seed=1)
    sims = ev.anchors @ ev.candidates.T
    pos_sims = sims.max(dim=1).values
    post = PUPosterior(linear=LinearEvidence(("margin", "query_neighbour"), np.array([[-0.6, 0.0], [0.0, 0.8]]),
                                             np.array([[0.1, 0.0], [0.0, 0.05]]), 0.2), pos_mean=0.0)
    smp = S.build("fne", posterior=post, margin=2.0)  # the cut keeps every candidate
    with_pool = smp.weights(sims, pos_sims, ev.positive_mask, ctx=as_ctx(ev))
    without = smp.weights(sims, pos_sims, ev.positive_mask)
    rows, cols = (~ev.positive_mask).nonzero(as_tuple=True)
    qn = ev.signals(("query_neighbour",), rows, cols)["query_neighbour"]
    p = post.prob_false_negative(P.PairSignals(sims[rows, cols], positive_similarity=pos_sims[rows],
                                               query_neighbour=qn))
    base = torch.exp(-0.5 * (sims - pos_sims[:, None]) ** 2)[rows, cols]
    torch.testing.assert_close(with_pool[rows, cols], (base * (1 - p)).float(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(with_pool, without)
    paper = S.build("fne", posterior=post, mode="paper", margin=2.0)
    torch.testing.assert_close(paper.weights(sims, pos_sims, ev.positive_mask, ctx=as_ctx(ev)),
                               paper.weights(sims, pos_sims, ev.positive_mask))


def test_pool_evidence_rejects_shapes_that_do_not_fit():
    ev = random_pool(3, 7, 4, seed=0)
    with pytest.raises(ValueError, match="positive_mask"):
        PoolEvidence(ev.anchors, ev.candidates[:5], ev.partners, ev.candidate_ids, ev.partner_ids, ev.anchor_ids,
                     ev.positive_mask)
    with pytest.raises(ValueError, match="offers"):
        ev.signals(("similarity",), torch.tensor([0]), torch.tensor([0]))


def test_pairwise_and_matrix_paths_agree(monkeypatch):
    import fnlab.posterior.pool as pool_module

    ev = random_pool(5, 40, 6, seed=4)
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(40), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    names = ("positive_neighbour", "query_neighbour", "positive_duplicate")
    few = ev.signals(names, rows, cols)
    monkeypatch.setattr(pool_module, "PAIRWISE_MAX", 0)
    many = ev.signals(names, rows, cols)
    for name in names:
        torch.testing.assert_close(few[name], many[name], equal_nan=True)


@pytest.mark.parametrize("with_pool,tries", [(False, 4), (True, 4), (True, 1)])
def test_calibrated_fne_draws_by_rejection_in_the_distribution_of_its_weights(with_pool, tries):
    """Calibrated FNE's one-negative draw (a base-weight draw kept with probability 1 - P) follows
    ``weights() / sum``: the same anchor repeated 30,000 times, frequencies within 5 standard errors; whether the
    tries are made one at a time or ``tries_per_round`` at a time (the first kept one taken)."""
    ev = random_pool(1, 12, 4, seed=7)
    reps = 30_000
    ev = PoolEvidence(ev.anchors.expand(reps, -1), ev.candidates, ev.partners, ev.candidate_ids, ev.partner_ids,
                      ev.anchor_ids.expand(reps), ev.positive_mask.expand(reps, -1))
    sims = (ev.anchors @ ev.candidates.T).contiguous()
    pos_sims = torch.full((reps,), 0.5)
    post = PUPosterior(linear=LinearEvidence(("margin", "query_neighbour"), np.array([[-0.8, -0.5], [0.0, 0.6]]),
                                             np.array([[0.1, 0.0], [0.0, 0.1]]), 0.4), pos_mean=0.5)
    smp = S.build("fne", posterior=post, margin=1.2)
    smp.tries_per_round = tries
    ctx = {"ctx": as_ctx(ev)} if with_pool else {}
    want = smp.weights(sims[:1], pos_sims[:1], ev.positive_mask[:1].contiguous(),
                       **({"ctx": as_ctx(ev.rows(torch.arange(reps) == 0))} if with_pool else {}))[0]
    want = (want / want.sum()).double()
    got = smp.sample(sims, pos_sims, ev.positive_mask.contiguous(), generator=torch.Generator().manual_seed(0), **ctx)
    freq = torch.bincount(got[:, 0], minlength=sims.shape[1]).double() / reps
    se = (want * (1 - want) / reps).sqrt().clamp_min(1e-4)
    assert ((freq - want).abs() <= 5 * se).all(), (freq, want)
    assert freq[ev.positive_mask[0]].sum() == 0
    # the same seed draws the same negatives
    again = smp.sample(sims, pos_sims, ev.positive_mask.contiguous(), generator=torch.Generator().manual_seed(0), **ctx)
    assert torch.equal(got, again)


def test_calibrated_fne_falls_back_to_the_base_weights_when_every_candidate_is_a_false_negative():
    """A row left empty (every candidate of the band a near-certain false negative, or nothing above the cut)
    draws from the base weights over its non-positives below the cut, never its hardest candidate nor the band
    it emptied (either would undo the elimination: they are the likeliest false negatives of all)."""
    reps = 4000
    sims = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.9, 0.3, 0.2, 0.1]]).repeat(reps, 1)
    mask = torch.tensor([[True, False, False, False], [True, False, False, False]]).repeat(reps, 1)
    sure = P.GaussianPosterior(0.8, 0.1, -0.5, 0.1, prior_pos=1 - 1e-9)  # P ~ 1 above the negatives
    for rule in ("soft", "keep", "drop", "adapt", "leave"):
        smp = S.build("fne", posterior=sure, margin=0.3, rule=rule, keep_fraction=0.5 if rule == "keep" else 1 / 3)
        got = smp.sample(sims, sims[:, 0], mask, generator=torch.Generator().manual_seed(0))[:, 0]
        for row in (0, 1):  # row 0: the band (0.8, 0.7) is all P ~ 1; row 1: nothing above the cut (0.6)
            s = sims[row]
            base = torch.exp(-0.5 * (s - s[0]) ** 2).masked_fill(mask[row] | (s > 0.8 - 0.3), 0.0).double()
            freq = torch.bincount(got[row::2], minlength=4).double() / reps
            if rule == "keep" and row == 0:
                # 'keep' keeps the band's lower half by P whatever P's level is; here P ties (both ~1), so P
                # cannot tell which half, and both are kept
                assert freq[1:3].sum() == 1.0 and ((freq[1:3] - 0.5).abs() <= 5 * (0.25 / reps) ** 0.5).all(), freq
                continue
            want = base / base.sum()
            se = (want * (1 - want) / reps).sqrt().clamp_min(1e-4)
            assert ((freq - want).abs() <= 5 * se).all(), (rule, row, freq, want)
        assert torch.equal(got, smp.sample(sims, sims[:, 0], mask, generator=torch.Generator().manual_seed(0))[:, 0])
    # paper mode keeps the official fallback: the hardest negative
    paper = S.build("fne", posterior=sure, margin=0.3, mode="paper")
    w = paper.weights(sims[:2], sims[:2, 0], mask[:2])
    assert w[1].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_an_exact_copy_in_a_pool_is_known_by_its_content_key():
    """A posterior fitted on one encoder's embeddings of a split sees an exact copy of a labelled document as an
    identical row. In a training pool the copy's features come from another momentum step (similarity 0.99, not
    1): without content keys FNE's posterior cannot tell it from a near neighbour; with them it is a copy."""
    rng = np.random.default_rng(0)
    n, d = 400, 16
    docs = rng.standard_normal((n, d))
    copies = rng.choice(n, 40, replace=False)
    cand = np.concatenate([docs, docs[copies]])  # rows n.. are exact copies
    queries = docs + 0.6 * rng.standard_normal((n, d))
    unit_np = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    lab = sp.csr_matrix((np.ones(n, bool), (np.arange(n), np.arange(n))), shape=(n, n + 40))
    post = P.fit("pu", P.PairContext(unit_np(queries), unit_np(cand), lab), seed=0)
    assert "positive_duplicate" in post.signals
    # a pool: anchor 0's positive in slot 0, its copy in slot 1 with features of another momentum step
    i = int(copies[0])
    noisy = docs[i] + 0.1 * rng.standard_normal(d)
    pool = torch.from_numpy(unit_np(np.stack([docs[i], noisy, *docs[rng.choice(n, 30)]])))
    anchor = torch.from_numpy(unit_np(queries[[i]]))
    ids = torch.tensor([i, n, *range(2, 32)])
    mask = torch.zeros(1, 32, dtype=torch.bool)
    mask[0, 0] = True
    sims = anchor @ pool.T
    assert 0.95 < float(pool[0] @ pool[1]) < 0.999
    keys = torch.tensor([7, 7, *range(100, 130)])  # the copy shares its original's content key
    p = {}
    for name, k in (("with keys", keys), ("without", None)):
        ev = PoolEvidence(anchor, pool, pool, ids, ids, torch.tensor([i]), mask, candidate_keys=k)
        sig = ev.pair_signals(sims, sims[:, 0], ("positive_neighbour", "positive_duplicate"), torch.tensor([0]),
                              torch.tensor([1]))
        p[name] = float(post.prob_false_negative(sig)[0])
    assert p["with keys"] > 0.9 and p["without"] < 0.5, p


def test_content_keys_follow_identical_inputs_and_the_pool_gives_synthetic_slots_keys_of_their_own():
    from types import SimpleNamespace

    from fnlab.data.base import MatchingDataset
    from fnlab.training.objective import SampledObjective

    a = np.array([[1, 2], [3, 4], [1, 2], [1, 2.5]], np.float32)
    b = np.array([[5, 0, 0], [5, 0, 0], [6, 1, 0]], np.int64)
    ds = MatchingDataset("t", "train", np.array([0, 1, 2]), a, b, "features", "tokens")
    ka, kb = ds.content_keys("a"), ds.content_keys("b")
    assert ka[0] == ka[2] and len({ka[0], ka[1], ka[3]}) == 3
    assert kb[0] == kb[1] != kb[2]
    with pytest.raises(ValueError, match="side"):
        ds.content_keys("c")
    stub = SimpleNamespace(dataset=ds, _content={}, device=torch.device("cpu"))
    pool = SimpleNamespace(cand_side="a", cand_ids=torch.tensor([0, 2, -1, -1, 1]))
    keys = SampledObjective._candidate_keys(stub, pool)
    assert keys[0] == keys[1] == int(ka[0]) and keys[4] == int(ka[1])
    assert keys[2] != keys[3] and int(keys[2]) < 0 and int(keys[3]) < 0  # synthetic: never equal to anything
