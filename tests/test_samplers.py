"""Each sampler's weights against a slow per-row Python reference written here."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from fnlab import samplers as S
from fnlab.posterior import GaussianPosterior
from fnlab.posterior.base import PosteriorBase
from fnlab.retrieval.hooks import EpochContext

SIZES = [(1, 5), (4, 17), (9, 40)]


def make(b: int, m: int, seed: int = 0, dtype=torch.float64):
    """Random cosine-like sims, a diagonal positive plus a few extra positives per row."""
    g = torch.Generator().manual_seed(seed)
    sims = (torch.rand(b, m, generator=g, dtype=dtype) * 2 - 1) * 0.9
    mask = torch.zeros(b, m, dtype=torch.bool)
    mask[torch.arange(b), torch.arange(b) % m] = True
    mask |= torch.rand(b, m, generator=g) < 0.1
    pos = sims[torch.arange(b), torch.arange(b) % m] + 0.1
    return sims, pos, mask


def finish_row(w: list[float], sims_row: list[float], blocked: list[bool], positive: list[bool]) -> list[float]:
    """Reference for the base class: zero blocked, fall back to the hardest allowed candidate."""
    w = [0.0 if blocked[j] else w[j] for j in range(len(w))]
    if sum(w) == 0:
        allowed = [j for j in range(len(w)) if not blocked[j]]
        if not allowed:
            allowed = [j for j in range(len(w)) if not positive[j]]
        if allowed:
            best = max(allowed, key=lambda j: sims_row[j])
            w[best] = 1.0
    return w


def top_indices(row: list[float], allowed: list[int], k: int) -> set[int]:
    return set(sorted(allowed, key=lambda j: -row[j])[:k])


def ref_rows(fn, sims, pos, mask, blocked=None):
    out = []
    for i in range(sims.shape[0]):
        row, p, pm = sims[i].tolist(), float(pos[i]), mask[i].tolist()
        bl = pm if blocked is None else blocked[i].tolist()
        w = fn(row, p, pm, bl)
        out.append(finish_row(w, row, bl, pm))
    return torch.tensor(out, dtype=sims.dtype)


def ref_random(row, p, pm, bl):
    return [1.0] * len(row)


def ref_hardest(k):
    def f(row, p, pm, bl):
        keep = top_indices(row, [j for j in range(len(row)) if not pm[j]], k)
        return [1.0 if j in keep else 0.0 for j in range(len(row))]
    return f


def ref_semihard(margin):
    def f(row, p, pm, bl):
        return [1.0 if p - margin < s < p else 0.0 for s in row]
    return f


def ref_simans_cosine(a, b, k):
    """SimANS on the similarities as given (the oracle's base and FNE's warm-up)."""
    def f(row, p, pm, bl):
        keep = top_indices(row, [j for j in range(len(row)) if not bl[j]], k)
        return [math.exp(-a * (s - p - b) ** 2) if j in keep else 0.0 for j, s in enumerate(row)]
    return f


def ref_simans(a, b, k, scale=1 / 0.07):
    """The simans sampler: the kernel on z = scale * s over the top-k window, scaled to a row maximum of 1; when
    the positive ranks below the window, weight 1 on the window's lowest-ranked candidate."""
    def f(row, p, pm, bl):
        keep = top_indices(row, [j for j in range(len(row)) if not bl[j]], k)
        above = sum(1 for j, s in enumerate(row) if not pm[j] and s > p)
        if keep and above >= k:
            low = min(keep, key=lambda j: row[j])
            return [1.0 if j == low else 0.0 for j in range(len(row))]
        logw = {j: -a * (scale * (row[j] - p) - b) ** 2 for j in keep}
        top = max(logw.values(), default=0.0)
        return [math.exp(logw[j] - top) if j in keep else 0.0 for j in range(len(row))]
    return f


def ref_positive_aware(mode, perc, margin, k):
    def f(row, p, pm, bl):
        allowed = [j for j, s in enumerate(row) if not pm[j]
                   and not (s > p - abs(p) * (1 - perc) if mode == "perc" else s > p - margin)]
        keep = top_indices(row, allowed, k)
        return [1.0 if j in keep else 0.0 for j in range(len(row))]
    return f


def ref_range(rmin, rmax, min_score, max_score, margin, rel, strategy, n):
    def f(row, p, pm, bl):
        order = sorted([j for j in range(len(row)) if not pm[j]], key=lambda j: -row[j])
        ok = []
        for rank, j in enumerate(order):
            s = row[j]
            if rank < rmin or (rmax is not None and rank >= rmax):
                continue
            if min_score is not None and s < min_score:
                continue
            if max_score is not None and s > max_score:
                continue
            if margin is not None and s + margin > p:
                continue
            if rel is not None and s > p - abs(p) * rel:
                continue
            ok.append(j)
        if strategy == "top":
            ok = ok[:n]
        return [1.0 if j in ok else 0.0 for j in range(len(row))]
    return f


CASES = [
    ("random", {}, ref_random),
    ("hardest", {}, ref_hardest(1)),
    ("hardest", {"top_k": 3}, ref_hardest(3)),
    ("semihard", {}, ref_semihard(0.2)),
    ("semihard", {"margin": 0.5}, ref_semihard(0.5)),
    ("simans", {}, ref_simans(0.5, 0.0, 100)),
    ("simans", {"a": 3.0, "b": 0.1, "top_k": 5}, ref_simans(3.0, 0.1, 5)),
    ("simans", {"score_scale": 1.0, "top_k": 6}, ref_simans(0.5, 0.0, 6, scale=1.0)),
    ("positive_aware", {}, ref_positive_aware("perc", 0.95, 0.05, 10)),
    ("positive_aware", {"mode": "margin", "margin": 0.1, "top_k": 3}, ref_positive_aware("margin", 0.95, 0.1, 3)),
    ("range", {}, ref_range(10, 50, None, None, 0.0, None, "random", 1)),
    ("range", {"range_min": 0, "range_max": None, "margin": None, "strategy": "top"}, ref_hardest(1)),
    ("range", {"range_min": 0, "range_max": None, "relative_margin": 0.05, "margin": None, "strategy": "top",
               "num_negatives": 10}, ref_positive_aware("perc", 0.95, 0.05, 10)),
    ("range", {"range_min": 2, "range_max": 12, "margin": 0.05, "strategy": "random"},
     ref_range(2, 12, None, None, 0.05, None, "random", 1)),
    ("range", {"min_score": -0.5, "max_score": 0.6, "relative_margin": 0.1, "num_negatives": 3},
     ref_range(10, 50, -0.5, 0.6, 0.0, 0.1, "random", 3)),
    ("range", {"range_min": 0, "range_max": None, "margin": None, "strategy": "top", "min_score": -0.5,
               "max_score": 0.6, "relative_margin": 0.1, "num_negatives": 3},
     ref_range(0, None, -0.5, 0.6, None, 0.1, "top", 3)),
]


