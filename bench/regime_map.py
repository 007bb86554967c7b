"""Which sampler when? The regime map: false-negative density x hardness, with paired seeds.

The protocol below was written down (and committed) before the map ran; the results file records the
commit that produced it.

**Grid.**

* Density axis (cells): ``shapes-precomp`` at genericness 0, 0.1, 0.2, 0.3, 0.5, plus a realistic point
  (``p_two=1, p_scene=1, genericness=0.1``: a few false negatives per query); ``digits-precomp`` at
  genericness 0, 0.1, 0.2; real text (library docstrings embedded with MiniLM, ``bench/real_text.py``'s
  construction: query = first sentence, document = the rest) with 0, 5, 10 and 30% of the documents copied.
  Density is reported, per cell, as the measured share of false negatives in each query's top-10 at the
  warm-up model (test split) and as false negatives per training query.
* Hardness axis: one knob shared by every arm: draw from each anchor's top-k non-positives,
  k in {1, 10, 100, all}.
* Arms per (cell, k): ``plain`` (uniform over the window: ``hardest`` with ``top_k=k``, ``random`` at all),
  ``fne soft`` (the same window, weight ``1 - P``), ``fne keep`` (the same window, each anchor's lowest-P
  third: the eliminating rule frozen by ``bench/fne_rule_pilot.py``), ``oracle`` (the same window with the
  ground-truth false negatives removed), and, added after the first cells (exploratory, not part of the frozen
  protocol), ``fne drop`` (the same window without the candidates whose P >= 0.5), and, frozen after the ten-seed
  hard-window cells and before its own runs, ``fne adapt`` (``keep`` where the window's mean P is below 0.5, ``drop``
  where it is not: the ten-seed cells had ``keep`` best where false negatives are fewer and ``drop`` where they
  are many; so its two first cells are the ones that suggested it, and the cells run after them test it), and, frozen
  after ``bench/fne_pool.py`` on ``digits`` (from scratch; no cell of this map) and before its own runs, ``fne leave``
  (``keep`` where the window's mean P is below 0.5; where it is not, the window is left: the anchor draws outside it,
  uniformly over the rest of its pool). FNE
  runs with ``tau = 0`` so
  that its arms differ from ``plain`` only by
  what the posterior removes; its label-free posterior is the run's own (``pu``, refitted each epoch). FNE is not
  run at k = 1 (a one-candidate window leaves nothing to choose). Semi-hard is a reference column per cell; and,
  added with ``fne adapt``, before their runs, semi-hard's window as a point of its own (the best arm of the
  ten-seed cells): ``oracle semihard`` and FNE ``soft`` / ``adapt`` acting on ``s+ - 0.2 < s < s+`` (``band="semihard"``),
  with semi-hard in the role of ``plain``, so that H and C say whether a posterior adds anything to it.
* Test splits: 1,000 images on ``shapes-precomp``; ``digits-precomp`` has 1,797 images in all, so 600 test
  images (3,000 test captions) with 200 validation and 400 pretraining images; real text: at least 1,000 test
  queries.

**Protocol.** 10 paired seeds per cell (the seed fixes initialisation, data order and the VSE++ warm-up, shared
by every arm); 4 epochs (1 warm-up + 3 sampler epochs), momentum queue on, every other setting at
``fnlab train``'s defaults. Reported per run: relevant rSum and R-precision of the **last epoch** (primary: model
selection cannot hide a collapse) and of the best epoch by relevant validation rSum (secondary), the sampled
false-negative rate and the draw's hardness (mean ``s - s+`` of the picks), both over the sampler epochs.
Per (cell, k): headroom ``H = oracle - plain`` and FNE's capture ``C = (FNE - plain) / H``, paired means with 95%
intervals (t over seeds for differences; paired bootstrap over seeds for ``C``).

**Criteria**, reported cell by cell (the headline claims exactly the cells that pass), on the primary figure:

* (a) ``H > 0`` with an interval excluding 0 in a contiguous region of the (density, k) grid of a dataset, and
  ``H`` not significant outside it;
* (b) where ``H`` is significant, FNE captures ``C >= 0.5`` with a lower bound above 0;
* (c) where ``H`` is not significant, FNE is within one standard error of ``plain`` (it never loses to its own
  base sampler);
* (d) mechanism: at matched k, FNE's sampled false-negative rate is at most 0.5x ``plain``'s and at most 1/3 of
  hardest's (``plain`` at k = 1), with the label-free posterior;
* (e) at some density, FNE at its best k beats ``plain`` at *its* best k, with an interval excluding 0.

If (a)-(d) hold and (e) fails, the headline says so: moderate hardness then gets the same benefit without a
posterior.

Usage::

    python bench/regime_map.py --seeds 0 1 2 3 4 5 6 7 8 9 --jobs 2        # the map (resumable)
    python bench/regime_map.py --summarise                                 # tables from the runs so far
    python bench/regime_map.py --cells shapes-precomp:G=0.3 --seeds 0 --ks 10   # one cell, one seed
    python bench/regime_map.py --cells shapes-precomp:G=0.0 --ks all --seeds 0 1 2 --density-seeds \
        --arms plain oracle "fne keep" "fne drop" --out bench/results/regime_map_drop.md  # the drop rule's check
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path("bench/results")
KS = ("1", "10", "100", "all")
ALL = 1_000_000  # a window wider than any pool: every non-positive
EPOCHS = 4
KEEP_FRACTION = 1 / 3  # frozen by bench/fne_rule_pilot.py
#: FNE's arms. ``fne drop`` (eliminate P >= 0.5, the sampler's default threshold) was added after the map's
#: first cells showed the frozen keep rule losing to plain at k = all, where almost no candidate is a false
#: negative and keeping the lowest-P third keeps the easiest negatives: an exploratory arm, not frozen before the
#: map, reported apart from the headline
FNE_ARMS = ("fne soft", "fne keep", "fne drop", "fne adapt", "fne leave")


@dataclass(frozen=True)
class Cell:
    """One point of the density axis: a dataset and its options."""

    name: str
    dataset: str
    options: dict = field(default_factory=dict, hash=False)
    family: str = ""
    density: float = 0.0  # the generator's knob (genericness, or the share of planted copies)


SHAPES = {"n_test": 1000, "n_val": 500}
DIGITS = {"n_test": 600, "n_val": 200, "n_pretrain": 400}
CELLS = [
    *[Cell(f"shapes-precomp:G={g}", "shapes-precomp", {**SHAPES, "genericness": g}, "shapes-precomp", g)
      for g in (0.0, 0.1, 0.2, 0.3, 0.5)],
    Cell("shapes-precomp:realistic", "shapes-precomp", {**SHAPES, "genericness": 0.1, "p_two": 1.0, "p_scene": 1.0},
         "shapes-precomp realistic", 0.1),
    *[Cell(f"digits-precomp:G={g}", "digits-precomp", {**DIGITS, "genericness": g}, "digits-precomp", g)
      for g in (0.0, 0.1, 0.2)],
    *[Cell(f"real-text:copies={p}", "pairs", {"plant": p}, "real text", p) for p in (0.0, 0.05, 0.1, 0.3)],
]


#: semi-hard's window (``s+ - 0.2 < s < s+``, no k), the best arm of the ten-seed hard-window cells: semi-hard
#: itself, the oracle on its window and FNE acting on it (``band="semihard"``, ``tau = 0``: uniform like semi-hard),
#: added after those cells, before their own runs; summarised as a (cell, k = "semihard") point with semihard as
#: ``plain``
SEMIHARD_ARMS: dict[str, tuple[str, dict]] = {
    "semihard": ("semihard", {}),
    "oracle semihard": ("oracle", {"base": "semihard"}),
    "fne semihard soft": ("fne", {"mode": "calibrated", "band": "semihard", "tau": 0.0, "rule": "soft"}),
    "fne semihard adapt": ("fne", {"mode": "calibrated", "band": "semihard", "tau": 0.0, "rule": "adapt",
                                   "keep_fraction": KEEP_FRACTION, "drop_above": 0.5, "dense_above": 0.5}),
}
#: how the semi-hard family reads as the arms of a window point
AS_WINDOW = {"semihard": "plain", "oracle semihard": "oracle", "fne semihard soft": "fne soft",
             "fne semihard adapt": "fne adapt"}


def arms(k: str) -> dict[str, tuple[str, dict]]:
    """The arms at hardness ``k``: ``label -> (sampler, params)``."""
    width = ALL if k == "all" else int(k)
    out = {"plain": ("random", {}) if k == "all" else ("hardest", {"top_k": width}),
           "oracle": ("oracle", {"base": "window", "top_k": width})}
    if k != "1":
        fne = {"mode": "calibrated", "window": width, "tau": 0.0}
        out["fne soft"] = ("fne", {**fne, "rule": "soft"})
        out["fne keep"] = ("fne", {**fne, "rule": "keep", "keep_fraction": KEEP_FRACTION})
        out["fne drop"] = ("fne", {**fne, "rule": "drop", "drop_above": 0.5})
        out["fne adapt"] = ("fne", {**fne, "rule": "adapt", "keep_fraction": KEEP_FRACTION, "drop_above": 0.5,
                                    "dense_above": 0.5})
        out["fne leave"] = ("fne", {**fne, "rule": "leave", "keep_fraction": KEEP_FRACTION, "dense_above": 0.5})
    return out


# ----------------------------------------------------------------------------- data
def real_text_root(plant: float) -> str:
    """The real-text corpus in the ``pairs`` layout (cached): library docstrings, ``plant`` of them copied, each copy
    an entry of its own labelled with its original's query (so copies enter training pools and every split)."""
    from real_text_train import write_pairs

    root = Path(".fnlab_cache") / f"regime_text_copies_{plant}"  # copies' entries without query text
    if not (root / "relevance.csv").exists():
        with contextlib.redirect_stdout(io.StringIO()):  # some library modules print when imported
            write_pairs(root, max_docs=100_000, plant=plant, seed=0, corpus="libraries",
                        split_shares=(0.55, 0.15, 0.30), copy_queries=True)
    return str(root)


