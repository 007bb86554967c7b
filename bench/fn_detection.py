"""False-negative detection of every posterior estimator on the built-in datasets, next to raw similarity
and next to a ground-truth ceiling fitted on the same evidence.

For each dataset and seed, the default run (``fnlab train --dataset NAME --seed S`` with a test split of
at least 1,000 images, :data:`N_TEST_OPTIONS`) is trained (or an existing run folder is reused). Every
estimator of :mod:`fnlab.posterior` is fitted on its validation split (labels only) and scored on its test
split against ground truth: over every unlabelled (caption, image) pair (the pool) and over each caption's
10 most similar unlabelled images (the rows a scan shows): AUROC, AP and ECE, precision and recall at
P > 0.5 and P > 0.9, the estimated prior next to the true share, fit time, EM iterations and the
posterior's status. ``pu`` runs twice: on the embeddings alone and with the text view (MiniLM embeddings
of the captions, :func:`fnlab.data.minilm.dataset_text_view`; the ``*-precomp`` sets' shipped ones, never
encoded again).

The ``ceiling`` rows are not estimators: a gradient-boosted classifier trained WITH ground truth on the
validation pool's pair features (every feature of :mod:`fnlab.posterior.linear`, with or without the text
view), scored on the test split: about the best any posterior over the same evidence could do.
``gain captured`` is ``(AUROC(pu) - AUROC(similarity)) / (AUROC(ceiling) - AUROC(similarity))`` on the
same evidence.

    python bench/fn_detection.py                                     # 4 datasets, seeds 0 1 2
    python bench/fn_detection.py --datasets shapes-precomp --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: dataset options that give a test split of at least 1,000 images (digits has 1,797 images in all;
#: digits-precomp also holds out a pretraining fold)
N_TEST_OPTIONS = {
    "shapes": ("n_test=1000",),
    "shapes-precomp": ("n_test=1000",),
    "digits": ("n_test=1000", "n_val=300"),
    "digits-precomp": ("n_test=1000", "n_val=200", "n_pretrain=300"),
}
TOP_K = 10


def ensure_run(dataset: str, root: Path, seed: int, options: tuple[str, ...] = ()) -> Path:
    tag = "".join(f"-{o.replace('=', '')}" for o in options)
    out = root / f"{dataset}{tag}-seed{seed}"
    if not (out / "run.json").exists():
        cmd = [sys.executable, "-m", "fnlab.cli", "train", "--dataset", dataset, "--seed", str(seed), "--out", str(out),
               "--no-progress", "--no-pages", "--overwrite", *[a for o in options for a in ("-o", o)]]
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return out


def _split(run_dir: Path, name: str):
    from fnlab import data
    from fnlab.core.files import read_json

    spec = read_json(run_dir / "config.json")["dataset"]
    ds = data.load(spec["name"], split=name, root=spec.get("root"), **(spec.get("options") or {}))
    return (ds, np.load(run_dir / f"emb_a_{name}.npy", allow_pickle=False),
            np.load(run_dir / f"emb_b_{name}.npy", allow_pickle=False))


def _scored(post, ctx, cands) -> dict:
    """Metrics of a posterior on candidate pairs (``fnlab.analysis.evaluate.Candidates``)."""
    from fnlab.analysis.evaluate import expected_calibration_error
    from fnlab.posterior import prob_false_negative

    p = np.nan_to_num(prob_false_negative(post, ctx.signals(cands.query, cands.candidate)).double().numpy(), nan=0.0)
    return _metrics(p, cands.label, cands.similarity) | {"ece": expected_calibration_error(p, cands.label)}


def _metrics(p: np.ndarray, y: np.ndarray, sims: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y, bool)
    both = 0 < y.sum() < y.size
    out = {"auroc": float(roc_auc_score(y, p)) if both else None, "ap": float(average_precision_score(y, p)) if both
           else None, "auroc_sim": float(roc_auc_score(y, sims)) if both else None,
           "ap_sim": float(average_precision_score(y, sims)) if both else None, "true_rate": float(y.mean())}
    for t in (0.5, 0.9):
        hit = p > t
        out[f"precision_{t}"] = float(y[hit].mean()) if hit.any() else None
        out[f"recall_{t}"] = float(hit[y].mean()) if y.any() else None
    return out


def score(dataset: str, run_dir: Path, seed: int, *, estimators: list[str]) -> list[dict]:
    from fnlab import posterior as P
    from fnlab.analysis.evaluate import fn_candidates, pool_candidates
    from fnlab.data.minilm import dataset_text_view

    val, test = _split(run_dir, "val"), _split(run_dir, "test")
    views = {"val": dataset_text_view(val[0]), "test": dataset_text_view(test[0])}
    pool = pool_candidates(test[1], test[2], test[0])
    top = fn_candidates(test[1], test[2], test[0], top_k=TOP_K)
    rows = []
    for view in (False, True):
        vv, tv = (views["val"], views["test"]) if view else (None, None)
        if view and vv is None:
            continue
        rows.append(ceiling(dataset, val, test, vv, tv, pool, top, seed, view))
        for name in estimators if not view else ["pu"]:
            t = time.perf_counter()
            extra = {"window": TOP_K} if name == "pu" else {}
            post = P.fit(name, P.PairContext.from_dataset(val[1], val[2], val[0], query_view=vv, window=TOP_K),
                         seed=seed, **extra)
            fit_s = time.perf_counter() - t
            ctx = P.PairContext.from_dataset(test[1], test[2], test[0], query_view=tv, window=post.window or TOP_K)
            params = post.params()
            rows.append({"dataset": dataset, "seed": seed, "estimator": name + (" + text view" if view else ""),
                         "prior": float(post.prior_pos), "pool": _scored(post, ctx, pool), "top": _scored(post, ctx, top),
                         "fit_s": fit_s, "em_iter": params.get("n_iter"), "status": str(post.status),
                         "signals": list(post.signals), "run": str(run_dir)})
    return rows


def ceiling(dataset: str, val, test, val_view, test_view, pool, top, seed: int, view: bool) -> dict:
    """A gradient-boosted classifier trained WITH ground truth on the validation pool's pair features (the
    same evidence the posterior reads), scored on the test split. A reference, not an estimator."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fnlab import posterior as P
    from fnlab.analysis.evaluate import pool_candidates
    from fnlab.posterior.linear import FEATURES, features_of

    names = tuple(FEATURES)
    vctx = P.PairContext.from_dataset(val[1], val[2], val[0], query_view=val_view)
    tctx = P.PairContext.from_dataset(test[1], test[2], test[0], query_view=test_view)
    vpool = pool_candidates(val[1], val[2], val[0])
    x = features_of(vctx.signals(vpool.query, vpool.candidate), names).numpy()
    keep = np.isfinite(x).any(axis=0)
    clf = HistGradientBoostingClassifier(max_iter=300, early_stopping=False, random_state=seed)
    clf.fit(x[:, keep], vpool.label)

    def scored(c):
        xt = features_of(tctx.signals(c.query, c.candidate), names).numpy()[:, keep]
        return _metrics(clf.predict_proba(xt)[:, 1], c.label, c.similarity)

    return {"dataset": dataset, "seed": seed, "estimator": "ceiling" + (" + text view" if view else ""),
            "prior": float("nan"), "pool": scored(pool), "top": scored(top), "fit_s": None, "em_iter": None,
            "status": "trained with ground truth", "signals": [n for n, k in zip(names, keep, strict=True) if k]}


