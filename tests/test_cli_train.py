"""``fnlab train`` and ``fnlab eval`` end to end on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fnlab.cli import main


def test_train_then_eval_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FNLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs" / "tiny"
    rc = main(["train", "--dataset", "shapes", "-o", "n_train=96", "-o", "n_val=32", "-o", "n_test=32",
               "--sampler", "fne", "--mode", "calibrated", "-p", "tau=0.5", "--epochs", "2", "--batch-size", "32",
               "--queue-size", "64", "--dim", "16", "--device", "cpu", "--threads", "1", "--seed", "3",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "run written to" in printed and "app pages (test, val splits) stored in" in printed, printed
    # the app's pages of the splits it opens first are on disk, and they are what a page would compute
    from fnlab.storage import pages as fp
    from fnlab.storage.loader import LoadedRun
    from fnlab.storage.runs import RunStore

    loaded = LoadedRun(RunStore(out.parent).load("tiny"))
    stored = fp.RunPages(loaded)
    assert str(stored.folder.parent) in printed and stored.folder.parent == tmp_path / "cache" / "pages"
    for split in ("val", "test"):
        assert all(stored.has(item, split, d) for item in ("rankings", "distribution") for d in fp.DIRECTIONS)
    assert not stored.has("rankings", "train", "t2i")
    fresh, read = fp.RunPages(loaded, root=tmp_path / "fresh").rankings("test", "i2t"), stored.rankings("test", "i2t")
    for field in ("candidates", "similarity", "p_false_negative", "positive_rank"):
        np.testing.assert_allclose(getattr(read, field), getattr(fresh, field), rtol=1e-6)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["sampler"] == "fne" and cfg["sampler_params"] == {"tau": 0.5, "mode": "calibrated"}
    assert cfg["dataset"]["options"] == {"n_train": 96, "n_val": 32, "n_test": 32}

    assert main(["eval", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"recall", "relevant_recall", "r_precision", "fn_detection", "fn_detection_topk",
                           "sampled_fn_rate"}
    assert set(result["recall"]) == {"i2t", "t2i", "rsum"}
    assert set(result["recall"]["i2t"]) == {"1", "5", "10"}
    assert {"auroc", "ap", "ece", "similarity_auroc", "similarity_ap", "reliability"} <= set(result["fn_detection"])
    assert 0.0 <= result["sampled_fn_rate"] <= 1.0
    # eval.json written by training holds the same test metrics
    saved = json.loads((out / "eval.json").read_text())
    assert saved["recall"]["rsum"] == pytest.approx(result["recall"]["rsum"])
    for key in ("auroc", "ap", "ece", "similarity_auroc", "similarity_ap"):
        assert saved["fn_detection"][key] == pytest.approx(result["fn_detection"][key])

    assert main(["eval", str(out), "--split", "val"]) == 0
    assert "rsum" in capsys.readouterr().out


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing"), "--json"]) == 2
    assert "does not exist" in capsys.readouterr().err
    rc = main(["train", "--dataset", "shapes", "--sampler", "nope", "--epochs", "1", "--device", "cpu",
               "--out", str(tmp_path / "r"), "--no-progress", "-o", "n_train=32", "-o", "n_val=8", "-o", "n_test=8"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope" in err and "hardest" in err  # lists the valid names
    assert not (tmp_path / "r").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0 and "usage: fnlab train" in capsys.readouterr().out


def test_the_command_makes_openmp_threads_wait_passively():
    """fnlab sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (spinning threads made training several times
    slower on shared cores; the thread count, hence every result, stays), unless the environment sets it."""
    import os
    import subprocess
    import sys

    code = "import os, fnlab.cli, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