def dataset_args(cell: Cell) -> dict:
    if cell.dataset == "pairs":
        return {"dataset": "pairs", "dataset_root": real_text_root(cell.options["plant"]), "dataset_options": {}}
    return {"dataset": cell.dataset, "dataset_options": dict(cell.options)}


# ----------------------------------------------------------------------------- runs
def _quiet_train(cfg):
    from fnlab.training.train import train

    with contextlib.redirect_stderr(io.StringIO()):
        return train(cfg)


def run_arm(job: tuple[str, str, str, int]) -> dict:
    """One training run of the map: ``(cell, k, arm, seed)`` -> its row."""
    from fnlab.training.train import TrainConfig

    cell_name, k, arm, seed = job
    cell = next(c for c in CELLS if c.name == cell_name)
    sampler, params = SEMIHARD_ARMS[arm] if arm in SEMIHARD_ARMS else arms(k)[arm]
    t0 = time.perf_counter()
    out = _quiet_train(TrainConfig(**dataset_args(cell), sampler=sampler, sampler_params=params, epochs=EPOCHS,
                                   seed=seed, select_by="relevant", num_threads=1, device="cpu"))
    ev, last = out["eval"], out["eval"]["last_epoch"]
    after = [m for m in out["metrics"] if not m.get("warmup") and m.get("epoch", 1) > 0]

    def mean_of(key):
        xs = [m[key] for m in after if m.get(key) is not None and m[key] == m[key]]
        return float(np.mean(xs)) if xs else None

    def rp(block):
        return None if not block else (block["i2t"] + block["t2i"]) / 2

    return {"cell": cell_name, "k": k, "arm": arm, "seed": seed,
            "primary": (last["relevant_recall"] or {}).get("rsum"),
            "secondary": (ev["relevant_recall"] or {}).get("rsum"),
            "r_precision_last": rp(last["r_precision"]), "r_precision_best": rp(ev["r_precision"]),
            "sampled_fn_rate": mean_of("sampled_fn_rate"), "sampled_margin": mean_of("sampled_margin"),
            "best_epoch": ev.get("best_epoch"), "seconds": time.perf_counter() - t0}