@pytest.mark.parametrize("b,m", SIZES)
@pytest.mark.parametrize("name,params,ref", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_weights_match_reference(name, params, ref, b, m):
    sims, pos, mask = make(b, m, seed=b * 100 + m)
    got = S.build(name, **params).weights(sims, pos, mask)
    want = ref_rows(ref, sims, pos, mask)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("b,m", SIZES)
@pytest.mark.parametrize("base", ["hardest", "simans"])
def test_oracle_matches_reference(base, b, m):
    sims, pos, mask = make(b, m, seed=7 + m)
    g = torch.Generator().manual_seed(1)
    relevant = mask | (torch.rand(b, m, generator=g) < 0.3)
    got = S.build("oracle", base=base, top_k=6).weights(sims, pos, mask, relevant_mask=relevant)
    ref = ref_hardest(1) if base == "hardest" else ref_simans_cosine(0.5, 0.0, 6)

    def on_irrelevant(row, p, pm, bl):
        # the reference samplers, with every relevant candidate treated as a positive
        return ref(row, p, bl, bl)

    want = ref_rows(on_irrelevant, sims, pos, mask, blocked=relevant)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    has_clean = (~relevant).any(dim=1)
    assert (got[has_clean][relevant[has_clean]] == 0).all()


def test_oracle_without_mask_raises_clearly():
    sims, pos, mask = make(2, 6)
    with pytest.raises(ValueError, match="relevant_mask"):
        S.build("oracle").weights(sims, pos, mask)
    assert S.build("oracle").sample(sims, pos, mask, relevant_mask=mask.clone()).shape == (2, 1)


# ------------------------------------------------------------------ FNE vs official code
def official_choice_negative_weights(pos_sims, sims, mask, mu_p, var_p, mu_n, var_n, ready, index, margin):
    """Per-row transcription of FNE's official ``choice_negative`` (loss.py), up to multinomial."""
    tau, match_para, false_margin = 0.5, 10000, 0.999
    out = []
    for i in range(len(sims)):
        row = []
        for j, s in enumerate(sims[i]):
            w = math.exp(-((s - pos_sims[i]) ** 2) * tau)
            if ready:
                pos_p = math.exp(-((s - mu_p) ** 2) / (2 * var_p)) / math.sqrt(2 * math.pi * var_p)
                neg_p = math.exp(-((s - mu_n) ** 2) / (2 * var_n)) / math.sqrt(2 * math.pi * var_n)
                match_p = pos_p / (pos_p + (match_para - 1) * neg_p)
                if 1 - match_p < false_margin:
                    w = math.exp(-match_p * tau)
            if mask[i][j]:
                w = 0.0
            if s <= mu_p - margin:
                w = 0.0
            row.append(w)
        if sum(row) == 0:
            row[index[i]] = 1.0
        out.append(row)
    return out


@pytest.mark.parametrize("b,m", [(3, 12), (8, 50), (16, 200)])
def test_fne_paper_mode_equals_official(b, m):
    sims, pos, mask = make(b, m, seed=m)
    # a posterior whose FN region overlaps the candidates, so every branch is exercised
    post = GaussianPosterior(0.55, 0.1, 0.0, 0.2, prior_pos=1e-4)
    got = S.build("fne", posterior=post, mode="paper").weights(sims, pos, mask)
    hardest = sims.masked_fill(mask, -math.inf).argmax(1).tolist()
    want = torch.tensor(official_choice_negative_weights(
        pos.tolist(), sims.tolist(), mask.tolist(), 0.55, 0.01, 0.0, 0.04, True, hardest, 0.2), dtype=sims.dtype)
    p = post.prob_false_negative(sims)
    assert ((p > 1e-3) & ~mask).any() and ((sims <= 0.35) & ~mask).any()
    # equal up to a per-row constant: compare row-normalised weights
    torch.testing.assert_close(got / got.sum(1, keepdim=True), want / want.sum(1, keepdim=True),
                               rtol=1e-9, atol=1e-12)


def test_fne_warmup_is_simans_without_cutdown():
    sims, pos, mask = make(5, 30, seed=3)
    got = S.build("fne").weights(sims, pos, mask)
    want = ref_rows(ref_simans_cosine(0.5, 0.0, 10**9), sims, pos, mask)
    torch.testing.assert_close(got, want)

    class NotReady(PosteriorBase):
        ready, pos_mean = False, 0.9

        def prob_false_negative(self, s):  # pragma: no cover - must not be called
            raise AssertionError("called before ready")

    torch.testing.assert_close(S.build("fne", posterior=NotReady()).weights(sims, pos, mask), want)


def test_fne_calibrated_eliminates_likely_false_negatives():
    sims = torch.tensor([[0.9, 0.62, 0.6, 0.45, 0.3]], dtype=torch.float64)
    mask = torch.tensor([[True, False, False, False, False]])
    pos = sims[:, 0]
    post = GaussianPosterior(0.6, 0.05, 0.2, 0.1, prior_pos=0.05)
    paper = S.build("fne", posterior=post, mode="paper").weights(sims, pos, mask)
    calib = S.build("fne", posterior=post, mode="calibrated").weights(sims, pos, mask)
    p = post.prob_false_negative(sims)
    assert p[0, 2] > 0.99
    # paper keeps about exp(-0.5) of a near-certain false negative; calibrated removes it
    assert paper[0, 2] == pytest.approx(math.exp(-0.5 * float(p[0, 2])))
    assert calib[0, 2] < 0.01 * paper[0, 2]
    want = math.exp(-0.5 * (0.45 - 0.9) ** 2) * (1 - float(p[0, 3]))
    assert calib[0, 3] == pytest.approx(want)
    assert calib[0, 4] == 0 and paper[0, 4] == 0  # cut-down: 0.3 <= mu+ - margin = 0.4


def ref_fne_eliminating(rule, keep_fraction, drop_above, tau, margin, mu_p, prob, dense_above=0.5):
    """Per-row reference of calibrated FNE's eliminating rules (``prob(s, s+)`` gives P): base weight
    ``exp(-tau (s - s+)^2)`` in the band ``s > mu+ - margin``; 'keep' keeps the ceil(fraction * n) band members
    of lowest P and every member tied with the last of them, 'drop' those with P < drop_above, 'adapt' as 'drop' where the band's mean P is
    at least dense_above and as 'keep' elsewhere, 'leave' nothing where the band is dense and as 'keep' elsewhere; an
    empty row takes the base weights of its
    non-positives below the cut, or of every non-positive when there are none."""
    def f(row, p, pm, bl):
        band = [j for j in range(len(row)) if not pm[j] and row[j] > mu_p - margin]
        base = [math.exp(-tau * (s - p) ** 2) for s in row]
        dense = bool(band) and sum(prob(row[j], p) for j in band) / len(band) >= dense_above
        if rule == "keep" or (rule in ("adapt", "leave") and not dense):
            kth = sorted(prob(row[j], p) for j in band)[math.ceil(keep_fraction * len(band)) - 1]
            kept = {j for j in band if prob(row[j], p) <= kth}
        elif rule == "leave":
            kept = set()
        else:
            kept = {j for j in band if prob(row[j], p) < drop_above}
        w = [base[j] if j in kept else 0.0 for j in range(len(row))]
        if sum(w) == 0:
            w = [0.0 if pm[j] or row[j] > mu_p - margin else base[j] for j in range(len(row))]
        if sum(w) == 0:
            w = [0.0 if pm[j] else base[j] for j in range(len(row))]
        return w
    return f


@pytest.mark.parametrize("rule", ["keep", "drop", "adapt", "leave"])
@pytest.mark.parametrize("b,m", [(3, 12), (8, 50), (16, 200)])
def test_fne_eliminating_rules_match_a_per_row_reference(rule, b, m):
    sims, pos, mask = make(b, m, seed=m + 7)
    post = GaussianPosterior(0.45, 0.15, 0.0, 0.2, prior_pos=0.05)

    def prob(s, _p):
        return float(post.prob_false_negative(torch.tensor([s], dtype=torch.float64))[0])

    # 'adapt': a density threshold between the rows' band means, so that both kinds of band occur
    bands = [[float(x) for x, pm in zip(r, mr, strict=True) if not pm and x > 0.25]
             for r, mr in zip(sims, mask, strict=True)]
    means = sorted(sum(prob(x, 0) for x in band) / len(band) for band in bands if band)
    dense = (means[0] + means[-1]) / 2
    assert means[0] < dense <= means[-1]
    for frac, drop in ((1 / 3, 0.5), (0.25, 0.2), (1.0, 0.05)):
        smp = S.build("fne", posterior=post, rule=rule, keep_fraction=frac, drop_above=drop, dense_above=dense)
        got = smp.weights(sims, pos, mask)
        want = ref_rows(ref_fne_eliminating(rule, frac, drop, 0.5, 0.2, 0.45, prob, dense), sims, pos, mask)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("rule", ["soft", "keep", "drop", "adapt", "leave"])
@pytest.mark.parametrize("window", [1, 5, 10**6])
def test_fne_window_replaces_the_cut_by_each_anchors_top_k(rule, window):
    """``window=k``: the band is the anchor's k most similar non-positives (no cut-down), the rule acts inside it;
    with tau = 0 the base is uniform, so FNE on a window differs from a uniform draw over it only by P."""
    sims, pos, mask = make(9, 40, seed=window % 97 + 3)
    post = GaussianPosterior(0.45, 0.15, 0.0, 0.2, prior_pos=0.05)

    def prob(s):
        return float(post.prob_false_negative(torch.tensor([s], dtype=torch.float64))[0])

    def ref(row, p, pm, bl):
        allowed = [j for j in range(len(row)) if not pm[j]]
        band = top_indices(row, allowed, window)
        if rule == "soft":
            w = [(1 - prob(row[j])) if j in band else 0.0 for j in range(len(row))]
        elif rule == "keep" or (rule in ("adapt", "leave") and sum(prob(row[j]) for j in band) / len(band) < 0.5):
            kth = sorted(prob(row[j]) for j in band)[math.ceil(len(band) / 3) - 1]
            w = [1.0 if j in band and prob(row[j]) <= kth else 0.0 for j in range(len(row))]
        elif rule == "leave":
            w = [0.0] * len(row)
        else:
            w = [1.0 if j in band and prob(row[j]) < 0.5 else 0.0 for j in range(len(row))]
        if sum(w) == 0:  # an emptied window: the rest of the pool, never back into the window
            w = [0.0 if pm[j] or j in band else 1.0 for j in range(len(row))]
        if sum(w) == 0:
            w = [0.0 if pm[j] else 1.0 for j in range(len(row))]
        return w

    got = S.build("fne", posterior=post, rule=rule, window=window, tau=0.0).weights(sims, pos, mask)
    torch.testing.assert_close(got, ref_rows(ref, sims, pos, mask))


@pytest.mark.parametrize("rule", ["soft", "keep", "drop", "adapt", "leave"])
def test_fne_semihard_band_is_each_anchors_semihard_negatives(rule):
    """``band="semihard"``: the rule acts on ``s+ - margin < s < s+`` (no cut-down); an emptied band falls back
    below it, never to the candidates above the positive."""
    sims, pos, mask = make(12, 40, seed=17)
    post = GaussianPosterior(0.45, 0.15, 0.0, 0.2, prior_pos=0.2)

    def prob(s):
        return float(post.prob_false_negative(torch.tensor([s], dtype=torch.float64))[0])

    def ref(row, p, pm, bl):
        band = [j for j in range(len(row)) if not pm[j] and p - 0.2 < row[j] < p]
        base = [math.exp(-0.5 * (s - p) ** 2) for s in row]
        ps = {j: prob(row[j]) for j in band}
        if rule == "soft":
            kept = {j: 1 - ps[j] for j in band}
        else:
            dense = bool(band) and sum(ps.values()) / len(band) >= 0.5
            if rule == "keep" or (rule in ("adapt", "leave") and not dense):
                chosen = sorted(band, key=lambda j: (ps[j], j))[:math.ceil(len(band) / 3)]
            elif rule == "leave":
                chosen = []
            else:
                chosen = [j for j in band if ps[j] < 0.5]
            kept = {j: 1.0 for j in chosen}
        w = [base[j] * kept[j] if j in kept else 0.0 for j in range(len(row))]
        if sum(w) == 0:
            w = [base[j] if not pm[j] and row[j] <= p - 0.2 else 0.0 for j in range(len(row))]
        if sum(w) == 0:
            w = [0.0 if pm[j] else base[j] for j in range(len(row))]
        return w

    smp = S.build("fne", posterior=post, rule=rule, band="semihard")
    want = ref_rows(ref, sims, pos, mask)
    torch.testing.assert_close(smp.weights(sims, pos, mask), want)
    draws = smp.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0))[:, 0]
    assert (want[torch.arange(12), draws] > 0).all()
    with pytest.raises(ValueError, match="window"):
        S.build("fne", band="semihard", window=10)


