"""How far the training posterior's share of matches is from the truth, refit by refit.

FNE (calibrated) refits its posterior on the validation split every epoch after the warm-up, once per direction
(:func:`fnlab.training.train.fit_run_posterior`). Rules ``adapt`` and ``leave`` read a band's density off that
posterior's P, and only where its share of matches passed its own checks (``share_trusted``). This trains one FNE run
on a cell of ``bench/regime_map.py`` (rule ``soft`` on the top-10 window, as the map's arms) and prints, for every
refit: the share of matches the fit puts among each query's top ``window`` unlabelled candidates (``prior_window``),
the true share there (ground truth, never seen by the fit), ``share_trusted`` and the status.

    python bench/refit_share.py --cell shapes-precomp:realistic
    python bench/refit_share.py --cell digits-precomp:G=0.1 --epochs 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import regime_map  # noqa: E402

from fnlab import posterior as P  # noqa: E402
from fnlab.training import train as T  # noqa: E402


def window_truth(post, emb_a, emb_b, dataset, direction: str, query_keys) -> float:
    """The true share of matches among each query's top ``post.window`` unlabelled candidates, ranked as the fit
    ranks them (``emb_a [n_a, d]``, ``emb_b [n_b, d]`` as :func:`fnlab.training.train.fit_run_posterior` takes them)."""
    ctx = P.PairContext.from_dataset(emb_a, emb_b, dataset, direction=direction, query_keys=query_keys)
    _, idx = ctx.topk_unlabelled(int(getattr(post, "window", 10)))
    rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    ok = idx.ravel() >= 0
    truth = (dataset.labelled_matrix() + dataset.false_negative_matrix()).astype(bool)
    truth = sp.csr_matrix(truth if direction == "t2i" else truth.T)
    truth.sort_indices()
    return float(P.pair_member(truth, rows[ok], idx.ravel()[ok]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", default="shapes-precomp:realistic", choices=[c.name for c in regime_map.CELLS])
    ap.add_argument("--epochs", type=int, default=regime_map.EPOCHS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cell = next(c for c in regime_map.CELLS if c.name == args.cell)
    fit = T.fit_run_posterior
    refits: list[str] = []

    def recorded(emb_a, emb_b, dataset, *, direction="t2i", **kw):
        post = fit(emb_a, emb_b, dataset, direction=direction, **kw)
        true = window_truth(post, emb_a, emb_b, dataset, direction, kw.get("query_keys"))
        line = (f"refit {len(refits) // 2 + 1} {direction}: share of the top-{getattr(post, 'window', 10)} "
                f"{getattr(post, 'prior_window', float('nan')):.3f}, true {true:.3f}; share_trusted "
                f"{getattr(post, 'share_trusted', True)}; {post.status}")
        refits.append(line)
        print(line, flush=True)
        return post

    T.fit_run_posterior = recorded
    try:
        T.train(T.TrainConfig(**regime_map.dataset_args(cell), sampler="fne", sampler_params=regime_map.arms("10")[
            "fne soft"][1], epochs=args.epochs, seed=args.seed, select_by="relevant", num_threads=1, device="cpu"))
    finally:
        T.fit_run_posterior = fit
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
