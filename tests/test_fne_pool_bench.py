"""bench/fne_pool.py's aggregation (the expected sampled false-negative rate, the per-anchor band density and
what a threshold on P leaves) against slow per-anchor loops."""

from __future__ import annotations

import numpy as np
from _bench_module import load_bench


def _bench():
    return load_bench("fne_pool")


def _record(seed: int, n_rows: int = 6) -> dict:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.integers(0, n_rows - 1, 60))  # the last anchor has an empty band
    return {"rows": rows, "n_rows": n_rows, "y": rng.random(60) < 0.4, "base": rng.random(60) + 0.1,
            "p_pool": rng.random(60), "pick_fn": rng.random(n_rows) < 0.5, "pick_in_band": rng.random(n_rows) < 0.7}


def test_fn_share_is_the_mean_over_anchors_of_each_weight_share():
    mod, rec = _bench(), _record(0)
    w = rec["base"] * (1 - rec["p_pool"])
    shares = [w[rec["rows"] == a][rec["y"][rec["rows"] == a]].sum() / w[rec["rows"] == a].sum()
              for a in range(rec["n_rows"]) if (rec["rows"] == a).any()]
    assert np.isclose(mod.fn_share(rec, w), np.mean(shares))


def test_per_anchor_mean_and_threshold_lines_match_loops():
    mod, recs = _bench(), [_record(1), _record(2)]
    r = recs[0]
    slow = [r["p_pool"][r["rows"] == a].mean() if (r["rows"] == a).any() else np.nan for a in range(r["n_rows"])]
    np.testing.assert_allclose(mod._per_anchor(r, r["p_pool"]), slow)
    lines = "\n".join(mod._threshold_lines(recs))
    y = np.concatenate([x["y"] for x in recs])
    p = np.concatenate([x["p_pool"] for x in recs])
    assert f"P < 0.5: false-negative share {y[p < 0.5].mean():.3f}" in lines
    emptied = np.mean([not ((x["rows"] == a) & (x["p_pool"] < 0.5)).any() for x in recs for a in range(x["n_rows"])])
    assert f"anchors with no member below 0.5: {emptied:.3f}" in lines
    fn = np.concatenate([x["pick_fn"] for x in recs])
    inside = np.concatenate([x["pick_in_band"] for x in recs])
    assert f"the draws: false-negative share {fn.mean():.3f}; inside the band {fn[inside].mean():.3f}" in lines
