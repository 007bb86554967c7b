"""How far can ``(1 - P)`` weighting take FNE's false-negative rate? Inside FNE's band, on a run's embeddings.

FNE (calibrated) samples from the candidates above the mean positive similarity minus its margin, with
weights ``exp(-tau (s - s+)^2) (1 - P)``. This measures, over every (caption, unlabelled image) pair of
one split of a run, inside that band:

- the share of false negatives (ground truth);
- how well the run's posterior (``posterior.json``, labels only) separates them from true negatives
  (AUROC), and the false-negative share left after weighting by ``(1 - P)``;
- the same for a *supervised ceiling*: a gradient-boosted classifier trained with ground truth on the
  same pair signals (3-fold cross-fitted), i.e. about the best any posterior over these signals can do.

    python bench/fne_band.py                      # trains the demo run's configuration into runs/bench-band
    python bench/fne_band.py --run runs/demo --split test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np


def band_report(run: Path, split: str, margin: float = 0.2, tau: float = 0.5) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from fnlab import data
    from fnlab import posterior as P
    from fnlab.core.files import read_json

    spec = read_json(run / "config.json")["dataset"]
    ds = data.load(spec["name"], split=split, root=spec.get("root"), **(spec.get("options") or {}))
    ea = np.load(run / f"emb_a_{split}.npy", allow_pickle=False)
    eb = np.load(run / f"emb_b_{split}.npy", allow_pickle=False)
    post = P.from_params(read_json(run / "posterior.json"))
    lab = ds.labelled_matrix().toarray().astype(bool)
    rel = lab | ds.false_negative_matrix().toarray().astype(bool)
    ctx = P.PairContext.from_dataset(ea, eb, ds, direction="t2i")
    nq, nc = rel.shape
    q, c = np.repeat(np.arange(nq), nc), np.tile(np.arange(nc), nq)
    keep = ~lab[q, c]
    q, c = q[keep], c[keep]
    sig = ctx.signals(q, c)
    y = rel[q, c]
    s, s_pos = sig.similarity.numpy(), sig.positive_similarity.numpy()
    band = s > s_pos.mean() - margin
    x = np.column_stack([sig.numpy(n) for n in sig.offered()] + [s - s_pos])[band]
    yb, qb = y[band], q[band]
    p_post = P.prob_false_negative(post, sig).numpy()[band]
    p_ceil = cross_val_predict(HistGradientBoostingClassifier(max_iter=200, random_state=0), x, yb, cv=3,
                               method="predict_proba")[:, 1]
    base = np.exp(-tau * (s - s_pos) ** 2)[band]

    def share(w: np.ndarray) -> float:  # mean over captions of the false-negative share of their weight
        num, den = np.bincount(qb, w * yb, minlength=nq), np.bincount(qb, w, minlength=nq)
        return float((num[den > 0] / den[den > 0]).mean())

    return {"band_share": float(band.mean()), "fn_share_in_band": float(yb.mean()), "base": share(base),
            "posterior_auroc": float(roc_auc_score(yb, p_post)), "posterior": share(base * (1 - p_post)),
            "ceiling_auroc": float(roc_auc_score(yb, p_ceil)), "ceiling": share(base * (1 - p_ceil))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=None, help="a run folder (default: train the demo configuration)")
    ap.add_argument("--split", default="test")
    args = ap.parse_args(argv)
    run = Path(args.run) if args.run else Path("runs/bench-band/demo-config")
    if not (run / "run.json").exists():
        cmd = [sys.executable, "-m", "fnlab.cli", "train", "--dataset", "shapes-precomp", "--epochs", "2", "--seed", "0",
               "--out", str(run), "--no-progress", "--no-pages", "--overwrite"]
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    r = band_report(run, args.split)
    print(f"run {run}, split {args.split}: FNE's band holds {r['band_share']:.1%} of the unlabelled pairs, "
          f"{r['fn_share_in_band']:.1%} of them false negatives")
    print(f"false-negative share of FNE's weight in the band: base weight only {r['base']:.3f}; "
          f"x (1 - P) with the run's posterior {r['posterior']:.3f} (band AUROC {r['posterior_auroc']:.3f}); "
          f"x (1 - P) with the supervised ceiling {r['ceiling']:.3f} (band AUROC {r['ceiling_auroc']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