def run_density(job: tuple[str, int]) -> dict:
    """The cell's density at the warm-up model: share of false negatives in each test query's top-10 unlabelled
    candidates, and false negatives per training query."""
    from fnlab import data
    from fnlab.analysis.evaluate import fn_candidates
    from fnlab.training.train import TrainConfig

    cell_name, seed = job
    cell = next(c for c in CELLS if c.name == cell_name)
    args = dataset_args(cell)
    out = _quiet_train(TrainConfig(**args, sampler="random", epochs=1, seed=seed, num_threads=1, device="cpu"))
    load = {"root": args.get("dataset_root"), **args["dataset_options"]}
    test = data.load(args["dataset"], split="test", **{k: v for k, v in load.items() if v is not None})
    train_ds = data.load(args["dataset"], split="train", **{k: v for k, v in load.items() if v is not None})
    ea, eb = out["embeddings"]["test"]
    cand = fn_candidates(ea, eb, test, top_k=10)
    return {"cell": cell_name, "seed": seed, "top10_fn_share": float(np.mean(cand.label)),
            "fn_per_query": float(train_ds.false_negative_matrix().nnz / train_ds.n_b),
            "test_queries": int(test.n_b), "test_candidates": int(test.n_a)}


# ----------------------------------------------------------------------------- statistics
def _t_interval(d: np.ndarray) -> tuple[float, float, float, float]:
    """``(mean, se, lo, hi)`` of paired differences ``d`` (95%, t with n - 1 degrees of freedom)."""
    from scipy import stats

    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    se = float(d.std(ddof=1) / math.sqrt(n))
    h = float(stats.t.ppf(0.975, n - 1)) * se
    return mean, se, mean - h, mean + h


