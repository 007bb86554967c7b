"""Human names for what the app shows: samplers, their parameters, losses and metrics (with units)."""

from __future__ import annotations

SAMPLERS = {
    "hardest": "Hardest (VSE++ max violation)",
    "semihard": "Semi-hard (FaceNet window)",
    "simans": "SimANS (ambiguous negatives)",
    "positive_aware": "Positive-aware (TopK-PercPos / MarginPos)",
    "range": "Range / margin mining",
    "fne": "FNE (false-negative elimination)",
    "oracle": "Oracle (true false negatives removed)",
    "random": "Random",
}

SHORT_SAMPLERS = {"fne": "FNE", "hardest": "hardest (VSE++)", "semihard": "semi-hard", "simans": "SimANS",
                  "positive_aware": "positive-aware", "range": "range", "oracle": "oracle", "random": "random"}
SHORT_LOSSES = {"triplet": "triplet", "infonce": "InfoNCE", "dcl": "DCL", "hcl": "HCL", "fnc": "FNC"}

LOSSES = {
    "triplet": "Triplet hinge (the paper's)",
    "infonce": "InfoNCE",
    "dcl": "Debiased contrastive (DCL)",
    "hcl": "Hard-negative contrastive (HCL)",
    "fnc": "False-negative cancellation (FNC)",
}

FNE_MODES = {"calibrated": "calibrated: weight × (1 − P(FN))", "paper": "paper: the official weighting"}

# parameter name -> label; (sampler, name) overrides where one name means different things
PARAMS = {
    "tau": "Sharpness τ of the weight exp(−τ (s − s⁺)²)",
    "margin": "Margin (cosine similarity)",
    "fn_cutoff": "P(FN) above which a weight is replaced (paper mode)",
    "top_k": "Candidates considered (count)",
    "a": "Sharpness a of exp(−a (s − s⁺ − b)²)",
    "b": "Offset b (cosine similarity)",
    "perc": "Keep s below this share of s⁺",
    "range_min": "Skip the most similar (ranks)",
    "range_max": "Consider ranks up to (rank)",
    "min_score": "Lowest similarity kept (cosine)",
    "max_score": "Highest similarity kept (cosine)",
    "relative_margin": "Relative margin (share of s⁺)",
    "num_negatives": "Negatives kept per query (count)",
    "min_confident": "Confident pairs before the posterior switches on (count)",
}
PARAM_OVERRIDES = {
    ("fne", "margin"): "Cut-down margin below the mean positive (cosine)",
    ("hardest", "top_k"): "Hardest negatives sharing the weight (count)",
    ("positive_aware", "margin"): "Margin below the positive (cosine)",
    ("positive_aware", "top_k"): "Hard negatives kept per query (count)",
    ("semihard", "margin"): "Semi-hard window below the positive (cosine)",
}

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


def sampler(name: str) -> str:
    return SAMPLERS.get(name, name)


def param(sampler_name: str, name: str) -> str:
    return PARAM_OVERRIDES.get((sampler_name, name), PARAMS.get(name, name.replace("_", " ")))


def metric(key: str) -> str:
    """A metric key of ``eval.json`` flattened with dots (``recall.t2i.1``) as a human name."""
    if key in METRICS:
        return METRICS[key]
    parts = key.split(".")
    words = {"recall": "Recall", "relevant_recall": "Relevant recall", "t2i": "text → image",
             "i2t": "image → text", "fn_detection": "FN detection", "fn_detection_topk": "FN detection, top-k",
             "auroc": "AUROC", "ap": "AP", "ece": "ECE", "rsum": "rSum", "r_precision": "R-precision", "k": "k"}
    return " ".join(words.get(p, f"@{p}" if p.isdigit() else p.replace("_", " ")) for p in parts)
