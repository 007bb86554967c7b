"""kill -9 at several stages of ``fnlab train`` and ``fnlab scan``: the previous output stays intact,
no half-written run loads, and a re-run works. Two concurrent scans to one output leave one
consistent table + summary pair.

The processes pause at a stage through ``fnlab.core.files.pause_point`` (environment variables
``FNLAB_TEST_PAUSE`` / ``FNLAB_TEST_PAUSE_FILE``, set only here) and are killed there with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fnlab.cli import main
from fnlab.core.files import recover
from fnlab.storage.runs import RunStore

TINY = ["--dataset", "shapes", "-o", "n_train=64", "-o", "n_val=40", "-o", "n_test=40", "--sampler", "random",
        "--epochs", "1", "--queue-size", "0", "--dim", "32", "--text-encoder", "bag", "--no-progress",
        "--threads", "1", "--no-pages"]
WAIT_S = 900  # generous: two suites on a busy 2-core machine may take minutes to import torch and train


def _fnlab(args: list[str], tmp: Path, stage: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if stage:
        env.update(FNLAB_TEST_PAUSE=stage, FNLAB_TEST_PAUSE_FILE=str(tmp / f"paused-{stage.replace(':', '-')}"))
    return subprocess.Popen([sys.executable, "-m", "fnlab.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_at(args: list[str], tmp: Path, stage: str) -> None:
    """Run ``fnlab args`` until it pauses at ``stage``, then SIGKILL it."""
    proc = _fnlab(args, tmp, stage)
    flag = tmp / f"paused-{stage.replace(':', '-')}"
    deadline = time.monotonic() + WAIT_S
    while not flag.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before stage {stage}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"stage {stage} not reached in {WAIT_S} s")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    flag.unlink()
    assert proc.returncode == -signal.SIGKILL


def _model_bytes(run_path: Path) -> bytes:
    return (run_path / "model.pt").read_bytes()


def test_train_killed_at_every_stage_keeps_the_old_run(tmp_path, capsys):
    out = tmp_path / "runs" / "r"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    store = RunStore(tmp_path / "runs")
    old_model, old_marker = _model_bytes(out), (out / "run.json").read_text()
    for stage in ("run:file-written", "run:marker-written"):  # inside torch.save of model.pt; before the move
        _kill_at(["train", *TINY, "--seed", "1", "--out", str(out), "--overwrite"], tmp_path, stage)
        run = store.load("r")
        run.verify()  # the old run, whole
        assert _model_bytes(out) == old_model and (out / "run.json").read_text() == old_marker
        listing = store.list(include_incomplete=True)  # the killed run is listed as interrupted ...
        assert sorted(zip(listing["name"], listing["status"], strict=True)) == [("r", "complete"),
                                                                               ("r", "interrupted")]
    # ... and never blocks a re-run with the same --out
    capsys.readouterr()
    assert main(["train", *TINY, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    new = store.load("r")
    new.verify()
    assert new.config["seed"] == 1 and store.in_progress() == []
    assert not [p for p in (tmp_path / "runs").rglob("*") if ".tmp-" in p.name]


WRITER = """
import sys
import numpy as np
from fnlab.storage.runs import RunStore
w = RunStore(sys.argv[1]).create({"sampler": "random"}, name="fresh")
w.log_metrics({"epoch": 1, "loss": 0.5})
w.save_array("emb_a_val", np.ones((4, 2), np.float32))
w.finalize()
"""


def test_run_killed_before_finalize_never_loads(tmp_path):
    """A first run killed just before its move into place (a writer without torch, for speed)."""
    proc_args = ["-c", WRITER, str(tmp_path / "runs")]
    env = dict(os.environ, FNLAB_TEST_PAUSE="run:before-finalize", FNLAB_TEST_PAUSE_FILE=str(tmp_path / "paused"))
    proc = subprocess.Popen([sys.executable, *proc_args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT_S
    while not (tmp_path / "paused").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "stage not reached"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = RunStore(tmp_path / "runs")
    assert store.names() == [] and not (tmp_path / "runs" / "fresh").exists()
    with pytest.raises(FileNotFoundError, match="interrupted"):
        store.load("fresh")
    subprocess.run([sys.executable, *proc_args], check=True, timeout=WAIT_S)  # the leftover never blocks
    store.load("fresh").verify()


@pytest.fixture
def scan_inputs(tmp_path) -> list[str]:
    rng = np.random.default_rng(0)
    c = rng.standard_normal((80, 8)).astype(np.float32)
    q = (c[:40] + 0.3 * rng.standard_normal((40, 8))).astype(np.float32)
    np.save(tmp_path / "Q.npy", q)
    np.save(tmp_path / "C.npy", c)
    pd.DataFrame({"query": np.arange(40), "candidate": np.arange(40)}).to_csv(tmp_path / "P.csv", index=False)
    return ["--queries", str(tmp_path / "Q.npy"), "--candidates", str(tmp_path / "C.npy"),
            "--positives", str(tmp_path / "P.csv"), "--quiet", "--negative-sample", "3000"]


def _outputs(tmp: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    return (pd.read_parquet(tmp / "s.parquet"), json.loads((tmp / "s.parquet.summary.json").read_text()),
            pd.read_parquet(tmp / "t.parquet"))


def _visible(tmp: Path) -> dict[str, bytes]:
    """The scan's outputs (temporary files of a killed process are hidden and removed by the next scan)."""
    return {p.name: p.read_bytes() for p in tmp.glob("*.parquet*") if not p.name.startswith(".")}


