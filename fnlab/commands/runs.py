"""``fnlab runs``: list the runs in a run store and show one."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list and show training runs",
                              description="List the complete runs in a run store, or show one run.")
    sub = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    p_list = sub.add_parser("list", help="list complete runs (newest first)",
                            description="List complete runs: name, created, dataset, sampler and final metrics.")
    p_list.add_argument("--root", default="runs", help="run store folder (default: runs)")
    p_list.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p_list.set_defaults(func=run_list)

    p_show = sub.add_parser("show", help="config, metrics and files of one run",
                            description="Show one run: its config, per-epoch metrics, evaluation and files.")
    p_show.add_argument("name", metavar="NAME", help="run name (see fnlab runs list)")
    p_show.add_argument("--root", default="runs", help="run store folder (default: runs)")
    p_show.add_argument("--json", action="store_true", help="print one JSON object")
    p_show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    from fnlab.runs import RunStore

    store = RunStore(args.root)
    df = store.list()
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    if df.empty:
        print(f"no complete runs in {store.root}")
    else:
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    pending = store.in_progress()
    if pending:
        print(f"\nin progress or interrupted ({len(pending)}): {', '.join(pending)}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from fnlab.runs import RunStore

    run = RunStore(args.root).load(args.name)
    metrics = run.metrics
    evaluation = run.load_json("eval") if run.has("eval.json") else None
    if args.json:
        out = {"name": run.name, "path": str(run.path), **run.info, "config": run.config,
               "metrics": json.loads(metrics.to_json(orient="records")) if len(metrics) else [],
               "eval": evaluation, "files": run.files()}
        print(json.dumps(out, default=str))
        return 0
    print(f"run {run.name}  ({run.path})")
    print(f"created {run.info.get('created')}, finished {run.info.get('finished')}")
    print("config:")
    print(json.dumps(run.config, indent=2, default=str))
    print("metrics:")
    print(metrics.to_string(index=False, float_format=lambda v: f"{v:.4g}") if len(metrics) else "  (none)")
    if evaluation is not None:
        print("eval:")
        print(json.dumps(evaluation, indent=2, default=str))
    print("files: " + ", ".join(run.files()))
    return 0
