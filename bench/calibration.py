"""Calibration suite: is the printed P(false negative) a probability a user can act on?

A user reads ``p_false_negative`` in a scan's table and relabels the pairs above some threshold. This
suite generates the kinds of data users bring, scans each one with ``fnlab.analysis.scan.scan`` (labels
only, exactly as a user would) and scores the rows the scan shows against the ground truth the
generator knows:

* the estimated prior against the true share of matches among unlabelled pairs;
* ECE (10 equal-width bins) over the scanned rows (each query's top-k), not over the whole pool;
* precision and recall at p > 0.5 and p > 0.9 over the scanned rows (recall: of the false negatives
  the scan shows);
* AUROC and AP of P against ranking the same rows by raw similarity;
* fit time, EM iterations and the posterior's status.

**One generator, documented, seeded, not tuned to any estimator** (:func:`make_world`). Items belong to
*groups*; a query matches every item of its target's group and nothing else. A group's centre sits in a
*cluster* (cluster-mates are similar but never match); each item is its group centre plus item noise
(``item_noise``; the group's first item, the *original*, has none in copy-type worlds); a query is
written for one target item, ``unit(mix * centre + (1 - mix) * target + query_noise * n)``, and is
labelled with that target (the designated positive: closer to the query than its other matches).
Optional *paraphrases* are new groups placed near an existing group (similar, never matches). Noise
vectors are isotropic Gaussians scaled by ``1/sqrt(d)``, so a noise level ``sigma`` puts an item at
cosine about ``1/sqrt(1 + sigma^2)`` from its centre. Every family below is one parameter set:

========================  =====================================================================
family                    what it stands for
========================  =====================================================================
``clustered``             tight clusters of documents (cluster-mates at cosine ~0.8, not
                          matches), 3% of documents have a near-copy (cosine ~0.99)
``copies-0.1``            planted near-copies, noise 0.1 (cosine to the original ~0.995)
``copies-0.25``           planted near-copies, noise 0.25 (~0.97)
``copies-0.4``            planted near-copies, noise 0.4 (~0.93; the nearest non-match of a
                          document sits at ~0.85-0.91)
``paraphrase``            every document has a paraphrase-like neighbour (cosine ~0.9, not a
                          match); 3% have a near-copy (~0.995)
``one-positive``          query -> document retrieval, unclustered, one labelled document a query,
                          2% duplicated
``captions``              several captions an image (4), images in classes of 5; a caption matches
                          every image of its class, written for one (image-text)
``captions-specific``     ``captions`` whose captions are written mostly from their own image (mix 0.2,
                          less noise): a caption resembles its image's other captions beyond what its
                          class explains, so labelled pairs are not a random sample of the matches on
                          the transitive signals either (the status must say so)
``unnormalised-fp16``     ``clustered`` with random row norms (log-normal) and float16 storage
``labels-2``, ``-20``,    ``copies-0.25`` where only 2, 20 or 2,000 queries keep their label (the
``-2000``                 others' matches are all unlabelled)
``share-1e-4`` ...        the share of false negatives among unlabelled pairs swept from 1e-4
``share-0.3``             to 0.3: near-copies in query -> document data for 1e-4 and 1e-3, class-level
                          groups with two captions an item (image-text) for 1e-2, 0.1 and 0.3 (where
                          many matches a query are the rule, several captions an item are too)
========================  =====================================================================

    python bench/calibration.py                          # every family, 1 seed
    python bench/calibration.py --families copies-0.3 captions --seeds 0 1 2
    python bench/calibration.py --real-text              # also bench/real_text.py's data

The fast form of this suite runs in ``tests/test_calibration_suite.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class WorldSpec:
    """Parameters of :func:`make_world` (module docstring). Sizes are approximate (groups are whole)."""

    n_groups: int = 2000               # groups of items (documents with their copies, or image classes)
    group_size: int = 1                # items every group starts with
    copy_share: float = 0.0            # share of groups that get extra copies of their original
    copies: int = 1                    # extra copies such a group gets
    copy_noise: float = 0.1            # noise of a copy around its original
    item_noise: float = 0.0            # noise of every item around its group centre (0: originals = centre)
    n_clusters: int = 0                # clusters of group centres (0: centres uniform on the sphere)
    cluster_noise: float = 0.5         # noise of a group centre around its cluster centre
    paraphrase_share: float = 0.0      # share of groups that get a paraphrase-like group beside them
    paraphrase_noise: float = 0.45     # noise of a paraphrase around the group it imitates
    queries_per_target: int = 1        # queries written for each target item
    targets: str = "original"          # "original": each group's first item; "all": every item
    mix: float = 0.0                   # pull of a query towards its group centre (0: towards its target)
    query_noise: tuple[float, float] = (0.6, 1.2)  # per-query noise, uniform in this range
    n_labelled: int | None = None      # queries that keep their label (None: all)
    dim: int = 64
    norm_spread: float = 0.0           # log-normal sigma of row norms (0: unit rows)
    float16: bool = False


FAMILIES: dict[str, WorldSpec] = {
    "clustered": WorldSpec(n_clusters=60, cluster_noise=0.5, copy_share=0.03, copy_noise=0.1),
    "copies-0.1": WorldSpec(n_clusters=200, copy_share=0.05, copy_noise=0.1),
    "copies-0.25": WorldSpec(n_clusters=200, copy_share=0.05, copy_noise=0.25),
    "copies-0.4": WorldSpec(n_clusters=200, copy_share=0.05, copy_noise=0.4),
    "paraphrase": WorldSpec(n_clusters=200, copy_share=0.03, copy_noise=0.1, paraphrase_share=1.0,
                            paraphrase_noise=0.45),
    "one-positive": WorldSpec(copy_share=0.02, copy_noise=0.1),
    "captions": WorldSpec(n_groups=150, group_size=5, item_noise=0.8, targets="all", queries_per_target=4,
                          mix=0.5, query_noise=(0.5, 1.4), n_clusters=30, cluster_noise=0.7),
    "captions-specific": WorldSpec(n_groups=150, group_size=5, item_noise=0.8, targets="all", queries_per_target=4,
                                   mix=0.2, query_noise=(0.3, 0.8), n_clusters=30, cluster_noise=0.7),
    "unnormalised-fp16": WorldSpec(n_clusters=60, cluster_noise=0.5, copy_share=0.03, copy_noise=0.1,
                                   norm_spread=1.0, float16=True),
    "labels-2": WorldSpec(n_clusters=200, copy_share=0.05, copy_noise=0.25, n_labelled=2),
    "labels-20": WorldSpec(n_clusters=200, copy_share=0.05, copy_noise=0.25, n_labelled=20),
    "labels-2000": WorldSpec(n_clusters=200, copy_share=0.05, copy_noise=0.25, n_labelled=2000),
    "share-1e-4": WorldSpec(n_clusters=200, copy_share=0.25, copy_noise=0.2),
    "share-1e-3": WorldSpec(n_groups=500, n_clusters=50, copy_share=1.0, copy_noise=0.2),
    "share-1e-2": WorldSpec(n_groups=50, group_size=40, item_noise=0.8, targets="all", mix=0.5,
                            queries_per_target=2, query_noise=(0.5, 1.4), n_clusters=10, cluster_noise=0.7),
    "share-0.1": WorldSpec(n_groups=10, group_size=200, item_noise=1.0, targets="all", mix=0.5,
                           queries_per_target=2, query_noise=(0.5, 1.4), n_clusters=3, cluster_noise=0.7),
    "share-0.3": WorldSpec(n_groups=3, group_size=660, item_noise=1.2, targets="all", mix=0.5,
                           queries_per_target=2, query_noise=(0.5, 1.4), n_clusters=1, cluster_noise=0.7),
}

#: families whose false negatives are planted copies (the precision/recall target applies)
COPY_FAMILIES = ("clustered", "copies-0.1", "copies-0.25", "copies-0.4", "paraphrase", "one-positive",
                 "unnormalised-fp16", "labels-2000", "share-1e-4", "share-1e-3")


@dataclass
class World:
    """One generated retrieval problem (shapes: ``queries [Nq, d]``, ``candidates [Nc, d]``,
    ``positives``/``truth`` sparse bool ``[Nq, Nc]``)."""

    queries: np.ndarray
    candidates: np.ndarray
    positives: sp.csr_matrix
    truth: sp.csr_matrix
    info: dict[str, Any] = field(default_factory=dict)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_world(spec: WorldSpec, seed: int = 0) -> World:
    """Generate the retrieval problem ``spec`` describes (module docstring), seeded."""
    rng = np.random.default_rng(seed)
    d = spec.dim

    def noise(n: int, sigma: float | np.ndarray) -> np.ndarray:
        return np.asarray(sigma).reshape(-1, 1) * rng.standard_normal((n, d)) / np.sqrt(d)

    if spec.n_clusters:
        clusters = _unit(rng.standard_normal((spec.n_clusters, d)))
        centres = _unit(clusters[rng.integers(0, spec.n_clusters, spec.n_groups)] + noise(spec.n_groups, spec.cluster_noise))
    else:
        centres = _unit(rng.standard_normal((spec.n_groups, d)))
    items, item_group, is_original = [], [], []
    for g in range(spec.n_groups):
        for j in range(spec.group_size):
            sigma = 0.0 if (j == 0 and spec.item_noise == 0) else spec.item_noise
            items.append(_unit(centres[g] + noise(1, sigma)[0]) if sigma else centres[g])
            item_group.append(g)
            is_original.append(j == 0)
    copied = rng.random(spec.n_groups) < spec.copy_share
    for g in np.flatnonzero(copied):
        original = items[item_group.index(g)]
        for _ in range(spec.copies):
            items.append(_unit(original + noise(1, spec.copy_noise)[0]))
            item_group.append(g)
            is_original.append(False)
    n_para = int(round(spec.paraphrase_share * spec.n_groups))
    for g in rng.choice(spec.n_groups, size=n_para, replace=False):  # new groups: similar, never matches
        items.append(_unit(items[item_group.index(g)] + noise(1, spec.paraphrase_noise)[0]))
        item_group.append(spec.n_groups + len(items))  # a group of its own
        is_original.append(False)
    items_arr = np.asarray(items)
    groups = np.asarray(item_group)
    order = rng.permutation(len(items_arr))  # candidates in random order
    items_arr, groups, is_original = items_arr[order], groups[order], np.asarray(is_original)[order]
    if spec.targets == "original":
        target_pool = np.flatnonzero(is_original & (groups < spec.n_groups))
    else:
        target_pool = np.flatnonzero(groups < spec.n_groups)
    targets = np.repeat(target_pool, spec.queries_per_target)
    nq = targets.size
    qsig = rng.uniform(*spec.query_noise, nq)
    anchor = spec.mix * centres[groups[targets]] + (1 - spec.mix) * items_arr[targets]
    queries = _unit(anchor + noise(nq, qsig))
    # truth: every item of the target's group
    members: dict[int, np.ndarray] = {}
    for g in np.unique(groups[targets]):
        members[int(g)] = np.flatnonzero(groups == g)
    rows = np.concatenate([np.full(members[int(groups[t])].size, i) for i, t in enumerate(targets)])
    cols = np.concatenate([members[int(groups[t])] for t in targets])
    truth = sp.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(nq, len(items_arr)))
    labelled = np.arange(nq)
    if spec.n_labelled is not None and spec.n_labelled < nq:
        labelled = np.sort(rng.choice(nq, size=spec.n_labelled, replace=False))
    positives = sp.csr_matrix((np.ones(labelled.size, bool), (labelled, targets[labelled])), shape=truth.shape)
    q, c = queries.astype(np.float32), items_arr.astype(np.float32)
    if spec.norm_spread:
        q = q * np.exp(spec.norm_spread * rng.standard_normal((nq, 1))).astype(np.float32)
        c = c * np.exp(spec.norm_spread * rng.standard_normal((len(c), 1))).astype(np.float32)
    if spec.float16:
        q, c = q.astype(np.float16), c.astype(np.float16)
    return World(q, c, positives, truth, info={"queries": int(nq), "candidates": int(len(c)),
                                                "labelled": int(positives.nnz)})


def true_prior(truth: sp.csr_matrix, positives: sp.csr_matrix) -> float:
    """Share of matches among unlabelled pairs."""
    fn = (truth.astype(np.int8) - truth.multiply(positives).astype(np.int8)).nnz
    return fn / (truth.shape[0] * truth.shape[1] - positives.nnz)


def row_metrics(p: np.ndarray, y: np.ndarray, sims: np.ndarray) -> dict[str, Any]:
    """What a user of the scanned rows sees: ECE, precision/recall at 0.5 and 0.9, AUROC and AP next
    to raw similarity. ``p``, ``y``, ``sims``: ``[R]``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fnlab.analysis.evaluate import expected_calibration_error

    p = np.nan_to_num(np.asarray(p, np.float64), nan=0.0)
    y = np.asarray(y, bool)
    both = 0 < y.sum() < y.size
    out: dict[str, Any] = {"rows": int(y.size), "fn_rows": int(y.sum()), "ece": expected_calibration_error(p, y),
                           "mean_p": float(p.mean()), "fn_share": float(y.mean())}
    for t in (0.5, 0.9):
        hit = p > t
        out[f"flagged_{t}"] = int(hit.sum())
        out[f"precision_{t}"] = float(y[hit].mean()) if hit.any() else None
        out[f"recall_{t}"] = float(hit[y].mean()) if y.any() else None
    out["auroc"] = float(roc_auc_score(y, p)) if both else None
    out["auroc_sim"] = float(roc_auc_score(y, sims)) if both else None
    out["ap"] = float(average_precision_score(y, p)) if both else None
    out["ap_sim"] = float(average_precision_score(y, sims)) if both else None
    return out