def _paired(by_arm: dict[str, dict[int, float]], a: str, b: str) -> np.ndarray:
    seeds = sorted(set(by_arm.get(a, {})) & set(by_arm.get(b, {})))
    return np.array([by_arm[a][s] - by_arm[b][s] for s in seeds], dtype=float), seeds


def _capture(by_arm: dict, fne: str, boot: int = 4000) -> dict | None:
    """``C = mean(FNE - plain) / mean(oracle - plain)`` with a paired bootstrap interval over seeds."""
    seeds = sorted(set(by_arm.get(fne, {})) & set(by_arm.get("plain", {})) & set(by_arm.get("oracle", {})))
    if len(seeds) < 2:
        return None
    f = np.array([by_arm[fne][s] - by_arm["plain"][s] for s in seeds])
    h = np.array([by_arm["oracle"][s] - by_arm["plain"][s] for s in seeds])
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(seeds), size=(boot, len(seeds)))
    hb = h[idx].mean(1)
    ok = np.abs(hb) > 1e-9
    cb = f[idx].mean(1)[ok] / hb[ok]
    c = float(f.mean() / h.mean()) if abs(h.mean()) > 1e-9 else math.nan
    if not cb.size:  # no headroom in any resample: C is undefined
        return {"mean": c, "lo": math.nan, "hi": math.nan, "n": len(seeds)}
    return {"mean": c, "lo": float(np.quantile(cb, 0.025)), "hi": float(np.quantile(cb, 0.975)), "n": len(seeds)}


def summarise_cell_k(rows: list[dict], metric: str = "primary") -> dict:
    """Per (cell, k): each arm's mean, ``H``, each FNE arm's ``C`` and paired difference, and FN rates."""
    by_arm: dict[str, dict[int, float]] = {}
    rates: dict[str, list[float]] = {}
    margins: dict[str, list[float]] = {}
    for r in rows:
        if r[metric] is not None:
            by_arm.setdefault(r["arm"], {})[r["seed"]] = r[metric]
        if r["sampled_fn_rate"] is not None:
            rates.setdefault(r["arm"], []).append(r["sampled_fn_rate"])
        if r.get("sampled_margin") is not None:
            margins.setdefault(r["arm"], []).append(r["sampled_margin"])
    out = {"arms": {a: {"mean": float(np.mean(list(v.values()))), "n": len(v),
                        "fn_rate": float(np.mean(rates[a])) if rates.get(a) else None,
                        "margin": float(np.mean(margins[a])) if margins.get(a) else None}
                    for a, v in by_arm.items()}}
    d, _ = _paired(by_arm, "oracle", "plain")
    if len(d):
        m, se, lo, hi = _t_interval(d)
        out["H"] = {"mean": m, "se": se, "lo": lo, "hi": hi, "n": len(d)}
    for fne in FNE_ARMS:
        d, _ = _paired(by_arm, fne, "plain")
        if len(d):
            m, se, lo, hi = _t_interval(d)
            out.setdefault("vs_plain", {})[fne] = {"mean": m, "se": se, "lo": lo, "hi": hi, "n": len(d)}
        c = _capture(by_arm, fne)
        if c is not None:
            out.setdefault("C", {})[fne] = c
    return out


