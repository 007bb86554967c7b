"""bench/refit_share.py's true share of the top-k window against a brute-force loop."""

from __future__ import annotations

import numpy as np
from _bench_module import load_bench


def _bench():
    return load_bench("refit_share")


class _Post:
    window = 3


def test_window_truth_is_the_share_of_matches_in_each_querys_top_unlabelled_candidates():
    from fnlab import data

    mod = _bench()
    ds = data.load("shapes", split="val", n_train=16, n_val=24, n_test=8)
    rng = np.random.default_rng(0)
    ea = rng.standard_normal((ds.n_a, 8)).astype(np.float32)
    eb = rng.standard_normal((ds.n_b, 8)).astype(np.float32)
    ea /= np.linalg.norm(ea, axis=1, keepdims=True)
    eb /= np.linalg.norm(eb, axis=1, keepdims=True)
    lab = ds.labelled_matrix().toarray().astype(bool)  # [caption, image]
    truth = lab | ds.false_negative_matrix().toarray().astype(bool)
    for direction, q, c, lab_, truth_ in (("t2i", eb, ea, lab, truth), ("i2t", ea, eb, lab.T, truth.T)):
        hits = []
        for i in range(q.shape[0]):
            s = c @ q[i]
            order = [j for j in np.argsort(-s, kind="stable") if not lab_[i, j]][:3]
            hits += [truth_[i, j] for j in order]
        got = mod.window_truth(_Post(), ea, eb, ds, direction, None)
        assert abs(got - np.mean(hits)) < 1e-9, direction
