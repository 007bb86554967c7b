"""`fnlab scan` end to end on small files: outputs, formats, triplets, clean errors, no leftovers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fnlab.cli import main


def write_inputs(tmp_path, nq=40, nc=80, d=64, n_fn=4, q_dtype=np.float16, c_dtype=np.float64):
    rng = np.random.default_rng(0)
    c = rng.standard_normal((nc, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    q = c[:nq] + 0.7 * rng.standard_normal((nq, d)) / np.sqrt(d)
    for i in range(n_fn):
        c[nq + i] = c[i] + 0.05 * rng.standard_normal(d) / np.sqrt(d)
    np.save(tmp_path / "Q.npy", q.astype(q_dtype))
    np.save(tmp_path / "C.npy", c.astype(c_dtype))
    pd.DataFrame({"query": np.arange(nq), "candidate": np.arange(nq)}).to_csv(tmp_path / "P.csv", index=False)
    return [f"--queries={tmp_path / 'Q.npy'}", f"--candidates={tmp_path / 'C.npy'}",
            f"--positives={tmp_path / 'P.csv'}"]


def test_scan_end_to_end_parquet_and_summary(tmp_path, capsys):
    args = write_inputs(tmp_path)
    out = tmp_path / "suspects.parquet"
    rc = main(["scan", *args, "--top-k", "5", "--negative-sample", "20000", "--out", str(out)])
    assert rc == 0
    t = pd.read_parquet(out)
    assert list(t.columns) == ["query", "candidate", "rank", "similarity", "positive_similarity", "p_false_negative",
                               "why"]
    assert len(t) == 40 * 5
    first = t[t["rank"] == 1].set_index("query")
    assert [int(first.loc[i, "candidate"]) for i in range(4)] == [40, 41, 42, 43]
    assert (first.loc[:3, "p_false_negative"] > 0.9).all()
    summary = json.loads((tmp_path / "suspects.parquet.summary.json").read_text())
    assert summary["queries_scanned"] == 40 and summary["suspects_above_0.9"] >= 4
    assert summary["output"]["format"] == "parquet"
    printed = capsys.readouterr().out
    assert "queries scanned" in printed and "suspects p > 0.9" in printed


def test_scan_csv_jsonl_and_triplets(tmp_path, capsys):
    args = write_inputs(tmp_path, q_dtype=np.float32, c_dtype=np.float32)
    pd.read_csv(tmp_path / "P.csv").to_parquet(tmp_path / "P.parquet")
    args[2] = f"--positives={tmp_path / 'P.parquet'}"
    rc = main(["scan", *args, "--top-k", "4", "--negative-sample", "20000", "--format", "csv", "--out", str(tmp_path / "s.csv"),
               "--triplets", str(tmp_path / "trip.jsonl"), "--num-negatives", "2", "--quiet", "--prior", "1e-3"])
    assert rc == 0
    assert capsys.readouterr().out == ""
    t = pd.read_csv(tmp_path / "s.csv")
    assert len(t) == 160
    trip = pd.read_json(tmp_path / "trip.jsonl", lines=True)
    assert list(trip.columns[:3]) == ["anchor", "positive", "negative"]
    assert len(trip) == 40 * 2 and (trip["p_false_negative"] <= 0.5).all()
    assert not ((trip["anchor"] < 4) & (trip["negative"] == trip["anchor"] + 40)).any()
    s = json.loads((tmp_path / "s.csv.summary.json").read_text())
    assert s["posterior"]["prior_pos"] == pytest.approx(1e-3) and s["triplets"]["rows"] == 80
    rc = main(["scan", *args, "--top-k", "2", "--negative-sample", "20000", "--out", str(tmp_path / "s.jsonl"), "--quiet", "--no-normalize"])
    assert rc == 0 and len(pd.read_json(tmp_path / "s.jsonl", lines=True)) == 80


@pytest.mark.parametrize("problem,expect", [
    ("nan", r"Q\.npy \(queries\).*NaN"),
    ("pickle", r"C\.npy \(candidates\).*pickled"),
    ("range", r"P\.csv \(positives\).*'candidate'.*outside \[0, 80\)"),
    ("dims", "dimension mismatch"),
    ("empty", r"P\.csv \(positives\): file is empty"),
    ("unwritable", "cannot write the output"),
])
def test_errors_are_clear_and_leave_no_file(tmp_path, capsys, problem, expect):
    args = write_inputs(tmp_path)
    extra = []
    if problem == "nan":
        q = np.load(tmp_path / "Q.npy")
        q[5] = np.nan
        np.save(tmp_path / "Q.npy", q)
    elif problem == "pickle":
        np.save(tmp_path / "C.npy", np.array([[object()]], dtype=object), allow_pickle=True)
    elif problem == "range":
        pd.DataFrame({"query": [0, 1], "candidate": [0, 80]}).to_csv(tmp_path / "P.csv", index=False)
    elif problem == "dims":
        np.save(tmp_path / "C.npy", np.ones((80, 10), np.float32))
    elif problem == "empty":
        (tmp_path / "P.csv").write_text("")
    elif problem == "unwritable":
        (tmp_path / "blocker").write_text("a file, not a folder")
        extra = ["--triplets", str(tmp_path / "blocker" / "t.parquet")]
    before = set(tmp_path.iterdir())
    rc = main(["scan", *args, "--out", str(tmp_path / "out.parquet"), "--quiet", "--negative-sample", "5000", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert "fnlab scan: error:" in err and "Traceback" not in err
    import re

    assert re.search(expect, err), err
    assert set(tmp_path.iterdir()) == before, "an output or temporary file was left behind"


def test_warnings_are_printed(tmp_path, capsys):
    args = write_inputs(tmp_path)
    pd.DataFrame({"query": [0, 0, 1, 2], "candidate": [0, 0, 1, 2]}).to_csv(tmp_path / "P.csv", index=False)
    assert main(["scan", *args, "--top-k", "2", "--negative-sample", "20000", "--out", str(tmp_path / "o.parquet"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "1 duplicate (query, candidate)" in err
    assert "37 of 40 queries have no labelled positive" in err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--queries", "--candidates", "--positives", "--dataset-dir", "--top-k", "--prior", "--estimator",
                 "--device", "--index", "--no-normalize", "--format", "--triplets", "--suspect-threshold", "--quiet"):
        assert flag in text


def test_scan_a_pairs_dataset_folder_with_ground_truth(tmp_path):
    """--dataset-dir reads a `pairs` folder (pairs table + a.npy/b.npy + relevance) and adds is_relevant."""
    rng = np.random.default_rng(1)
    na, nb, d = 60, 120, 32
    a = rng.standard_normal((na, d)).astype(np.float32)
    b_to_a = np.arange(nb) % na
    b = a[b_to_a] + 0.3 * rng.standard_normal((nb, d)).astype(np.float32)
    a[na - 5:] = a[:5] + 0.02 * rng.standard_normal((5, d)).astype(np.float32)  # planted duplicates
    folder = tmp_path / "mine"
    folder.mkdir()
    np.save(folder / "a.npy", a)
    np.save(folder / "b.npy", b)
    pd.DataFrame({"b": np.arange(nb), "a": b_to_a, "text": [f"query text {j}" for j in range(nb)],
                  "a_text": [f"document {i}" for i in b_to_a]}).to_csv(folder / "pairs.csv", index=False)
    # ground truth: each caption of images 0..4 also matches the duplicate image
    extra = [(j, na - 5 + int(b_to_a[j])) for j in range(nb) if b_to_a[j] < 5]
    rel = [(j, int(b_to_a[j])) for j in range(nb)] + extra
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(folder / "relevance.csv", index=False)
    out = tmp_path / "s.parquet"
    assert main(["scan", "--dataset-dir", str(folder), "--top-k", "3", "--quiet", "--out", str(out)]) == 0
    t = pd.read_parquet(out)
    assert "is_relevant" in t.columns and len(t) == nb * 3
    planted = t[t["is_relevant"]]
    assert len(planted) == len(extra) and (planted["rank"] == 1).all()
    assert planted["p_false_negative"].min() > 0.9
    assert t.loc[~t["is_relevant"], "p_false_negative"].median() < 0.1
    # the table carries what each pair is beside its indices: ids (rows of b.npy / a.npy) and texts
    assert (t["query_text"] == [f"query text {j}" for j in t["query_id"]]).all()
    assert (t["candidate_text"] == [f"document {i}" for i in t["candidate_id"]]).all()
