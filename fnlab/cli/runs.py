"""``fnlab runs``: list the runs in a run store (with their status), show one, remove one.

A run is named by its folder path (``runs/my-run``), as in ``fnlab train --out`` and ``fnlab eval``;
a bare ``NAME`` that is nothing here is looked up in ``runs/``; with ``--runs DIR`` the argument is a run
name inside ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

_RUN_HELP = ("the run's folder, e.g. runs/my-run (a bare NAME that is nothing here is looked up in runs/); "
             "with --runs DIR: a run name inside DIR")


def _add_store_flag(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--runs", dest="runs_root", default=None, metavar="DIR", help=help_text)
    p.add_argument("--root", dest="runs_root", help=argparse.SUPPRESS)  # old spelling, kept working


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list, show and remove training runs",
                              description="List the runs in a run store with their status, show one run, or "
                              "remove one. " + __doc__.split("\n\n", 1)[1].strip())
    sub = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    p_list = sub.add_parser("list", help="list runs with their status (newest first)",
                            description="List runs: name, status, created, dataset, sampler and final metrics. "
                            "status: complete; running (a process is writing it); interrupted (its writer "
                            "died: remove it with 'fnlab runs rm', or train again with the same --out); "
                            "corrupt (a file is unreadable or changed, or run.json breaks its schema; the problem "
                            "column says which); not a run (a folder of the store without run.json: empty, copied "
                            "in, or someone else's; fnlab never removes it). Sizes are checked; --verify checks "
                            "every file's sha256 too.")
    _add_store_flag(p_list, "run store folder (default: runs)")
    p_list.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p_list.add_argument("--verify", action="store_true", help="check every file of every run against the sha256 "
                        "recorded when it finished (reads every file; without it only sizes are checked)")
    p_list.set_defaults(func=run_list)

    p_show = sub.add_parser("show", help="config, metrics and files of one run",
                            description="Show one run: its config, per-epoch metrics, evaluation and files. "
                            "Every file is checked against the sha256 recorded when the run finished.")
    p_show.add_argument("run", metavar="RUN", help=_RUN_HELP)
    _add_store_flag(p_show, "run store for a bare NAME (default: runs)")
    p_show.add_argument("--json", action="store_true", help="print one JSON object")
    p_show.set_defaults(func=run_show)

    p_rm = sub.add_parser("rm", help="remove a run (complete, interrupted or corrupt)",
                          description="Remove a run folder, or the staging folder an interrupted run left. "
                          "Only a run fnlab wrote is removed: a folder with its run.json holding nothing but the "
                          "run's files. Anything else (a run store, a folder of your own, a run holding files "
                          "fnlab did not write) is refused before anything is removed; a linked run is removed as "
                          "a link. A run that a live process is writing is refused.")
    p_rm.add_argument("run", metavar="RUN", help=_RUN_HELP)
    _add_store_flag(p_rm, "run store for a bare NAME (default: runs)")
    p_rm.set_defaults(func=run_rm)


def resolve(ref: str, runs_root: str | None):
    """``(RunStore, name)`` for a run reference (a folder path, or a bare name in ``runs_root``)."""
    from fnlab.storage.runs import RunStore

    if runs_root is not None:  # NAME inside --runs (never a path: '../x' is an invalid name)
        from fnlab.storage.runs import validate_name

        return RunStore(runs_root), validate_name(ref)
    path = Path(ref)
    store, name = RunStore.for_path(path)
    if "/" not in ref and not os.path.lexists(path):
        store = RunStore("runs")  # a bare NAME that is nothing here: the default store
    return store, name


def run_list(args: argparse.Namespace) -> int:
    from fnlab.core.files import dumps
    from fnlab.storage.runs import RunStore

    store = RunStore(args.runs_root or "runs")
    if store.root.exists() and not store.root.is_dir():
        raise NotADirectoryError(f"--runs {store.root}: not a folder; expected a run store folder")
    rows = store.rows(include_incomplete=True, verify=args.verify)  # plain dicts: no numpy or pandas to load
    cols = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{c: r.get(c) for c in cols} for r in rows]  # every row has every column (null where missing)
    if args.json:
        print(dumps(rows, default=str))  # NaN as null, like every JSON fnlab writes
        return 0
    if not rows:
        print(f"no runs in {store.root}")
        return 0
    print(format_table([{k: v for k, v in r.items() if k != "problem"} for r in rows]))
    for r in rows:
        if isinstance(r.get("problem"), str) and r["problem"]:
            print(f"{r['name']} ({r['status']}): {r['problem']}")
    return 0


def format_table(rows: list[dict]) -> str:
    """Rows as a text table: one column per key (in order of first appearance), numbers right-aligned with
    4 significant digits, missing values and NaN as ``-``."""
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    def numeric(c: str) -> bool:
        return all(isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool) or r.get(c) is None
                   for r in rows)

    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]
    right = [numeric(c) for c in cols]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)).rstrip()

    return "\n".join([line(cols), *(line(c) for c in cells)])


def run_show(args: argparse.Namespace) -> int:
    from fnlab.core.files import dumps  # numpy and pandas: loaded by the command, not by --help

    store, name = resolve(args.run, args.runs_root)
    run = store.load(name)
    run.verify()
    metrics = run.metrics
    evaluation = run.load_json("eval") if run.has("eval.json") else None
    if args.json:
        out = {"name": run.name, "path": str(run.path), **{k: v for k, v in run.info.items() if k != "files"},
               "config": run.config,
               "metrics": json.loads(metrics.to_json(orient="records")) if len(metrics) else [],
               "eval": evaluation, "files": run.files()}
        print(dumps(out, default=str))
        return 0
    print(f"run {run.name}  ({run.path})")
    print(f"created {run.info.get('created')}, finished {run.info.get('finished')}")
    print("config:")
    print(dumps(run.config, indent=2, default=str))
    print("metrics:")
    print(metrics.to_string(index=False, float_format=lambda v: f"{v:.4g}") if len(metrics) else "  (none)")
    for line in run_health(metrics):
        print(f"note: {line}")
    if evaluation is not None:
        print("eval:")
        print(dumps(evaluation, indent=2, default=str))
    checked = " (sha256 checked)" if run.checksums else ""
    print("files: " + ", ".join(run.files()) + checked)
    return 0


def run_health(metrics) -> list[str]:
    """Plain sentences on what a run's metrics say went wrong (empty when nothing did).

    * a sampler with a posterior (FNE) whose posterior never switched on after the warm-up sampled
      as SimANS: say so;
    * FNE's density rules ('adapt', 'leave') that read no density from some posteriors kept as 'keep' does there;
    * the kept (best validation) model scored no better than the warm-up.
    """
    out = []
    if len(metrics) and "posterior_active" in metrics.columns:
        after = metrics[metrics.get("warmup", 0) == 0] if "warmup" in metrics.columns else metrics
        active = after["posterior_active"].fillna(0.0)
        if len(after) and float(active.max()) == 0.0:
            out.append("the posterior never switched on after the warm-up: this FNE run sampled as SimANS "
                       "(paper mode needs more confident pairs per epoch: lower min_confident or use the "
                       "calibrated mode)")
        elif len(after):
            out.append(f"the posterior was active on {float(active.mean()):.0%} of the steps after the warm-up")
            prior = after["fne_prior"].dropna() if "fne_prior" in after.columns else []
            if len(prior) and float(prior.max()) < 1e-5:
                out.append(f"but its fitted prior stayed at {float(prior.max()):.1g}: the posterior found no false "
                           "negatives to remove, so FNE weighted like SimANS with its cut-down")
    if len(metrics) and "fne_density_read" in metrics.columns:
        read = metrics["fne_density_read"].dropna()
        if len(read) and float(read.min()) < 1.0:
            out.append(f"the density rule read no band density from {float(1.0 - read.mean()):.0%} of the posteriors "
                       "after the warm-up (their share of matches failed its checks: see the posterior's status); "
                       "there it kept each anchor's lowest-P share, as rule 'keep' does")
    if len(metrics) and "below_warmup" in metrics.columns and float(metrics["below_warmup"].iloc[-1] or 0) > 0:
        out.append("the kept model is no better than the warm-up's: the sampler epochs did not help")
    return out


def run_rm(args: argparse.Namespace) -> int:
    store, name = resolve(args.run, args.runs_root)
    link = store.root / name
    target = os.path.realpath(link) if link.is_symlink() else None
    store.delete(name)
    if target is not None:
        print(f"removed the link {link} (the run it pointed to, {target}, is untouched)")
    else:
        print(f"removed run {name!r} from {store.root}")
    return 0