def _consistent(table: pd.DataFrame, summary: dict, trip: pd.DataFrame) -> int:
    assert summary["rows"] == len(table) and summary["triplets"]["rows"] == len(trip)
    assert table.groupby("query").size().max() == summary["top_k"]
    return summary["top_k"]


def test_scan_killed_before_and_during_commit(tmp_path, scan_inputs):
    args = [*scan_inputs, "--out", str(tmp_path / "s.parquet"), "--triplets", str(tmp_path / "t.parquet")]
    assert main(["scan", *args, "--top-k", "5"]) == 0
    assert _consistent(*_outputs(tmp_path)) == 5
    before = _visible(tmp_path)
    # killed after writing a complete temporary file, before the commit point: nothing changes
    _kill_at(["scan", *args, "--top-k", "3"], tmp_path, "commit:file-written")
    assert _visible(tmp_path) == before
    assert recover(tmp_path / "s.parquet") is False
    # killed after the commit point, before the renames: the old set stays readable until a reader or
    # the next scan rolls the new one forward, whole
    _kill_at(["scan", *args, "--top-k", "3"], tmp_path, "commit:journal-written")
    assert _visible(tmp_path) == before
    assert recover(tmp_path / "s.parquet") is True
    assert _consistent(*_outputs(tmp_path)) == 3
    # the next run works and cleans up what the killed ones left
    assert main(["scan", *args, "--top-k", "4"]) == 0
    assert _consistent(*_outputs(tmp_path)) == 4
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.endswith(".commit.json")]


def test_two_concurrent_scans_leave_one_consistent_pair(tmp_path, scan_inputs):
    args = [*scan_inputs, "--out", str(tmp_path / "s.parquet"), "--triplets", str(tmp_path / "t.parquet")]
    procs = [_fnlab(["scan", *args, "--top-k", str(k)], tmp_path) for k in (3, 6)]
    for p in procs:
        _, err = p.communicate(timeout=WAIT_S)
        assert p.returncode == 0, err
    assert _consistent(*_outputs(tmp_path)) in (3, 6)


def test_concurrent_writers_of_one_run_and_a_dead_writers_leftover(tmp_path):
    """A second writer of a name being written is refused; once the first is gone its staging folder
    never blocks the name (a killed process drops its flock; here the writer is released without abort)."""
    store = RunStore(tmp_path)
    first = store.create({"sampler": "random"}, name="r")
    first.log_metrics({"epoch": 1, "loss": 0.5})
    with pytest.raises(FileExistsError, match="being written by another process"):
        RunStore(tmp_path).create({"sampler": "random"}, name="r")
    assert store.is_running("r")
    with pytest.raises(FileExistsError, match="being written"):
        store.delete("r")
    first._release()  # what the kernel does when the writing process dies
    assert store.list(include_incomplete=True)["status"].tolist() == ["interrupted"]
    second = RunStore(tmp_path).create({"sampler": "hardest"}, name="r")
    assert second.metrics.empty  # the dead writer's files are gone
    second.finalize()
    assert store.load("r").config == {"sampler": "hardest"}
