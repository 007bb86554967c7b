"""fnlab.analysis.review (decisions, export) and fnlab.analysis.explore (rankings, batches, sampler summaries)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from fnlab.analysis import explore, review
from fnlab.data.base import MatchingDataset


def test_decisions_roundtrip_and_merge(tmp_path):
    log = review.FolderDecisions(tmp_path / "r")
    assert len(log.load()) == 0
    log.record("t2i", 3, 7, review.FALSE_NEGATIVE)
    log.record("t2i", 3, 8, review.TRUE_NEGATIVE)
    log.record("t2i", 3, 7, review.TRUE_NEGATIVE)  # changed mind: last decision wins
    d = review.FolderDecisions(tmp_path / "r").load()  # a fresh reader sees what was written
    assert len(d) == 2 and set(d["decision"]) == {review.TRUE_NEGATIVE}
    log.record("t2i", 3, 8, review.UNDECIDED)
    assert len(log.load()) == 1
    assert not list((tmp_path / "r").glob("*.tmp"))  # atomic writes leave no temporary files
    scan = pd.DataFrame({"query": [3, 3, 4], "candidate": [7, 8, 7], "rank": [1, 2, 1],
                         "similarity": [0.9, 0.8, 0.7], "positive_similarity": [0.95] * 3,
                         "p_false_negative": [0.99, 0.6, 0.2]})
    merged = review.merge(scan, log.load(), direction="t2i")
    assert list(merged["decision"]) == [review.TRUE_NEGATIVE, review.UNDECIDED, review.UNDECIDED]
    assert set(scan.columns) <= set(merged.columns)
    back = pd.read_csv(io.BytesIO(review.export_bytes(merged, "csv")))
    assert back.shape == merged.shape
    assert pd.read_parquet(io.BytesIO(review.export_bytes(merged, "parquet"))).shape == merged.shape
    with pytest.raises(ValueError):
        review.export_bytes(merged, "xlsx")
    with pytest.raises(ValueError):
        review.apply(review.empty(), "t2i", 1, 2, "maybe")
    with pytest.raises(ValueError):
        review.merge(scan, log.load())  # no direction anywhere


def _toy():
    # 4 images, 2 captions each; caption 0 (image 0) is also relevant to image 1 (a planted false negative).
    b_to_a = np.repeat(np.arange(4), 2)
    rel = sp.lil_matrix((8, 4), dtype=bool)
    rel[np.arange(8), b_to_a] = True
    rel[0, 1] = True
    ds = MatchingDataset("toy", "test", b_to_a, None, None, "features", "features", relevance=rel.tocsr(),
                         a_meta=pd.DataFrame({"label": list("abcd")}))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 8)).astype(np.float32)
    b = a[b_to_a] + 0.3 * rng.normal(size=(8, 8)).astype(np.float32)
    b[0] = a[1] + 0.05 * rng.normal(size=8)  # caption 0 looks like image 1: its FN ranks first
    return ds, a, b


def test_ranking_and_batch_match_slow_reference():
    ds, a, b = _toy()
    s = explore.sides(ds, a, b, "t2i")
    table, pos_rank = explore.ranking(s, 0, k=4)
    an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    ref = an @ bn[0]
    assert list(table["candidate"]) == list(np.argsort(-ref))
    np.testing.assert_allclose(table["similarity"], np.sort(ref)[::-1], rtol=1e-5)
    assert table.iloc[0]["candidate"] == 1 and table.iloc[0]["status"] == "false negative"
    assert pos_rank == 1 + list(np.argsort(-ref)).index(0)
    bt = explore.batch(s, np.array([0, 5]))
    assert bt.sims.shape == (2, 4) and bool(bt.false_negative_mask[0, 1]) and not bt.false_negative_mask[1].any()
    # i2t is the transpose: image 1's candidates include caption 0 as a false negative.
    si = explore.sides(ds, a, b, "i2t")
    assert si.false_negatives[1, 0] and si.positives.shape == (4, 8)
    with pytest.raises(ValueError):
        explore.sides(ds, a[:3], b, "t2i")
    with pytest.raises(IndexError):
        explore.ranking(s, 99)


def test_sampler_summary_is_expectation_under_weights():
    ds, a, b = _toy()
    bt = explore.batch(explore.sides(ds, a, b, "t2i"), np.arange(8))
    # A sampler that always picks candidate 1: hardness = mean sim to 1, risk = share of rows where 1 is a FN.
    w = torch.zeros_like(bt.sims)
    w[:, 1] = 1.0
    w[bt.positive_mask] = 0
    w[2:4, 2] = 1.0  # captions of image 1 cannot pick it: use image 2
    out = explore.sampler_summary(bt, {"fixed": w})
    sims = bt.sims.numpy()
    pick = np.array([1, 1, 2, 2, 1, 1, 1, 1])
    assert out.loc[0, "hardness"] == pytest.approx(sims[np.arange(8), pick].mean(), rel=1e-6)
    assert out.loc[0, "fn_risk"] == pytest.approx(1 / 8)
    assert out.loc[0, "risk_source"] == "ground truth"


def test_decisions_against_p_matches_a_slow_reference():
    import numpy as np
    import pandas as pd

    from fnlab.analysis import review

    rng = np.random.default_rng(0)
    n = 400
    p = rng.uniform(0, 1, n)
    p[:3] = [0.5, 0.9, 1.0]  # band edges: 0.5 and 0.9 open the next band, 1.0 closes the last
    decision = rng.choice([review.FALSE_NEGATIVE, review.TRUE_NEGATIVE, review.UNDECIDED], n)
    table = pd.DataFrame({"p_false_negative": p, "decision": decision})
    got = review.decisions_against_p(table)
    want = []
    for i, (lo, hi) in enumerate(review.CHECK_BANDS):
        rows = [(pv, d) for pv, d in zip(p, decision, strict=True) if d != review.UNDECIDED
                and lo <= pv and (pv <= hi if i == len(review.CHECK_BANDS) - 1 else pv < hi)]
        if rows:
            fn = sum(d == review.FALSE_NEGATIVE for _, d in rows)
            want.append((lo, hi, len(rows), fn, fn / len(rows), sum(pv for pv, _ in rows) / len(rows)))
    np.testing.assert_allclose(got.to_numpy(dtype=float), np.array(want, dtype=float))
    assert review.decisions_against_p(table.assign(decision=review.UNDECIDED)).empty