def test_oracle_semihard_is_the_semihard_negatives_without_the_relevant():
    sims, pos, mask = make(12, 40, seed=17)
    rel = mask | (torch.rand(12, 40, generator=torch.Generator().manual_seed(2)) < 0.4)

    def ref(row, p, pm, bl):
        band = [1.0 if not bl[j] and p - 0.2 < row[j] < p else 0.0 for j in range(len(row))]
        return band if sum(band) else [1.0 if not bl[j] and row[j] <= p - 0.2 else 0.0 for j in range(len(row))]

    want = ref_rows(ref, sims, pos, mask, blocked=rel)
    assert (want.sum(dim=1) > 0).all()
    got = S.build("oracle", base="semihard").weights(sims, pos, mask, relevant_mask=rel)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("k", [1, 4, 10**6])
def test_oracle_window_is_the_top_k_non_positives_without_the_relevant(k):
    sims, pos, mask = make(7, 30, seed=k % 89)
    rel = mask | (torch.rand(7, 30, generator=torch.Generator().manual_seed(1)) < 0.3)

    def ref(row, p, pm, bl):
        window = top_indices(row, [j for j in range(len(row)) if not pm[j]], k)
        return [1.0 if j in window and not bl[j] else 0.0 for j in range(len(row))]

    got = S.build("oracle", base="window", top_k=k).weights(sims, pos, mask, relevant_mask=rel)
    torch.testing.assert_close(got, ref_rows(ref, sims, pos, mask, blocked=mask | rel))


