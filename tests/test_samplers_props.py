"""Property tests for every sampler: non-negative, zero on positives, never samples a positive."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlab import samplers as S
from fnlab.posterior import GaussianPosterior

POSTERIOR = GaussianPosterior(0.5, 0.1, 0.0, 0.2, prior_pos=1e-2)


def build(name: str, mode: str):
    if name == "fne":
        return S.build("fne", posterior=POSTERIOR, mode=mode)
    if name == "oracle":
        return S.build("oracle", base="simans" if mode == "paper" else "hardest", top_k=5)
    if name == "positive_aware":
        return S.build("positive_aware", mode="perc" if mode == "paper" else "margin", top_k=4)
    if name == "range":
        return S.build("range", range_min=1, range_max=8, margin=0.02,
                       strategy="random" if mode == "paper" else "top", num_negatives=2)
    return S.build(name)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(S.available())),
    mode=st.sampled_from(["paper", "calibrated"]),
    b=st.integers(1, 8), m=st.integers(1, 30), seed=st.integers(0, 2**31 - 1),
    pos_rate=st.floats(0.0, 1.0), k=st.integers(1, 4),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_sampler_properties(name, mode, b, m, seed, pos_rate, k, dtype):
    g = torch.Generator().manual_seed(seed)
    sims = (torch.rand(b, m, generator=g) * 2 - 1).to(dtype)
    if seed % 3 == 0:  # ties
        sims = (sims * 4).round() / 4
    mask = torch.rand(b, m, generator=g) < pos_rate
    pos = torch.rand(b, generator=g).to(dtype)
    ctx = {}
    if name == "oracle":
        ctx["relevant_mask"] = mask | (torch.rand(b, m, generator=g) < 0.3)
    s = build(name, mode)
    w = s.weights(sims, pos, mask, **ctx)
    assert w.shape == (b, m)
    assert torch.isfinite(w).all() and (w >= 0).all()
    assert (w[mask] == 0).all()
    has_neg = (~mask).any(dim=1)
    assert (w.sum(dim=1)[has_neg] > 0).all()  # fallback keeps every such row alive
    idx = s.sample(sims, pos, mask, k=k, generator=torch.Generator().manual_seed(seed), **ctx)
    assert idx.shape == (b, k) and idx.dtype == torch.long
    assert ((idx >= 0) & (idx < m)).all()
    picked_pos = mask.gather(1, idx)
    assert not picked_pos[has_neg].any()
    if name == "oracle":
        rel = ctx["relevant_mask"]
        clean = (~rel).any(dim=1)
        assert not rel.gather(1, idx)[clean].any()
