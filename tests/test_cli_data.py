"""``fnlab data`` and ``fnlab runs`` commands: output keys, brute-force FN recounts, help, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_data_builtin import digits_classes, shapes_reference

import fnlab.data as data
from fnlab.cli import main
from fnlab.storage.runs import RunStore

KEYS = ["items_a", "items_b", "labelled_pairs", "relevant_pairs", "fn_per_query_mean", "fn_per_query_max",
        "share_queries_with_fn"]


def info_json(capsys, *argv) -> dict:
    assert main(["data", "info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def brute_force_stats(rel: np.ndarray, b_to_a: np.ndarray) -> dict:
    """FN statistics by looping over every caption and image."""
    n_b, n_a = rel.shape
    fn = []
    for j in range(n_b):
        count = 0
        for i in range(n_a):
            if rel[j, i] and i != b_to_a[j]:
                count += 1
        fn.append(count)
    return {"items_a": n_a, "items_b": n_b, "labelled_pairs": n_b, "relevant_pairs": int(rel.sum()),
            "fn_per_query_mean": sum(fn) / n_b, "fn_per_query_max": max(fn),
            "share_queries_with_fn": sum(c > 0 for c in fn) / n_b}


def test_info_shapes_matches_brute_force(capsys):
    out = info_json(capsys, "shapes", "--split", "val")
    assert all(k in out for k in KEYS)
    ds = data.load("shapes", split="val")
    ref = brute_force_stats(shapes_reference(ds), ds.b_to_a)  # relevance re-derived from caption text
    assert {k: out[k] for k in KEYS} == pytest.approx(ref)
    assert out["items_b"] == 1000


def test_info_digits_matches_brute_force(capsys):
    out = info_json(capsys, "digits", "--split", "test", "-o", "n_test=100")
    ds = data.load("digits", split="test", n_test=100)
    labels = ds.a_meta["digit"].tolist()
    rel = np.array([[c in digits_classes(t) for c in labels] for t in ds.b_meta["text"]])
    assert {k: out[k] for k in KEYS} == pytest.approx(brute_force_stats(rel, ds.b_to_a))


def test_info_without_ground_truth_prints_nulls(capsys, tmp_path):
    np.save(tmp_path / "train_ims.npy", np.ones((2, 4), np.float32))
    (tmp_path / "train_caps.txt").write_text("\n".join(f"c {i}" for i in range(10)))
    out = info_json(capsys, "precomp", "--root", str(tmp_path))
    assert (out["items_a"], out["items_b"], out["labelled_pairs"]) == (2, 10, 10)
    assert all(out[k] is None for k in KEYS[3:])
    assert main(["data", "info", "precomp", "--root", str(tmp_path)]) == 0
    assert "n/a (no ground truth)" in capsys.readouterr().out


def test_list_and_text_info(capsys):
    assert main(["data", "list", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert names == data.available()
    assert main(["data", "info", "shapes", "--split", "test", "-o", "n_train=10", "-o", "n_test=10"]) == 0
    text = capsys.readouterr().out
    assert "false negatives per caption, mean" in text and "items, side A (images)" in text


def test_make_sample_writes_loadable_folder(capsys, tmp_path):
    assert main(["data", "make-sample", "--out", str(tmp_path), "--n-train", "20", "--n-val", "5",
                 "--n-test", "5"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "shapes" / "dataset.json").is_file()
    out = info_json(capsys, str(tmp_path / "shapes"), "--split", "val")
    want = data.load("shapes", split="val", n_train=20, n_val=5, n_test=5).stats().as_dict()
    assert {k: out[k] for k in KEYS} == pytest.approx(want)


def test_shipped_sample_data_is_current():
    """sample_data/shapes equals what ``fnlab data make-sample`` generates (regenerate it if this fails)."""
    ds = data.load("sample_data/shapes", split="all")
    want = data.load("shapes", split="all", n_train=1000, n_val=200, n_test=200, seed=0)
    assert np.array_equal(ds.a_inputs, want.a_inputs) and ds.captions() == want.captions()
    assert (ds.relevance != want.relevance).nnz == 0


def test_user_errors_are_clean(capsys, tmp_path):
    assert main(["data", "info", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["data", "info", "shapes", "-o", "genericness=3"]) == 2
    assert "genericness" in capsys.readouterr().err
    (tmp_path / "pairs.csv").write_text("b,a\n0,5\n")
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    np.save(tmp_path / "b.npy", np.ones((2, 2)))
    assert main(["data", "info", "pairs", "--root", str(tmp_path)]) == 2
    assert "pairs.csv: column 'a' has index 5 outside [0, 2)" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["data"], ["data", "list"], ["data", "info"], ["data", "make-sample"],
                                  ["runs"], ["runs", "list"], ["runs", "show"]])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: fnlab" in capsys.readouterr().out


def test_runs_commands(capsys, tmp_path):
    store = RunStore(tmp_path)
    w = store.create({"dataset": {"name": "shapes"}, "sampler": {"name": "hardest"}}, name="demo-run")
    w.log_metrics({"epoch": 1, "loss": 0.5, "val_rsum": 150.0})
    w.save_json("eval", {"rsum": 150.0})
    w.finalize()
    half = store.create({"dataset": {"name": "shapes"}}, name="half")  # still being written
    assert main(["runs", "list", "--root", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {n: r["status"] for n, r in rows.items()} == {"demo-run": "complete", "half": "running"}
    assert rows["demo-run"]["val_rsum"] == 150.0
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "demo-run" in text and "running" in text
    assert main(["runs", "show", "demo-run", "--root", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["sampler"]["name"] == "hardest" and shown["eval"] == {"rsum": 150.0}
    assert main(["runs", "show", "../etc", "--root", str(tmp_path)]) == 2
    assert "invalid run name" in capsys.readouterr().err
    assert main(["runs", "show", "half", "--root", str(tmp_path)]) == 2
    assert "still being written" in capsys.readouterr().err
    half.abort()