@pytest.mark.parametrize("rule", ["keep", "adapt", "leave"])
def test_fne_keep_never_eliminates_candidates_that_p_cannot_tell_apart(rule):
    """Far below the positives' mode P underflows to exactly 0 in float32, so every member of the band ties: P says
    nothing about which is a false negative, and the whole band is kept (a kept share chosen by position kept the
    same few memory-queue slots for every anchor). Where P does separate them, the lowest-P third is kept."""
    g = torch.Generator().manual_seed(11)
    sims = (torch.rand(4, 30, generator=g) * 0.2 - 0.9).float()
    mask = torch.zeros(4, 30, dtype=torch.bool)
    mask[:, 0] = True
    pos = torch.full((4,), 0.9)
    post = GaussianPosterior(0.45, 0.05, 0.0, 0.3, prior_pos=0.05)
    assert (post.prob_false_negative(sims) == 0).all()
    smp = S.build("fne", posterior=post, rule=rule, window=10**6, tau=0.0)
    assert torch.equal(smp.weights(sims, pos, mask) > 0, ~mask)
    spread = torch.linspace(-0.2, 0.6, 30).expand(4, -1).contiguous()  # P rises with s here, no ties
    kept = smp.weights(spread, pos, mask) > 0
    assert kept.sum(dim=1).tolist() == [math.ceil(29 / 3)] * 4 and not kept[:, 20:].any()


def test_fne_keep_rule_on_a_large_band_draws_below_the_bands_p_quantile():
    """A band wider than ``exact_band`` is drawn by rejection below the ``keep_fraction`` quantile of P estimated on
    a sample of the band: almost every draw lies in the exact rule's kept set, spread over it, never on a positive;
    a narrow band is drawn from the exact weights; the same seed gives the same draws."""
    m, reps = 3000, 400
    g = torch.Generator().manual_seed(3)
    sims = (torch.rand(1, m, generator=g, dtype=torch.float64) * 1.6 - 0.8).expand(reps, -1).contiguous()
    mask = torch.zeros(reps, m, dtype=torch.bool)
    mask[:, 0] = True
    pos = torch.full((reps,), 0.9, dtype=torch.float64)
    post = GaussianPosterior(0.45, 0.15, 0.0, 0.3, prior_pos=0.05)
    smp = S.build("fne", posterior=post, rule="keep", window=10**6, tau=0.0)
    exact = smp.weights(sims[:1], pos[:1], mask[:1])[0] > 0  # the lowest-P third of the 2999 non-positives
    assert int(exact.sum()) == 1000
    draws = smp.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0))[:, 0]
    inside = exact[draws].double().mean()
    assert inside >= 0.9, inside  # the estimated quantile misses the exact one by a few percent at most
    assert not mask[0, draws].any() and len(set(draws.tolist())) > 250  # spread over the kept set
    again = smp.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0))[:, 0]
    assert torch.equal(draws, again)
    small = S.build("fne", posterior=post, rule="keep", window=60, tau=0.0)
    w = small.weights(sims[:1], pos[:1], mask[:1])[0]
    d = small.sample(sims[:50], pos[:50], mask[:50], generator=torch.Generator().manual_seed(1))[:, 0]
    assert (w[d] > 0).all()  # exact path: only the kept members of the 60-wide window


