"""How long training takes on ``shapes-precomp``, and where the time goes (issue 9, "Speed").

Two measurements, each a fresh process doing exactly what a user's command or the app does:

* ``cli``: ``fnlab train --dataset shapes-precomp --epochs 10 --no-pages`` (all other options at their defaults;
  the app pages it stores after the run, a few seconds, are not training), its
  dataset already cached. Target: at most 60 s on 2 CPU cores.
* ``demo``: the app's first start, cold: the demo run (app/training.py ``demo_config``) trained by the app's
  background job (app/jobs.py) with an empty dataset cache, so it builds ``shapes-precomp`` from what the
  repository ships. Target: under 60 s on 2 CPU cores.

Each line gives the wall time, the process's CPU time (user + system), its page faults and peak memory, the
load average before and after (other work on the machine inflates wall times: read them together), and the
seconds of each epoch (the posterior refit of FNE's epochs included). ``--profile`` adds a cProfile of the
``cli`` run: the functions with the most cumulative time.

Usage:
    python bench/train_speed.py [--only cli|demo] [--epochs 10] [--threads N] [--profile]
                                [--out bench/results/train_speed.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _child_usage() -> resource.struct_rusage:
    return resource.getrusage(resource.RUSAGE_CHILDREN)


def _run(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd``; wall time, load before/after, and the CPU time, page faults and peak RSS it used."""
    before, load0, t0 = _child_usage(), _load(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    wall, after = time.perf_counter() - t0, _child_usage()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt, "rss_mb": after.ru_maxrss / 1024,
            "load": f"{load0} -> {_load()}", "stdout": proc.stdout, "stderr": proc.stderr}


def _epochs(run: Path) -> str:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    secs = [r["seconds"] for r in rows]
    return f"epochs {sum(secs):.1f} s = " + " + ".join(f"{s:.1f}" for s in secs)


def _line(what: str, r: dict) -> str:
    return (f"{what}: {r['wall']:.1f} s wall, CPU {r['user']:.1f} s user + {r['sys']:.1f} s system, "
            f"{r['faults'] / 1e3:.0f} k page faults, peak RSS {r['rss_mb']:.0f} MB, load {r['load']}")


def bench_cli(epochs: int, threads: int | None, profile: bool, tmp: Path) -> list[str]:
    from fnlab import data

    t = time.perf_counter()
    data.load("shapes-precomp", split="test")  # cached, as the target assumes (a cold build is `demo`'s)
    out = [f"dataset shapes-precomp ready (cached or built now) in {time.perf_counter() - t:.1f} s, untimed"]
    args = ["-m", "fnlab.cli", "train", "--dataset", "shapes-precomp", "--epochs", str(epochs),
            "--out", str(tmp / "cli"), "--no-progress", "--no-pages"] + (["--threads", str(threads)] if threads else [])
    r = _run([sys.executable, *args], {})
    shown = " ".join(["fnlab", *args[2:]]).replace(str(tmp / "cli"), "RUN")
    out += [f"$ {shown}", _line("cli", r), "    " + _epochs(tmp / "cli"),
            "    " + r["stdout"].strip().splitlines()[-1].replace(str(tmp / "cli"), "RUN")]
    if profile:
        prof = tmp / "cli.prof"
        args[args.index("--out") + 1] = str(tmp / "cli_profiled")
        r = _run([sys.executable, "-m", "cProfile", "-o", str(prof), *args], {})
        out.append(_line("cli under cProfile", r))
        stats = pstats.Stats(str(prof))
        rows = sorted(((v[3], v[2], f"{Path(k[0]).name}:{k[1]}({k[2]})") for k, v in stats.stats.items()
                       if "fnlab" in k[0] or "torch/autograd" in k[0]), reverse=True)
        out.append("    cumulative s  own s  function (fnlab and autograd, top 20)")
        out += [f"    {cum:12.1f} {own:6.1f}  {name}" for cum, own, name in rows[:20]]
    return out


def bench_demo(threads: int | None, tmp: Path) -> list[str]:
    from app.training import demo_config

    cfg = demo_config(**({"num_threads": threads} if threads else {}))
    env = {"FNLAB_CACHE": str(tmp / "cold_cache")}  # nothing cached: built from what the repository ships
    code = ("import sys, time; from app import jobs\n"
            "root, cfg = sys.argv[1], __import__('json').loads(sys.argv[2])\n"
            "assert jobs.start(root, 'demo', cfg)\n"
            "while (s := jobs.status(root, 'demo')) is not None and s.state == 'running': time.sleep(0.1)\n"
            "[p.wait() for p in list(jobs._CHILDREN.values())]  # reaped here, so its CPU time is counted\n"
            "print(s.state, s.error or '')\n"
            "sys.exit(s.state != 'done')\n")
    r = _run([sys.executable, "-c", code, str(tmp / "runs"), json.dumps(cfg)], env)
    log = (tmp / "runs" / ".jobs" / "demo.log").read_text()
    built = next((line for line in log.splitlines() if "built in" in line), "dataset: built line not found")
    ev = json.loads((tmp / "runs" / "demo" / "eval.json").read_text())
    return [f"demo_config() = {json.dumps(cfg)}",
            _line("demo, cold (app job, fresh FNLAB_CACHE)", r),
            f"    {built.strip()}", "    " + _epochs(tmp / "runs" / "demo"),
            f"    test rSum {ev['recall']['rsum']:.1f}, relevant rSum {ev['relevant_recall']['rsum']:.1f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("cli", "demo"))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, help="torch threads for both (default: torch's, here the CPU count)")
    ap.add_argument("--profile", action="store_true", help="also profile the cli run (slower; separate run)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "train_speed.txt"))
    a = ap.parse_args()
    import torch

    lines = [f"# bench/train_speed.py on {platform.node()} ({os.cpu_count()} CPUs), torch {torch.__version__} "
             f"({torch.get_num_threads()} threads by default), {time.strftime('%Y-%m-%d %H:%M')}",
             f"# {' '.join(['python', 'bench/train_speed.py', *sys.argv[1:]])}"]
    with tempfile.TemporaryDirectory(prefix="fnlab_train_speed_") as d:
        tmp = Path(d)
        if a.only in (None, "demo"):
            lines += bench_demo(a.threads, tmp)
        if a.only in (None, "cli"):
            lines += bench_cli(a.epochs, a.threads, a.profile, tmp)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
