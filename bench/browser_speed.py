"""Benchmark: the app in a real browser, on a quiet machine and with every core kept busy by another process.

Runs ``tests/test_browser.py`` and ``tests/test_browser_own.py`` (headless chromium driving ``streamlit run`` on localhost; each timed action is
measured in the page from the gesture to the paint after the last script run it started; a page load from the
navigation to an idle page, including a fixed 0.3 s wait) and writes its timings file with the
date, commit, load average and the load it ran under. ``--busy N`` starts ``N`` processes that spin on the CPU
for the whole run (what a laptop training a model looks like), e.g. ``--busy 2`` on a 2-core machine.

Usage::

    python bench/browser_speed.py --out bench/results/browser_speed_quiet.txt
    python bench/browser_speed.py --busy 2 --out bench/results/browser_speed_busy.txt
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _spin() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=0, help="processes that keep a core busy during the run")
    ap.add_argument("--out", required=True)
    ap.add_argument("-k", default=None, help="pytest -k expression (default: every browser test)")
    args = ap.parse_args(argv)
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    load_before = os.getloadavg()[0]
    files = [ROOT / "test-artifacts" / name for name in ("browser_timings.txt", "browser_timings_own.txt")]
    for f in files:  # never report an earlier run's timings
        f.unlink(missing_ok=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "tests/test_browser.py", "tests/test_browser_own.py"]
    if args.k:
        cmd += ["-k", args.k]
    try:
        rc = subprocess.call(cmd, cwd=ROOT, env={**os.environ, "FNLAB_BROWSER_TIMINGS": "1"})
        load_after = os.getloadavg()[0]
    finally:
        for p in spinners:
            p.terminate()
    wall = time.perf_counter() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    if rc != 0:
        print(f"the browser tests failed (pytest exit {rc}): {args.out} is left as it was", file=sys.stderr)
        return rc
    timings = "".join(f.read_text() for f in files if f.exists())
    head = [f"# {' '.join(['python', 'bench/browser_speed.py', *(argv if argv is not None else sys.argv[1:])])}",
            f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, commit {commit}, {os.cpu_count()} CPUs, "
            f"{args.busy} busy process(es), load average {load_before:.1f} at the start and {load_after:.1f} "
            f"at the end, pytest exit {rc}, {wall:.0f} s",
            "# each row: from the gesture to the browser's paint after the last script run it started ('to the paint "
            "after the run'), or, for a page load or where no run was observed, to an idle page including the fixed "
            "0.30 s wait the test takes to let a run start"]
    Path(args.out).write_text("\n".join(head) + "\n" + timings)
    print(Path(args.out).read_text())
    return rc


if __name__ == "__main__":
    sys.exit(main())
