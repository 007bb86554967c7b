"""Pilot: which rule should calibrated FNE use inside its band, soft ``(1 - P)`` or an eliminating one?

One cell (``shapes-precomp`` at its defaults, validation split enlarged so that the choice is not read off
200 images), paired seeds (same initialisation, data order and warm-up for every arm), FNE's rules next
to hardest and semi-hard. The rule is chosen on the *validation* figures, decided before running:

1. primary: validation relevant rSum after the last epoch (a collapse cannot hide behind model
   selection), paired difference against ``soft`` with its standard error;
2. mechanism: the sampled false-negative rate over the sampler epochs, against soft's and hardest's.

The chosen rule is then frozen for the regime map (``bench/regime_map.py``).

Second pilot, written before it ran: ``fne adapt`` (each anchor's lowest-P third where its band's mean P is
below 0.5, every candidate with P >= 0.5 eliminated where it is not; no parameter tuned here: 1/3 and 0.5 are the
frozen values, and 0.5 is P's own decision threshold) joins the regime map's ten-seed hard-window cells unless, on
this cell, it loses to both ``keep`` and ``drop`` by more than two paired standard errors of the validation
relevant rSum after the last epoch. Its FN rate is reported beside theirs.

Usage::

    python bench/fne_rule_pilot.py --seeds 0 1 2 --jobs 2 --out bench/results/fne_rule_pilot
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnlab.training.train import TrainConfig, train  # noqa: E402

ARMS: dict[str, tuple[str, dict]] = {
    "hardest": ("hardest", {}),
    "semihard": ("semihard", {}),
    "fne soft": ("fne", {"rule": "soft"}),
    "fne keep 1/3": ("fne", {"rule": "keep", "keep_fraction": 1 / 3}),
    "fne keep 1/4": ("fne", {"rule": "keep", "keep_fraction": 0.25}),
    "fne drop 0.2": ("fne", {"rule": "drop", "drop_above": 0.2}),
    "fne drop 0.5": ("fne", {"rule": "drop", "drop_above": 0.5}),
    "fne adapt": ("fne", {"rule": "adapt", "keep_fraction": 1 / 3, "drop_above": 0.5, "dense_above": 0.5}),
}


def _run(job: tuple[str, int, dict, argparse.Namespace]) -> dict:
    arm, seed, options, args = job
    sampler, params = ARMS[arm]
    cfg = TrainConfig(dataset=args.dataset, dataset_options=options, sampler=sampler, sampler_params=params,
                      epochs=args.epochs, seed=seed, select_by="relevant", num_threads=1, device="cpu")
    t0 = time.perf_counter()
    out = train(cfg)
    after = [m for m in out["metrics"] if not m.get("warmup")]
    rates = [m["sampled_fn_rate"] for m in after if m.get("sampled_fn_rate") == m.get("sampled_fn_rate")]
    return {"arm": arm, "seed": seed,
            "val_rel_last": out["metrics"][-1].get("val_relevant_rsum"),
            "val_rel_by_epoch": [m.get("val_relevant_rsum") for m in out["metrics"]],
            "test_rel_best": (out["eval"]["relevant_recall"] or {}).get("rsum"),
            "sampled_fn_rate": sum(rates) / len(rates) if rates else None,
            "fn_rate_by_epoch": [m.get("sampled_fn_rate") for m in out["metrics"]],
            "wall_s": time.perf_counter() - t0}


def _paired(rows: list[dict], arm: str, ref: str, key: str) -> tuple[float, float, int]:
    a = {r["seed"]: r[key] for r in rows if r["arm"] == arm and r[key] is not None}
    b = {r["seed"]: r[key] for r in rows if r["arm"] == ref and r[key] is not None}
    d = [a[s] - b[s] for s in sorted(set(a) & set(b))]
    if not d:
        return math.nan, math.nan, 0
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1)) if len(d) > 1 else math.nan
    return mean, sd / math.sqrt(len(d)), len(d)


def report(rows: list[dict]) -> str:
    lines = ["| arm | val relevant rSum, last epoch | paired vs soft (se) | test relevant rSum, best | "
             "sampled FN rate | x soft | x hardest |", "|---|---|---|---|---|---|---|"]

    def mean(arm, key):
        xs = [r[key] for r in rows if r["arm"] == arm and r[key] is not None]
        return sum(xs) / len(xs) if xs else math.nan

    soft_rate, hard_rate = mean("fne soft", "sampled_fn_rate"), mean("hardest", "sampled_fn_rate")
    for arm in (a for a in ARMS if any(r["arm"] == a for r in rows)):
        d, se, _ = _paired(rows, arm, "fne soft", "val_rel_last")
        rate = mean(arm, "sampled_fn_rate")
        lines.append(f"| {arm} | {mean(arm, 'val_rel_last'):.1f} | {d:+.1f} ({se:.1f}) | "
                     f"{mean(arm, 'test_rel_best'):.1f} | {rate:.3f} | {rate / soft_rate:.2f} | "
                     f"{rate / hard_rate:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="shapes-precomp")
    ap.add_argument("--option", "-o", action="append", default=["n_val=1000"], metavar="KEY=VALUE")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench/results/fne_rule_pilot")
    args = ap.parse_args(argv)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    jobs = [(arm, seed, options, args) for seed in args.seeds for arm in args.arms]
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(_run, jobs):
            rows.append(row)
            print(f"{row['arm']:14s} seed {row['seed']}  val rel last {row['val_rel_last']:.1f}  "
                  f"FN rate {row['sampled_fn_rate']:.3f}  {row['wall_s']:.0f}s", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    head = (f"# FNE rule pilot\n\n`python bench/fne_rule_pilot.py {' '.join(argv or sys.argv[1:])}` at commit "
            f"{commit}; dataset {args.dataset} {options}, {args.epochs} epochs, seeds {args.seeds}.\n\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    out.with_suffix(".md").write_text(head + report(rows) + "\n")
    print(report(rows))


if __name__ == "__main__":
    main()
