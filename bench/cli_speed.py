"""How fast the ``fnlab`` command starts: ``fnlab --help``, ``fnlab train --help`` and ``fnlab runs list`` on a
store of a few runs, before and after the parser stopped importing torch (issue 21, "One home for each thing":
under 1 s).

Each version (a git revision, default the commit before the change, and this working tree) is exported into a
fresh folder with no bytecode, then each command runs in a fresh interpreter:

* ``cold``: the first call in that fresh copy (Python compiles every module it imports, as after an install
  or a checkout; the OS file cache is left alone);
* ``warm``: the median of the next ``--repeats`` calls, the two versions alternating call by call (a change
  of the machine's load falls on both alike).

Both under two conditions: ``quiet`` (the machine as it is: its load average is printed beside each figure)
and ``load`` (``--load-procs`` busy-looping processes, default twice the cores, started for the measurement).
Lines for ``python -c pass`` (the interpreter alone) and ``python -c 'import torch'`` (what the old
parser paid) frame the figures. The ratios (before / after) are measured side by side in the same run.

Usage:
    python bench/cli_speed.py [--before REV] [--runs 5] [--repeats 5] [--load-procs N]
                              [--out bench/results/cli_speed.txt]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {"fnlab --help": ["--help"], "fnlab train --help": ["train", "--help"],
            "fnlab runs list": ["runs", "list", "--runs", "{store}"]}


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def _export(rev: str | None, dest: Path) -> Path:
    """A fresh copy of the ``fnlab`` package at ``rev`` (``None``: this working tree), without bytecode."""
    dest.mkdir(parents=True)
    if rev is None:
        shutil.copytree(REPO / "fnlab", dest / "fnlab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "fnlab"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _make_store(root: Path, n: int) -> Path:
    """A run store of ``n`` small finished runs (config, two epochs of metrics, an evaluation)."""
    sys.path.insert(0, str(REPO))
    from fnlab.storage.runs import RunStore

    store = RunStore(root)
    for i in range(n):
        w = store.create({"dataset": {"name": "shapes"}, "sampler": {"name": "fne"}}, name=f"run-{i}")
        w.log_metrics({"epoch": 0, "loss": 0.5, "val_rsum": 150.0 + i, "warmup": 1})
        w.log_metrics({"epoch": 1, "loss": 0.25, "val_rsum": 170.0 + i, "sampled_fn_rate": 0.1})
        w.save_json("eval", {"recall": {"rsum": 160.0 + i}})
        w.finalize()
    return root


def _time(argv: list[str], pythonpath: Path, cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def _spin() -> None:  # pragma: no cover - a load generator
    while True:
        pass


def _measure(versions: dict[str, str | None], store: Path, repeats: int, tmp: Path) -> list[dict]:
    """Per command: one cold call of each version, then ``repeats`` rounds alternating the versions (so a change
    of the machine's load falls on both alike); the warm figure is each version's median."""
    rows = []
    for i, (label, argv) in enumerate(COMMANDS.items()):
        args = ["-m", "fnlab.cli", *[a.format(store=store) for a in argv]]
        paths = {v: _export(rev, tmp / f"{v}-{i}") for v, rev in versions.items()}  # fresh copies: cold first calls
        load = _load()
        cold = {v: _time(args, path, store.parent) for v, path in paths.items()}
        warm: dict[str, list[float]] = {v: [] for v in paths}
        for _ in range(repeats):
            for v, path in paths.items():
                warm[v].append(_time(args, path, store.parent))
        for v in paths:
            rows.append({"command": label, "version": v, "cold": cold[v], "warm": statistics.median(warm[v]),
                         "load": load})
    for label, code in (("python -c pass", "pass"), ("python -c 'import torch'", "import torch")):
        load = _load()
        warm_s = statistics.median(_time(["-c", code], REPO, store.parent) for _ in range(repeats))
        rows.append({"command": label, "version": "-", "cold": float("nan"), "warm": warm_s, "load": load})
    return rows


def _table(rows: list[dict], condition: str) -> list[str]:
    out = [f"## {condition}", f"{'command':<26} {'version':<8} {'cold s':>8} {'warm s':>8}  load (1/5/15 min)"]
    for r in rows:
        cold = "-" if r["cold"] != r["cold"] else f"{r['cold']:.2f}"
        out.append(f"{r['command']:<26} {r['version']:<8} {cold:>8} {r['warm']:>8.2f}  {r['load']}")
    by = {(r["command"], r["version"]): r for r in rows}
    for cmd in COMMANDS:
        b, a = by[(cmd, "before")], by[(cmd, "after")]
        out.append(f"ratio before/after, {cmd}: cold {b['cold'] / a['cold']:.1f}x, warm {b['warm'] / a['warm']:.1f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="ddf31e8~1", help="git revision of the 'before' version (default: the "
                    "commit before the posterior registry)")
    ap.add_argument("--runs", type=int, default=5, help="runs in the store that 'runs list' lists")
    ap.add_argument("--repeats", type=int, default=5, help="warm calls per command (their median is reported)")
    ap.add_argument("--load-procs", type=int, default=2 * (os.cpu_count() or 1), help="busy processes for 'load'")
    ap.add_argument("--out", default=None, help="also write the report here")
    args = ap.parse_args(argv)

    head = _git("rev-parse", "--short", "HEAD") + (" (+ uncommitted changes)" if _git("status", "--porcelain",
                                                                                      "fnlab") else "")
    lines = ["# fnlab command start-up (bench/cli_speed.py)", "",
             f"command: python bench/cli_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
             f"after: {head}; before: {args.before} ({_git('rev-parse', '--short', args.before)})",
             f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}; runs in the store: {args.runs}; "
             f"warm = median of {args.repeats}; load = {args.load_procs} busy-looping processes", ""]
    with tempfile.TemporaryDirectory(prefix="fnlab_cli_speed_") as tmp:
        tmp = Path(tmp)
        store = _make_store(tmp / "work" / "runs", args.runs)
        results = {}
        for condition in ("quiet", "load"):
            versions = {"before": args.before, "after": None}
            spinners = []
            if condition == "load":
                spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load_procs)]
                for p in spinners:
                    p.start()
                time.sleep(2.0)
            try:
                results[condition] = _measure(versions, store, args.repeats, tmp / condition)
            finally:
                for p in spinners:
                    p.terminate()
                    p.join()
            lines += _table(results[condition], condition) + [""]
            print("\n".join(lines), flush=True)
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
