"""Loss formulas against per-row references written here (Python math, float64)."""

from __future__ import annotations

import math

import pytest
import torch

from fnlab import losses as L

SIZES = [(1, 4), (5, 12), (8, 33)]


def make(b, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    sims = (torch.rand(b, m, generator=g, dtype=torch.float64) * 2 - 1) * 0.95
    mask = torch.zeros(b, m, dtype=torch.bool)
    mask[torch.arange(b), torch.arange(b) % m] = True
    mask |= torch.rand(b, m, generator=g) < 0.1
    pos = sims[torch.arange(b), torch.arange(b) % m]
    idx = torch.randint(0, m, (b, 3), generator=g)
    return sims, pos, mask, idx


def negatives_of_row(sims, mask, idx, i):
    if idx is None:
        return [float(sims[i, j]) for j in range(sims.shape[1]) if not mask[i, j]]
    return [float(sims[i, j]) for j in idx[i].tolist() if not mask[i, j]]


def ref_triplet(p, negs, margin, mode, k=None):
    h = [max(0.0, margin - p + s) for s in negs]
    if mode == "sum":
        return sum(h)
    if mode == "mean_k":
        return sum(h) / k
    return max(h, default=0.0)


def ref_infonce(p, negs, t):
    return -math.log(math.exp(p / t) / (math.exp(p / t) + sum(math.exp(s / t) for s in negs)))


def ref_dcl(p, negs, t, tau_plus):
    n = len(negs)
    ng = (sum(math.exp(s / t) for s in negs) - tau_plus * n * math.exp(p / t)) / (1 - tau_plus)
    ng = max(ng, n * math.exp(-1 / t))
    return -math.log(math.exp(p / t) / (math.exp(p / t) + ng))


def ref_hcl(p, negs, t, tau_plus, beta):
    n = len(negs)
    if n == 0:
        return 0.0
    neg = [math.exp(s / t) for s in negs]
    imp = [math.exp(beta * s / t) for s in negs]
    reweight = sum(i * e for i, e in zip(imp, neg, strict=True)) / (sum(imp) / n)
    ng = max((reweight - tau_plus * n * math.exp(p / t)) / (1 - tau_plus), n * math.exp(-1 / t))
    return -math.log(math.exp(p / t) / (math.exp(p / t) + ng))


def ref_fnc(p, negs, t, k, threshold, mode):
    """Huynh et al. 2022 for one anchor: cancel the top-k negatives above the threshold."""
    ranked = sorted(negs, reverse=True)
    fn = [s for s in ranked[:k] if s > threshold]  # a prefix of the ranking
    if mode == "elimination":
        return ref_infonce(p, ranked[len(fn):], t)
    z = math.exp(p / t) + sum(math.exp(s / t) for s in negs)
    return -sum(math.log(math.exp(x / t) / z) for x in [p, *fn]) / (1 + len(fn))


CASES = [
    ("triplet", {}, lambda p, negs, k: ref_triplet(p, negs, 0.2, "max")),
    ("triplet", {"mode": "sum", "margin": 0.5}, lambda p, negs, k: ref_triplet(p, negs, 0.5, "sum")),
    ("infonce", {}, lambda p, negs, k: ref_infonce(p, negs, 0.07)),
    ("infonce", {"temperature": 0.5}, lambda p, negs, k: ref_infonce(p, negs, 0.5)),
    ("dcl", {}, lambda p, negs, k: ref_dcl(p, negs, 0.07, 0.1)),
    ("dcl", {"temperature": 0.5, "tau_plus": 0.3}, lambda p, negs, k: ref_dcl(p, negs, 0.5, 0.3)),
    ("hcl", {}, lambda p, negs, k: ref_hcl(p, negs, 0.07, 0.1, 1.0)),
    ("hcl", {"temperature": 0.3, "beta": 2.5, "tau_plus": 0.05}, lambda p, negs, k: ref_hcl(p, negs, 0.3, 0.05, 2.5)),
    ("fnc", {}, lambda p, negs, k: ref_fnc(p, negs, 0.07, 10, 0.7, "elimination")),
    ("fnc", {"mode": "attraction"}, lambda p, negs, k: ref_fnc(p, negs, 0.07, 10, 0.7, "attraction")),
    ("fnc", {"top_k": 2, "threshold": 0.3, "temperature": 0.5},
     lambda p, negs, k: ref_fnc(p, negs, 0.5, 2, 0.3, "elimination")),
    ("fnc", {"top_k": 5, "threshold": 0.2, "temperature": 0.2, "mode": "attraction"},
     lambda p, negs, k: ref_fnc(p, negs, 0.2, 5, 0.2, "attraction")),
]


@pytest.mark.parametrize("use_idx", [False, True])
@pytest.mark.parametrize("b,m", SIZES)
@pytest.mark.parametrize("name,params,ref", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_loss_matches_reference(name, params, ref, b, m, use_idx):
    sims, pos, mask, idx = make(b, m, seed=b + m)
    idx = idx if use_idx else None
    got = L.build(name, reduction="none", **params)(sims, pos, mask, idx)
    want = torch.tensor([ref(float(pos[i]), negatives_of_row(sims, mask, idx, i), 3) for i in range(b)],
                        dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    for red, f in (("mean", torch.mean), ("sum", torch.sum)):
        torch.testing.assert_close(L.build(name, reduction=red, **params)(sims, pos, mask, idx), f(want))


@pytest.mark.parametrize("b,m", SIZES)
def test_sampled_triplet_matches_reference(b, m):
    sims, pos, mask, idx = make(b, m, seed=m)
    got = L.build("triplet", mode="mean", reduction="none")(sims, pos, mask, idx)
    want = torch.tensor([ref_triplet(float(pos[i]), negatives_of_row(sims, mask, idx, i), 0.2, "mean_k", k=3)
                         for i in range(b)], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def test_vse_max_violation_equals_official_triplet():
    # the official FNE TripletLoss: both directions, hardest negative, summed over anchors
    g = torch.Generator().manual_seed(0)
    im = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    tx = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    scores = im @ tx.T
    want = 0.0
    for i in range(6):
        want += max(max(0.0, 0.2 + float(scores[i, j]) - float(scores[i, i])) for j in range(6) if j != i)
        want += max(max(0.0, 0.2 + float(scores[j, i]) - float(scores[i, i])) for j in range(6) if j != i)
    eye = torch.eye(6, dtype=torch.bool)
    loss = L.build("triplet", reduction="sum")
    got = loss(scores, scores.diagonal(), eye) + loss(scores.T, scores.diagonal(), eye)
    assert float(got) == pytest.approx(want)
    # the warm-up's in-batch form is the same number
    assert float(loss.in_batch(scores, torch.arange(6))) == pytest.approx(want)


def test_hcl_with_beta_zero_is_dcl_and_gradients_flow():
    sims, pos, mask, _ = make(4, 20, seed=9)
    sims = sims.clone().requires_grad_(True)
    pos = sims[torch.arange(4), torch.arange(4)]
    a = L.build("hcl", beta=0.0)(sims, pos, mask)
    b = L.build("dcl")(sims, pos, mask)
    torch.testing.assert_close(a, b)
    a.backward()
    assert torch.isfinite(sims.grad).all() and sims.grad.abs().sum() > 0


def test_losses_stable_at_low_temperature_and_empty_rows():
    sims = torch.tensor([[1.0, 0.99, -1.0], [0.5, 0.2, 0.1]], dtype=torch.float32)
    mask = torch.tensor([[True, False, False], [True, True, True]])  # row 1: no negatives
    for name, extra in (("infonce", {}), ("dcl", {}), ("hcl", {}), ("fnc", {}), ("fnc", {"mode": "attraction"})):
        out = L.build(name, temperature=0.01, reduction="none", **extra)(sims, sims[:, 0], mask)
        assert torch.isfinite(out).all(), name
        assert out[1] == 0
    assert L.build("triplet", reduction="none")(sims, sims[:, 0], mask)[1] == 0


def test_registry_and_errors():
    assert L.available() == ["asl", "cet", "dcl", "fnc", "hasa", "hcl", "infonce", "infonce_bml", "lambdarank",
                             "pairwise_logistic", "triplet", "wmse"]
    with pytest.raises(ValueError, match="valid names: asl, cet, dcl, fnc, hasa, hcl"):
        L.build("ntxent")
    with pytest.raises(ValueError, match="reduction"):
        L.build("dcl", reduction="avg")
    sims, pos, mask, idx = make(3, 6)
    with pytest.raises(ValueError, match="outside"):
        L.build("infonce")(sims, pos, mask, idx + 10)
    with pytest.raises(ValueError, match="pos_sims"):
        L.build("infonce")(sims, pos[:2], mask)
    assert [s.name for s in L.param_specs("hcl")] == ["temperature", "tau_plus", "beta"]


# ------------------------------------------------------------------ false-negative cancellation
def test_fnc_params_and_errors():
    assert [(p.name, p.default) for p in L.param_specs("fnc")] == [("temperature", 0.07), ("top_k", 10),
                                                                   ("threshold", 0.7), ("mode", "elimination")]
    assert L.param_specs("fnc")[1].integer
    assert L.param_specs("fnc")[3].choices == ("elimination", "attraction")
    with pytest.raises(ValueError, match="mode"):
        L.build("fnc", mode="cancel")
    with pytest.raises(ValueError, match="temperature"):
        L.build("fnc", temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        L.build("fnc", top_k=-1)


@pytest.mark.parametrize("mode", ["elimination", "attraction"])
def test_fnc_never_cancels_labelled_positives(mode):
    # row 0: labelled positives at 0.95 and 0.9 (above the threshold, on top of the ranking), a
    # false negative at 0.8 and plain negatives; only 0.8 may be cancelled
    sims = torch.tensor([[0.6, 0.95, 0.9, 0.8, 0.1, -0.2], [0.5, 0.2, 0.75, 0.72, 0.71, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False, False, False], [True, False, False, False, False, False]])
    loss = L.build("fnc", mode=mode, top_k=2, temperature=0.1, reduction="none")
    neg, valid, pos, _ = loss.negatives(sims, sims[:, 0], mask, None)
    fn = loss.false_negatives(neg, valid)
    assert fn.tolist() == [[False, False, False, True, False, False], [False, False, True, True, False, False]]
    want = [ref_fnc(float(sims[i, 0]), negatives_of_row(sims, mask, None, i), 0.1, 2, 0.7, mode) for i in range(2)]
    torch.testing.assert_close(loss(sims, sims[:, 0], mask), torch.tensor(want, dtype=torch.float64))


@pytest.mark.parametrize("b,m", SIZES)
def test_fnc_without_cancellation_is_infonce(b, m):
    sims, pos, mask, idx = make(b, m, seed=3 * m)
    want = L.build("infonce", temperature=0.2, reduction="none")(sims, pos, mask, idx)
    for mode in ("elimination", "attraction"):
        for params in ({"threshold": 1.0}, {"top_k": 0}):
            got = L.build("fnc", mode=mode, temperature=0.2, reduction="none", **params)(sims, pos, mask, idx)
            torch.testing.assert_close(got, want)


def test_fnc_gradients_eliminate_or_attract():
    sims = torch.tensor([[0.9, 0.75, 0.3, -0.1]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, False, False]])
    grads = {}
    for mode in ("elimination", "attraction"):
        sims.grad = None
        L.build("fnc", mode=mode, temperature=0.1)(sims, sims[:, 0], mask).backward()
        grads[mode] = sims.grad.clone()
    # eliminated: the false negative (0.75) gets no gradient; attracted: the loss falls as it rises
    assert grads["elimination"][0, 1] == 0 and grads["elimination"][0, 2] > 0
    assert grads["attraction"][0, 1] < 0 and grads["attraction"][0, 2] > 0
