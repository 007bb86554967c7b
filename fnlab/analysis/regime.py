"""Which sampler when? The regime map read back: cells of false-negative density, the arms measured there, and
where a run or a user's scanned data falls on it.

The map itself is measured by ``bench/regime_map.py`` (false-negative density x hardness, paired seeds; its
docstring holds the protocol and the pre-registered criteria) and summarised into
``bench/results/regime_map.json``. This module reads that summary; it trains nothing.

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

__all__ = ["ArmResult", "Cell", "RegimeMap", "DEFAULT_MAP", "estimated_density", "map_path"]

#: the summary ``bench/regime_map.py --summarise`` writes (present in a source checkout)
DEFAULT_MAP = Path(__file__).resolve().parents[2] / "bench" / "results" / "regime_map.json"


def map_path() -> Path:
    """Where the app reads the map: ``$FNLAB_REGIME_MAP`` when set, else :data:`DEFAULT_MAP`."""
    return Path(os.environ.get("FNLAB_REGIME_MAP") or DEFAULT_MAP)


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
    density: float
    fn_per_query: float | None
    results: list[ArmResult] = field(default_factory=list)
    headroom: dict[str, dict[str, float]] = field(default_factory=dict)
    semihard: float | None = None

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
            rows.append(ArmResult("semihard", "-", float(self.semihard), 0))
        return sorted(rows, key=lambda r: -r.mean)


@dataclass
class RegimeMap:
    """The measured map: its cells and the commit that measured it."""

    cells: list[Cell]
    commit: str = ""
    runs: int = 0

    @classmethod
    def load(cls, path: str | Path | None = None) -> RegimeMap:
        """Read ``regime_map.json``.

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
        return cls.from_summary(data)

    @classmethod
    def from_summary(cls, data: dict[str, Any]) -> RegimeMap:
        """Build from the summary dict (``regime_map.json``'s content)."""
        family = {c["name"]: c.get("family", c["name"]) for c in data.get("protocol", {}).get("cells", [])}
        primary = data["summary"].get("primary", {})
        cells = []
        for name, dens in data["density"].items():
            if name not in primary:
                continue  # density measured, no arm run there yet
            cell = Cell(name, family.get(name, name), float(dens["top10_fn_share"]),
                        _num(dens.get("fn_per_query")), semihard=_num(data.get("semihard", {}).get(name)))
            for k, s in primary[name].items():
                for arm, r in s.get("arms", {}).items():
                    cell.results.append(ArmResult(arm, str(k), float(r["mean"]), int(r.get("n", 0)),
                                                  _num(r.get("fn_rate")), s.get("vs_plain", {}).get(arm)))
                if "H" in s:
                    cell.headroom[str(k)] = s["H"]
            cells.append(cell)
        cells.sort(key=lambda c: (c.family, c.density))
        return cls(cells, str(data.get("commit", "")), int(data.get("runs", 0)))

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
            out.append(f"Best without ground truth: **{top.arm}**{k}, last-epoch relevant rSum {top.mean:.1f}.")
        for arm in ("fne keep", "fne soft"):
            for r in sorted((r for r in cell.results if r.arm == arm and r.vs_plain), key=lambda r: r.k):
                v = r.vs_plain
                if _num(v.get("lo")) is None:
                    out.append(f"{arm} vs plain at k = {r.k}: {v['mean']:+.1f} (one seed: no interval).")
                    continue
                sig = "better" if v["lo"] > 0 else "worse" if v["hi"] < 0 else "not distinguishable"
                out.append(f"{arm} vs plain at k = {r.k}: {v['mean']:+.1f} [95% CI {v['lo']:+.1f}, "
                           f"{v['hi']:+.1f}], {sig}.")
        for k, h in sorted(cell.headroom.items()):
            if _num(h.get("lo")) is not None:
                out.append(f"Headroom (oracle - plain) at k = {k}: {h['mean']:+.1f} [95% CI {h['lo']:+.1f}, "
                           f"{h['hi']:+.1f}].")
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
