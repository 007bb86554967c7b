"""Human names for what the app shows: samplers, their parameters, losses and metrics (with units).

Method names and their labels come from the registries (:mod:`fnlab.samplers.registry`,
:mod:`fnlab.losses.registry`), read without importing any method; this module names none.
"""

from __future__ import annotations

from typing import Any

from fnlab.losses.registry import LOSSES
from fnlab.samplers.registry import SAMPLERS


def sampler(name: str) -> str:
    """The sampler's human name (its registry label)."""
    return SAMPLERS.entry(name).title if name in SAMPLERS else str(name)


def short_sampler(name: str) -> str:
    """The sampler's short name for tables."""
    return SAMPLERS.entry(name).short_title if name in SAMPLERS else str(name)


def loss(name: str) -> str:
    """The loss's human name."""
    return LOSSES.entry(name).title if name in LOSSES else str(name)


def short_loss(name: str) -> str:
    """The loss's short name for tables."""
    return LOSSES.entry(name).short_title if name in LOSSES else str(name)


def _spec(sampler_name: str, name: str):
    if sampler_name in SAMPLERS:
        for spec in SAMPLERS.entry(sampler_name).params:
            if spec.name == name:
                return spec
    return None


def param(sampler_name: str, name: str) -> str:
    """A sampler parameter's human name with its unit (its spec's label)."""
    spec = _spec(sampler_name, name)
    return spec.title if spec is not None else name.replace("_", " ")


def choice(sampler_name: str, name: str, value: Any) -> str:
    """The human name of one value of a sampler's choice parameter."""
    spec = _spec(sampler_name, name)
    return spec.choice_label(value) if spec is not None else str(value)


def sampler_variant(name: str, params: dict | None) -> str:
    """The short name of a sampler with the value of its variant parameter (``FNE · paper``), as run configs
    record it."""
    text = short_sampler(name)
    for spec in SAMPLERS.entry(name).params if name in SAMPLERS else ():
        if spec.variant:
            text += f" · {(params or {}).get(spec.name, spec.default)}"
    return text


METRICS = {
    "recall.rsum": "rSum, labelled pairs only (0–600)",
    "relevant_recall.rsum": "rSum, any relevant item counts (0–600)",
    "r_precision.t2i": "R-precision, text → image (%)",
    "r_precision.i2t": "R-precision, image → text (%)",
    "fn_detection.auroc": "FN detection AUROC (0.5 = chance)",
    "fn_detection.ap": "FN detection average precision",
    "fn_detection.ece": "FN posterior calibration error (ECE, lower is better)",
    "fn_detection_topk.auroc": "FN detection AUROC, top-10 near misses",
    "sampled_fn_rate": "False negatives among sampled negatives (share)",
    "recall.t2i.1": "Recall@1, text → image (%)",
    "recall.t2i.5": "Recall@5, text → image (%)",
    "recall.t2i.10": "Recall@10, text → image (%)",
    "recall.i2t.1": "Recall@1, image → text (%)",
    "recall.i2t.5": "Recall@5, image → text (%)",
    "recall.i2t.10": "Recall@10, image → text (%)",
}


def metric(key: str) -> str:
    """A metric key of ``eval.json`` flattened with dots (``recall.t2i.1``) as a human name."""
    if key in METRICS:
        return METRICS[key]
    parts = key.split(".")
    words = {"recall": "Recall", "relevant_recall": "Relevant recall", "t2i": "text → image",
             "i2t": "image → text", "fn_detection": "FN detection", "fn_detection_topk": "FN detection, top-k",
             "auroc": "AUROC", "ap": "AP", "ece": "ECE", "rsum": "rSum", "r_precision": "R-precision", "k": "k"}
    return " ".join(words.get(p, f"@{p}" if p.isdigit() else p.replace("_", " ")) for p in parts)
