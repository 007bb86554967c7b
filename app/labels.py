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


#: metadata columns that identify an item rather than describe it: never offered as a colour
ID_FIELDS = ("split", "image_path", "file_index", "sklearn_index", "label", "a_text", "text", "id")


def field(column: str) -> str:
    """A metadata column in words: ``n_objects`` -> ``number of objects``, ``shape_0`` -> ``shape of object 1``,
    ``ink_percentile`` -> ``ink percentile``."""
    words = str(column).split("_")
    if len(words) > 1 and words[0] == "n":
        return "number of " + " ".join(words[1:])
    if len(words) > 1 and words[-1].isdigit():
        return f"{' '.join(words[:-1])} of object {int(words[-1]) + 1}"
    return " ".join(words)


def an(noun: str) -> str:
    """``noun`` with its indefinite article: ``an image``, ``a caption``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def setting(sampler_name: str, params: dict) -> str:
    """A sampler's non-default settings in words (``"keep: each query's lowest-P share of its band"``), from
    its registry specs; ``"at its defaults"`` when ``params`` changes nothing."""
    parts = []
    for name, value in sorted((params or {}).items()):
        spec = _spec(sampler_name, name)
        if spec is None or value == spec.default:
            continue
        parts.append(spec.choice_label(value) if spec.choices else f"{spec.title}: {value}")
    return "; ".join(parts) or "at its defaults"


def fne_setting(params: dict) -> str:
    """FNE's setting in words: ``calibrated`` plus what differs from its defaults."""
    mode = (params or {}).get("mode", "calibrated")
    rest = {k: v for k, v in (params or {}).items() if k != "mode"}
    text = setting("fne", rest)
    return mode if text == "at its defaults" else f"{mode}, {text}"


#: one marker per sampler (with its colour from fnlab.analysis.viz.PALETTE), by its place in the registry
MARKERS = ("circle", "diamond", "square", "triangle-up", "x", "star", "hexagon", "cross", "pentagon",
           "triangle-down", "star-diamond", "hourglass", "bowtie", "circle-x")


def sampler_style(label: str) -> tuple[str, str]:
    """``(colour, marker)`` of a sampler as the playground labels it (``"hardest"``, ``"fne · paper"``), the same
    on every page: the colour from its registry name's place in :func:`fnlab.samplers.available`, the marker from
    the label's place among :func:`fnlab.samplers.variants` (a label outside them, such as ``"fne · calibrated,
    soft"``, gets its sampler's colour and a marker of its own)."""
    from fnlab import samplers as smp
    from fnlab.analysis.viz import PALETTE

    names, variants = smp.available(), list(smp.variants())
    colours = [c for c in PALETTE if c.upper() != "#F0E442"]  # yellow reads badly as a marker on white
    base = label.split(" ·")[0].split(",")[0].strip()
    i = names.index(base) if base in names else len(names)
    j = variants.index(label) if label in variants else len(variants) + i + 1
    return colours[i % len(colours)], MARKERS[j % len(MARKERS)]


def sampler_styles(labels_) -> dict[str, tuple[str, str]]:
    """:func:`sampler_style` of each label; two labels that would look alike get distinct markers."""
    out: dict[str, tuple[str, str]] = {}
    used: set[tuple[str, str]] = set()
    for label in labels_:
        colour, marker = sampler_style(str(label))
        k = 0
        while (colour, marker) in used:
            k += 1
            marker = MARKERS[(MARKERS.index(marker) + k) % len(MARKERS)]
        used.add((colour, marker))
        out[str(label)] = (colour, marker)
    return out


METRICS = {
    "recall.rsum": "rSum, labelled pairs only (0–600)",
    "relevant_recall.rsum": "rSum, any relevant item counts (0–600)",
    "r_precision.t2i": "R-precision, {t2i} (%)",
    "r_precision.i2t": "R-precision, {i2t} (%)",
    "fn_detection.auroc": "FN detection AUROC (0.5 = chance)",
    "fn_detection.ap": "FN detection average precision",
    "fn_detection.ece": "FN posterior calibration error (ECE, lower is better)",
    "fn_detection_topk.auroc": "FN detection AUROC, top-10 near misses",
    "sampled_fn_rate": "False negatives among sampled negatives (share)",
    "recall.t2i.1": "Recall@1, {t2i} (%)",
    "recall.t2i.5": "Recall@5, {t2i} (%)",
    "recall.t2i.10": "Recall@10, {t2i} (%)",
    "recall.i2t.1": "Recall@1, {i2t} (%)",
    "recall.i2t.5": "Recall@5, {i2t} (%)",
    "recall.i2t.10": "Recall@10, {i2t} (%)",
}
#: direction words where the runs' data are unknown or mixed: side B queries side A, and the reverse
GENERIC_DIRECTIONS = {"t2i": "B → A", "i2t": "A → B"}


#: column headers of the comparison table, short enough for a 150 px column (the full name is the header's help)
METRICS_SHORT = {
    "recall.rsum": "rSum, labelled",
    "relevant_recall.rsum": "rSum, all relevant",
    "fn_detection.auroc": "FN AUROC",
    "sampled_fn_rate": "sampled FN share",
}


def metric_short(key: str, directions: dict[str, str] | None = None) -> str:
    """:func:`metric`, shortened where :data:`METRICS_SHORT` has a short form (a table's column header)."""
    return METRICS_SHORT.get(key) or metric(key, directions)


def metric(key: str, directions: dict[str, str] | None = None) -> str:
    """A metric key of ``eval.json`` flattened with dots (``recall.t2i.1``) as a human name; ``directions`` gives
    the data's words for the two directions (``{"t2i": "text → image", …}``, :func:`fnlab.analysis.explore.direction_labels`),
    by default the generic ``B → A`` / ``A → B``."""
    words = dict(GENERIC_DIRECTIONS if directions is None else directions)
    if key in METRICS:
        return METRICS[key].format(**words)
    parts = key.split(".")
    names = {"recall": "Recall", "relevant_recall": "Relevant recall", "t2i": words["t2i"], "i2t": words["i2t"],
             "fn_detection": "FN detection", "fn_detection_topk": "FN detection, top-k", "auroc": "AUROC",
             "ap": "AP", "ece": "ECE", "rsum": "rSum", "r_precision": "R-precision", "k": "k"}
    return " ".join(names.get(p, f"@{p}" if p.isdigit() else p.replace("_", " ")) for p in parts)
