"""Scan input checks that used to give silent wrong results: float64 rows beyond float32 (a query
vanished) and float32 rows whose squared norm overflows or underflows (wrong neighbours)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fnlab.analysis.scan import ScanInputError, scan


def _data():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((60, 8)).astype(np.float32)
    q = (c[:20] + 0.3 * rng.standard_normal((20, 8))).astype(np.float32)
    pos = pd.DataFrame({"query": np.arange(20), "candidate": np.arange(20)})
    return q, c, pos


def test_huge_and_tiny_float32_rows_get_the_same_neighbours():
    q, c, pos = _data()
    ref = scan(q, c, pos, top_k=5, negative_sample=2000).table
    scaled = q.copy()
    scaled[3] *= np.float32(1e20)  # squared norm 1e40 overflows float32
    scaled[4] *= np.float32(1e-30)  # squared norm 1e-60 underflows to 0
    got = scan(scaled, c, pos, top_k=5, negative_sample=2000).table
    for i in (3, 4):
        a, b = ref[ref["query"] == i], got[got["query"] == i]
        assert b["candidate"].tolist() == a["candidate"].tolist()
        np.testing.assert_allclose(b["similarity"], a["similarity"], atol=1e-5)
    assert set(got["query"]) == set(range(20))


def test_float64_rows_beyond_float32_are_refused_by_row():
    q, c, pos = _data()
    q64 = q.astype(np.float64)
    q64[7] *= 1e200
    with pytest.raises(ScanInputError, match=r"Q\.npy \(queries\): 1 row\(s\).*float32.*first rows: \[7\]"):
        scan(q64, c, pos, top_k=5, negative_sample=2000, names={"queries": "Q.npy"})
    q64[7] = q[7] * 1e30  # large but representable in float32: fine, and the same neighbours
    got = scan(q64, c, pos, top_k=5, negative_sample=2000).table
    ref = scan(q, c, pos, top_k=5, negative_sample=2000).table
    assert got[got["query"] == 7]["candidate"].tolist() == ref[ref["query"] == 7]["candidate"].tolist()


def test_negative_sample_must_be_at_least_two():
    q, c, pos = _data()
    with pytest.raises(ScanInputError, match="negative_sample must be an integer >= 2"):
        scan(q, c, pos, negative_sample=0)