def _mean_sd(vals: list) -> str:
    vals = [v for v in vals if v is not None and v == v]
    if not vals:
        return "—"
    return f"{np.mean(vals):.3f}" if len(vals) == 1 else f"{np.mean(vals):.3f}±{np.std(vals):.3f}"


def _commit() -> str:
    return subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()


def report(rows: list[dict], command: str, commit: str | None = None) -> str:
    """``commit``: the code the run imported (read when it started; the tree may move on during a long run)."""
    commit = commit or _commit()
    lines = ["# False-negative detection: posterior vs raw similarity vs a ground-truth ceiling", "",
             f"`{command}` at commit {commit}, {time.strftime('%Y-%m-%d %H:%M')}, load average "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs. Mean ± sd over seeds. Estimators fitted on the "
             "val split (labels only), scored on the test split (>= 1,000 images). Parentheses: raw similarity "
             "on the same pairs. top-10: each caption's 10 most similar unlabelled images (what a scan shows).",
             "", "| dataset | estimator | prior (true) | pool AUROC | pool AP | pool ECE | top-10 AUROC | top-10 AP | "
             "top-10 ECE | top-10 prec>0.9 | fit s | status |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["estimator"]), []).append(r)
    for (ds, est), rs in groups.items():
        def col(part, key, rs=rs):
            return _mean_sd([r[part][key] for r in rs])
        prior = _mean_sd([r["prior"] for r in rs])
        lines.append(f"| {ds} | {est} | {prior} ({_mean_sd([r['pool']['true_rate'] for r in rs])}) | "
                     f"{col('pool', 'auroc')} ({col('pool', 'auroc_sim')}) | {col('pool', 'ap')} ({col('pool', 'ap_sim')}) | "
                     f"{col('pool', 'ece') if 'ece' in rs[0]['pool'] else '—'} | {col('top', 'auroc')} "
                     f"({col('top', 'auroc_sim')}) | {col('top', 'ap')} ({col('top', 'ap_sim')}) | "
                     f"{col('top', 'ece') if 'ece' in rs[0]['top'] else '—'} | {col('top', 'precision_0.9')} | "
                     f"{_mean_sd([r['fit_s'] for r in rs])} | {'; '.join(sorted({r['status'] for r in rs}))} |")
    lines += ["", "Gain captured: (AUROC(pu) - AUROC(similarity)) / (AUROC(ceiling) - AUROC(similarity)), same "
              "evidence, mean over seeds.", "", "| dataset | evidence | pool | top-10 |", "|---|---|---|---|"]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for suffix, label in (("", "embeddings"), (" + text view", "embeddings + text view")):
            pu, ceil = groups.get((ds, "pu" + suffix)), groups.get((ds, "ceiling" + suffix))
            if not pu or not ceil:
                continue
            cells = []
            for part in ("pool", "top"):
                gains = []
                for a, b in zip(sorted(pu, key=lambda r: r["seed"]), sorted(ceil, key=lambda r: r["seed"]), strict=True):
                    room = b[part]["auroc"] - a[part]["auroc_sim"]
                    gains.append((a[part]["auroc"] - a[part]["auroc_sim"]) / room if room > 0 else None)
                cells.append(_mean_sd(gains))
            lines.append(f"| {ds} | {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(N_TEST_OPTIONS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--estimators", nargs="+", default=None, help="default: every estimator")
    ap.add_argument("--runs-root", default="runs/bench-fn")
    ap.add_argument("--out", default=str(HERE / "results" / "fn_detection.md"))
    args = ap.parse_args(argv)
    from fnlab import posterior as P

    commit = _commit()
    command = " ".join(["python bench/fn_detection.py", *(argv if argv is not None else sys.argv[1:])])
    rows = []
    for ds in args.datasets:
        for seed in args.seeds:
            run = ensure_run(ds, Path(args.runs_root), seed, N_TEST_OPTIONS.get(ds, ()))
            got = score(ds, run, seed, estimators=args.estimators or P.available())
            for r in got:
                print(f"{ds} seed {seed} {r['estimator']}: pool AUROC {r['pool']['auroc']:.3f} top-10 AUROC "
                      f"{r['top']['auroc']:.3f} pool ECE {r['pool'].get('ece', float('nan')):.3f} top ECE "
                      f"{r['top'].get('ece', float('nan')):.3f} prior {r['prior']:.3g} ({r['pool']['true_rate']:.3g})",
                      flush=True)
            rows += got
    text = report(rows, command, commit)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