def test_fne_adapt_rule_on_large_bands_keeps_in_sparse_bands_and_drops_in_dense_ones():
    """Bands wider than ``exact_band`` are drawn by rejection, their density read off a sample of the band: the
    sparse row's draws lie in its lowest-P third, the dense row's all have P < drop_above (its 'keep' third would
    not do: it holds candidates of higher P), each as the exact weights say."""
    m, reps = 3000, 300
    g = torch.Generator().manual_seed(5)
    low = torch.rand(m, generator=g, dtype=torch.float64) * 1.2 - 0.8  # mostly below the false negatives' mode
    high = torch.rand(m, generator=g, dtype=torch.float64) * 0.5 + 0.3  # mostly at it
    sims = torch.stack([low, high]).repeat(reps, 1)
    mask = torch.zeros_like(sims, dtype=torch.bool)
    mask[:, 0] = True
    pos = torch.full((2 * reps,), 0.9, dtype=torch.float64)
    post = GaussianPosterior(0.45, 0.15, 0.0, 0.3, prior_pos=0.3)
    p = post.prob_false_negative(sims[:2])
    sparse_mean, dense_mean = float(p[0, 1:].mean()), float(p[1, 1:].mean())
    assert sparse_mean < 0.4 < dense_mean
    smp = S.build("fne", posterior=post, rule="adapt", window=10**6, tau=0.0, dense_above=0.4, drop_above=0.5)
    exact = smp.weights(sims[:2], pos[:2], mask[:2]) > 0
    assert torch.equal(exact[0], S.build("fne", posterior=post, rule="keep", window=10**6, tau=0.0)
                       .weights(sims[:1], pos[:1], mask[:1])[0] > 0)
    assert torch.equal(exact[1], (p[1] < 0.5) & ~mask[1])
    assert float(p[1][exact[1]].max()) < 0.5 < float(p[1][~mask[1]].sort().values[math.ceil((m - 1) / 3)])
    draws = smp.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0))[:, 0]
    assert exact[0, draws[0::2]].double().mean() >= 0.9
    assert exact[1, draws[1::2]].all()
    assert torch.equal(draws, smp.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0))[:, 0])


def test_fne_leave_rule_on_large_bands_keeps_in_sparse_bands_and_draws_below_dense_ones():
    """'leave' reads a large band's density off a sample, as 'adapt' does: the sparse row's draws lie in its
    lowest-P third, the dense row's all lie below its band (the cut), spread over the base weights there, never in
    the band nor on a positive; the same seed gives the same draws."""
    m, reps = 3000, 300
    g = torch.Generator().manual_seed(5)
    low = torch.rand(m, generator=g, dtype=torch.float64) * 1.2 - 0.8
    high = torch.cat([torch.rand(m - 400, generator=g, dtype=torch.float64) * 0.5 + 0.3,  # the band: mostly at the
                      torch.rand(400, generator=g, dtype=torch.float64) * 0.4 - 0.9])  # FN mode; 400 below the cut
    sims = torch.stack([low, high]).repeat(reps, 1)
    mask = torch.zeros_like(sims, dtype=torch.bool)
    mask[:, 0] = True
    pos = torch.full((2 * reps,), 0.9, dtype=torch.float64)
    post = GaussianPosterior(0.45, 0.15, 0.0, 0.3, prior_pos=0.3)
    smp = S.build("fne", posterior=post, rule="leave", margin=0.85, dense_above=0.4)  # cut: s <= mu+ - 0.85 = -0.4
    exact = smp.weights(sims[:2], pos[:2], mask[:2])
    band = (sims[:2] > 0.45 - 0.85) & ~mask[:2]
    p = post.prob_false_negative(sims[:2])
    assert float(p[0][band[0]].mean()) < 0.4 < float(p[1][band[1]].mean())
    keep = S.build("fne", posterior=post, rule="keep", margin=0.85).weights(sims[:1], pos[:1], mask[:1])[0]
    assert torch.equal(exact[0] > 0, keep > 0)
    below = ~band[1] & ~mask[1]
    assert torch.equal(exact[1] > 0, below) and int(below.sum()) >= 300
    draws = smp.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0))[:, 0]
    assert (exact[0, draws[0::2]] > 0).double().mean() >= 0.9
    assert below[draws[1::2]].all() and len(set(draws[1::2].tolist())) > 150
    assert torch.equal(draws, smp.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0))[:, 0])


