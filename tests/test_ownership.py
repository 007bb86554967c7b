"""fnlab deletes, replaces or moves only what it wrote (fnlab/core/ownership.py): ``runs rm``, ``train --overwrite``,
both scan engines' outputs and ``data make-sample`` refuse anything else before any work, with one line naming the
path, and every byte of the user's files stays as it was. Run folders here are written by ``RunStore`` without
training (fast); the CLI runs in-process."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fnlab.cli import main
from fnlab.core import ownership
from fnlab.storage.runs import CorruptRunError, RunStore

CONFIG = {"dataset": {"name": "shapes", "root": None, "options": {}}, "sampler": {"name": "fne"}}


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by a hash of their bytes, links by their target, folders by name."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "dir"
    return out


def fake_run(store: RunStore, name: str):
    w = store.create(CONFIG, name=name)
    w.log_metrics({"epoch": 1, "loss": 0.5})
    w.save_array("emb_a_val", np.arange(6, dtype=np.float32).reshape(3, 2))
    w.save_json("eval", {"recall": {"rsum": 1.0}})
    return w.finalize()


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    """A user's working folder: a thesis folder, a plain file, a run store with runs, a linked run, an empty folder,
    a run holding a file of the user's, and a folder with someone else's run.json."""
    monkeypatch.chdir(tmp_path)
    thesis = tmp_path / "thesis"
    (thesis / "figures").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\chapter{False negatives}\n")
    (thesis / "figures" / "plot.pdf").write_bytes(os.urandom(256))
    (tmp_path / "notes.txt").write_text("my notes\n")
    store = RunStore(tmp_path / "runs")
    for name in ("a", "b", "mine"):
        fake_run(store, name)
    (tmp_path / "runs" / "mine" / "todo.txt").write_text("keep me\n")  # the user's file inside a run
    (tmp_path / "elsewhere").mkdir()
    fake_run(RunStore(tmp_path / "elsewhere"), "shared")
    os.symlink(tmp_path / "elsewhere" / "shared", tmp_path / "runs" / "linked")
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "run.json").write_text(json.dumps({"tool": "another tool"}))
    (tmp_path / "other" / "data.csv").write_text("x\n1\n")
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


REFUSED_RM = [
    ("the-store", "runs", ["runs", "run store holding 4 run(s)"]),
    ("bare-folder-name", "thesis", ["thesis", "not a run (no run.json)"]),
    ("absolute-path", "{ws}/thesis", ["thesis", "not a run"]),
    ("dot-dot", "runs/../thesis", ["{ws}/thesis", "not a run"]),  # named resolved
    ("ends-in-dot-dot", "runs/a/..", ["runs/a/.."]),
    ("a-file", "notes.txt", ["notes.txt", "is a file"]),
    ("empty-folder", "runs/empty", ["runs/empty", "not a run"]),
    ("run-with-a-user-file", "runs/mine", ["runs/mine", "'todo.txt'", "did not write"]),
    ("someone-elses-run-json", "other", ["other", "not a run marker fnlab wrote"]),
    ("no-such-run", "runs/nope", ["'nope'"]),
]


@pytest.mark.parametrize("target, expect", [c[1:] for c in REFUSED_RM], ids=[c[0] for c in REFUSED_RM])
def test_runs_rm_refuses_anything_that_is_not_a_run_and_changes_nothing(ws, capsys, target, expect):
    before = snapshot(ws)
    rc, err = run_cli(["runs", "rm", target.format(ws=ws)], capsys)
    line = one_line(err)
    assert rc == 2 and line.startswith("fnlab runs: error:"), err
    for text in expect:
        assert text.format(ws=ws) in line, (text, line)
    assert snapshot(ws) == before
    assert not (ws / ".staging").exists()  # nothing created beside the target either


def test_runs_rm_with_a_store_refuses_names_that_are_paths(ws, capsys):
    before = snapshot(ws)
    for ref in ("../thesis", "/etc", "..", "a/../b"):
        rc, err = run_cli(["runs", "rm", ref, "--runs", "runs"], capsys)
        assert rc == 2 and "invalid run name" in one_line(err)
    assert snapshot(ws) == before


def test_runs_rm_removes_a_run_a_linked_run_as_a_link_and_an_interrupted_run(ws, capsys):
    shared = snapshot(ws / "elsewhere")
    assert main(["runs", "rm", "runs/linked"]) == 0
    assert "the link" in capsys.readouterr().out
    assert not os.path.lexists(ws / "runs" / "linked") and snapshot(ws / "elsewhere") == shared  # the target stays
    assert main(["runs", "rm", str(ws / "runs" / "a")]) == 0 and not (ws / "runs" / "a").exists()
    (ws / "runs" / "b" / "emb_a_val.npy").write_bytes(b"truncated")  # a corrupt run is still fnlab's
    assert main(["runs", "rm", "b", "--runs", "runs"]) == 0 and not (ws / "runs" / "b").exists()
    w = RunStore(ws / "runs").create(CONFIG, name="killed")  # what a killed writer leaves
    w.log_metrics({"epoch": 1})
    w._release()
    assert main(["runs", "rm", "runs/killed"]) == 0
    assert not (ws / "runs" / ".staging").exists()  # no link, no trash, no lock left behind: not even .staging


def test_train_overwrite_refuses_what_is_not_a_run_before_any_work(ws, capsys, monkeypatch):
    import fnlab.training.train as training

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(training, "train", no_training)
    before = snapshot(ws)
    tiny = ["train", "--dataset", "shapes", "--epochs", "1", "--no-progress", "--overwrite", "--out"]
    for out, expect in (("thesis", "not a run"), ("notes.txt", "is a file"), ("runs", "run store"),
                        ("runs/mine", "'todo.txt'"), ("runs/empty", "not a run"), ("other", "not a run marker")):
        rc, err = run_cli([*tiny, out], capsys)
        line = one_line(err)
        assert rc == 2 and f"--out {out}" in line and expect in line, line
    assert snapshot(ws) == before and not (ws / ".staging").exists()


def test_the_run_store_replaces_only_runs_and_a_link_as_a_link(ws):
    store = RunStore(ws / "runs", overwrite=True)
    with pytest.raises(ownership.OwnershipError, match="not a run"):
        store.create(CONFIG, name="empty")
    # the folder changes into a user's folder while the new run is written: finalize refuses, nothing is lost
    w = store.create(CONFIG, name="a")
    w.log_metrics({"epoch": 1})
    ownership.remove(ws / "runs" / "a", ownership.RUN)
    (ws / "runs" / "a").mkdir()
    (ws / "runs" / "a" / "paper.tex").write_text("mine\n")
    with pytest.raises(ownership.OwnershipError, match="not a run"):
        w.finalize()
    w.abort()
    assert (ws / "runs" / "a" / "paper.tex").read_text() == "mine\n"
    # a linked run is replaced as a link: the run it pointed to stays whole
    shared = snapshot(ws / "elsewhere")
    w = store.create(CONFIG, name="linked")
    w.log_metrics({"epoch": 7})
    run = w.finalize()
    assert not run.path.is_symlink() and run.metrics["epoch"].tolist() == [7]
    assert snapshot(ws / "elsewhere") == shared
    assert not (ws / "runs" / ".staging").exists()


# ------------------------------------------------------------------------------------- markers
@pytest.mark.parametrize("marker, expect", [
    ({"name": "a", "created": "t", "finished": "t", "files": ["model.pt"]}, "field 'files' must be an object"),
    ({"name": "a", "created": "t", "finished": "t", "files": {"../../etc/hostname": {"sha256": "0" * 64, "bytes": 1}}},
     "not a file inside the run"),
    ({"name": "a", "created": "t", "finished": "t", "files": {"/etc/hostname": {"sha256": "0" * 64, "bytes": 1}}},
     "not a file inside the run"),
    ({"name": "a", "created": "t", "finished": "t", "files": {"x.npy": {"sha256": "0" * 64, "bytes": "12"}}},
     "'bytes' must be an integer"),
    ({"name": "a", "created": "t", "finished": "t", "files": {"x.npy": {"sha256": None, "bytes": 12}}},
     "'sha256' must be 64 hex digits"),
    ({"name": 3, "created": "t", "finished": "t", "files": {}}, "field 'name' must be a string"),
    ([1, 2], "expected a JSON object"),
])
def test_a_marker_that_breaks_its_schema_is_a_corrupt_run(ws, capsys, marker, expect, monkeypatch):
    (ws / "runs" / "a" / "run.json").write_text(json.dumps(marker))
    opened = []
    real_stat = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kw: (opened.append(str(self)), real_stat(self, **kw))[1])
    with pytest.raises(CorruptRunError, match="run.json"):
        RunStore(ws / "runs").load("a")
    assert not [p for p in opened if "hostname" in p]  # never stat'ed outside the run
    assert main(["runs", "list", "--runs", "runs", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a"]["status"] == "corrupt" and expect in rows["a"]["problem"], rows["a"]
    rc, err = run_cli(["runs", "show", "runs/a"], capsys)
    assert rc == 2 and expect in one_line(err)


def test_runs_list_names_folders_that_are_not_runs_and_verify_finds_a_flipped_bit(ws, capsys):
    emb = ws / "runs" / "a" / "emb_a_val.npy"
    data = bytearray(emb.read_bytes())
    data[-1] ^= 0x01  # one flipped bit: same size
    emb.write_bytes(bytes(data))
    assert main(["runs", "list", "--runs", "runs", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a"]["status"] == "complete"  # sizes only
    assert rows["empty"]["status"] == "not a run" and "run.json" in rows["empty"]["problem"]
    assert main(["runs", "list", "--runs", "runs", "--verify", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a"]["status"] == "corrupt" and "emb_a_val.npy" in rows["a"]["problem"]
    assert rows["b"]["status"] == "complete" and rows["linked"]["status"] == "complete"


def test_runs_show_of_a_folder_that_is_not_a_run_says_so(ws, capsys):
    for target in ("/etc", "thesis", "runs/empty"):
        rc, err = run_cli(["runs", "show", target], capsys)
        line = one_line(err)
        assert rc == 2 and "not a run" in line and "incomplete" not in line, line


# ------------------------------------------------------------------------------------- the rule itself
def test_resolve_keeps_the_last_component_and_resolves_the_rest(ws):
    assert ownership.resolve("runs/../thesis") == ws / "thesis"
    assert ownership.resolve("runs/linked") == ws / "runs" / "linked"  # the link itself, not its target
    os.symlink(ws / "runs", ws / "store-link")
    assert ownership.resolve("store-link/a") == ws / "runs" / "a"  # a linked parent is followed
    assert ownership.resolve("runs/a/..") == ws / "runs"
    with pytest.raises(ownership.OwnershipError, match="outside"):
        ownership.check(ws / "thesis", ownership.RUN, inside=ws / "runs")
    with pytest.raises(ownership.OwnershipError, match="outside"):
        ownership.check(ws / "runs", ownership.RUN, inside=ws / "runs")  # never the place itself


def test_a_run_path_with_dot_dot_is_resolved_first_and_creates_no_stray_folder(ws):
    store, name = RunStore.for_path("runs/nowhere/../fresh")
    assert (store.root, name) == (ws / "runs", "fresh")
    fake_run(store, name)
    assert (ws / "runs" / "fresh" / "run.json").is_file() and not (ws / "runs" / "nowhere").exists()


def test_remove_puts_a_folder_back_when_a_file_turns_up_after_the_check(ws, monkeypatch):
    real_rename = os.rename
    calls = []

    def rename_then_user_writes(src, dst):
        real_rename(src, dst)
        if not calls:
            Path(dst, "late.txt").write_text("written meanwhile\n")
        calls.append(dst)

    monkeypatch.setattr(os, "rename", rename_then_user_writes)
    with pytest.raises(ownership.OwnershipError, match="late.txt"):
        ownership.remove(ws / "runs" / "a", ownership.RUN)
    monkeypatch.undo()
    assert (ws / "runs" / "a" / "late.txt").read_text() == "written meanwhile\n"
    assert (ws / "runs" / "a" / "run.json").is_file()  # put back whole


# ------------------------------------------------------------------------------------- scan outputs
@pytest.fixture
def scan_ws(ws) -> Path:
    rng = np.random.default_rng(0)
    c = rng.standard_normal((60, 8)).astype(np.float32)
    np.save(ws / "Q.npy", (c[:30] + 0.3 * rng.standard_normal((30, 8))).astype(np.float32))
    np.save(ws / "C.npy", c)
    pd.DataFrame({"query": np.arange(30), "candidate": np.arange(30)}).to_csv(ws / "P.csv", index=False)
    pd.DataFrame({"a": [1, 2]}).to_parquet(ws / "results.parquet")
    (ws / "results.csv").write_text("a,b\n1,2\n")
    return ws


SCAN = ["scan", "--queries", "Q.npy", "--candidates", "C.npy", "--positives", "P.csv", "--quiet",
        "--negative-sample", "2000"]


@pytest.mark.parametrize("extra, expect", [
    (["--out", "results.parquet"], ["--out results.parquet", "not a scan output fnlab wrote"]),
    (["--out", "results.csv"], ["--out results.csv", "not a scan output"]),
    (["--out", "new.parquet", "--triplets", "results.csv"], ["--triplets results.csv", "not a triplets table"]),
    (["--out", "notes.txt"], ["--out notes.txt"]),
])
def test_the_local_scan_replaces_only_its_own_outputs(scan_ws, capsys, extra, expect):
    before = snapshot(scan_ws)
    rc, err = run_cli([*SCAN, *extra], capsys)
    line = one_line(err)
    assert rc == 2, err
    for text in expect:
        assert text in line, (text, line)
    assert snapshot(scan_ws) == before


def test_a_summary_that_is_not_fnlabs_is_kept_and_own_outputs_are_replaced(scan_ws, capsys):
    (scan_ws / "s.parquet.summary.json").write_text('{"my": "notes"}')
    before = snapshot(scan_ws)
    rc, err = run_cli([*SCAN, "--out", "s.parquet"], capsys)
    assert rc == 2 and "the summary file" in one_line(err) and snapshot(scan_ws) == before
    (scan_ws / "s.parquet.summary.json").unlink()
    for _ in range(2):  # a scan replaces its own table, summary and triplets
        assert main([*SCAN, "--out", "s.parquet", "--triplets", "t.csv"]) == 0


def _ray_output(folder: Path, summary: str = "_summary.json") -> None:
    folder.mkdir()
    (folder / summary).write_text(json.dumps({"engine": "ray", "output": {"path": str(folder)}}))
    pd.DataFrame({"query": [0]}).to_parquet(folder / f"part-{'0' * 20}.parquet")


@pytest.mark.parametrize("out, expect", [
    ("thesis", ["--out thesis", "not a Ray scan output"]),
    ("notes.txt", ["--out notes.txt", "is a file"]),
    ("shards", ["--out shards", "is the input --queries"]),
    ("shards/out", ["--out shards/out", "inside the input folder --queries"]),
    (".", ["--out"]),
    ("runs/a", ["--out runs/a", "not a Ray scan output"]),
])
def test_the_ray_scan_never_replaces_a_folder_it_did_not_write(scan_ws, capsys, monkeypatch, out, expect):
    from fnlab.analysis.scan import ray as ray_engine

    def no_ray():
        raise AssertionError("Ray was started before the output was checked")

    monkeypatch.setattr(ray_engine, "_import_ray", no_ray)
    (scan_ws / "shards").mkdir()
    np.save(scan_ws / "shards" / "q0.npy", np.load(scan_ws / "Q.npy"))
    before = snapshot(scan_ws)
    argv = ["scan", "--engine", "ray", "--queries", "shards", "--candidates", "C.npy", "--positives", "P.csv",
            "--quiet", "--out", out]
    rc, err = run_cli(argv, capsys)
    line = one_line(err)
    assert rc == 2, err
    for text in expect:
        assert text in line, (text, line)
    assert snapshot(scan_ws) == before


def test_the_ray_output_check_accepts_its_own_and_empty_folders_and_refuses_inputs_inside(scan_ws):
    from fnlab.analysis.scan import ScanInputError
    from fnlab.analysis.scan.ray import check_output

    _ray_output(scan_ws / "previous")
    _ray_output(scan_ws / "older", summary="summary.json")  # as Ray scans wrote it before 2026-12-07
    assert check_output(scan_ws / "older", {}) == scan_ws / "older"
    (scan_ws / "empty-out").mkdir()
    assert check_output(scan_ws / "previous", {"queries": str(scan_ws / "Q.npy")}) == scan_ws / "previous"
    assert check_output(scan_ws / "empty-out", {}) == scan_ws / "empty-out"
    assert check_output(scan_ws / "new-out", {"queries": np.zeros((2, 2))}) == scan_ws / "new-out"
    np.save(scan_ws / "previous" / "q.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(ScanInputError, match="holds the input queries"):
        check_output(scan_ws / "previous", {"queries": str(scan_ws / "previous" / "q.npy")})
    with pytest.raises(ScanInputError, match="'q.npy', which fnlab did not write"):
        check_output(scan_ws / "previous", {})


def test_make_sample_never_replaces_a_folder_that_is_not_a_saved_dataset(ws, capsys):
    (ws / "data" / "shapes").mkdir(parents=True)
    (ws / "data" / "shapes" / "my.csv").write_text("x\n")
    before = snapshot(ws)
    rc, err = run_cli(["data", "make-sample", "--out", "data"], capsys)
    assert rc == 2 and "not a dataset fnlab saved" in one_line(err) and snapshot(ws) == before


def test_a_forged_or_copied_commit_journal_never_moves_a_users_file(tmp_path):
    from fnlab.core import files

    thesis, out = tmp_path / "thesis.tex", tmp_path / "s.parquet"
    thesis.write_text("mine\n")
    (tmp_path / "x").mkdir()
    stray = tmp_path / "x" / ".s.parquet.tmp-1-aaaaaaaa"  # a temporary name, but in another folder
    stray.write_text("not this one\n")
    renames = [[str(thesis), str(out)], [".s.parquet.tmp-1-bbbbbbbb", str(out)], [str(stray), str(out)]]
    (tmp_path / ".s.parquet.commit.json").write_text(json.dumps({"renames": renames}))
    assert files.recover(out) is True  # the journal is consumed ...
    assert thesis.read_text() == "mine\n" and stray.exists() and not out.exists()  # ... and moves nothing of these
