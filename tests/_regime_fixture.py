"""A small regime-map summary in the layout ``bench/regime_map.py --summarise`` writes (two cells of one family)."""

from __future__ import annotations

import json
from pathlib import Path


def summary() -> dict:
    def arm(mean, fn):
        return {"mean": mean, "n": 3, "fn_rate": fn, "margin": 0.0}

    return {
        "commit": "abc1234", "runs": 30,
        "protocol": {"cells": [{"name": "shapes:low", "family": "shapes"}, {"name": "shapes:high", "family": "shapes"}]},
        "density": {"shapes:low": {"top10_fn_share": 0.1, "fn_per_query": 2.0},
                    "shapes:high": {"top10_fn_share": 0.6, "fn_per_query": 40.0}},
        "semihard": {"shapes:low": 520.0, "shapes:high": 480.0},
        "summary": {"primary": {
            "shapes:low": {
                "1": {"arms": {"plain": arm(500.0, 0.2), "oracle": arm(505.0, 0.0)},
                      "H": {"mean": 5.0, "se": 4.0, "lo": -12.2, "hi": 22.2, "n": 3}},
                "10": {"arms": {"plain": arm(510.0, 0.1), "oracle": arm(511.0, 0.0), "fne keep": arm(509.0, 0.05)},
                       "H": {"mean": 1.0, "se": 1.0, "lo": -3.3, "hi": 5.3, "n": 3},
                       "vs_plain": {"fne keep": {"mean": -1.0, "se": 1.0, "lo": -5.3, "hi": 3.3, "n": 3}}}},
            "shapes:high": {
                "1": {"arms": {"plain": arm(300.0, 0.7), "oracle": arm(500.0, 0.0)},
                      "H": {"mean": 200.0, "se": 10.0, "lo": 157.0, "hi": 243.0, "n": 3}},
                "10": {"arms": {"plain": arm(420.0, 0.65), "oracle": arm(490.0, 0.0), "fne keep": arm(470.0, 0.3)},
                       "H": {"mean": 70.0, "se": 5.0, "lo": 48.5, "hi": 91.5, "n": 3},
                       "vs_plain": {"fne keep": {"mean": 50.0, "se": 4.0, "lo": 32.8, "hi": 67.2, "n": 3}}}}}},
    }


def write(path: Path) -> Path:
    path.write_text(json.dumps(summary()), encoding="utf-8")
    return path