def _significant(h: dict | None) -> bool | None:
    if not h or h.get("lo") is None or math.isnan(h["lo"]):
        return None
    return h["lo"] > 0


def _contiguous(cells: list[tuple[int, int]]) -> bool:
    """Whether grid points ``(density index, k index)`` form one 4-connected region."""
    if len(cells) <= 1:
        return True
    todo, seen = [cells[0]], {cells[0]}
    pts = set(cells)
    while todo:
        i, j = todo.pop()
        for nb in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if nb in pts and nb not in seen:
                seen.add(nb)
                todo.append(nb)
    return len(seen) == len(pts)


def criteria(summary: dict, fne: str) -> dict:
    """The pre-registered criteria (a)-(e) for one FNE arm, per cell and k where they apply."""
    out: dict = {"a": {}, "b": {}, "c": {}, "d": {}, "e": {}}
    families: dict[str, list[Cell]] = {}
    for c in CELLS:
        families.setdefault(c.family, []).append(c)
    for fam, cells in families.items():
        sig = []
        for i, cell in enumerate(cells):
            for j, k in enumerate(KS):
                s = summary.get(cell.name, {}).get(k)
                if s is None:
                    continue
                h = _significant(s.get("H"))
                if h:
                    sig.append((i, j))
                if k == "1":
                    continue
                key = f"{cell.name} k={k}"
                if h is True and fne in s.get("C", {}):
                    c = s["C"][fne]
                    out["b"][key] = bool(c["mean"] >= 0.5 and c["lo"] > 0)
                elif h is False and fne in s.get("vs_plain", {}):
                    v = s["vs_plain"][fne]
                    out["c"][key] = bool(v["mean"] >= -v["se"])
                arm_rate = s["arms"].get(fne, {}).get("fn_rate")
                plain_rate = s["arms"].get("plain", {}).get("fn_rate")
                hardest = summary.get(cell.name, {}).get("1", {}).get("arms", {}).get("plain", {}).get("fn_rate")
                if None not in (arm_rate, plain_rate, hardest):
                    out["d"][key] = bool(arm_rate <= 0.5 * plain_rate and arm_rate <= hardest / 3)
        out["a"][fam] = {"significant": [f"{cells[i].name} k={KS[j]}" for i, j in sig], "contiguous": _contiguous(sig)}
    for cell in CELLS:
        s = summary.get(cell.name)
        if not s:
            continue
        best_plain = max((k for k in KS if "plain" in s.get(k, {}).get("arms", {})),
                         key=lambda k: s[k]["arms"]["plain"]["mean"], default=None)
        best_fne = max((k for k in KS if fne in s.get(k, {}).get("arms", {})),
                       key=lambda k: s[k]["arms"][fne]["mean"], default=None)
        if best_plain and best_fne:
            out["e"][cell.name] = {"fne_k": best_fne, "plain_k": best_plain}
    return out


def _e_test(rows: list[dict], crit: dict, fne: str) -> None:
    """(e): FNE at its best k against plain at its best k, paired over seeds, per cell."""
    for cell, pick in crit["e"].items():
        a = {r["seed"]: r["primary"] for r in rows if r["cell"] == cell and r["arm"] == fne and r["k"] == pick["fne_k"]}
        b = {r["seed"]: r["primary"] for r in rows
             if r["cell"] == cell and r["arm"] == "plain" and r["k"] == pick["plain_k"]}
        seeds = sorted(set(a) & set(b))
        if len(seeds) >= 2:
            m, se, lo, hi = _t_interval(np.array([a[s] - b[s] for s in seeds]))
            pick.update(mean=m, se=se, lo=lo, hi=hi, n=len(seeds), passes=bool(lo > 0))


