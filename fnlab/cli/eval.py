"""``fnlab eval``: retrieval and false-negative metrics of a finished run."""

from __future__ import annotations

import argparse
import math

from fnlab.cli.options import integer


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="retrieval and false-negative metrics of a run",
        description="Recall@1/5/10 both ways and rSum (Flickr30K/COCO protocol), relevant recall, R-precision, "
        "FN-detection AUROC/AP/ECE of the run's posterior and the sampled false-negative rate. Ground-truth "
        "parts are null where the dataset has no relevance.",
    )
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by fnlab train, e.g. runs/my-run")
    p.add_argument("--split", default="test", choices=["test", "val", "train", "all"],
                   help="split to evaluate (default: test); one the run did not save is encoded with its model")
    p.add_argument("--fn-top-k", type=integer(1), default=None, help="FN-detection candidates per caption "
                   "(default: the run's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def evaluate_run(run_dir: str, split: str = "test", fn_top_k: int | None = None) -> dict:
    """Metrics of the run in ``run_dir`` on ``split``, from its saved embeddings.

    The run is read through :class:`fnlab.storage.loader.LoadedRun`, as the app reads it: without a
    ``posterior.json`` the run's own estimator is fitted (the one its config names).

    Raises:
        FileNotFoundError: not a finished run, or the split's embeddings are missing.
        ValueError: the run's files do not match its dataset.
    """
    import numpy as np

    from fnlab.analysis.evaluate import evaluate_embeddings
    from fnlab.storage.loader import LoadedRun

    r = LoadedRun.open(run_dir)
    r.verify()  # every file against the sha256 in run.json: a truncated model.pt is named, not evaluated
    if split not in r.splits:
        raise FileNotFoundError(f"run {r.name!r}: no emb_a_{split}.npy / emb_b_{split}.npy and no model to encode "
                                f"the split with (saved splits: {', '.join(r.saved_splits) or 'none'})")
    ds = r.dataset(split)
    emb_a, emb_b = r.embeddings(split)
    posterior = r.posterior()  # posterior.json, else the run's own estimator fitted as training fits it
    rate = None
    metrics = r.metrics
    if "sampled_fn_rate" in metrics and len(metrics):
        last = float(metrics["sampled_fn_rate"].iloc[-1])
        rate = None if math.isnan(last) else last
    top_k = fn_top_k if fn_top_k is not None else int(r.config.get("fn_top_k", 10))
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"--fn-top-k {top_k!r}: expected an integer >= 1")
    a_view = view = None
    if posterior is not None and any(n.startswith("view_") for n in posterior.signals):
        from fnlab.data.minilm import (  # the posterior reads the texts' second view
            DEFAULT_ENCODER,
            dataset_views,
        )

        a_view, view = dataset_views(ds, r.config.get("view_encoder") or DEFAULT_ENCODER)
    out = evaluate_embeddings(np.array(emb_a), np.array(emb_b), ds, posterior=posterior, sampled_fn_rate=rate,
                              fn_top_k=top_k, text_view=view, a_view=a_view)
    return out


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)


def run(args: argparse.Namespace) -> int:
    from fnlab.core.files import dumps  # numpy and pandas: loaded by the command, not by --help

    out = evaluate_run(args.run_dir, args.split, args.fn_top_k)
    if args.json:
        print(dumps(out))  # NaN as null, like every JSON fnlab writes
        return 0
    print(f"split {args.split}")
    for key in ("recall", "relevant_recall"):
        block = out[key]
        if block is None:
            continue
        for d in ("i2t", "t2i"):
            print(f"{key:16s} {d}: " + "  ".join(f"R@{k} {_fmt(v)}" for k, v in block[d].items()))
        print(f"{key:16s} rsum: {_fmt(block['rsum'])}")
    if out["r_precision"]:
        print(f"r_precision      i2t {_fmt(out['r_precision']['i2t'])}  t2i {_fmt(out['r_precision']['t2i'])}")
    if out["fn_detection"]:
        det = out["fn_detection"]
        print(f"fn_detection     auroc {_fmt(det['auroc'])}  ap {_fmt(det['ap'])}  ece {_fmt(det['ece'])}")
        if det.get("status"):
            reason = f" ({det['status_reason']})" if det.get("status_reason") else ""
            print(f"posterior        {det['status']}{reason}")
    print(f"sampled_fn_rate  {_fmt(out['sampled_fn_rate'])}")
    return 0
