"""Which sampler when? The regime map read back: cells of false-negative density, the arms measured there, and
where a run or a user's scanned data falls on it.

The map itself is measured by ``bench/regime_map.py`` (false-negative density x hardness, paired seeds; its
docstring holds the protocol and the pre-registered criteria) and summarised into JSON files under
``bench/results/`` (the first map, then its ten-seed and exploratory runs in files of their own). This module reads
those summaries and merges them (:meth:`RegimeMap.merge`: per cell, arm and window, the figure with the most
seeds); it trains nothing.

Semi-hard's window is a point of its own where it was measured with the oracle and FNE on it (the summary's
window ``"semihard"``): there ``semihard`` plays ``plain``'s role, and the arms' paired differences are against it.

Density is the share of false negatives among each query's 10 most similar unlabelled candidates (the
"top-10 FN share"). For a run or a scan it is estimated label-free as the mean ``P(false negative)`` of those
rows (the posterior's estimate), or measured where ground truth is known.

Example:
    >>> m = RegimeMap.from_summary({"density": {"c": {"top10_fn_share": 0.4, "fn_per_query": 5.0}},
    ...     "summary": {"primary": {"c": {"10": {"arms": {"plain": {"mean": 500.0, "n": 3, "fn_rate": 0.5}}}}}},
    ...     "protocol": {"cells": [{"name": "c", "family": "toy"}]}})
    >>> m.place(0.35).name
    'c'
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArmResult", "Cell", "RegimeMap", "DEFAULT_MAP", "DEFAULT_MAPS", "SEMIHARD_K", "estimated_density",
           "map_path", "map_paths"]

_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
#: the first map's summary (``bench/regime_map.py --summarise``; present in a source checkout)
DEFAULT_MAP = _RESULTS / "regime_map.json"
#: every summary the app reads, the preferred first where two have the same number of seeds
DEFAULT_MAPS = (_RESULTS / "regime_map_k10.json", DEFAULT_MAP, _RESULTS / "regime_map_drop.json")
#: the window name of semi-hard's own point
SEMIHARD_K = "semihard"


def map_path() -> Path:
    """The first of :func:`map_paths`."""
    return map_paths()[0]


def map_paths() -> list[Path]:
    """Where the app reads the map: ``$FNLAB_REGIME_MAP`` when set (one file, or several separated by
    ``os.pathsep``), else those of :data:`DEFAULT_MAPS` that exist (the first of them if none does)."""
    env = os.environ.get("FNLAB_REGIME_MAP")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [p for p in DEFAULT_MAPS if p.is_file()] or [DEFAULT_MAPS[0]]


@dataclass(frozen=True)
class ArmResult:
    """One arm at one window size ``k`` in one cell: mean last-epoch relevant rSum over ``n`` seeds, its sampled
    false-negative rate, and (FNE arms) the paired difference to ``plain`` at the same ``k`` with its 95% CI."""

    arm: str
    k: str
    mean: float
    n: int
    fn_rate: float | None = None
    vs_plain: dict[str, float] | None = None


@dataclass
class Cell:
    """One density cell: its name, dataset family, measured top-10 FN share and false negatives per query, and
    every arm measured there (``results``), with the headroom ``H = oracle - plain`` per ``k``."""

    name: str
    family: str
    density: float | None  # None until a summary that measured it is merged in
    fn_per_query: float | None
    results: list[ArmResult] = field(default_factory=list)
    headroom: dict[str, dict[str, float]] = field(default_factory=dict)
    semihard: float | None = None
    semihard_n: int = 0  # seeds behind ``semihard`` (0: not recorded)

    def best(self, arm: str) -> ArmResult | None:
        """The arm at its best ``k`` (highest mean), or ``None`` where it was not run."""
        got = [r for r in self.results if r.arm == arm]
        return max(got, key=lambda r: r.mean) if got else None

    def arms(self) -> list[str]:
        return sorted({r.arm for r in self.results})

    def ranking(self) -> list[ArmResult]:
        """Every arm at its best ``k``, best first (``semihard`` as a reference row with ``k = "-"``)."""
        rows = [b for a in self.arms() if (b := self.best(a)) is not None]
        if self.semihard is not None and "semihard" not in self.arms():
            rows.append(ArmResult("semihard", "-", float(self.semihard), self.semihard_n))
        return sorted(rows, key=lambda r: -r.mean)


@dataclass
class RegimeMap:
    """The measured map: its cells and the commit that measured it."""

    cells: list[Cell]
    commit: str = ""
    runs: int = 0

    @classmethod
    def load(cls, path: str | Path | None = None, *, keep_unplaced: bool = False) -> RegimeMap:
        """Read one summary (``regime_map.json``; ``keep_unplaced`` as :meth:`from_summary`).

        Raises:
            FileNotFoundError: no map at ``path`` (measure it with ``python bench/regime_map.py``).
            ValueError: the file is not a regime map summary (names the file and the missing field).
        """
        path = map_path() if path is None else Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no regime map here; measure one with `python bench/regime_map.py` "
                                    "then `python bench/regime_map.py --summarise`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a JSON regime map summary ({err})") from None
        for key in ("density", "summary"):
            if not isinstance(data, dict) or key not in data:
                raise ValueError(f"{path}: field {key!r} missing; expected the output of "
                                 "`python bench/regime_map.py --summarise`")
        return cls.from_summary(data, keep_unplaced=keep_unplaced)

    @classmethod
    def load_all(cls, paths: list[str | Path] | None = None) -> RegimeMap:
        """Read several summaries (default :func:`map_paths`) and :meth:`merge` them; errors as :meth:`load`."""
        return cls.merge([cls.load(p, keep_unplaced=True) for p in (map_paths() if paths is None else paths)])

    @classmethod
    def from_summary(cls, data: dict[str, Any], *, keep_unplaced: bool = False) -> RegimeMap:
        """Build from the summary dict (``regime_map.json``'s content). ``keep_unplaced``: keep the cells whose
        density this summary did not measure (``density`` None), for :meth:`merge` to place."""
        family = {c["name"]: c.get("family", c["name"]) for c in data.get("protocol", {}).get("cells", [])}
        primary = data["summary"].get("primary", {})
        density = data.get("density") or {}
        cells = []
        for name in primary if keep_unplaced else [n for n in density if n in primary]:
            dens = density.get(name) or {}
            cell = Cell(name, family.get(name, name), _num(dens.get("top10_fn_share")),
                        _num(dens.get("fn_per_query")), semihard=_num(data.get("semihard", {}).get(name)),
                        semihard_n=int(data.get("semihard_n", {}).get(name) or 0))
            for k, s in primary[name].items():
                k = str(k)
                for arm, r in s.get("arms", {}).items():
                    if k == SEMIHARD_K and arm == "plain":
                        arm = "semihard"  # semi-hard's window: semi-hard is the base the others are paired with
                    cell.results.append(ArmResult(arm, k, float(r["mean"]), int(r.get("n", 0)),
                                                  _num(r.get("fn_rate")), s.get("vs_plain", {}).get(arm)))
                if "H" in s:
                    cell.headroom[k] = s["H"]
            cells.append(cell)
        cells.sort(key=lambda c: (c.family, -1.0 if c.density is None else c.density))
        return cls(cells, str(data.get("commit", "")), int(data.get("runs", 0)))

    @classmethod
    def merge(cls, maps: list[RegimeMap]) -> RegimeMap:
        """One map from several summaries of the same protocol: per cell, each (arm, window), each window's headroom
        and the semi-hard reference from the summary with the most seeds (the earlier one on a tie); a cell's
        density and family from the first summary that has them. Cells no summary placed are left out."""
        merged: dict[str, Cell] = {}
        for m in maps:
            for c in m.cells:
                into = merged.setdefault(c.name, Cell(c.name, c.family, None, None))
                if into.density is None and c.density is not None:
                    into.density, into.fn_per_query = c.density, c.fn_per_query
                if c.semihard is not None and (into.semihard is None or c.semihard_n > into.semihard_n):
                    into.semihard, into.semihard_n = c.semihard, c.semihard_n
                have = {(r.arm, r.k): i for i, r in enumerate(into.results)}
                for r in c.results:
                    i = have.get((r.arm, r.k))
                    if i is None:
                        into.results.append(r)
                    elif r.n > into.results[i].n:
                        into.results[i] = r
                for k, h in c.headroom.items():
                    if k not in into.headroom or int(h.get("n", 0)) > int(into.headroom[k].get("n", 0)):
                        into.headroom[k] = h
        cells = sorted((c for c in merged.values() if c.density is not None), key=lambda c: (c.family, c.density))
        commits = ", ".join(dict.fromkeys(m.commit for m in maps if m.commit))
        return cls(cells, commits, sum(m.runs for m in maps))

    def place(self, density: float, family: str | None = None) -> Cell:
        """The cell nearest ``density`` (top-10 FN share), among ``family``'s cells where it has any."""
        if not self.cells:
            raise ValueError("the regime map has no measured cell")
        pool = [c for c in self.cells if family and c.family == family] or self.cells
        return min(pool, key=lambda c: abs(c.density - float(density)))

    def verdict(self, cell: Cell) -> list[str]:
        """What the map says at ``cell``, one sentence a line: the best arm, FNE against its own base sampler
        with the 95% CI, and the headroom a perfect filter would give."""
        out = []
        ranking = [r for r in cell.ranking() if r.arm != "oracle"]
        if ranking:
            top = ranking[0]
            k = "" if top.k == "-" else f" (k = {top.k})"
            seeds = f" ({top.n} seeds)" if top.n else ""
            out.append(f"Best without ground truth: **{top.arm}**{k}, last-epoch relevant rSum {top.mean:.1f}{seeds}.")
            v = top.vs_plain or {}
            if top.arm.startswith("fne") and _num(v.get("lo")) is not None and v["lo"] <= 0:
                base = "semi-hard" if top.k == SEMIHARD_K else f"plain at k = {top.k}"
                out.append(f"But it is within noise of its own base, {base} ({v['mean']:+.1f} [95% CI {v['lo']:+.1f}, "
                           f"{v['hi']:+.1f}]): {base} does as well here without a posterior.")
        named = ("fne adapt", "fne leave", "fne keep", "fne drop", "fne soft")
        others = sorted({r.arm for r in cell.results if r.arm.startswith("fne ") and r.arm not in named})
        for arm in (*named, *others):
            for r in sorted((r for r in cell.results if r.arm == arm and r.vs_plain), key=lambda r: r.k):
                v = r.vs_plain
                where = "semihard on semi-hard's window" if r.k == SEMIHARD_K else f"plain at k = {r.k}"
                if _num(v.get("lo")) is None:
                    out.append(f"{arm} vs {where}: {v['mean']:+.1f} (one seed: no interval).")
                    continue
                sig = "better" if v["lo"] > 0 else "worse" if v["hi"] < 0 else "not distinguishable"
                out.append(f"{arm} vs {where}: {v['mean']:+.1f} [95% CI {v['lo']:+.1f}, "
                           f"{v['hi']:+.1f}], {sig} ({v.get('n', '?')} seeds).")
        for k, h in sorted(cell.headroom.items()):
            if _num(h.get("lo")) is not None:
                what = ("on semi-hard's window (oracle - semihard)" if k == SEMIHARD_K
                        else f"(oracle - plain) at k = {k}")
                out.append(f"Headroom {what}: {h['mean']:+.1f} [95% CI {h['lo']:+.1f}, {h['hi']:+.1f}].")
        sh = cell.semihard
        best_fne = max((r for r in cell.results if r.arm.startswith("fne")), key=lambda r: r.mean, default=None)
        if sh is not None and best_fne is not None and sh >= best_fne.mean:
            out.append(f"Semi-hard ({sh:.1f}) is at least as good as FNE's best ({best_fne.mean:.1f}) here: "
                       "a moderate window gives the same benefit without a posterior.")
        return out


def estimated_density(p_false_negative: np.ndarray, rank: np.ndarray, k: int = 10) -> float:
    """Mean ``P(false negative)`` over each query's ``k`` best-ranked unlabelled rows: the posterior's estimate of
    the top-``k`` FN share. ``p_false_negative``, ``rank`` (a scan table's columns, rank 1-based): ``[R]``."""
    p, rank = np.asarray(p_false_negative, np.float64), np.asarray(rank)
    keep = rank <= k
    if not keep.any():
        raise ValueError(f"no scanned row ranks within the top {k}")
    return float(np.nanmean(p[keep]))


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v
