"""False-negative detection of every posterior estimator, next to ranking by raw similarity.

For each dataset, the default run (``fnlab train --dataset NAME --seed 0``) is trained (or an
existing run folder is reused), every estimator of :mod:`fnlab.posterior` is fitted on its
validation split (labels only) and scored on the test split against ground truth: over every
unlabelled pair (the pool) and over each caption's 10 most similar unlabelled images (the top of the
ranking), with AUROC, AP, ECE and the estimated prior next to the true share of false negatives.
A supervised classifier trained with ground truth on the same signals gives the ceiling any
posterior over them could reach.

    python bench/fn_detection.py                                  # shapes, digits
    python bench/fn_detection.py --datasets shapes-precomp digits-precomp --runs-root runs/bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: dataset options that give a test split of at least 1,000 images (digits has 1,797 images in all;
#: digits-precomp also holds out a pretraining fold)
N_TEST_OPTIONS = {
    "shapes": ("n_test=1000",),
    "shapes-precomp": ("n_test=1000",),
    "digits": ("n_test=1000", "n_val=300"),
    "digits-precomp": ("n_test=1000", "n_val=200", "n_pretrain=300"),
}


def ensure_run(dataset: str, root: Path, seed: int, options: tuple[str, ...] = ()) -> Path:
    tag = "".join(f"-{o.replace('=', '')}" for o in options)
    out = root / f"{dataset}{tag}-seed{seed}"
    if not (out / "run.json").exists():
        cmd = [sys.executable, "-m", "fnlab.cli", "train", "--dataset", dataset, "--seed", str(seed), "--out", str(out),
               "--no-progress", "--overwrite", *[a for o in options for a in ("-o", o)]]
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return out


def score(dataset: str, run_dir: Path, seed: int) -> list[dict]:
    from fnlab import data
    from fnlab import posterior as P
    from fnlab.analysis.evaluate import fn_candidates, fn_detection, pool_candidates
    from fnlab.core.files import read_json

    cfg = read_json(run_dir / "config.json")
    spec = cfg["dataset"]

    def split(name):
        ds = data.load(spec["name"], split=name, root=spec.get("root"), **(spec.get("options") or {}))
        ea = np.load(run_dir / f"emb_a_{name}.npy", allow_pickle=False)
        eb = np.load(run_dir / f"emb_b_{name}.npy", allow_pickle=False)
        return ds, ea, eb

    val, test = split("val"), split("test")
    ctx = P.PairContext.from_dataset(test[1], test[2], test[0])
    pool = pool_candidates(test[1], test[2], test[0])
    top = fn_candidates(test[1], test[2], test[0], top_k=10)
    rows = [supervised_ceiling(dataset, val, test, ctx, pool, top, run_dir)]
    for name in P.available():
        t = time.perf_counter()
        post = P.fit_dataset(val[1], val[2], val[0], name, seed=seed)
        fit_s = time.perf_counter() - t
        a, b = fn_detection(pool, post, ctx), fn_detection(top, post, ctx)
        rows.append({"dataset": dataset, "estimator": name, "prior": float(post.prior_pos),
                     "true_prior": a["true_rate"], "pool_auroc": a["auroc"], "pool_auroc_sim": a["similarity_auroc"],
                     "pool_ap": a["ap"], "pool_ap_sim": a["similarity_ap"], "pool_ece": a["ece"],
                     "top10_auroc": b["auroc"], "top10_auroc_sim": b["similarity_auroc"], "top10_ap": b["ap"],
                     "top10_ap_sim": b["similarity_ap"], "top10_ece": b["ece"], "fit_s": fit_s,
                     "features": list(getattr(post, "features_", ())), "run": str(run_dir)})
    return rows


def supervised_ceiling(dataset: str, val, test, test_ctx, pool, top, run_dir: Path) -> dict:
    """What any posterior over the pair signals could reach: a gradient-boosted classifier trained
    WITH ground truth on the validation pool's signals (every feature of :mod:`fnlab.posterior.pu`),
    scored on the test split. Not an estimator (it needs the labels fnlab never has); a reference."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fnlab import posterior as P
    from fnlab.analysis.evaluate import pool_candidates
    from fnlab.posterior.pu import FEATURES, features_of

    names = tuple(FEATURES)
    vctx = P.PairContext.from_dataset(val[1], val[2], val[0])
    vpool = pool_candidates(val[1], val[2], val[0])
    clf = HistGradientBoostingClassifier(max_iter=300, random_state=0)
    clf.fit(features_of(vctx.signals(vpool.query, vpool.candidate), names).numpy(), vpool.label)

    def scored(c):
        p = clf.predict_proba(features_of(test_ctx.signals(c.query, c.candidate), names).numpy())[:, 1]
        return roc_auc_score(c.label, p), average_precision_score(c.label, p), c.label.mean()

    (pa, pp, rate), (ta, tp, _) = scored(pool), scored(top)
    nan = float("nan")
    return {"dataset": dataset, "estimator": "supervised ceiling", "prior": nan, "true_prior": float(rate),
            "pool_auroc": pa, "pool_auroc_sim": None, "pool_ap": pp, "pool_ap_sim": None, "pool_ece": None,
            "top10_auroc": ta, "top10_auroc_sim": None, "top10_ap": tp, "top10_ap_sim": None, "top10_ece": None,
            "fit_s": None, "features": list(names), "run": str(run_dir)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["shapes", "digits"])
    ap.add_argument("--runs-root", default="runs/bench-fn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/fn_detection.md")
    args = ap.parse_args(argv)
    rows = []
    for ds in args.datasets:
        rows += score(ds, ensure_run(ds, Path(args.runs_root), args.seed), args.seed)

    def f(v):
        return "—" if v is None else f"{v:.3f}"

    lines = ["# False-negative detection: posterior vs raw similarity", "",
             f"`python bench/fn_detection.py --datasets {' '.join(args.datasets)} --seed {args.seed}`: the default "
             "run of each dataset, estimators fitted on its val split (labels only), scored on its test split. "
             "Parentheses: ranking the same pairs by raw similarity. `supervised ceiling`: a gradient-boosted "
             "classifier trained with ground truth on the val split's pair signals, what any posterior over "
             "these signals could reach (not an estimator).", "",
             "| dataset | estimator | prior (true) | pool AUROC | pool AP | pool ECE | top-10 AUROC | top-10 AP | "
             "top-10 ECE |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        prior = "—" if r["prior"] != r["prior"] else f"{r['prior']:.3g}"
        lines.append(f"| {r['dataset']} | {r['estimator']} | {prior} ({r['true_prior']:.3g}) | "
                     f"{f(r['pool_auroc'])} ({f(r['pool_auroc_sim'])}) | {f(r['pool_ap'])} ({f(r['pool_ap_sim'])}) | "
                     f"{f(r['pool_ece'])} | {f(r['top10_auroc'])} ({f(r['top10_auroc_sim'])}) | "
                     f"{f(r['top10_ap'])} ({f(r['top10_ap_sim'])}) | {f(r['top10_ece'])} |")
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