# ----------------------------------------------------------------------------- outputs
def summarise(rows: list[dict], density: list[dict]) -> dict:
    summary: dict = {}
    for metric in ("primary", "secondary"):
        for cell in CELLS:
            for k in KS:
                sel = [r for r in rows if r["cell"] == cell.name and r["k"] == k and r.get(metric) is not None]
                if sel:
                    summary.setdefault(metric, {}).setdefault(cell.name, {})[k] = summarise_cell_k(sel, metric)
            sel = [{**r, "arm": AS_WINDOW[r["arm"]]} for r in rows
                   if r["cell"] == cell.name and r["k"] == "-" and r.get(metric) is not None and r["arm"] in AS_WINDOW]
            if any(r["arm"] != "plain" for r in sel):
                summary.setdefault(metric, {}).setdefault(cell.name, {})["semihard"] = summarise_cell_k(sel, metric)
    dens = {}
    for cell in CELLS:
        d = [x for x in density if x["cell"] == cell.name]
        if d:
            dens[cell.name] = {"top10_fn_share": float(np.mean([x["top10_fn_share"] for x in d])),
                               "fn_per_query": float(np.mean([x["fn_per_query"] for x in d])),
                               "test_queries": d[0]["test_queries"], "test_candidates": d[0]["test_candidates"]}
    semi = {c.name: float(np.mean([r["primary"] for r in rows if r["cell"] == c.name and r["arm"] == "semihard"]))
            for c in CELLS if any(r["cell"] == c.name and r["arm"] == "semihard" for r in rows)}
    crit = {}
    for fne in FNE_ARMS:
        if not any(r["arm"] == fne for r in rows):
            continue
        crit[fne] = criteria(summary.get("primary", {}), fne)
        _e_test(rows, crit[fne], fne)
    semi_n = {c: len({r["seed"] for r in rows if r["cell"] == c and r["arm"] == "semihard"}) for c in semi}
    return {"summary": summary, "density": dens, "semihard": semi, "semihard_n": semi_n, "criteria": crit}


