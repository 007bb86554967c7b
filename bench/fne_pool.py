"""Where FNE samples, inside the training pool: how many false negatives are there, and how far can any
posterior over the pool's signals take them out?

FNE (calibrated) draws each anchor's negative from the pool candidates above the step's mean positive
similarity minus its margin (the band), with weights ``exp(-tau (s - s+)^2) (1 - P)``. This trains one
FNE run and, every ``--every``-th sampler call after the warm-up, records every (anchor, candidate) pair
of the band with its ground truth (instrumentation only: the run's draws are unchanged). It prints, per
direction:

- the band's false-negative share, and the false-negative share of the sampling weight (the expected
  sampled false-negative rate) under the base weight, under ``(1 - P)`` with the run's posterior reading
  ``s, s+`` only and with the pool's transitive signals (:mod:`fnlab.posterior.pool`), and with
  elimination (weight 0 where ``P > 0.5``);
- the posterior's AUROC in the band and its calibration there (mean P against the true share);
- a *supervised ceiling*: a gradient-boosted classifier trained WITH ground truth on the same signals
  (3-fold cross-fitted over the recorded pairs, folds shuffled across steps), weighted the same ways: about the best any posterior
  over these signals can do inside this band.

    python bench/fne_pool.py --dataset shapes-precomp
    python bench/fne_pool.py --dataset digits-precomp --epochs 3 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnlab import data  # noqa: E402
from fnlab.posterior import PairSignals  # noqa: E402
from fnlab.samplers.fne import FNESampler, pool_signals_of  # noqa: E402
from fnlab.training.train import TrainConfig, train  # noqa: E402


@contextmanager
def recording(relevance, every: int):
    """Patch :meth:`FNESampler.sample` to record the band of every ``every``-th call (draws unchanged)."""
    rel = {"t2i": relevance.tocsr(), "i2t": relevance.T.tocsr()}
    records, calls = [], [0]
    original = FNESampler.sample

    def sample(self, sims, pos_sims, positive_mask, k=1, generator=None, **ctx):
        drawn = original(self, sims, pos_sims, positive_mask, k=k, generator=generator, **ctx)
        calls[0] += 1
        pool = ctx.get("pool")
        if self.posterior is None or pool is None or calls[0] % every:
            return drawn
        post = self.by_direction.get(ctx["direction"], self.posterior)
        band = (sims > ctx["positive_mean"].double() - self.margin) & ~positive_mask
        rows, cols = band.nonzero(as_tuple=True)
        wanted = pool_signals_of(post)
        full = pool.pair_signals(sims, pos_sims, wanted, rows, cols)
        anchors = pool.anchor_ids[rows].numpy().copy()
        cands = pool.candidate_ids[cols].numpy().copy()
        records.append({
            "direction": ctx["direction"], "rows": rows.numpy(), "n_rows": sims.shape[0],
            "y": np.asarray(rel[ctx["direction"]][anchors, cands]).ravel().astype(bool),
            "base": torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2)[rows, cols].numpy(),
            "p_sim": post.prob_false_negative(PairSignals(full.similarity, full.positive_similarity)).numpy(),
            "p_pool": post.prob_false_negative(full).numpy(),
            "x": np.column_stack([full.similarity.numpy(), full.positive_similarity.numpy()]
                                 + [getattr(full, n).numpy() for n in wanted]),
            "features": post.features_ if hasattr(post, "features_") else (),
        })
        return drawn

    FNESampler.sample = sample
    try:
        yield records
    finally:
        FNESampler.sample = original


def fn_share(rec: dict, w: np.ndarray) -> float:
    """Mean over anchors of the false-negative share of their sampling weight (the expected sampled rate)."""
    num = np.bincount(rec["rows"], w * rec["y"], minlength=rec["n_rows"])
    den = np.bincount(rec["rows"], w, minlength=rec["n_rows"])
    ok = den > 0
    return float((num[ok] / den[ok]).mean())


def report(records: list[dict], direction: str) -> list[str]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import KFold, cross_val_predict

    recs = [r for r in records if r["direction"] == direction]
    y = np.concatenate([r["y"] for r in recs])
    x = np.concatenate([r["x"] for r in recs])
    x = np.column_stack([x, x[:, 0] - x[:, 1]])
    # folds shuffled across the recorded steps: the classifier sees every epoch's pool (an optimistic ceiling)
    ceiling = cross_val_predict(HistGradientBoostingClassifier(max_iter=200, random_state=0), x, y,
                                cv=KFold(3, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    bounds = np.cumsum([0] + [len(r["y"]) for r in recs])
    for r, a, b in zip(recs, bounds[:-1], bounds[1:], strict=True):
        r["p_ceiling"] = ceiling[a:b]
    lines = [f"{direction}: {len(recs)} recorded steps, {len(y):,} band pairs, false-negative share {y.mean():.3f}; "
             f"posterior features {', '.join(recs[0]['features']) or '-'}"]
    for name, key in (("posterior on s, s+", "p_sim"), ("posterior + pool signals", "p_pool"),
                      ("supervised ceiling", "p_ceiling")):
        p = np.concatenate([r[key] for r in recs])
        soft = np.mean([fn_share(r, r["base"] * (1 - r[key])) for r in recs])
        hard = np.mean([fn_share(r, r["base"] * (r[key] <= 0.5)) for r in recs])
        lines.append(f"  {name:26s} AUROC {roc_auc_score(y, p):.3f}  mean P {p.mean():.3f}  "
                     f"sampled FN share: x (1 - P) {soft:.3f}, P > 0.5 removed {hard:.3f}")
    lines.append(f"  {'base weight only':26s} sampled FN share {np.mean([fn_share(r, r['base']) for r in recs]):.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="shapes-precomp")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=15, help="record every n-th sampler call")
    args = ap.parse_args(argv)
    train_ds = data.load(args.dataset, split="train")
    relevance = (train_ds.labelled_matrix() + train_ds.false_negative_matrix()).astype(bool)  # [caption, image]
    t0 = time.perf_counter()
    with recording(relevance, args.every) as records:
        train(TrainConfig(dataset=args.dataset, sampler="fne", sampler_params={"mode": "calibrated"},
                          epochs=args.epochs, seed=args.seed, num_threads=1, select_by="relevant"))
    print(f"{args.dataset}, seed {args.seed}, {args.epochs} epochs (FNE calibrated), {time.perf_counter() - t0:.0f} s")
    for direction in ("t2i", "i2t"):
        print("\n".join(report(records, direction)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
