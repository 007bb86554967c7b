"""Where FNE samples, inside the training pool: how many false negatives are there, how well does the run's
posterior find them, and where do the draws that still hit one come from?

FNE (calibrated) draws each anchor's negative from its band: the pool candidates above the step's mean positive
similarity minus its margin (or the top-k window, or the semi-hard window, per the sampler's parameters). This
trains one FNE run and, every ``--every``-th sampler call after the warm-up, records every (anchor, candidate)
pair of the band with its ground truth, and the call's actual draws (instrumentation only: the run's draws are
unchanged). It prints, per direction:

- the band's false-negative share, and the false-negative share of the sampling weight (the expected
  sampled false-negative rate) under the base weight, under ``(1 - P)`` with the run's posterior reading
  ``s, s+`` only and with the pool's transitive signals (:mod:`fnlab.posterior.pool`), and with
  elimination (weight 0 where ``P > 0.5``);
- the posterior's AUROC in the band and its calibration there (mean P against the true share);
- what a threshold on P leaves: the false-negative share of the band members with ``P < 0.1`` and ``P < 0.5``
  (how many per anchor), and the share of anchors with no member below 0.5 (rule ``drop`` empties their band);
- the band's density as the posterior reads it: per anchor, the band's mean P against its true false-negative
  share (rule ``adapt`` decides from the former);
- the draws: their false-negative share, split by draws inside the band and below it (an emptied band's fallback);
- a *supervised ceiling*: a gradient-boosted classifier trained WITH ground truth on the same signals
  (3-fold cross-fitted over the recorded steps, each step's pairs in one fold), weighted the same ways: about
  the best any posterior over these signals can do inside this band at a step it has not seen.

    python bench/fne_pool.py --dataset shapes-precomp
    python bench/fne_pool.py --dataset digits --epochs 4 --rule drop
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
from fnlab.samplers.fne import FNESampler, _posterior_ready, pool_evidence, pool_signals_of  # noqa: E402
from fnlab.training.train import TrainConfig, train  # noqa: E402


@contextmanager
def recording(relevance, every: int):
    """Patch :meth:`FNESampler.sample` to record the band of every ``every``-th call (draws unchanged)."""
    rel = {"t2i": relevance.tocsr(), "i2t": relevance.T.tocsr()}
    records, calls = [], [0]
    original = FNESampler.sample

    def truth(direction, anchor_ids, candidate_ids):
        a, c = anchor_ids.numpy().copy(), candidate_ids.numpy().copy()  # scipy indexes with writeable arrays
        return np.asarray(rel[direction][a, c]).ravel().astype(bool)

    def sample(self, sims, pos_sims, positive_mask, k=1, generator=None, ctx=None, **fields):
        drawn = original(self, sims, pos_sims, positive_mask, k=k, generator=generator, ctx=ctx, **fields)
        ctx = self._context(ctx, fields, sims)
        if not _posterior_ready(self.posterior) or not ctx.has_pool:
            return drawn
        calls[0] += 1
        if calls[0] % every:
            return drawn
        with torch.no_grad():
            post, cut = self._posterior_and_cut(sims, ctx, positive_mask, pos_sims)
            band = ~cut & ~positive_mask
            rows, cols = band.nonzero(as_tuple=True)
            wanted = pool_signals_of(post)
            full = pool_evidence(ctx).pair_signals(sims, pos_sims, wanted, rows, cols)
            picks = drawn[:, 0]
            anchors = torch.arange(len(picks))
            records.append({
                "direction": ctx.direction, "step": len(records), "rows": rows.numpy(), "n_rows": sims.shape[0],
                "y": truth(ctx.direction, ctx.anchor_ids[rows], ctx.candidate_ids[cols]),
                "base": torch.exp(-self.tau * (sims - pos_sims[:, None]) ** 2)[rows, cols].numpy(),
                "p_sim": post.prob_false_negative(PairSignals(full.similarity, full.positive_similarity)).numpy(),
                "p_pool": post.prob_false_negative(full).numpy(),
                "x": np.column_stack([full.similarity.numpy(), full.positive_similarity.numpy()]
                                     + [getattr(full, n).numpy() for n in wanted]),
                "features": post.features_ if hasattr(post, "features_") else (),
                "pick_fn": truth(ctx.direction, ctx.anchor_ids, ctx.candidate_ids[picks]),
                "pick_in_band": band[anchors, picks].numpy(),
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


def _per_anchor(rec: dict, values: np.ndarray) -> np.ndarray:
    """``[n_rows]`` mean of ``values`` over each anchor's band members (NaN where the band is empty)."""
    n = np.bincount(rec["rows"], minlength=rec["n_rows"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(rec["rows"], values.astype(float), minlength=rec["n_rows"]) / n


def _threshold_lines(recs: list[dict]) -> list[str]:
    """The band members a threshold on P leaves, and how the band's mean P reads its density."""
    y = np.concatenate([r["y"] for r in recs])
    p = np.concatenate([r["p_pool"] for r in recs])
    anchors = sum(r["n_rows"] for r in recs)
    parts = []
    for t in (0.1, 0.5):
        below = p < t
        share = y[below].mean() if below.any() else float("nan")
        parts.append(f"P < {t}: false-negative share {share:.3f} ({below.sum() / anchors:.0f} an anchor)")
    emptied = np.mean(np.concatenate([np.bincount(r["rows"], r["p_pool"] < 0.5, minlength=r["n_rows"]) == 0
                                      for r in recs]))
    mean_p = np.concatenate([_per_anchor(r, r["p_pool"]) for r in recs])
    true = np.concatenate([_per_anchor(r, r["y"]) for r in recs])
    ok = ~np.isnan(mean_p)
    corr = np.corrcoef(mean_p[ok], true[ok])[0, 1] if ok.sum() > 2 else float("nan")
    pick_fn = np.concatenate([r["pick_fn"] for r in recs])
    in_band = np.concatenate([r["pick_in_band"] for r in recs])

    def rate(m):
        return f"{pick_fn[m].mean():.3f} ({m.mean():.0%} of the draws)" if m.any() else "- (none)"
    return [f"  threshold on P (pool signals): {'; '.join(parts)}; anchors with no member below 0.5: {emptied:.3f}",
            f"  density per anchor: band mean P {np.mean(mean_p[ok]):.3f} against its true false-negative share "
            f"{np.mean(true[ok]):.3f} (correlation {corr:.2f})",
            f"  the draws: false-negative share {pick_fn.mean():.3f}; inside the band {rate(in_band)}, "
            f"below it {rate(~in_band)}"]


def _dense_lines(recs: list[dict], dense_above: float) -> list[str]:
    """How each reading of P sorts the anchors into dense and sparse bands (rules ``adapt`` and ``leave`` decide
    from the band's mean P): the share read as dense, the true false-negative share of the bands read dense and
    of those read sparse, against the share of bands that are dense in truth."""
    true = np.concatenate([_per_anchor(r, r["y"]) for r in recs])
    ok = ~np.isnan(true)
    lines = [f"  bands dense in truth (false-negative share >= {dense_above}): {np.mean(true[ok] >= dense_above):.3f}"]
    for name, key in (("posterior + pool signals", "p_pool"), ("supervised ceiling", "p_ceiling")):
        if not all(key in r for r in recs):
            continue
        dense = np.concatenate([_per_anchor(r, r[key]) for r in recs])[ok] >= dense_above

        def share(m):
            return f"{true[ok][m].mean():.3f}" if m.any() else "-"
        lines.append(f"  read dense by the {name:26s} {dense.mean():.3f} of the bands; their true false-negative "
                     f"share {share(dense)}, the sparse ones' {share(~dense)}")
    return lines


def report(records: list[dict], direction: str, dense_above: float = 0.5) -> list[str]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    recs = [r for r in records if r["direction"] == direction]
    if not recs:
        return [f"{direction}: no recorded step"]
    y = np.concatenate([r["y"] for r in recs])
    x = np.concatenate([r["x"] for r in recs])
    x = np.column_stack([x, x[:, 0] - x[:, 1]])
    steps = np.concatenate([np.full(len(r["y"]), r["step"]) for r in recs])
    lines = [f"{direction}: {len(recs)} recorded steps, {len(y):,} band pairs, false-negative share {y.mean():.3f}; "
             f"posterior features {', '.join(recs[0]['features']) or '-'}"]
    keys = [("posterior on s, s+", "p_sim"), ("posterior + pool signals", "p_pool")]
    if len(recs) >= 3 and 0 < y.mean() < 1:  # folds by step: the classifier never sees the step it scores
        ceiling = cross_val_predict(HistGradientBoostingClassifier(max_iter=200, random_state=0), x, y,
                                    groups=steps, cv=GroupKFold(3), method="predict_proba")[:, 1]
        bounds = np.cumsum([0] + [len(r["y"]) for r in recs])
        for r, a, b in zip(recs, bounds[:-1], bounds[1:], strict=True):
            r["p_ceiling"] = ceiling[a:b]
        keys.append(("supervised ceiling", "p_ceiling"))
    for name, key in keys:
        p = np.concatenate([r[key] for r in recs])
        auroc = roc_auc_score(y, p) if 0 < y.mean() < 1 else float("nan")
        soft = np.mean([fn_share(r, r["base"] * (1 - r[key])) for r in recs])
        hard = np.mean([fn_share(r, r["base"] * (r[key] <= 0.5)) for r in recs])
        lines.append(f"  {name:26s} AUROC {auroc:.3f}  mean P {p.mean():.3f}  "
                     f"sampled FN share: x (1 - P) {soft:.3f}, P > 0.5 removed {hard:.3f}")
    lines.append(f"  {'base weight only':26s} sampled FN share {np.mean([fn_share(r, r['base']) for r in recs]):.3f}")
    return lines + _threshold_lines(recs) + _dense_lines(recs, dense_above)


def _param(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="shapes-precomp")
    ap.add_argument("--cell", help="a cell of bench/regime_map.py (its dataset and options) instead of --dataset")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="FNE parameter on top of mode=calibrated and --rule (repeatable), e.g. window=10")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rule", default="soft", choices=FNESampler.RULES, help="FNE's rule in the band")
    ap.add_argument("--every", type=int, default=15, help="record every n-th sampler call")
    args = ap.parse_args(argv)
    params = {"mode": "calibrated", "rule": args.rule, **dict(_param(p) for p in args.param)}
    dataset = {"dataset": args.dataset, "dataset_options": {}}
    if args.cell:
        import regime_map

        dataset = regime_map.dataset_args(next(c for c in regime_map.CELLS if c.name == args.cell))
    name = args.cell or args.dataset
    train_ds = data.load(dataset["dataset"], split="train", root=dataset.get("dataset_root"),
                         **dataset["dataset_options"])
    relevance = (train_ds.labelled_matrix() + train_ds.false_negative_matrix()).astype(bool)  # [caption, image]
    t0 = time.perf_counter()
    with recording(relevance, args.every) as records:
        out = train(TrainConfig(**dataset, sampler="fne", sampler_params=params, epochs=args.epochs, seed=args.seed,
                                num_threads=1, select_by="relevant"))
    rates = [f"{m['sampled_fn_rate']:.3f}" for m in out["metrics"] if not m.get("warmup")]
    print(f"{name}, seed {args.seed}, {args.epochs} epochs (FNE {params}), "
          f"{time.perf_counter() - t0:.0f} s; the run's sampled false-negative rate by epoch after the warm-up: "
          f"{', '.join(rates)}")
    for direction in ("t2i", "i2t"):
        print("\n".join(report(records, direction, float(params.get("dense_above", 0.5)))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
