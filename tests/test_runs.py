"""Run store: staging + atomic finalize, atomic files, name validation, listing and progress."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlab.storage.runs import RunStore, validate_name

CONFIG = {"dataset": {"name": "shapes", "root": None, "options": {"n_train": 30}}, "sampler": {"name": "fne"}}


def make_run(store: RunStore, name: str, epochs: int = 2, finalize: bool = True):
    w = store.create(CONFIG, name=name)
    for e in range(1, epochs + 1):
        w.log_metrics({"epoch": e, "loss": 1.0 / e, "val_rsum": 10.0 * e, "sampled_fn_rate": np.float32(0.25),
                       "seconds": 0.5})
    w.save_array("emb_a_val", np.arange(6, dtype=np.float32).reshape(3, 2))
    w.save_json("eval", {"rsum": 123.5})
    w.save_table("scan", pd.DataFrame({"query": [0, 1], "p": [0.1, 0.9]}))
    w.save_state_dict("model", {"weight": torch.ones(2, 2)})
    return w.finalize() if finalize else w


def test_create_finalize_load(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = make_run(store, "r1")
    assert run.path == tmp_path / "runs" / "r1" and not (tmp_path / "runs" / ".staging" / "r1").exists()
    loaded = store.load("r1")
    assert loaded.config == CONFIG
    assert loaded.metrics["epoch"].tolist() == [1, 2] and loaded.metrics["val_rsum"].tolist() == [10.0, 20.0]
    assert np.array_equal(loaded.load_array("emb_a_val"), np.arange(6, dtype=np.float32).reshape(3, 2))
    assert loaded.load_json("eval") == {"rsum": 123.5}
    assert loaded.load_table("scan")["p"].tolist() == [0.1, 0.9]
    assert torch.equal(loaded.load_state_dict("model")["weight"], torch.ones(2, 2))
    loaded.save_json("review", {"decisions": [1]})  # later additions to a complete run
    assert store.load("r1").load_json("review") == {"decisions": [1]}
    assert sorted(loaded.files()) == ["config.json", "emb_a_val.npy", "eval.json", "metrics.jsonl",
                                      "model.pt", "review.json", "run.json", "scan.parquet"]


def test_list_and_progress(tmp_path):
    store = RunStore(tmp_path)
    assert store.list().empty and list(store.list().columns) == ["name", "created", "dataset", "sampler"]
    make_run(store, "done")
    w = make_run(store, "busy", epochs=1, finalize=False)
    df = store.list()
    assert df["name"].tolist() == ["done"]  # the run being written is not listed
    row = df.iloc[0]
    assert (row["dataset"], row["sampler"], row["epoch"], row["val_rsum"]) == ("shapes", "fne", 2, 20.0)
    assert store.progress("busy")["epoch"].tolist() == [1]
    w.log_metrics({"epoch": 2, "loss": 0.1})
    assert store.progress("busy")["epoch"].tolist() == [1, 2]
    assert store.in_progress() == ["busy"]
    with pytest.raises(FileNotFoundError, match="still being written"):
        store.load("busy")
    w.finalize()
    assert set(store.list()["name"]) == {"done", "busy"} and store.in_progress() == []


def test_interrupted_run_never_loads(tmp_path):
    store = RunStore(tmp_path)
    make_run(store, "ok")
    # a crashed writer leaves its staging folder; a folder copied in without the marker is also ignored
    make_run(store, "crashed", finalize=False)
    os.makedirs(tmp_path / "copied")
    (tmp_path / "copied" / "config.json").write_text(json.dumps(CONFIG))
    assert store.list()["name"].tolist() == ["ok"]
    with pytest.raises(FileNotFoundError):
        store.load("crashed")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        store.load("copied")


def test_abort_and_context_manager(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(CONFIG, name="gone")
    w.abort()
    assert store.in_progress() == [] and store.list().empty
    with pytest.raises(RuntimeError, match="boom"), store.create(CONFIG, name="ctx") as w2:
        w2.log_metrics({"epoch": 1})
        raise RuntimeError("boom")
    assert store.in_progress() == []
    with pytest.raises(RuntimeError, match="already finalized or aborted"):
        w.log_metrics({"epoch": 1})


def test_atomic_writes_leave_no_temp_files(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    w = store.create(CONFIG, name="atom")
    w.save_array("x", np.ones(3))

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        w.save_array("x", np.zeros(3))
    monkeypatch.undo()
    assert sorted(os.listdir(w.path)) == ["config.json", "x.npy"]  # old file intact, no temp left
    assert np.array_equal(np.load(w.path / "x.npy"), np.ones(3))
    with pytest.raises(TypeError, match="object arrays"):
        w.save_array("obj", np.array([{}], dtype=object))


def test_duplicate_names_and_bad_config(tmp_path):
    store = RunStore(tmp_path)
    make_run(store, "dup")
    with pytest.raises(FileExistsError):
        store.create(CONFIG, name="dup")
    with pytest.raises(TypeError):
        store.create({"x": object()}, name="bad")
    assert not (tmp_path / ".staging" / "bad").exists()
    auto = store.create(CONFIG)
    assert "shapes" in auto.name and "fne" in auto.name
    auto.abort()


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "a..b", "a\\b", "x" * 200,
                                  "name with space", "ok\n"])
def test_bad_names_rejected(tmp_path, name):
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ValueError):
        store.create(CONFIG, name=name)
    with pytest.raises(ValueError):
        store.load(name)
    w = store.create(CONFIG, name="fine")
    with pytest.raises(ValueError):
        w.save_array(name, np.ones(2))
    w.abort()
    assert not any(p.name not in ("runs",) for p in tmp_path.iterdir())


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=20))
def test_valid_names_stay_inside_root(name):
    """Property: a name is either rejected or a single plain path component (no escape)."""
    try:
        validate_name(name)
    except ValueError:
        return
    assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")
    assert os.path.basename(name) == name and not os.path.isabs(name) and name.strip() == name
