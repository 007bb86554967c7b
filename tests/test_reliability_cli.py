"""A bad-input table over the CLI: every case exits non-zero, prints no traceback, names the file or
flag at fault, and leaves nothing behind (no new file, no temporary file, no earlier output changed).
Run in-process through ``fnlab.cli.main`` for speed."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fnlab.cli import main

TINY = ["--dataset", "shapes", "-o", "n_train=64", "-o", "n_val=40", "-o", "n_test=40", "--sampler", "random",
        "--epochs", "1", "--queue-size", "0", "--dim", "32", "--text-encoder", "bag", "--no-progress",
        "--threads", "1", "--no-pages"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden lock files aside) with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished tiny run (trained once for the module)."""
    root = tmp_path_factory.mktemp("trained")
    assert main(["train", *TINY, "--out", str(root / "runs" / "base")]) == 0
    return root / "runs" / "base"


@pytest.fixture(scope="module")
def template(tmp_path_factory, trained) -> Path:
    """Scan inputs, an earlier scan output and a copy of the finished run, made once for the module."""
    root = tmp_path_factory.mktemp("template")
    rng = np.random.default_rng(0)
    c = rng.standard_normal((80, 8)).astype(np.float32)
    q = (c[:40] + 0.3 * rng.standard_normal((40, 8))).astype(np.float32)
    np.save(root / "Q.npy", q)
    np.save(root / "C.npy", c)
    pd.DataFrame({"query": np.arange(40), "candidate": np.arange(40)}).to_csv(root / "P.csv", index=False)
    assert main(["scan", *SCAN_IN(root), "--out", str(root / "old.parquet"), "--quiet",
                 "--negative-sample", "3000"]) == 0
    shutil.copytree(trained, root / "runs" / "base")
    return root


