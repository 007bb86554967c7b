"""fnlab.retrieval.similarity: top-k against a slow brute-force reference written here (ties tolerated)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlab.retrieval.similarity import as_exclude_matrix, build_index, normalize, topk


def reference_topk(q, keys, k, exclude_sets):
    """Obviously-correct top-k: Python loops over every pair, float64."""
    nq, nk = len(q), len(keys)
    scores = np.full((nq, k), -np.inf)
    indices = np.full((nq, k), -1, dtype=np.int64)
    for r in range(nq):
        cands = [(float(np.dot(q[r].astype(np.float64), keys[c].astype(np.float64))), c)
                 for c in range(nk) if c not in exclude_sets[r]]
        cands.sort(key=lambda t: -t[0])
        for j, (s, c) in enumerate(cands[:k]):
            scores[r, j], indices[r, j] = s, c
    return scores, indices


def assert_topk_matches(q, keys, k, exclude_sets, scores, indices, atol=1e-5):
    ref_s, ref_i = reference_topk(q, keys, k, exclude_sets)
    assert scores.shape == (len(q), k) and indices.shape == (len(q), k)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    # same sorted score lists (padding -inf in the same places)
    np.testing.assert_array_equal(np.isfinite(scores), np.isfinite(ref_s))
    fin = np.isfinite(ref_s)
    np.testing.assert_allclose(scores[fin], ref_s[fin], atol=atol)
    assert (indices[~fin] == -1).all()
    for r in range(len(q)):
        got = indices[r][indices[r] >= 0]
        assert len(set(got.tolist())) == len(got), "duplicate neighbours"
        assert not set(got.tolist()) & exclude_sets[r], "excluded pair returned"
        # each returned index really has the returned score
        true = keys[got].astype(np.float64) @ q[r].astype(np.float64)
        np.testing.assert_allclose(scores[r][: len(got)], true, atol=atol)
        # items strictly above the k-th score must all be there (ties at the boundary may differ)
        if len(got):
            kth = ref_s[r][fin[r]][-1]
            must = {int(c) for c, s in zip(ref_i[r], ref_s[r], strict=True) if c >= 0 and s > kth + atol}
            assert must <= set(got.tolist())


def _random_exclude(rng, nq, nk, max_per_row):
    return [set(rng.choice(nk, size=rng.integers(0, min(max_per_row, nk) + 1), replace=False).tolist())
            for _ in range(nq)]


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("nq,nk,d,k", [(1, 1, 3, 1), (7, 30, 5, 4), (33, 50, 8, 10), (5, 6, 4, 9)])
def test_topk_matches_reference(backend, nq, nk, d, k):
    rng = np.random.default_rng(nq * 100 + nk)
    q = normalize(rng.standard_normal((nq, d)).astype(np.float32))
    keys = normalize(rng.standard_normal((nk, d)).astype(np.float32))
    excl = _random_exclude(rng, nq, nk, 3)
    s, i = topk(q, keys, k, exclude=[np.array(sorted(e), dtype=np.int64) for e in excl], backend=backend,
                chunk_size=4)
    assert_topk_matches(q, keys, k, excl, s, i)


@settings(max_examples=25, deadline=None)
@given(nq=st.integers(1, 12), nk=st.integers(1, 20), d=st.integers(1, 4), k=st.integers(1, 25),
       chunk=st.integers(1, 8), seed=st.integers(0, 10_000), backend=st.sampled_from(["faiss", "torch"]))
def test_topk_property_with_ties(nq, nk, d, k, chunk, seed, backend):
    """Small integer embeddings make many exact ties; the result must still be a valid top-k."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-2, 3, size=(nq, d)).astype(np.float32)
    keys = rng.integers(-2, 3, size=(nk, d)).astype(np.float32)
    excl = _random_exclude(rng, nq, nk, 4)
    rows, cols = zip(*[(r, c) for r, e in enumerate(excl) for c in e], strict=True) if any(excl) else ((), ())
    mat = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(nq, nk))
    s, i = topk(q, keys, k, exclude=mat, backend=backend, chunk_size=chunk)
    assert_topk_matches(q, keys, k, excl, s, i)


