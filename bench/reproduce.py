"""The headline experiment: does hard-negative mining suffer from false negatives, and does FNE fix it?

For each dataset and sampler (every sampler of the registry, ``fnlab.samplers.variants``: random,
hardest, semihard, simans, positive_aware, range, fne paper, fne calibrated, oracle = hardest with the
true false negatives removed, and the related methods) and each seed, this trains a dual encoder with the
same pipeline (momentum queue unless the sampler uses none, one VSE++ warm-up epoch, the best validation
epoch kept, the sampler's own loss) and writes

- ``bench/results/reproduce.csv``: one row per run, every metric;
- ``bench/results/reproduce.md``: mean +- sd over seeds per (dataset, sampler), and the four checks
  of the claim (below) with PASS/FAIL.

The claim (Li et al., ACM MM 2023), as checks on relevant rSum (recall counting any truly relevant
item, 0..600) and the sampled false-negative rate (share of picked negatives that are truly relevant):

1. the oracle beats hardest by at least 20 points: false negatives are what hurts hardest;
2. FNE (calibrated, the default) closes at least half of the oracle - hardest gap;
3. FNE is at least as good as random and semi-hard;
4. FNE's sampled false-negative rate is at most a third of hardest's.

Usage::

    python bench/reproduce.py --datasets shapes-precomp digits-precomp --seeds 0 1 2 --jobs 2
    python bench/reproduce.py --datasets shapes --epochs 3 --seeds 0
    python bench/reproduce.py --datasets shapes-precomp --samplers hardest star adore --epochs 3 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnlab.samplers import variants  # noqa: E402
from fnlab.training.train import TrainConfig, train  # noqa: E402

#: table label -> (sampler, fixed params): every registered sampler, one row per value of its variant parameter
#: ("fne paper", "fne calibrated"), each trained with its own default loss
SAMPLERS: dict[str, tuple[str, dict]] = variants(separator=" ")


def _split(label: str) -> tuple[str, str | None]:
    """``"in_batch+asl"`` -> ``("in_batch", "asl")``: a table row may name the loss after a ``+`` (a loss-side method
    on a sampler's pool); ``"hardest"`` -> ``("hardest", None)``, the sampler's own loss."""
    base, _, loss = label.partition("+")
    return base, loss or None


def _default_rows() -> list[str]:
    """Every sampler row, except those that need a dataset option the run may not set (``cet``: a pooled dataset)."""
    from fnlab.samplers import entry

    return [label for label, (name, _) in SAMPLERS.items() if not entry(name).meta.get("needs_option")]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _run_one(job) -> dict:
    dataset, label, seed, options, args = job
    base, loss = _split(label)
    sampler, params = SAMPLERS[base]
    from fnlab.samplers import param_specs

    takes = {spec.name for spec in param_specs(sampler)}  # --sampler-param goes to the rows whose sampler takes it
    params = {**params, **{k: v for k, v in args.sampler_param_dict.items() if k in takes}}
    opts = dict(options) if dataset.startswith("shapes") else {k: v for k, v in options.items() if k != "n_train"}
    cfg = TrainConfig(dataset=dataset, dataset_options=opts, sampler=sampler, sampler_params=params,
                      epochs=args.epochs, batch_size=args.batch_size, queue_size=args.queue_size,
                      loss=loss, lr=args.lr, seed=seed, device=args.device, num_threads=args.threads,
                      select_by=args.select_by,
                      warmup_epochs=args.warmup_epochs, posterior=args.posterior)
    t0 = time.perf_counter()
    out = train(cfg)
    ev, last = out["eval"], out["metrics"][-1]
    det = ev["fn_detection"] or {}
    rp = ev["r_precision"] or {}
    after = [m for m in out["metrics"] if not m.get("warmup")]
    row = {
        "dataset": dataset, "sampler": label, "loss": cfg.loss, "seed": seed,
        "rsum": ev["recall"]["rsum"],
        "relevant_rsum": (ev["relevant_recall"] or {}).get("rsum"),
        "r_precision": (rp.get("i2t", 0) + rp.get("t2i", 0)) / 2 if rp else None,
        # the sampled FN rate over all sampler epochs (not only the last)
        "sampled_fn_rate": _mean([m["sampled_fn_rate"] for m in after if m.get("sampled_fn_rate") is not None
                                  and m["sampled_fn_rate"] == m["sampled_fn_rate"]]),
        # the false-negative rate of the candidates a mining sampler appended to the pool
        "mined_fn_rate": _mean([m["mined_fn_rate"] for m in after if "mined_fn_rate" in m]),
        "fn_auroc": det.get("auroc"), "fn_ap": det.get("ap"), "fn_ece": det.get("ece"),
        "sim_auroc": det.get("similarity_auroc"), "sim_ap": det.get("similarity_ap"),
        "posterior": (out["posterior"] or {}).get("estimator"),
        "sec_per_epoch": sum(m["seconds"] for m in out["metrics"]) / len(out["metrics"]),
        "val_rsum_warmup": next((m["val_rsum"] for m in reversed(out["metrics"]) if m.get("warmup")), None),
        "val_rsum_best": max(m["val_rsum"] for m in out["metrics"]),
        # the last epoch's validation relevant rSum: what training did to the model, before the best epoch
        # was kept (hardest's damage shows here; its kept model is often the warm-up)
        "val_rel_rsum_last": last.get("val_relevant_rsum"),
        "best_epoch": last.get("best_epoch"), "below_warmup": last.get("below_warmup"),
        "fne_on": _mean([m["posterior_active"] for m in after if "posterior_active" in m]),
        "epochs": args.epochs, "wall_s": time.perf_counter() - t0,
    }
    return row


def _print_row(row: dict) -> None:
    print(f"{row['dataset']:15s} {row['sampler']:15s} seed {row['seed']} rsum {row['rsum']:6.1f}  "
          f"rel {row['relevant_rsum'] or 0:6.1f}  FN-rate {row['sampled_fn_rate'] or 0:.3f}  "
          f"fne_on {row['fne_on'] if row['fne_on'] is not None else '-'}  {row['wall_s']:.0f}s", flush=True)


def checks(df: pd.DataFrame) -> list[str]:
    """The four checks of the claim per dataset (module docstring), on means over seeds."""
    out = []
    for dataset, g in df.groupby("dataset", sort=False):
        m = g.groupby("sampler")[["relevant_rsum", "sampled_fn_rate"]].mean()
        need = {"oracle", "hardest", "fne calibrated", "random", "semihard"}
        if not need <= set(m.index):
            continue
        o, h, f = (m.loc[k, "relevant_rsum"] for k in ("oracle", "hardest", "fne calibrated"))
        r, sh = m.loc["random", "relevant_rsum"], m.loc["semihard", "relevant_rsum"]
        fr, hr = m.loc["fne calibrated", "sampled_fn_rate"], m.loc["hardest", "sampled_fn_rate"]
        gap = o - h
        items = [
            (gap >= 20, f"oracle - hardest = {gap:.1f} (>= 20)"),
            (gap > 0 and f - h >= 0.5 * gap, f"FNE closes {(f - h) / gap:.0%} of the gap (>= 50%)" if gap > 0
             else "FNE closes the gap: no gap to close"),
            (f >= r and f >= sh, f"FNE {f:.1f} vs random {r:.1f}, semi-hard {sh:.1f} (at least as good)"),
            (fr <= hr / 3, f"FNE sampled FN rate {fr:.3f} vs hardest {hr:.3f} (<= a third)"),
        ]
        out += [f"- {dataset}: {'PASS' if ok else 'FAIL'}: {text}" for ok, text in items]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["shapes-precomp", "digits-precomp"])
    p.add_argument("--samplers", nargs="+", default=_default_rows(),
                   help="names from: " + ", ".join(SAMPLERS) + "; SAMPLER+LOSS trains a sampler's pool with another "
                   "loss (in_batch+asl, in_batch+wmse)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-train", type=int, default=None, help="shapes training images (default: the dataset's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes of --threads threads)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option for every dataset, e.g. -o genericness=0.3")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--queue-size", type=int, default=8224)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--posterior", default="pu", help="the runs' false-negative posterior estimator")
    p.add_argument("--warmup-epochs", type=int, default=None,
                   help="VSE++ epochs before the sampler (default: 1 with the queue or a sampler that needs it)")
    p.add_argument("--select-by", default="relevant", choices=["auto", "relevant", "labelled"],
                   help="validation figure the kept epoch maximises, the same for every sampler: relevant rSum "
                        "(ground truth) by default, since a labelled-only rSum punishes ranking false negatives "
                        "high, which is what a sampler that stops repelling them does")
    p.add_argument("--sampler-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampler parameter (JSON value) for every row whose sampler takes it, e.g. rule=keep")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    from fnlab import losses

    unknown = sorted(label for label in args.samplers if _split(label)[0] not in SAMPLERS
                     or (_split(label)[1] is not None and _split(label)[1] not in losses.available()))
    if unknown:
        p.error(f"unknown sampler(s) {unknown}; valid: {', '.join(SAMPLERS)}, each optionally +LOSS with LOSS one of "
                f"{', '.join(losses.available())}")

    args.sampler_param_dict = {}
    for item in args.sampler_param:
        key, _, value = item.partition("=")
        try:
            args.sampler_param_dict[key] = json.loads(value)
        except json.JSONDecodeError:
            args.sampler_param_dict[key] = value
    options = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.n_train:
        options["n_train"] = args.n_train
    jobs = [(dataset, label, seed, options, args) for dataset in args.datasets for seed in args.seeds
            for label in args.samplers]
    t_all = time.perf_counter()
    rows = []
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for row in pool.map(_run_one, jobs):
                rows.append(row)
                _print_row(row)
    else:
        for job in jobs:
            rows.append(_run_one(job))
            _print_row(rows[-1])
    df = pd.DataFrame(rows)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "reproduce.csv", index=False)
    cols = ["rsum", "relevant_rsum", "val_rel_rsum_last", "best_epoch", "sampled_fn_rate", "fne_on", "fn_auroc",
            "sim_auroc", "sec_per_epoch"]
    order = {name: i for i, name in enumerate(SAMPLERS)}
    lines = [
        f"Measured by `python bench/reproduce.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"(epochs {args.epochs}, seeds {' '.join(map(str, args.seeds))}, queue {args.queue_size}, "
        f"{args.threads} thread(s) x {args.jobs} job(s)); total {time.perf_counter() - t_all:.0f} s. "
        "Mean +- sd over seeds; relevant rSum counts any truly relevant item (test split, the kept = best "
        "validation epoch); val_rel_rsum_last: validation relevant rSum after the last epoch; fne_on: share of sampler steps "
        "that used the posterior; fn_auroc / sim_auroc: the run's posterior vs raw similarity at finding "
        "false negatives over the test pool.",
        "",
        "| dataset | sampler | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for (dataset, sampler), g in sorted(df.groupby(["dataset", "sampler"], sort=False),
                                        key=lambda kv: (list(args.datasets).index(kv[0][0]), order[_split(kv[0][1])[0]] + ("+" in kv[0][1]) / 2)):
        cells = []
        for c in cols:
            v = pd.to_numeric(g[c], errors="coerce").dropna()
            if not len(v):
                cells.append("-")
                continue
            prec = 3 if c in ("sampled_fn_rate", "fne_on", "fn_auroc", "sim_auroc") else 1
            cells.append(f"{v.mean():.{prec}f} +- {v.std(ddof=1):.{prec}f}" if len(v) > 1 else f"{v.mean():.{prec}f}")
        lines.append(f"| {dataset} | {sampler} | " + " | ".join(cells) + " |")
    lines += ["", "Checks of the claim (means over seeds):", *checks(df)]
    (out_dir / "reproduce.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