@pytest.fixture
def ws(tmp_path, template) -> Path:
    """A workspace of its own for each test: a copy of the template (the earlier scan's summary names it)."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    summary = tmp_path / "old.parquet.summary.json"
    summary.write_text(summary.read_text().replace(str(template), str(tmp_path)))
    return tmp_path


def SCAN_IN(ws: Path) -> list[str]:  # noqa: N802 - reads like a constant in the table
    return ["--queries", str(ws / "Q.npy"), "--candidates", str(ws / "C.npy"), "--positives", str(ws / "P.csv")]


def _scan(ws: Path, *extra: str, out: str = "new.parquet") -> list[str]:
    return ["scan", *SCAN_IN(ws), "--out", str(ws / out), "--quiet", "--negative-sample", "3000", *extra]


def _replace_arg(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def _truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


# each case: (id, prepare(ws) -> argv, substrings the error must contain)
CASES = [
    # ---- scan: inputs
    ("scan-queries-folder", lambda ws: _replace_arg(_scan(ws), "--queries", str(ws / "runs")),
     ["runs (queries)", "is a folder"]),
    ("scan-text-renamed-npy", lambda ws: ((ws / "T.npy").write_text("1,2\n3,4\n"),
                                          _replace_arg(_scan(ws), "--queries", str(ws / "T.npy")))[1],
     ["T.npy (queries)", "not a .npy file"]),
    ("scan-truncated-npy", lambda ws: (_truncate(ws / "C.npy", 300), _scan(ws))[1],
     ["C.npy (candidates)", "truncated"]),
    ("scan-pickled-npy", lambda ws: (np.save(ws / "C.npy", np.array([{}], dtype=object), allow_pickle=True),
                                     _scan(ws))[1], ["C.npy (candidates)", "never loads"]),
    ("scan-header-only-csv", lambda ws: ((ws / "P.csv").write_text("query,candidate\n"), _scan(ws))[1],
     ["P.csv (positives)", "no rows"]),
    ("scan-headerless-csv", lambda ws: ((ws / "P.csv").write_text("0,0\n1,1\n"), _scan(ws))[1],
     ["P.csv (positives)", "query,candidate"]),
    ("scan-float64-overflow", lambda ws: (np.save(ws / "Q.npy", np.vstack([np.load(ws / "Q.npy").astype(np.float64),
                                                                           np.full((1, 8), 1e300)])), _scan(ws))[1],
     ["Q.npy (queries)", "float32", "first rows: [40]"]),
    ("scan-negative-sample-0", lambda ws: _scan(ws)[:-1] + ["0"], ["--negative-sample", ">= 2"]),
    ("scan-top-k-abc", lambda ws: _scan(ws, "--top-k", "abc"), ["--top-k", "integer"]),
    ("scan-missing-positives", lambda ws: _replace_arg(_scan(ws), "--positives", str(ws / "nope.csv")),
     ["nope.csv", "not found"]),
    # ---- scan: outputs
    ("scan-out-is-positives", lambda ws: _scan(ws, out="P.csv"), ["--out", "--positives", "overwrite its input"]),
    ("scan-out-is-queries", lambda ws: _scan(ws, out="Q.npy"), ["--out", "--queries"]),
    ("scan-triplets-is-out", lambda ws: _scan(ws, "--triplets", str(ws / "old.parquet"), out="old.parquet"),
     ["--triplets", "same file as --out"]),
    ("scan-triplets-is-summary", lambda ws: _scan(ws, "--triplets", str(ws / "old.parquet.summary.json"),
                                                  out="old.parquet"), ["--triplets", "summary"]),
    ("scan-out-is-folder", lambda ws: _scan(ws, out="runs"), ["--out", "is a folder"]),
    ("scan-out-empty", lambda ws: _replace_arg(_scan(ws), "--out", ""), ["--out", "file path"]),
    ("scan-prior-out-of-range", lambda ws: _scan(ws, "--prior", "2"), ["--prior", "(0, 1)"]),
    ("scan-triplets-unwritable", lambda ws: ((ws / "blocker").write_text("a file"),
                                             _scan(ws, "--triplets", str(ws / "blocker" / "t.parquet"),
                                                   out="old.parquet"))[1],
     ["blocker", "nothing was written"]),
    # ---- train: parameters, checked before any training
    ("train-loss-param-type", lambda ws: ["train", *TINY, "--loss", "dcl", "--loss-param", "tau_plus=abc",
                                          "--out", str(ws / "runs" / "x")], ["--loss-param tau_plus", "number"]),
    ("train-loss-param-unknown", lambda ws: ["train", *TINY, "--loss-param", "bogus=1", "--out", str(ws / "runs" / "x")],
     ["--loss-param bogus", "valid names: margin"]),
    ("train-loss-param-dash", lambda ws: ["train", *TINY, "--loss", "dcl", "--loss-param", "tau-plus=0.1",
                                          "--out", str(ws / "runs" / "x")], ["tau-plus", "tau_plus"]),
    ("train-temperature-triplet", lambda ws: ["train", *TINY, "--temperature", "0.1", "--out", str(ws / "runs" / "x")],
     ["--temperature", "triplet"]),
    ("train-param-type", lambda ws: ["train", *_replace_arg(TINY, "--sampler", "hardest"), "-p", "top_k=abc",
                                     "--out", str(ws / "runs" / "x")], ["--param top_k", "integer"]),
    ("train-unknown-loss", lambda ws: ["train", *TINY, "--loss", "nope", "--out", str(ws / "runs" / "x")],
     ["nope", "triplet"]),
    ("train-unknown-sampler", lambda ws: ["train", *_replace_arg(TINY, "--sampler", "nope"),
                                          "--out", str(ws / "runs" / "x")], ["nope", "hardest"]),
    ("train-kv-no-equals", lambda ws: ["train", *TINY, "--loss-param", "tau", "--out", str(ws / "runs" / "x")],
     ["--loss-param", "KEY=VALUE"]),
    ("train-out-exists", lambda ws: ["train", *TINY, "--out", str(ws / "runs" / "base")],
     ["runs/base", "--overwrite"]),
    ("train-out-under-a-file", lambda ws: ((ws / "afile").write_text("x"),
                                           ["train", *TINY, "--out", str(ws / "afile" / "r")])[1],
     ["afile", "not a folder"]),
    # ---- eval / runs: damaged runs are named by file
    ("eval-missing-run", lambda ws: ["eval", str(ws / "runs" / "nope")], ["nope", "does not exist"]),
    ("eval-truncated-model", lambda ws: (_truncate(ws / "runs" / "base" / "model.pt"), ["eval", str(ws / "runs" / "base")])[1],
     ["model.pt", "truncated"]),
    ("show-truncated-model", lambda ws: (_truncate(ws / "runs" / "base" / "model.pt"),
                                         ["runs", "show", str(ws / "runs" / "base")])[1], ["model.pt", "truncated"]),
    ("show-corrupt-eval-json", lambda ws: ((ws / "runs" / "base" / "eval.json").write_text("{"),
                                           ["runs", "show", str(ws / "runs" / "base")])[1], ["eval.json"]),
    ("show-corrupt-marker", lambda ws: ((ws / "runs" / "base" / "run.json").write_text("{oops"),
                                        ["runs", "show", str(ws / "runs" / "base")])[1], ["run.json", "not valid JSON"]),
    ("show-unknown-run", lambda ws: ["runs", "show", "nope", "--runs", str(ws / "runs")], ["'nope'"]),
    ("runs-list-store-is-file", lambda ws: ["runs", "list", "--runs", str(ws / "P.csv")], ["P.csv", "not a folder"]),
]


@pytest.mark.parametrize("prepare, expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(ws, capsys, prepare, expect):
    argv = prepare(ws)
    before = snapshot(ws)
    rc, err = run_cli(argv, capsys)
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and err.strip(), err
    assert "error:" in err.strip().splitlines()[-1]
    for text in expect:
        assert text in err, (text, err)
    assert snapshot(ws) == before, "a failed command changed or left files"
    assert not [p for p in ws.rglob("*") if ".tmp-" in p.name]


def test_disk_full_while_writing_model_is_one_line(ws, capsys, monkeypatch):
    """torch.save reports a full disk as RuntimeError: it becomes one line naming model.pt, no run left."""
    import torch

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    before = snapshot(ws)
    rc, err = run_cli(["train", *TINY, "--out", str(ws / "runs" / "full")], capsys)
    assert rc == 2 and "Traceback" not in err and "model.pt" in err and "could not write" in err
    assert snapshot(ws) == before and not (ws / "runs" / ".staging" / "full").exists()


def test_disk_full_while_writing_scan_keeps_previous_output(ws, capsys, monkeypatch):
    before = snapshot(ws)

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    rc, err = run_cli(_scan(ws, out="old.parquet"), capsys)
    assert rc == 2 and "no space left" in err and "earlier outputs are unchanged" in err, err
    assert snapshot(ws) == before


def test_summary_beside_output_and_runs_commands(ws, capsys):
    """<out>.summary.json per output file; runs list shows a status column; runs rm."""
    assert main(_scan(ws, "--format", "csv", out="a.csv")) == 0
    assert main(_scan(ws, "--top-k", "3", out="a.parquet")) == 0
    s_csv = json.loads((ws / "a.csv.summary.json").read_text())
    s_pq = json.loads((ws / "a.parquet.summary.json").read_text())
    assert (s_csv["top_k"], s_pq["top_k"]) == (50, 3) and s_pq["rows"] == len(pd.read_parquet(ws / "a.parquet"))
    runs = ws / "runs"
    (runs / ".staging" / "killed").mkdir(parents=True)  # what a killed writer leaves
    (runs / ".staging" / "killed" / "config.json").write_text(json.dumps({"sampler": "fne"}))
    shutil.copytree(runs / "base", runs / "broken")
    _truncate(runs / "broken" / "model.pt")
    capsys.readouterr()
    assert main(["runs", "list", "--runs", str(runs), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["base"]["status"] == "complete" and rows["killed"]["status"] == "interrupted"
    assert rows["broken"]["status"] == "corrupt" and "model.pt" in rows["broken"]["problem"]
    assert main(["runs", "rm", str(runs / "killed")]) == 0 and not (runs / ".staging" / "killed").exists()
    assert main(["runs", "rm", "broken", "--runs", str(runs)]) == 0 and not (runs / "broken").exists()
    assert not (runs / ".staging").exists()  # nothing left behind, not even the empty staging folder
    # train --overwrite is exercised in tests/test_crash.py (killed and completed replacements)


def test_read_only_out_is_one_line(ws, capsys, monkeypatch):
    """--out on a read-only mount (simulated: tests run as root, where chmod does not stop writes)."""
    import fnlab.storage.runs

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(fnlab.storage.runs.files, "try_lock", read_only)
    before = snapshot(ws)
    rc, err = run_cli(["train", *TINY, "--out", str(ws / "ro" / "r")], capsys)
    assert rc == 2 and "Traceback" not in err and "read-only" in err and str(ws / "ro") in err, err
    assert snapshot(ws) == before


def test_os_errors_are_described_by_file():
    from fnlab.cli import describe_error

    assert describe_error(OSError(errno.ENOSPC, "No space left on device", "/x/model.pt")) == \
        "/x/model.pt: no space left on the device"
    assert describe_error(IsADirectoryError(errno.EISDIR, "Is a directory", "/d")) == "/d: is a folder, expected a file"
    assert describe_error(ValueError("two\nlines")) == "two lines"