@pytest.mark.parametrize("rule", ["adapt", "leave"])
def test_fne_density_rules_read_no_density_from_a_posterior_whose_share_failed_its_checks(rule):
    """A posterior whose share of matches its own checks contradict (``share_trusted`` False: labelled pairs sit
    above what it calls matches) gives no density to read: 'adapt' and 'leave' keep as 'keep' does, in their
    weights and, on large bands, in their draws (same seed, same draws); with the share trusted they do not."""
    m, reps = 3000, 50
    g = torch.Generator().manual_seed(5)
    low = torch.rand(m, generator=g, dtype=torch.float64) * 1.2 - 0.8
    high = torch.cat([torch.rand(m - 400, generator=g, dtype=torch.float64) * 0.5 + 0.3,
                      torch.rand(400, generator=g, dtype=torch.float64) * 0.4 - 0.9])
    sims = torch.stack([low, high]).repeat(reps, 1)
    mask = torch.zeros_like(sims, dtype=torch.bool)
    mask[:, 0] = True
    pos = torch.full((2 * reps,), 0.9, dtype=torch.float64)
    post = GaussianPosterior(0.45, 0.15, 0.0, 0.3, prior_pos=0.3)
    args = {"margin": 0.85, "dense_above": 0.4, "drop_above": 0.5}
    keep = S.build("fne", posterior=post, rule="keep", **args)
    trusted = S.build("fne", posterior=post, rule=rule, **args)
    assert not torch.equal(trusted.weights(sims[:2], pos[:2], mask[:2]), keep.weights(sims[:2], pos[:2], mask[:2]))
    post.share_trusted = False
    smp = S.build("fne", posterior=post, rule=rule, **args)
    torch.testing.assert_close(smp.weights(sims[:2], pos[:2], mask[:2]), keep.weights(sims[:2], pos[:2], mask[:2]))
    seed = torch.Generator().manual_seed(0)
    assert torch.equal(smp.sample(sims, pos, mask, generator=seed),
                       keep.sample(sims, pos, mask, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("rule", ["soft", "keep", "drop", "adapt", "leave"])
def test_fne_does_not_act_on_a_posterior_of_similarity_alone(rule):
    """A ``pu`` posterior whose P is a function of similarity alone (``similar_only``: the data show no other evidence
    of a match) removes no suspected false negative; acting on it would only make the draw easier. Every rule then
    keeps the band's base weights (a slow reference: the SimANS kernel above the cut), in its weights and its draws;
    the same posterior without the flag does act."""
    sims, pos, mask = make(6, 40, seed=3)
    post = GaussianPosterior(0.4, 0.15, 0.0, 0.2, prior_pos=0.3)
    acting = S.build("fne", posterior=post, rule=rule).weights(sims, pos, mask)
    post.similar_only = True
    smp = S.build("fne", posterior=post, rule=rule)
    want = torch.zeros_like(sims)
    for i in range(sims.shape[0]):
        for j in range(sims.shape[1]):
            if not mask[i, j] and sims[i, j] > 0.4 - smp.margin:
                want[i, j] = math.exp(-smp.tau * float(sims[i, j] - pos[i]) ** 2)
    got = smp.weights(sims, pos, mask)
    norm = lambda w: w / w.sum(dim=1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(norm(got), norm(want))
    assert not torch.allclose(norm(acting), norm(want))
    reps = 4000
    draws = smp.sample(sims[:1].expand(reps, -1), pos[:1].expand(reps), mask[:1].expand(reps, -1),
                       generator=torch.Generator().manual_seed(0))[:, 0]
    assert (want[0, draws] > 0).all()  # never a positive nor a candidate below the cut
    freq = torch.bincount(draws, minlength=40).double() / reps
    target = norm(want)[0]
    assert ((freq - target).abs() <= 5 * (target * (1 - target) / reps).sqrt().clamp_min(1e-3)).all()


def test_fne_drop_rule_draws_in_the_distribution_of_its_weights():
    """'drop' draws by rejection (base weights above the cut, kept when P < drop_above): the frequencies are
    those of its weights."""
    sims, pos, mask = make(1, 30, seed=11, dtype=torch.float32)
    post = GaussianPosterior(0.4, 0.15, 0.0, 0.2, prior_pos=0.1)
    smp = S.build("fne", posterior=post, rule="drop", drop_above=0.3)
    w = smp.weights(sims, pos, mask)[0].double()
    assert (w == 0).sum() > mask.sum() + 3  # the rule does drop candidates here
    reps = 6000
    draws = smp.sample(sims.expand(reps, -1), pos.expand(reps), mask.expand(reps, -1),
                       generator=torch.Generator().manual_seed(0))[:, 0]
    freq = torch.bincount(draws, minlength=30).double() / reps
    want = w / w.sum()
    se = (want * (1 - want) / reps).sqrt().clamp_min(1e-4)
    assert ((freq - want).abs() <= 5 * se).all()


def test_fne_rule_and_fractions_are_validated():
    for kw, field in (({"rule": "hard"}, "rule"), ({"keep_fraction": 0.0}, "keep_fraction"),
                      ({"drop_above": 1.5}, "drop_above"), ({"dense_above": 0.0}, "dense_above")):
        with pytest.raises(ValueError, match=field):
            S.build("fne", **kw)


def test_fne_applies_the_posterior_of_the_direction_it_samples():
    """After a calibrated refit FNE holds one posterior per direction and a call's ``direction`` picks it;
    a call without one (the app's playground) uses the run's caption-to-image posterior."""
    sims, pos, mask = make(8, 60, seed=2)
    flat = GaussianPosterior(0.5, 0.1, 0.0, 0.2, prior_pos=1e-6)  # P ~ 0 everywhere
    sure = GaussianPosterior(0.5, 0.1, 0.0, 0.2, prior_pos=1 - 1e-6)  # P ~ 1 above the negatives
    smp = S.build("fne")
    smp.start_epoch(EpochContext(2, warmup=False,
                                 fit_posterior=lambda prior, direction: {"t2i": flat, "i2t": sure}[direction]))
    assert smp.by_direction == {"t2i": flat, "i2t": sure} and smp.posterior is flat
    t2i = smp.weights(sims, pos, mask, direction="t2i")
    i2t = smp.weights(sims, pos, mask, direction="i2t")
    torch.testing.assert_close(smp.weights(sims, pos, mask), t2i)
    assert i2t.sum() < 0.1 * t2i.sum()  # likely false negatives gone (empty rows fall back to one pick each)
    # the cut-down sits at the positive mean of the direction's posterior (fitted where that pool is scored)
    low, high = (GaussianPosterior(mu, 0.1, 0.0, 0.2, prior_pos=1e-9) for mu in (0.3, 0.6))
    smp.start_epoch(EpochContext(3, warmup=False,
                                 fit_posterior=lambda prior, direction: {"t2i": low, "i2t": high}[direction]))
    for direction, mu in (("t2i", 0.3), ("i2t", 0.6)):
        w = smp.weights(sims, pos, mask, direction=direction)
        band = (sims > mu - 0.2) & ~mask
        rows = band.any(dim=1)
        assert rows.sum() >= 4 and torch.equal(w[rows] > 0, band[rows])
    # in training the call passes the pool's own positive mean, which moves the calibrated cut (not the paper's)
    w = smp.weights(sims, pos, mask, direction="t2i", positive_mean=0.6)
    band = (sims > 0.4) & ~mask
    rows = band.any(dim=1)
    assert torch.equal(w[rows] > 0, band[rows])
    paper = S.build("fne", posterior=low, mode="paper")
    torch.testing.assert_close(paper.weights(sims, pos, mask, positive_mean=0.6), paper.weights(sims, pos, mask))


@pytest.mark.parametrize("mode", ["paper", "calibrated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fne_posterior_above_the_cut_only_gives_the_same_weights(mode, dtype):
    """FNE scores only the pairs above its cut-down (the rest get weight 0 whatever P is): the weights are
    those of scoring the whole pool, also for a posterior that reads each anchor's positive. Bit for bit in
    float32 (training's dtype); float64 may differ in the last bit, where torch's vectorised exp and its scalar
    tail loop round differently."""
    from fnlab.posterior import PairSignals

    class Margin(PosteriorBase):  # P rises with s - s+: a wrong row alignment of s+ would show
        pos_mean, signals = 0.5, ("similarity", "positive_similarity")

        def prob_false_negative(self, sig):
            return torch.sigmoid(12 * (sig.similarity - sig.positive_similarity + 0.15))

    sims, pos, mask = make(16, 300, seed=3)
    sims, pos = sims.to(dtype), pos.to(dtype)
    for post in (Margin(), GaussianPosterior(0.55, 0.1, 0.1, 0.15, prior_pos=0.05)):
        smp = S.build("fne", posterior=post, mode=mode)
        p = post.prob_false_negative(PairSignals(sims, positive_similarity=pos[:, None])).to(dtype)
        w = torch.exp(-0.5 * (sims - pos[:, None]) ** 2)
        w = torch.where(1 - p < 1 - 1e-3, torch.exp(-0.5 * p), w) if mode == "paper" else w * (1 - p).clamp_min(0)
        want = w.masked_fill(sims <= post.pos_mean - 0.2, 0.0).masked_fill(mask, 0.0)
        got = smp.weights(sims, pos, mask)
        assert (sims <= post.pos_mean - 0.2).float().mean() > 0.2  # the cut does remove pairs here
        if dtype == torch.float32:
            assert torch.equal(got, want), (type(post).__name__, (got - want).abs().max())
        else:
            torch.testing.assert_close(got, want, rtol=0, atol=1e-15)


# ------------------------------------------------------------------ range and positive_aware
def test_range_defaults_are_a_band_below_the_positive():
    """Defaults: uniform over ranks 10..49 among non-positives, never above the positive's score."""
    sims, pos, mask = make(8, 120, seed=7)
    pos[::2] = 0.95  # even rows: the positive scores above every candidate, so the band is ranks 10..49
    w = S.build("range").weights(sims, pos, mask)
    ranks = S.base.rank_among_allowed(sims, mask)
    picked = w > 0
    for i in range(sims.shape[0]):
        band = ~mask[i] & (ranks[i] >= 10) & (ranks[i] < 50) & (sims[i] <= pos[i])
        if i % 2 == 0:
            assert int(band.sum()) == 40
        if band.any():
            assert torch.equal(picked[i], band), i
            assert set(w[i][picked[i]].tolist()) == {1.0}
        else:  # nothing in the band: the base class falls back to the hardest non-positive
            assert picked[i].nonzero().flatten().tolist() == [int(torch.nonzero(~mask[i] & (ranks[i] == 0)))]


@pytest.mark.parametrize("params", [{}, {"mode": "margin", "margin": 0.1, "top_k": 3}, {"perc": 0.8, "top_k": 1}])
def test_positive_aware_is_a_preset_of_range(params):
    sims, pos, mask = make(9, 40, seed=3)
    sampler = S.build("positive_aware", **params)
    torch.testing.assert_close(sampler.weights(sims, pos, mask), sampler.as_range().weights(sims, pos, mask),
                               rtol=0, atol=0)


def test_range_and_positive_aware_reject_bad_parameters():
    with pytest.raises(ValueError, match="range_min < range_max"):
        S.build("range", range_min=50, range_max=10)
    with pytest.raises(ValueError, match="'strategy'"):
        S.build("range", strategy="best")
    with pytest.raises(ValueError, match="'perc'"):
        S.build("positive_aware", perc=0.0)
    with pytest.raises(ValueError, match="'mode'"):
        S.build("positive_aware", mode="ratio")


def test_no_two_samplers_are_the_same_at_their_defaults():
    """Every registered sampler, at its defaults, gives a different distribution on a random matrix.

    ``fne`` gets a fitted posterior (without one it is SimANS by design, its warm-up) and ``oracle`` the
    ground truth: the labelled positives plus hidden false negatives (without them it is ``hardest``).
    Samplers whose weights depend on state only training builds (no playground view: ClusterNS's centroids,
    dynamic mining's cache) weigh the whole pool alike outside training and are left out.
    """
    b, m = 16, 300  # more than the 200 candidates STAR and ADORE keep
    sims, pos, mask = make(b, m, seed=11, dtype=torch.float64)
    g = torch.Generator().manual_seed(12)
    hidden_fn = (torch.rand(b, m, generator=g) < 0.05) & ~mask
    top = sims.masked_fill(mask, -1.0).max(dim=1, keepdim=True).values
    sims = torch.where(hidden_fn, top + 0.01, sims)  # false negatives score above every other negative
    dists = {}
    for name in [n for n in S.available() if not S.playground_note(n)]:
        kw = {"posterior": GaussianPosterior(0.5, 0.1, 0.0, 0.2)} if name == "fne" else {}
        ctx = {"relevant_mask": mask | hidden_fn} if name == "oracle" else {}
        w = S.build(name, **kw).weights(sims, pos, mask, **ctx)
        dists[name] = w / w.sum(dim=1, keepdim=True)
    names = sorted(dists)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            gap = float((dists[x] - dists[y]).abs().max())
            assert gap > 1e-3, f"{x} and {y} give the same weights at their defaults"


# ------------------------------------------------------------------ registry, specs, errors
def test_registry_lists_and_rejects():
    assert S.available() == sorted(["random", "hardest", "semihard", "simans", "positive_aware", "range", "fne",
                                    "oracle", "star", "adore", "clusterns", "dynamic_hn", "moco_hnf", "in_batch",
                                    "hasa", "cet", "guided"])
    with pytest.raises(ValueError, match="valid names: adore, cet, clusterns, dynamic_hn, fne, guided, hardest"):
        S.build("nope")
    with pytest.raises(ValueError, match="unknown parameter.*tau"):
        S.build("hardest", tau=1.0)


@pytest.mark.parametrize("name", S.available())
def test_param_specs_match_constructor_defaults(name):
    specs = S.param_specs(name)
    sig = inspect.signature(S.registry.SAMPLERS.get(name).__init__).parameters
    for spec in specs:
        assert spec.name in sig, spec
        assert sig[spec.name].default == spec.default
        if spec.choices is None:
            assert spec.low <= spec.high
        else:
            assert spec.default in spec.choices
        assert spec.help
    numeric = [p for p, v in sig.items() if isinstance(v.default, (int, float)) and not isinstance(v.default, bool)
               and p != "self"]
    assert set(numeric) <= {s.name for s in specs}
    # every string parameter with a fixed set of values is a choice spec (the app draws it, the CLI checks it)
    strings = [p for p, v in sig.items() if isinstance(v.default, str) and p not in ("self", "prior")]
    assert set(strings) <= {s.name for s in specs if s.choices}


@pytest.mark.parametrize("bad,match", [
    (lambda s, p, m: (s[0], p, m), "2-D"),
    (lambda s, p, m: (s, p[:-1], m), "pos_sims"),
    (lambda s, p, m: (s, p, m.float()), "positive_mask"),
    (lambda s, p, m: (s, p, m[:, :-1]), "positive_mask"),
    (lambda s, p, m: (s.masked_fill(m, float("nan")), p, m), "NaN"),
])
def test_bad_inputs_name_the_argument(bad, match):
    sims, pos, mask = make(3, 8)
    with pytest.raises(ValueError, match=match):
        S.build("simans").weights(*bad(sims, pos, mask))


def test_sample_reproducible_distinct_and_gradfree():
    sims, pos, mask = make(6, 50, dtype=torch.float32)
    sims.requires_grad_(True)
    s = S.build("simans", top_k=20)
    a = s.sample(sims, pos, mask, k=5, generator=torch.Generator().manual_seed(3))
    b = s.sample(sims, pos, mask, k=5, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.long and a.shape == (6, 5) and torch.equal(a, b)
    assert all(len(set(r)) == 5 for r in a.tolist())
    assert not s.weights(sims, pos, mask).requires_grad


def test_hardest_sample_is_topk_order():
    sims, pos, mask = make(4, 20, dtype=torch.float32)
    got = S.build("hardest").sample(sims, pos, mask, k=3)
    want = sims.masked_fill(mask, -math.inf).topk(3, dim=1).indices
    assert torch.equal(got, want)


def test_semihard_falls_back_to_hardest():
    sims = torch.tensor([[0.9, 0.2, 0.95, 0.1]])
    mask = torch.tensor([[True, False, False, False]])
    w = S.build("semihard", margin=0.1).weights(sims, sims[:, 0], mask)
    assert w.tolist() == [[0.0, 0.0, 1.0, 0.0]]


def test_fne_sampling_distribution_follows_weights():
    sims, pos, mask = make(1, 6, seed=4, dtype=torch.float32)
    s = S.build("fne")
    w = s.weights(sims, pos, mask)[0]
    draws = s.sample(sims.expand(4000, -1), pos.expand(4000), mask.expand(4000, -1),
                     generator=torch.Generator().manual_seed(0))[:, 0]
    freq = torch.bincount(draws, minlength=6).float() / 4000
    torch.testing.assert_close(freq, w / w.sum(), atol=0.03, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", S.available())
def test_cuda_matches_cpu(name):  # pragma: no cover - GPU only
    sims, pos, mask = make(8, 64, dtype=torch.float32)
    kw = {"relevant_mask": mask} if name == "oracle" else {}
    s = S.build(name, **({"posterior": GaussianPosterior(0.5, 0.1, 0.0, 0.2)} if name == "fne" else {}))
    cpu = s.weights(sims, pos, mask, **kw)
    kwc = {k: v.cuda() for k, v in kw.items()}
    gpu = s.weights(sims.cuda(), pos.cuda(), mask.cuda(), **kwc)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-6)
    idx = s.sample(sims.cuda(), pos.cuda(), mask.cuda(), generator=torch.Generator("cuda").manual_seed(0), **kwc)
    assert idx.device.type == "cuda" and not mask.cuda().gather(1, idx).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_draw_matches_weight_proportions(dtype):
    """The k=1 inverse-CDF draw has the distribution of torch.multinomial(w, 1): frequencies
    match w / w.sum() and zero weights are never drawn."""
    from fnlab.samplers.base import _draw_one

    w = torch.tensor([[0.0, 1.0, 0.0, 3.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 2.0],
                      [0.0, 0.0, 0.0, 0.0, 1e-3, 0.0]], dtype=dtype)
    g = torch.Generator().manual_seed(3)
    n = 20000
    draws = torch.cat([_draw_one(w, g) for _ in range(n)], dim=1)
    _check_draw_frequencies(w, draws, n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_many_draws_a_row_match_weight_proportions(dtype):
    """``draw_many(w, t)``: t independent draws per row in one call (FNE's rejection tries), the distribution of
    torch.multinomial(w, t, replacement=True); zero weights never drawn."""
    from fnlab.samplers.base import draw_many

    w = torch.tensor([[0.0, 1.0, 0.0, 3.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 2.0],
                      [0.0, 0.0, 0.0, 0.0, 1e-3, 0.0]], dtype=dtype)
    n = 20000
    draws = draw_many(w, n, torch.Generator().manual_seed(4))
    assert draws.shape == (3, n)
    _check_draw_frequencies(w, draws, n)


def _check_draw_frequencies(w: torch.Tensor, draws: torch.Tensor, n: int) -> None:
    for row in range(w.shape[0]):
        freq = torch.bincount(draws[row], minlength=w.shape[1]).double() / n
        expected = (w[row] / w[row].sum()).double()
        assert torch.all(freq[expected == 0] == 0)
        # 5 standard errors of a binomial proportion
        tol = 5 * torch.sqrt(expected * (1 - expected) / n) + 1e-12
        assert torch.all((freq - expected).abs() <= tol), (row, freq, expected)


def test_fne_rule_choices_offered_are_the_samplers_rules():
    """The registry (CLI flags, the playground's select box) offers exactly the rules the sampler implements."""
    from fnlab.samplers import param_specs
    from fnlab.samplers.fne import FNESampler

    rule = next(spec for spec in param_specs("fne") if spec.name == "rule")
    assert tuple(rule.choices) == FNESampler.RULES and len(rule.choice_labels) == len(FNESampler.RULES)
    assert set(FNESampler.RANKED_RULES) | set(FNESampler.DENSITY_RULES) <= set(FNESampler.RULES)