def test_backends_and_chunks_agree():
    rng = np.random.default_rng(0)
    q = normalize(rng.standard_normal((200, 16)).astype(np.float32))
    keys = normalize(rng.standard_normal((300, 16)).astype(np.float32))
    excl = sp.random(200, 300, density=0.02, random_state=1, format="csr").astype(bool)
    s1, i1 = topk(q, keys, 10, exclude=excl, backend="faiss", chunk_size=1000)
    s2, i2 = topk(q, keys, 10, exclude=excl, backend="faiss", chunk_size=7)
    s3, i3 = topk(torch.from_numpy(q), torch.from_numpy(keys), 10, exclude=excl, backend="torch", chunk_size=13,
                  device="cpu")
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(s1, s3, atol=1e-5)
    assert (i1 == i3).mean() > 0.99  # continuous data: no ties


def test_float16_and_float64_inputs():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((10, 8))
    keys = rng.standard_normal((20, 8))
    s64, i64 = topk(q, keys, 3)
    s16, _ = topk(q.astype(np.float16), keys.astype(np.float16), 3)
    assert s64.dtype == np.float32 and i64.dtype == np.int64
    np.testing.assert_allclose(s16, s64, atol=0.05)


def test_normalize_numpy_and_torch():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float16)
    n = normalize(x)
    assert n.dtype == np.float32
    np.testing.assert_allclose(n, [[0.6, 0.8], [0.0, 0.0]], atol=1e-6)
    t = normalize(torch.tensor([[3.0, 4.0]], dtype=torch.float64))
    assert t.dtype == torch.float64
    torch.testing.assert_close(t, torch.tensor([[0.6, 0.8]], dtype=torch.float64))
    v = np.array([[3.0, 4.0], [3e20, 4e20], [3e-30, 4e-30]], dtype=np.float32)
    before = v.copy()
    np.testing.assert_allclose(normalize(v), [[0.6, 0.8]] * 3, rtol=1e-6)  # no overflow, no underflow
    assert np.array_equal(v, before) and normalize(np.array([3.0, 4.0])).dtype == np.float64
    x = torch.randn(4, 3, requires_grad=True)
    normalize(x).sum().backward()  # differentiable: the encoders' forward pass uses it
    assert x.grad is not None


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_build_index_recall(kind):
    rng = np.random.default_rng(5)
    keys = normalize(rng.standard_normal((2000, 16)).astype(np.float32))
    q = normalize(rng.standard_normal((50, 16)).astype(np.float32))
    exact_s, exact_i = topk(q, keys, 10)
    index = build_index(keys, kind, nlist=16, nprobe=16)
    s, i = topk(q, None, 10, index=index, exclude=[np.array([exact_i[r, 0]]) for r in range(50)])
    assert not (i == exact_i[:, :1]).any(), "excluded top-1 came back"
    recall = np.mean([len(set(i[r, :9]) & set(exact_i[r, 1:10])) / 9 for r in range(50)])
    assert recall > (0.999 if kind == "flat" else 0.8)


def test_bad_input_errors():
    q = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="dimension mismatch"):
        topk(q, np.zeros((5, 3), np.float32), 2)
    with pytest.raises(ValueError, match="k must be"):
        topk(q, q, 0)
    with pytest.raises(ValueError, match="backend"):
        topk(q, q, 1, backend="numpy")
    with pytest.raises(ValueError, match="2-D"):
        topk(np.zeros(4, np.float32), q, 1)
    with pytest.raises(ValueError, match="outside"):
        as_exclude_matrix([[0], [9], []], 3, 3)
    with pytest.raises(ValueError, match="expected"):
        as_exclude_matrix(sp.csr_matrix((2, 3)), 3, 3)
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(q, "lsh")


def test_empty_keys_padding():
    s, i = topk(np.ones((2, 3), np.float32), np.zeros((0, 3), np.float32), 2)
    assert (i == -1).all() and np.isneginf(s).all()