def scan_metrics(result: Any, truth: sp.csr_matrix, positives: sp.csr_matrix) -> dict[str, Any]:
    """:func:`row_metrics` of a scan's table plus the prior, fit time, iterations and status."""
    from fnlab.posterior import pair_member

    t = result.table
    truth = sp.csr_matrix(truth, dtype=bool)
    truth.sort_indices()
    y = pair_member(truth, t["query"].to_numpy(), t["candidate"].to_numpy())
    m = row_metrics(t["p_false_negative"].to_numpy(), y, t["similarity"].to_numpy())
    post = result.posterior
    params = post.params()
    m.update({"prior": float(post.prior_pos), "true_prior": true_prior(truth, positives),
              "fit_s": float(result.summary["seconds"]["fit"]), "scan_s": float(result.summary["seconds"]["total"]),
              "em_iter": params.get("n_iter"), "converged": params.get("converged"),
              "status": str(post.status), "calibrated": bool(post.status.calibrated),
              "share_trusted": bool(getattr(post, "share_trusted", True)),
              "signals": list(post.signals)})
    m["prior_ratio"] = m["prior"] / m["true_prior"] if m["true_prior"] > 0 else None
    return m


def run_family(name: str, seed: int = 0, *, top_k: int = 20, estimator: str = "pu", scale: float = 1.0,
               **scan_kw: Any) -> dict[str, Any]:
    """Generate family ``name`` (sizes times ``scale``), scan it, and score the scan."""
    from fnlab.analysis.scan import scan

    spec = FAMILIES[name]
    if scale != 1.0:
        spec = replace(spec, n_groups=max(3, int(spec.n_groups * scale)))
    world = make_world(spec, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scan(world.queries, world.candidates, world.positives, top_k=top_k, estimator=estimator, seed=seed,
                   **scan_kw)
    return {"family": name, "seed": seed, **world.info, **scan_metrics(res, world.truth, world.positives)}


def real_text_rows(seed: int = 0, max_docs: int = 2500, plant: float = 0.05, top_k: int = 20,
                   estimator: str = "pu") -> dict[str, Any]:
    """The real-text data of ``bench/real_text.py`` (MiniLM on standard-library docstrings, exact
    duplicates as false negatives), scanned and scored like a family."""
    sys.path.insert(0, str(HERE))
    import real_text  # noqa: PLC0415 - a sibling bench script

    from fnlab.analysis.scan import scan

    data = real_text.build(max_docs=max_docs, plant=plant, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scan(data["queries"], data["candidates"], data["positives"], top_k=top_k, estimator=estimator,
                   seed=seed, **data.get("scan_kw", {}))
    return {"family": "real-text", "seed": seed, "queries": len(data["queries"]),
            "candidates": len(data["candidates"]), "labelled": int(data["positives"].nnz),
            **scan_metrics(res, data["truth"], data["positives"])}


def targets_met(row: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's targets on one family's row (``None``: not applicable)."""
    out: dict[str, bool | None] = {}
    ratio = row.get("prior_ratio")
    out["prior_2x"] = None if ratio is None else bool(0.5 <= ratio <= 2.0)
    out["ece_0.05"] = bool(row["ece"] <= 0.05)
    out["ap_ge_sim"] = None if row["ap"] is None else bool(row["ap"] >= row["ap_sim"] - 1e-9)
    if row["family"] in COPY_FAMILIES or row["family"] == "real-text":
        prec, rec = row["precision_0.9"], row["recall_0.5"]
        out["copies_p90_prec_0.9"] = None if prec is None else bool(prec >= 0.9)
        out["copies_p50_recall_0.8"] = None if rec is None else bool(rec >= 0.8)
    return out


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def report(rows: list[dict[str, Any]], command: str) -> str:
    """Markdown table of the suite, one line per family (mean over seeds, +- sd where seeds > 1)."""
    commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    load = os.getloadavg()
    lines = ["# Calibration suite", "",
             f"`{command}` at commit {commit}{' (with uncommitted changes)' if dirty else ''}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, load average {load[0]:.1f} on {os.cpu_count()} CPUs.", "",
             "Rows: each query's top-k scanned candidates. prior: estimated (true); ECE over the scanned rows; "
             "precision / recall at p > 0.5 and p > 0.9 (recall of the false negatives among the rows); AUROC and "
             "AP of P with raw similarity's in parentheses. Targets: prior within 2x, ECE <= 0.05, AP >= "
             "similarity's; on copy families precision at p > 0.9 >= 0.9 and recall at p > 0.5 >= 0.8.", "",
             "| family | seeds | prior (true) | ECE | prec>0.5 | rec>0.5 | prec>0.9 | rec>0.9 | AUROC (sim) | "
             "AP (sim) | fit s | EM it | status | targets missed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_family: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_family.setdefault(r["family"], []).append(r)

    def agg(rs: list[dict[str, Any]], key: str, spec: str = ".3f") -> str:
        vals = [r[key] for r in rs if r.get(key) is not None]
        if not vals:
            return "—"
        if len(vals) == 1:
            return format(vals[0], spec)
        return f"{np.mean(vals):{spec}}±{np.std(vals):{spec}}"

    for fam, rs in by_family.items():
        missed = sorted({k for r in rs for k, v in targets_met(r).items() if v is False})
        status = "; ".join(sorted({r["status"] for r in rs}))
        lines.append(f"| {fam} | {len(rs)} | {agg(rs, 'prior', '.2e')} ({agg(rs, 'true_prior', '.2e')}) | "
                     f"{agg(rs, 'ece')} | {agg(rs, 'precision_0.5')} | {agg(rs, 'recall_0.5')} | "
                     f"{agg(rs, 'precision_0.9')} | {agg(rs, 'recall_0.9')} | {agg(rs, 'auroc')} ({agg(rs, 'auroc_sim')}) | "
                     f"{agg(rs, 'ap')} ({agg(rs, 'ap_sim')}) | {agg(rs, 'fit_s', '.1f')} | {agg(rs, 'em_iter', '.0f')} | "
                     f"{status} | {', '.join(missed) or 'none'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--estimator", default="pu")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the number of groups (smaller: faster)")
    ap.add_argument("--real-text", action="store_true", help="also bench/real_text.py's data (MiniLM docstrings)")
    ap.add_argument("--out", default=str(HERE / "results" / "calibration.md"))
    args = ap.parse_args(argv)
    command = "python bench/calibration.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = []
    for name in args.families:
        for seed in args.seeds:
            t = time.perf_counter()
            row = run_family(name, seed, top_k=args.top_k, estimator=args.estimator, scale=args.scale)
            row["seconds"] = time.perf_counter() - t
            rows.append(row)
            print(f"{name} seed {seed}: prior {row['prior']:.2e} (true {row['true_prior']:.2e}) ece {row['ece']:.3f} "
                  f"prec>0.9 {_fmt(row['precision_0.9'])} rec>0.5 {_fmt(row['recall_0.5'])} ap {_fmt(row['ap'])} "
                  f"({_fmt(row['ap_sim'])}) fit {row['fit_s']:.1f}s {row['status']}", flush=True)
    if args.real_text:
        for seed in args.seeds:
            row = real_text_rows(seed, top_k=args.top_k, estimator=args.estimator)
            rows.append(row)
            print(f"real-text seed {seed}: prior {row['prior']:.2e} (true {row['true_prior']:.2e}) ece {row['ece']:.3f}",
                  flush=True)
    text = report(rows, command)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
