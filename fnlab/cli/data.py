"""``fnlab data``: list datasets, print their false-negative statistics, write the sample data."""

from __future__ import annotations

import argparse

from fnlab.cli.options import integer


def _descriptions() -> dict[str, tuple[str, bool | None]]:
    """``name -> (summary, has ground truth: True, or None when optional)`` from the dataset registry."""
    from fnlab.data import DATASETS

    return {e.name: (e.summary, True if e.meta.get("ground_truth") == "yes" else None) for e in DATASETS.entries()}


def _parse_option(text: str) -> tuple[str, object]:
    from fnlab.cli.options import parse_kv  # the CLI's one KEY=VALUE parser

    return parse_kv(text, "--option")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="datasets: list, info, make-sample",
                              description="List datasets, show their false-negative statistics, write sample data.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p_list = sub.add_parser("list", help="list the datasets fnlab can load",
                            description="List the dataset names fnlab.data.load accepts.")
    p_list.add_argument("--json", action="store_true", help="print a JSON list")
    p_list.set_defaults(func=run_list)

    p_info = sub.add_parser(
        "info", help="items, labelled/relevant pairs and false negatives per query",
        description="Items per side, labelled pairs, relevant pairs, false negatives per query (mean, max) and "
        "the share of queries (side-B items) with at least one. Ground-truth values are null without relevance.",
    )
    from fnlab.cli.options import registry_names

    p_info.add_argument("name", metavar="NAME", help=f"{registry_names('fnlab.data')}, or a saved dataset folder")
    p_info.add_argument("--split", default="train", choices=["train", "val", "test", "all"],
                        help="which split (default: train)")
    p_info.add_argument("--root", default=None, help="data folder (precomp, pairs)")
    p_info.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="loader option, e.g. -o genericness=0.5 (repeatable)")
    p_info.add_argument("--json", action="store_true", help="print one JSON object")
    p_info.set_defaults(func=run_info)

    p_make = sub.add_parser(
        "make-sample", help="write the small sample datasets (sample_data/shapes)",
        description="Regenerate the sample data the app opens on: OUT/shapes (a saved shapes dataset). An existing "
        "OUT/shapes is replaced only when it is a dataset fnlab saved (its dataset.json) holding nothing else.",
    )
    p_make.add_argument("--out", default="sample_data", help="output folder (default: sample_data)")
    p_make.add_argument("--n-train", type=integer(1), default=1000, help="training images (default: 1000)")
    p_make.add_argument("--n-val", type=integer(1), default=200, help="validation images (default: 200)")
    p_make.add_argument("--n-test", type=integer(1), default=200, help="test images (default: 200)")
    p_make.add_argument("--seed", type=integer(0), default=0, help="random seed (default: 0)")
    p_make.set_defaults(func=run_make_sample)


def run_list(args: argparse.Namespace) -> int:
    from fnlab.core.files import dumps  # numpy and pandas: loaded by the command, not by --help

    rows = []
    for name, (desc, gt) in _descriptions().items():
        rows.append({"name": name, "ground_truth": {True: "yes", False: "no", None: "optional"}[gt],
                     "description": desc})
    if args.json:
        print(dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}} {'ground truth':<13} description")
    for r in rows:
        print(f"{r['name']:<{width}} {r['ground_truth']:<13} {r['description']}")
    print("Also: a folder holding a saved dataset (dataset.json), e.g. sample_data/shapes.")
    return 0


def info_dict(name: str, split: str = "train", root: str | None = None, options: dict | None = None) -> dict:
    """The ``fnlab data info --json`` object."""
    from fnlab.data import load

    ds = load(name, split=split, root=root, **(options or {}))
    out = {"dataset": name, "split": split, **ds.stats().as_dict()}
    out["a_kind"], out["b_kind"] = ds.a_kind, ds.b_kind
    out["a_modality"], out["b_modality"] = ds.a_modality, ds.b_modality
    for side, kind, arr in (("a", ds.a_kind, ds.a_inputs), ("b", ds.b_kind, ds.b_inputs)):
        if kind == "features" and arr is not None:
            out[f"{side}_dim"] = int(arr.shape[-1])
    return out


def run_info(args: argparse.Namespace) -> int:
    from fnlab.core.files import dumps  # numpy and pandas: loaded by the command, not by --help

    options = dict(_parse_option(o) for o in args.option)
    info = info_dict(args.name, args.split, args.root, options)
    if args.json:
        print(dumps(info))
        return 0
    from fnlab.data.base import nouns_for

    words = nouns_for(info["a_modality"], info["b_modality"])
    labels = {
        "items_a": f"items, side A ({words.a_plural})", "items_b": f"items, side B ({words.b_plural})",
        "labelled_pairs": "labelled pairs", "relevant_pairs": "relevant pairs (ground truth)",
        "fn_per_query_mean": f"false negatives per {words.b}, mean",
        "fn_per_query_max": f"false negatives per {words.b}, max",
        "share_queries_with_fn": f"share of {words.b_plural} with >= 1 false negative",
    }
    kinds = [f"{side}: {info[f'{key}_kind']}" + (f" [{info[f'{key}_dim']}]" if f"{key}_dim" in info else "")
             for side, key in (("A", "a"), ("B", "b"))]
    print(f"dataset {info['dataset']}, split {info['split']} ({', '.join(kinds)})")
    for key, label in labels.items():
        v = info[key]
        text = "n/a (no ground truth)" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
        print(f"  {label:<44} {text}")
    return 0


def run_make_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fnlab.core import ownership
    from fnlab.data import load
    from fnlab.data.io import save_dataset

    ownership.check(Path(args.out) / "shapes", ownership.DATASET, label="--out", action="replace")  # before any work
    ds = load("shapes", split="all", n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed)
    folder = save_dataset(ds, Path(args.out) / "shapes")
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"wrote {folder} ({ds.n_a} images, {ds.n_b} captions, {size / 1e6:.1f} MB)")
    return 0
