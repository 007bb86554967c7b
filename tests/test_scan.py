"""fnlab.analysis.scan: planted false negatives are found, chunking is exact, bad input is refused clearly."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fnlab.analysis.scan import (
    ScanInputError,
    ScanWarning,
    load_embeddings,
    load_positives,
    scan,
    scan_dataset,
    triplets,
)
from fnlab.data.base import MatchingDataset

FAST = {"negative_sample": 20_000}  # smaller random sample of unlabelled pairs: faster posterior fit


def planted(nq=200, nc=400, d=64, n_fn=30, seed=0):
    """Queries near their positive; candidates 200.. hold near-copies of the first n_fn positives."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((nc, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    q = c[:nq] + 0.7 * rng.standard_normal((nq, d)) / np.sqrt(d)
    fn_of = {}
    for i in range(n_fn):
        j = nq + i
        c[j] = c[i] + 0.05 * rng.standard_normal(d) / np.sqrt(d)  # copy of query i's positive
        fn_of[i] = j
    pos = pd.DataFrame({"query": np.arange(nq), "candidate": np.arange(nq)})
    return q.astype(np.float32), c.astype(np.float32), pos, fn_of


def reference_table(q, c, pos, k):
    """Slow reference: full similarity matrix, positives masked, argsort per row."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    sims = qn.astype(np.float64) @ cn.astype(np.float64).T
    rows = []
    for r in range(len(q)):
        mask = set(pos.loc[pos["query"] == r, "candidate"])
        order = [j for j in np.argsort(-sims[r], kind="stable") if j not in mask][:k]
        rows += [(r, j, sims[r, j]) for j in order]
    return pd.DataFrame(rows, columns=["query", "candidate", "similarity"])


def test_planted_false_negatives_rank_first_with_high_posterior():
    q, c, pos, fn_of = planted()
    res = scan(q, c, pos, top_k=10, seed=1)
    t = res.table
    assert list(t.columns) == ["query", "candidate", "rank", "similarity", "positive_similarity",
                               "p_false_negative", "why"]
    first = t[t["rank"] == 1].set_index("query")
    for qi, fn in fn_of.items():
        assert first.loc[qi, "candidate"] == fn
        assert first.loc[qi, "p_false_negative"] > 0.9
    ordinary = t[~t.set_index(["query", "candidate"]).index.isin(list(fn_of.items()))]
    assert ordinary["p_false_negative"].max() < 0.1
    assert ordinary["p_false_negative"].mean() < 1e-3
    s = res.summary
    assert s["suspects_above_0.9"] == len(fn_of)
    assert s["queries_scanned"] == 200 and s["queries_without_positive"] == 0
    # estimated prior: 30 planted matches among 200 * 399 unlabelled pairs (within a factor of 3)
    true_prior = len(fn_of) / (200 * 399)
    assert true_prior / 3 < s["posterior"]["prior_pos"] < true_prior * 3


def test_table_matches_bruteforce_reference_and_chunking():
    q, c, pos, _ = planted(nq=60, nc=90, d=16, n_fn=5)
    ref = reference_table(q, c, pos, 7)
    one = scan(q, c, pos, top_k=7, **FAST, chunk_size=10_000).table
    many = scan(q, c, pos, top_k=7, **FAST, chunk_size=7).table
    pd.testing.assert_frame_equal(one, many)
    assert len(one) == len(ref)
    np.testing.assert_allclose(one["similarity"], ref["similarity"], atol=1e-5)
    assert (one["candidate"].to_numpy() == ref["candidate"].to_numpy()).mean() > 0.99  # no ties in continuous data
    assert (one.groupby("query")["rank"].apply(list) == [list(range(1, 8))] * 60).all()
    # best positive similarity per query
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    np.testing.assert_allclose(one.groupby("query")["positive_similarity"].first(),
                               np.einsum("ij,ij->i", qn, cn[:60]), atol=1e-5)


def test_several_positives_and_torch_backend_agree():
    q, c, pos, _ = planted(nq=40, nc=80, d=16, n_fn=3)
    extra = pd.DataFrame({"query": [0, 0, 5], "candidate": [50, 51, 60]})
    pos2 = pd.concat([pos, extra], ignore_index=True)
    res = scan(q, c, pos2, top_k=5, **FAST)
    assert not ((res.table["query"] == 0) & res.table["candidate"].isin([0, 50, 51])).any()
    assert not ((res.table["query"] == 5) & res.table["candidate"].isin([5, 60])).any()
    from fnlab.retrieval.similarity import topk

    s, i = topk(q / np.linalg.norm(q, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True), 5,
                backend="torch", device="cpu",
                exclude=sp.csr_matrix((np.ones(len(pos2)), (pos2["query"], pos2["candidate"])), shape=(40, 80)))
    np.testing.assert_allclose(res.table["similarity"].to_numpy().reshape(40, 5), s, atol=1e-5)


def test_seed_reproducible_and_fixed_prior():
    q, c, pos, _ = planted(nq=50, nc=100, d=16, n_fn=4)
    a = scan(q, c, pos, top_k=5, **FAST, seed=3)
    b = scan(q, c, pos, top_k=5, **FAST, seed=3)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.summary["posterior"] == b.summary["posterior"]
    fixed = scan(q, c, pos, top_k=5, **FAST, prior=1e-4)
    assert fixed.summary["posterior"]["prior_pos"] == pytest.approx(1e-4)


def test_approximate_indexes_find_planted():
    q, c, pos, fn_of = planted(nq=100, nc=600, n_fn=10)
    for kind in ("hnsw", "ivf"):
        t = scan(q, c, pos, top_k=5, **FAST, index=kind).table
        first = t[t["rank"] == 1].set_index("query")["candidate"]
        assert np.mean([first.get(qi) == fn for qi, fn in fn_of.items()]) >= 0.9


def test_unknown_estimator_fails_before_any_work_and_a_given_posterior_is_applied():
    q, c, pos, fn_of = planted(nq=80, nc=160, n_fn=8)
    with pytest.raises(ScanInputError, match="valid names: pu"):
        scan(q, c, pos, estimator="nope", **FAST)
    first = scan(q, c, pos, top_k=5, **FAST)
    again = scan(q, c, pos, top_k=5, posterior=first.posterior, **FAST)  # e.g. a run's posterior.json
    np.testing.assert_allclose(again.table["p_false_negative"], first.table["p_false_negative"], rtol=1e-6)
    assert "given" in again.summary["prior_method"]


def test_queries_without_positive_are_scanned_and_counted():
    q, c, pos, _ = planted(nq=50, nc=100, d=16, n_fn=2)
    pos = pos[pos["query"] >= 5]
    with pytest.warns(ScanWarning, match="5 of 50 queries have no labelled positive"):
        res = scan(q, c, pos, top_k=3, **FAST)
    assert res.summary["queries_without_positive"] == 5
    t = res.table
    assert t.loc[t["query"] < 5, "positive_similarity"].isna().all()
    assert t.loc[t["query"] >= 5, "positive_similarity"].notna().all()
    assert set(t["query"]) == set(range(50))


def test_duplicates_warn_with_counts():
    q, c, pos, _ = planted(nq=30, nc=60, d=8, n_fn=0)
    c[10] = c[11]
    c[20] = c[11]
    pos2 = pd.concat([pos, pos.iloc[:4]], ignore_index=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = scan(q, c, pos2, top_k=3, **FAST)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "4 duplicate (query, candidate)" in msgs
    assert "candidates: 2 row(s) duplicate" in msgs
    assert res.summary["labelled_pairs"] == 30


@pytest.mark.parametrize("case,match", [
    ("dims", "dimension mismatch.*d=8.*d=6"),
    ("nan", r"queries.*1 row\(s\) hold NaN"),
    ("inf", r"candidates.*2 row\(s\) hold NaN or infinite"),
    ("range_q", r"column 'query' has 1 value\(s\) outside \[0, 20\)"),
    ("range_c", r"column 'candidate' has 1 value\(s\) outside \[0, 30\)"),
    ("neg", r"outside \[0, 20\)"),
    ("cols", "missing column"),
    ("float_cols", "must hold integers"),
    ("empty_q", "at least one row"),
    ("zero_row", "all zeros"),
    ("no_pairs", "no labelled pairs"),
    ("prior", "prior must be"),
    ("topk", "top_k must be"),
    ("int_dtype", "float16/32/64"),
])
def test_bad_input_errors_name_the_field(case, match):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((20, 8)).astype(np.float32)
    c = rng.standard_normal((30, 8)).astype(np.float32)
    pos = pd.DataFrame({"query": np.arange(20), "candidate": np.arange(20)})
    kw = {}
    if case == "dims":
        c = c[:, :6]
    elif case == "nan":
        q[3, 2] = np.nan
    elif case == "inf":
        c[[4, 9], 0] = np.inf
    elif case == "range_q":
        pos.loc[2, "query"] = 20
    elif case == "range_c":
        pos.loc[2, "candidate"] = 99
    elif case == "neg":
        pos.loc[0, "query"] = -1
    elif case == "cols":
        pos = pos.rename(columns={"candidate": "doc"})
    elif case == "float_cols":
        pos["candidate"] = pos["candidate"] + 0.5
    elif case == "empty_q":
        q = q[:0]
    elif case == "zero_row":
        c[7] = 0
    elif case == "no_pairs":
        pos = pos.iloc[:0]
    elif case == "prior":
        kw["prior"] = 1.5
    elif case == "topk":
        kw["top_k"] = 0
    elif case == "int_dtype":
        q = q.astype(np.int32)
    with pytest.raises(ScanInputError, match=match):
        scan(q, c, pos, **kw)


def test_error_names_the_file():
    q = np.full((4, 3), np.nan, np.float32)
    with pytest.raises(ScanInputError, match=r"Q\.npy \(queries\)"):
        scan(q, np.ones((4, 3), np.float32), np.array([[0, 0]]), names={"queries": "Q.npy"})


def test_loaders_refuse_pickles_empty_and_bad_tables(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ScanInputError, match="pickled"):
        load_embeddings(obj, "queries")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(ScanInputError, match="empty"):
        load_embeddings(empty, "candidates")
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not a numpy file at all")
    with pytest.raises(ScanInputError, match="not a readable"):
        load_embeddings(junk)
    with pytest.raises(ScanInputError, match="not found"):
        load_embeddings(tmp_path / "missing.npy")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ScanInputError, match="empty"):
        load_positives(tmp_path / "e.csv")
    (tmp_path / "p.txt").write_text("query,candidate\n0,1\n")
    with pytest.raises(ScanInputError, match="extension"):
        load_positives(tmp_path / "p.txt")
    (tmp_path / "p.csv").write_text("query,candidate\n0,1\n")
    assert load_positives(tmp_path / "p.csv")["candidate"].tolist() == [1]


def test_scan_dataset_adds_ground_truth():
    q, c, pos, fn_of = planted(nq=60, nc=120, n_fn=6)
    rows = list(range(60)) + list(fn_of)
    cols = list(range(60)) + list(fn_of.values())
    rel = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(60, 120))
    ds = MatchingDataset(name="toy", split="all", b_to_a=np.arange(60), a_inputs=c, b_inputs=q,
                         a_kind="features", b_kind="features", relevance=rel)
    res = scan_dataset(c, q, ds, top_k=5, **FAST)
    t = res.table
    assert t["is_relevant"].sum() == 6
    assert t.loc[t["is_relevant"], "p_false_negative"].min() > 0.9
    assert res.summary["precision_above_0.5"] == 1.0
    assert res.summary["fn_recall_above_0.5_in_top_k"] == 1.0
    with pytest.raises(ScanInputError, match="one row per item"):
        scan_dataset(c[:10], q, ds)


def test_triplets_drop_suspects():
    q, c, pos, fn_of = planted(nq=40, nc=80, n_fn=5)
    res = scan(q, c, pos, top_k=6, **FAST)
    trip = triplets(res, threshold=0.5, num_negatives=3)
    assert list(trip.columns) == ["anchor", "positive", "negative", "positive_score", "negative_score",
                                  "p_false_negative"]
    assert len(trip) == 40 * 3
    assert (trip["p_false_negative"] <= 0.5).all()
    assert not any(((trip["anchor"] == a) & (trip["negative"] == n)).any() for a, n in fn_of.items())
    assert (trip["anchor"] == trip["positive"]).all()
    assert (trip["positive_score"] > trip["negative_score"]).all()


def test_relative_estimator_flags_planted_duplicates_and_leaves_queries_without_positive_nan():
    """--estimator relative: P(FN | s - s+), so it needs each query's positive; others get NaN."""
    rng = np.random.default_rng(5)
    nq, nc, d = 60, 120, 32
    c = rng.standard_normal((nc, d)).astype(np.float32)
    q = c[:nq] + 0.4 * rng.standard_normal((nq, d)).astype(np.float32)
    c[nq:nq + 6] = c[:6] + 0.02 * rng.standard_normal((6, d)).astype(np.float32)  # planted false negatives
    positives = pd.DataFrame({"query": np.arange(nq - 2), "candidate": np.arange(nq - 2)})  # last 2: none
    with pytest.warns(ScanWarning, match="2 of 60 queries have no labelled positive"):
        res = scan(q, c, positives, top_k=3, estimator="relative", negative_sample=5000)
    t = res.table
    first = t[t["rank"] == 1].set_index("query")
    assert [int(first.loc[i, "candidate"]) for i in range(6)] == list(range(nq, nq + 6))
    assert (first.loc[:5, "p_false_negative"] > 0.9).all()
    assert t.loc[t["query"] >= nq - 2, "p_false_negative"].isna().all()
    ordinary = t[(t["query"] < nq - 2) & ~t["candidate"].between(nq, nq + 5)]
    assert ordinary["p_false_negative"].median() < 0.1
    assert res.summary["posterior"]["estimator"] == "relative"
    assert res.summary["queries_without_positive"] == 2 and "NaN" in res.summary["queries_without_positive_policy"]