def _fmt(x, nd=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def markdown(res: dict, header: str) -> str:
    lines = [header, "", "## Cells (primary: relevant rSum after the last epoch, test split)", ""]
    lines.append("| cell | FN/query | top-10 FN share | k | plain | oracle | fne soft | fne keep | H (95% CI) | "
                 "C soft (95% CI) | C keep (95% CI) | FN rate plain / soft / keep | s - s+ plain / keep | n |")
    lines.append("|" + "---|" * 14)
    prim = res["summary"].get("primary", {})
    for cell in CELLS:
        d = res["density"].get(cell.name, {})
        for k in KS:
            s = prim.get(cell.name, {}).get(k)
            if not s:
                continue
            a = s["arms"]
            h = s.get("H", {})
            cs = s.get("C", {})

            def ci(x):
                return f"{_fmt(x.get('mean'), 2)} ({_fmt(x.get('lo'), 2)}, {_fmt(x.get('hi'), 2)})" if x else "-"

            lines.append(
                f"| {cell.name} | {_fmt(d.get('fn_per_query'))} | {_fmt(d.get('top10_fn_share'), 3)} | {k} | "
                f"{_fmt(a.get('plain', {}).get('mean'))} | {_fmt(a.get('oracle', {}).get('mean'))} | "
                f"{_fmt(a.get('fne soft', {}).get('mean'))} | {_fmt(a.get('fne keep', {}).get('mean'))} | "
                f"{_fmt(h.get('mean'))} ({_fmt(h.get('lo'))}, {_fmt(h.get('hi'))}) | {ci(cs.get('fne soft'))} | "
                f"{ci(cs.get('fne keep'))} | {_fmt(a.get('plain', {}).get('fn_rate'), 3)} / "
                f"{_fmt(a.get('fne soft', {}).get('fn_rate'), 3)} / {_fmt(a.get('fne keep', {}).get('fn_rate'), 3)} | "
                f"{_fmt(a.get('plain', {}).get('margin'), 3)} / {_fmt(a.get('fne keep', {}).get('margin'), 3)} | "
                f"{h.get('n', '-')} |")
    notes = {"fne drop": "eliminate P >= 0.5; added after the first cells, not frozen before the map",
             "fne adapt": "keep where the window's mean P < 0.5, drop where not; frozen after the ten-seed hard-window "
                          "cells, before its runs",
             "fne leave": "keep where the window's mean P < 0.5, draw outside the window where not; frozen after "
                          "bench/fne_pool.py on digits (from scratch), before its runs"}
    for arm, note in notes.items():
        runs = [(cell.name, k, prim[cell.name][k]) for cell in CELLS for k in KS
                if arm in prim.get(cell.name, {}).get(k, {}).get("arms", {})]
        if not runs:
            continue
        short = arm.split()[-1]
        lines += ["", f"Arm `{arm}` ({note}; paired with the same seeds' plain runs):", "",
                  f"| cell | k | plain (same seeds) | {arm} | {short} - plain (95% CI) | C {short} (95% CI) | "
                  f"FN rate plain (all seeds) / {short} | s - s+ plain (all seeds) / {short} | n |", "|" + "---|" * 9]
        for name, k, s_ in runs:
            a, v, c = s_["arms"], s_.get("vs_plain", {}).get(arm, {}), s_.get("C", {}).get(arm)
            # plain over the seeds the arm ran with (a subset of plain's): the arm's mean minus the paired difference
            plain_same = (a[arm]["mean"] - v["mean"]) if v.get("mean") is not None else None
            lines.append(f"| {name} | {k} | {_fmt(plain_same)} | {_fmt(a[arm].get('mean'))} | "
                         f"{_fmt(v.get('mean'))} ({_fmt(v.get('lo'))}, {_fmt(v.get('hi'))}) | "
                         + (f"{_fmt(c.get('mean'), 2)} ({_fmt(c.get('lo'), 2)}, {_fmt(c.get('hi'), 2)})" if c else "-")
                         + f" | {_fmt(a.get('plain', {}).get('fn_rate'), 3)} / {_fmt(a[arm].get('fn_rate'), 3)} | "
                         f"{_fmt(a.get('plain', {}).get('margin'), 3)} / {_fmt(a[arm].get('margin'), 3)} | "
                         f"{v.get('n', '-')} |")
    if res["semihard"]:
        lines += ["", "Semi-hard (reference, primary): " + ", ".join(f"{c} {_fmt(v)}" for c, v in res["semihard"].items())]
    semi = [(cell.name, prim[cell.name]["semihard"]) for cell in CELLS if "semihard" in prim.get(cell.name, {})]
    if semi:
        lines += ["", "On semi-hard's window (`s+ - 0.2 < s < s+`; oracle and FNE on the same window, paired with "
                  "semi-hard's runs):", "",
                  "| cell | semihard | oracle | fne soft | fne adapt | H (95% CI) | soft - semihard (95% CI) | "
                  "adapt - semihard (95% CI) | C soft / adapt | FN rate semihard / soft / adapt | s - s+ semihard / "
                  "adapt | n |", "|" + "---|" * 12]
        for name, s_ in semi:
            a, h, v, c = s_["arms"], s_.get("H", {}), s_.get("vs_plain", {}), s_.get("C", {})

            def ci(x):
                return f"{_fmt(x.get('mean'))} ({_fmt(x.get('lo'))}, {_fmt(x.get('hi'))})" if x else "-"

            lines.append(f"| {name} | {_fmt(a.get('plain', {}).get('mean'))} | {_fmt(a.get('oracle', {}).get('mean'))} | "
                         f"{_fmt(a.get('fne soft', {}).get('mean'))} | {_fmt(a.get('fne adapt', {}).get('mean'))} | "
                         f"{ci(h)} | {ci(v.get('fne soft'))} | {ci(v.get('fne adapt'))} | "
                         f"{_fmt(c.get('fne soft', {}).get('mean'), 2)} / {_fmt(c.get('fne adapt', {}).get('mean'), 2)} | "
                         f"{_fmt(a.get('plain', {}).get('fn_rate'), 3)} / {_fmt(a.get('fne soft', {}).get('fn_rate'), 3)}"
                         f" / {_fmt(a.get('fne adapt', {}).get('fn_rate'), 3)} | "
                         f"{_fmt(a.get('plain', {}).get('margin'), 3)} / {_fmt(a.get('fne adapt', {}).get('margin'), 3)} | "
                         f"{h.get('n', '-')} |")
    for fne, crit in res["criteria"].items():
        lines += ["", f"## Criteria for {fne}", ""]
        for fam, a in crit["a"].items():
            lines.append(f"- (a) {fam}: H significant at {len(a['significant'])} point(s) "
                         f"{'(contiguous)' if a['contiguous'] else '(NOT contiguous)'}: {', '.join(a['significant']) or '-'}")
        for letter, what in (("b", "captures C >= 0.5, lower bound > 0"), ("c", "within one se of plain"),
                             ("d", "FN rate <= 0.5x plain and <= 1/3 hardest")):
            items = crit[letter]
            passed = [k for k, v in items.items() if v]
            lines.append(f"- ({letter}) {what}: {len(passed)} of {len(items)} pass"
                         + (f"; fail: {', '.join(k for k, v in items.items() if not v)}" if len(passed) < len(items) else ""))
        for cell, e in crit["e"].items():
            if "mean" in e:
                lines.append(f"- (e) {cell}: FNE at k={e['fne_k']} vs plain at k={e['plain_k']}: {_fmt(e['mean'])} "
                             f"({_fmt(e['lo'])}, {_fmt(e['hi'])}) {'PASS' if e['passes'] else 'fail'}")
    return "\n".join(lines) + "\n"


def _load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run: that job runs again
    return rows


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=[c.name for c in CELLS], choices=[c.name for c in CELLS])
    ap.add_argument("--ks", nargs="+", default=list(KS), choices=list(KS))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--density-seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=None, help="only these arms (default: every arm, and semihard)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "regime_map"))
    ap.add_argument("--summarise", action="store_true", help="only write the tables from the runs so far")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs_path, dens_path = out.with_suffix(".runs.jsonl"), out.with_suffix(".density.jsonl")
    rows, density = _load_rows(runs_path), _load_rows(dens_path)
    if not args.summarise:
        for cell in args.cells:  # build each cell's data once, before the workers race for it
            c = next(x for x in CELLS if x.name == cell)
            if c.dataset == "pairs":
                real_text_root(c.options["plant"])
        done = {(r["cell"], r["k"], r["arm"], r["seed"]) for r in rows}
        dens_done = {(d["cell"], d["seed"]) for d in density}
        jobs = [("d", (c, s)) for c in args.cells for s in args.density_seeds if (c, s) not in dens_done]
        wanted = set(args.arms) if args.arms else None
        for seed in args.seeds:
            for cell in args.cells:
                for a in SEMIHARD_ARMS:
                    if (cell, "-", a, seed) not in done and (a in (wanted or ()) or (wanted is None and a == "semihard")):
                        jobs.append(("r", (cell, "-", a, seed)))
                for k in args.ks:
                    jobs += [("r", (cell, k, a, seed)) for a in arms(k)
                             if (cell, k, a, seed) not in done and (wanted is None or a in wanted)]
        print(f"{len(jobs)} jobs to run ({len(rows)} runs done before)", flush=True)
        t0 = time.perf_counter()
        # spawn, not fork: the parent has loaded the sentence encoder (torch threads), and a forked child
        # that inherits those locks can hang before its first run
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futs = {pool.submit(run_density if kind == "d" else run_arm, job): (kind, job) for kind, job in jobs}
            for i, fut in enumerate(as_completed(futs), 1):
                kind, job = futs[fut]
                try:
                    row = fut.result()
                except Exception as err:  # noqa: BLE001 - a failed run is reported and the map goes on
                    print(f"FAILED {job}: {type(err).__name__}: {err}", flush=True)
                    continue
                _append(dens_path if kind == "d" else runs_path, row)
                (density if kind == "d" else rows).append(row)
                print(f"[{i}/{len(jobs)} {time.perf_counter() - t0:.0f}s] {job}: "
                      + (f"top10 FN {row['top10_fn_share']:.3f}" if kind == "d" else
                         f"last {_fmt(row['primary'])} best {_fmt(row['secondary'])} FN {_fmt(row['sampled_fn_rate'], 3)} "
                         f"{row['seconds']:.0f}s"), flush=True)
    res = summarise(rows, density)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    seeds = sorted({r["seed"] for r in rows})
    header = (f"# The regime map\n\n`python bench/regime_map.py` at commit {commit} ({len(rows)} runs, seeds "
              f"{seeds[0] if seeds else '-'}..{seeds[-1] if seeds else '-'}; protocol in the script's docstring).")
    res.update(commit=commit, runs=len(rows), protocol={"ks": list(KS), "epochs": EPOCHS, "keep_fraction": KEEP_FRACTION,
                                                        "cells": [{"name": c.name, "dataset": c.dataset,
                                                                   "options": c.options, "family": c.family,
                                                                   "density": c.density} for c in CELLS]})
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(markdown(res, header))
    print(markdown(res, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
