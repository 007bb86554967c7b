"""The sampler registry: one declarative entry per sampler, read without importing torch.

A new sampler is one file (a :class:`fnlab.samplers.base.Sampler` subclass decorated with
``@register("name")``) plus one ``SAMPLERS.declare(...)`` entry here, which gives its class path, its human
labels and its parameter specs. Everything that lists samplers (the CLI's ``--sampler`` help and named
flags, the app's pickers, labels and playground, ``bench/reproduce.py``'s table) reads these entries.

``meta`` keys of a sampler entry:

* ``loss``: the loss a run uses with this sampler unless told otherwise (default ``"triplet"``);
* ``no_playground``: why the playground shows no per-batch view of this sampler (its weights depend on
  state only training builds); empty when it does;
* ``playground_default``: shown in the playground before the user picks;
* ``contrast``: the sampler is a contrast case (it picks false negatives first), for listings;
* ``needs_option``: a dataset option the sampler cannot run without (``cet``: ``pooling_depth``); the benchmark's
  default rows leave it out.
"""

from __future__ import annotations

from typing import Any

from fnlab.core.registry import Entry, ParamSpec, Registry

__all__ = ["ParamSpec", "Registry", "SAMPLERS", "register", "available", "build", "build_for_run", "param_specs",
           "entry", "default_loss", "playground_note", "variants"]

SAMPLERS: Registry = Registry("sampler")
register = SAMPLERS.register

_COUNT = "(count)"
_INV_T = 1 / 0.07  #: SimANS's default score scale: 1 / fnlab's training temperature (simans.DEFAULT_SCORE_SCALE)

SAMPLERS.declare(
    "random", "fnlab.samplers.random:RandomSampler", label="Random", short="random",
    summary="uniform over the non-positive candidates")
SAMPLERS.declare(
    "hardest", "fnlab.samplers.hardest:HardestSampler", label="Hardest (VSE++ max violation)",
    short="hardest (VSE++)", summary="the most similar non-positive (VSE++ max-violation)",
    params=(ParamSpec("top_k", 1, 1, 200, "how many of the hardest negatives share the weight", integer=True,
                      label=f"Hardest negatives sharing the weight {_COUNT}", flag=True),),
    meta={"playground_default": True})
SAMPLERS.declare(
    "semihard", "fnlab.samplers.semihard:SemiHardSampler", label="Semi-hard (FaceNet window)", short="semi-hard",
    summary="s+ - margin < s < s+ (FaceNet)",
    params=(ParamSpec("margin", 0.2, 0.0, 1.0, "semi-hard window: s+ - margin < s < s+",
                      label="Semi-hard window below the positive (cosine)", flag=True),))
SAMPLERS.declare(
    "simans", "fnlab.samplers.simans:SimANSSampler", label="SimANS (ambiguous negatives)", short="SimANS",
    summary="exp(-a (z - z+ - b)^2) on z = s/t over the top-k window (SimANS, at the paper's sharpness)",
    params=(ParamSpec("a", 0.5, 0.0, 20.0, "sharpness of exp(-a (z - z+ - b)^2), z = score_scale * s",
                      label="Sharpness a of exp(−a (z − z⁺ − b)²)", flag=True, when=(("kernel", "gaussian"),)),
            ParamSpec("b", 0.0, -5.0, 5.0, "offset in score units: weight peaks at z = z+ + b (official code: -b)",
                      label="Offset b (score units, z = s/t)", flag=True),
            ParamSpec("top_k", 100, 1, 1000, "candidates considered per anchor (the window)", integer=True,
                      label=f"Candidates considered {_COUNT}", flag=True),
            ParamSpec("score_scale", _INV_T, 1.0, 50.0, "z = score_scale * cosine: 1/t of the training temperature "
                      "(1: the old near-uniform weights on raw cosines)", label="Score scale 1/t"),
            ParamSpec("kernel", "gaussian", help="gaussian (NQ/TQ) or laplace exp(-rate |z - z+ - b|) (MS MARCO)",
                      choices=("gaussian", "laplace"), label="Kernel",
                      choice_labels=("Gaussian exp(−a (z − z⁺ − b)²) (NQ, TriviaQA)",
                                     "Laplacian exp(−rate |z − z⁺ − b|) (MS MARCO passages)")),
            ParamSpec("laplace_rate", 3.0, 0.0, 20.0, "rate of the Laplacian kernel (official 3)",
                      label="Laplacian rate", when=(("kernel", "laplace"),)),
            ParamSpec("refresh_every", None, 1, 100_000, "re-mine each anchor's corpus top-k window every N steps "
                      "(None: the pool's own top-k)", integer=True, optional=True,
                      label="Re-mine the corpus window every (steps)", training_only=True),
            ParamSpec("unretrieved", "lowest", help="positive below the window: the lowest-ranked k (official) or "
                      "the kernel's weights", choices=("lowest", "weights"), label="Positive below the window",
                      choice_labels=("the window's lowest-ranked (official)", "the kernel's weights"))),
    meta={"playground_default": True})
SAMPLERS.declare(
    "positive_aware", "fnlab.samplers.positive_aware:PositiveAwareSampler",
    label="Positive-aware (TopK-PercPos / MarginPos)", short="positive-aware",
    summary="drop s > perc * s+ (or s > s+ - margin), then the top-k (NV-Retriever)",
    params=(ParamSpec("mode", "perc", help="TopK-PercPos (perc) or TopK-MarginPos (margin)",
                      choices=("perc", "margin"), label="Ceiling", flag=True,
                      choice_labels=("share of s⁺ (TopK-PercPos)", "margin below s⁺ (TopK-MarginPos)")),
            ParamSpec("perc", 0.95, 0.5, 1.0, "TopK-PercPos: drop s > perc * s+", label="Keep s below this share of s⁺",
                      when=(("mode", "perc"),)),
            ParamSpec("margin", 0.05, 0.0, 0.5, "TopK-MarginPos: drop s > s+ - margin",
                      label="Margin below the positive (cosine)", flag=True, when=(("mode", "margin"),)),
            ParamSpec("top_k", 10, 1, 200, "hard negatives kept per anchor", integer=True,
                      label=f"Hard negatives kept per query {_COUNT}", flag=True)))
SAMPLERS.declare(
    "range", "fnlab.samplers.range:RangeSampler", label="Range / margin mining", short="range",
    summary="rank window, score bounds and margins, 'top' or 'random' (sentence-transformers mine_hard_negatives)",
    params=(ParamSpec("range_min", 10, 0, 1000, "skip this many most-similar candidates", integer=True,
                      label="Skip the most similar (ranks)"),
            ParamSpec("range_max", 50, 1, 2000, "consider ranks below this (None: all)", integer=True, optional=True,
                      label="Consider ranks up to (rank)"),
            ParamSpec("min_score", None, -1.0, 1.0, "drop candidates below this similarity", optional=True,
                      label="Lowest similarity kept (cosine)"),
            ParamSpec("max_score", None, -1.0, 1.0, "drop candidates above this similarity", optional=True,
                      label="Highest similarity kept (cosine)"),
            ParamSpec("margin", 0.0, 0.0, 1.0, "absolute margin: drop if s + margin > s+", optional=True,
                      label="Margin (cosine similarity)", flag=True),
            ParamSpec("relative_margin", None, 0.0, 0.99, "relative margin: drop if s > s+ - |s+| r", optional=True,
                      label="Relative margin (share of s⁺)"),
            ParamSpec("strategy", "random", help="'random': uniform over the eligible; 'top': the most similar",
                      choices=("random", "top"), label="Strategy",
                      choice_labels=("random among the eligible", "the most similar eligible")),
            ParamSpec("num_negatives", 1, 1, 100, "candidates kept per anchor with strategy 'top'", integer=True,
                      label=f"Negatives kept per query {_COUNT}", when=(("strategy", "top"),))))
SAMPLERS.declare(
    "fne", "fnlab.samplers.fne:FNESampler", label="FNE (false-negative elimination)", short="FNE",
    summary="SimANS weights times (1 - P(FN)) above a cut-down (FNE, ACM MM 2023)",
    params=(ParamSpec("mode", "calibrated", help="'paper' (official weights) or 'calibrated' (weight * (1 - P_fn))",
                      choices=("calibrated", "paper"), label="FNE mode", flag=True, variant=True,
                      choice_labels=("calibrated: weight × (1 − P(FN))", "paper: the official weighting")),
            ParamSpec("tau", 0.5, 0.0, 20.0, "sharpness of exp(-tau (s - s+)^2)",
                      label="Sharpness τ of the weight exp(−τ (s − s⁺)²)", flag=True),
            ParamSpec("margin", 0.2, 0.0, 1.0, "cut-down: zero weight where s <= mu+ - margin",
                      label="Cut-down margin below the mean positive (cosine)", flag=True),
            ParamSpec("fn_cutoff", 1e-3, 1e-6, 0.5, "paper mode: P_fn above this replaces the weight",
                      label="P(FN) above which a weight is replaced (paper mode)", flag=True,
                      when=(("mode", "paper"),)),
            ParamSpec("min_confident", 200, 0, 5000, "paper mode: confident positives before the posterior is used",
                      integer=True, label=f"Confident pairs before the posterior switches on {_COUNT}",
                      training_only=True),
            ParamSpec("rule", "soft", help="calibrated mode, inside the band: 'soft' (weight * (1 - P_fn)), 'keep' "
                      "(each anchor's lowest-P keep_fraction of its band), 'drop' (P_fn >= drop_above eliminated) or "
                      "'adapt' ('keep' where the band's mean P_fn is below dense_above, 'drop' where it is not) or "
                      "'leave' ('keep' where the band's mean P_fn is below dense_above; where it is not, the band is "
                      "left and the anchor draws below it); 'adapt' and 'leave' read no density from a posterior "
                      "whose share of matches failed its own checks, and keep as 'keep' does there",
                      choices=("soft", "keep", "drop", "adapt", "leave"), label="How P(FN) acts inside the band", flag=True,
                      when=(("mode", "calibrated"),),
                      choice_labels=("soft: weight × (1 − P(FN))", "keep: each query's lowest-P share of its band",
                                     "drop: eliminate P(FN) ≥ a threshold",
                                     "adapt: keep where the band holds few false negatives, drop where many",
                                     "leave: keep where the band holds few false negatives, draw below it where many")),
            ParamSpec("keep_fraction", 1 / 3, 0.01, 1.0, "rules 'keep', 'adapt' and 'leave': share of each anchor's "
                      "band kept, lowest P first", label="Share of the band kept, lowest P(FN) first", flag=True,
                      when=(("rule", ("keep", "adapt", "leave")),)),
            ParamSpec("drop_above", 0.5, 0.01, 1.0, "rules 'drop' and 'adapt': candidates with P_fn >= this are "
                      "eliminated", label="P(FN) at and above which a candidate is eliminated", flag=True,
                      when=(("rule", ("drop", "adapt")),)),
            ParamSpec("dense_above", 0.5, 0.01, 1.0, "rules 'adapt' and 'leave': a band whose mean P_fn is at least this is "
                      "dense and uses 'drop' ('adapt') or is left ('leave'); below it 'keep'",
                      label="Mean P(FN) of a band at which it counts as dense",
                      flag=True, when=(("rule", ("adapt", "leave")),)),
            ParamSpec("window", 0, 0, 1_000_000, "0: the band is everything above the cut-down; k > 0: each "
                      "anchor's k most similar non-positives instead (no cut-down)", integer=True,
                      label=f"Hardness window: the query's most similar candidates (0: the cut-down) {_COUNT}",
                      flag=True),
            ParamSpec("band", "cut", help="what sets the band: 'cut' (the cut-down, or window) or 'semihard' (each "
                      "anchor's semi-hard negatives, s+ - margin < s < s+)", choices=("cut", "semihard"),
                      label="The band P(FN) acts in", flag=True,
                      choice_labels=("above the cut-down (or the window)", "the semi-hard negatives"))),
    meta={"playground_default": True})
SAMPLERS.declare(
    "oracle", "fnlab.samplers.oracle:OracleSampler", label="Oracle (true false negatives removed)", short="oracle",
    summary="hardest or SimANS with the true false negatives removed (needs ground truth)",
    params=(ParamSpec("base", "hardest", help="the sampler run on the non-relevant candidates: hardest, simans, "
                      "window (uniform over the top_k most similar non-positives, the relevant removed) or semihard "
                      "(uniform over the semi-hard negatives, the relevant removed)",
                      choices=("hardest", "simans", "window", "semihard"), label="Base sampler", flag=True,
                      choice_labels=("hardest non-relevant", "SimANS over the top k non-relevant",
                                     "uniform over the top k, the relevant removed",
                                     "uniform over the semi-hard negatives, the relevant removed")),
            ParamSpec("a", 0.5, 0.0, 20.0, "SimANS sharpness (base='simans')",
                      label="Sharpness a of exp(−a (s − s⁺ − b)²)", flag=True, when=(("base", "simans"),)),
            ParamSpec("b", 0.0, -1.0, 1.0, "SimANS bias (base='simans')", label="Offset b (cosine similarity)",
                      flag=True, when=(("base", "simans"),)),
            ParamSpec("top_k", 100, 1, 1_000_000, "candidates considered (base='simans' or 'window')", integer=True,
                      label=f"Candidates considered {_COUNT}", flag=True, when=(("base", ("simans", "window")),)),
            ParamSpec("margin", 0.2, 0.0, 1.0, "semi-hard band below the positive (base='semihard')",
                      label="Semi-hard margin below the positive (cosine)", flag=True, when=(("base", "semihard"),))))

# ---------------------------------------------------------------- related methods (docs/METHODS.md)
SAMPLERS.declare(
    "star", "fnlab.samplers.star:STARSampler", label="STAR (static hard negatives, SIGIR 2021)", short="STAR",
    summary="top-200 mined once after the warm-up; one per anchor shared across the batch; pairwise logistic",
    params=(ParamSpec("top_k", 200, 1, 1000, "the mined list's length per anchor", integer=True,
                      label=f"Mined hard negatives per query {_COUNT}", flag=True),
            ParamSpec("hard_num", 1, 1, 10, "hard negatives drawn per anchor and step", integer=True,
                      label=f"Drawn per query and step {_COUNT}", training_only=True)),
    meta={"loss": "pairwise_logistic"})
SAMPLERS.declare(
    "adore", "fnlab.samplers.adore:ADORESampler", label="ADORE (dynamic hard negatives, SIGIR 2021)",
    short="ADORE",
    summary="each step the caption encoder searches a frozen image index (top-200); LambdaRank; only queries train",
    params=(ParamSpec("top_k", 200, 1, 1000, "candidates retrieved per anchor and step", integer=True,
                      label=f"Retrieved per query {_COUNT}", flag=True),
            ParamSpec("metric_cut", 200, 1, 1000, "ranks beyond this count 0 in the MRR weight (playground view)",
                      integer=True, label="MRR cut (rank)")),
    meta={"loss": "lambdarank"})
SAMPLERS.declare(
    "clusterns", "fnlab.samplers.clusterns:ClusterNSSampler", label="ClusterNS (clustering-aware negatives)",
    short="ClusterNS",
    summary="momentum k-means over the anchors: same-cluster items flagged, second-nearest centroid as a hard "
            "negative; InfoNCE + bidirectional margin",
    params=(ParamSpec("k", 32, 2, 512, "clusters (the official 128 at 512 anchors a step, scaled to 128)",
                      integer=True, label=f"Clusters {_COUNT}"),
            ParamSpec("kmeans_lr", 1e-3, 1e-5, 1.0, "centroid momentum: C <- lr sum(members) + (1 - lr) C",
                      label="Centroid momentum"),
            ParamSpec("kmean_cosine", 0.4, -1.0, 1.0, "start clustering when the batch's mean cosine falls to this",
                      label="Start at mean cosine"),
            ParamSpec("init", "farthest", help="initial centroids: greedy farthest point, or the official chain",
                      choices=("farthest", "chain"), label="Centroid start",
                      choice_labels=("farthest point (k-center)", "the official chain")),
            ParamSpec("seed", 0, 0, 10_000, "the first centroid's row", integer=True, label="Seed")),
    meta={"loss": "infonce_bml",
          "no_playground": "its false-negative flags and centroid negatives come from k-means centroids that "
                           "only training builds"})
SAMPLERS.declare(
    "dynamic_hn", "fnlab.samplers.dynamic_hn:DynamicHardNegativeSampler",
    label="Dynamic hard-negative mining (Conan-embedding)", short="dynamic mining",
    summary="cached hard negatives re-scored every 100 steps, replaced when s_now * 1.15 < s_0; optional "
            "false-negative filter on the replacement",
    params=(ParamSpec("period", 100, 1, 10_000, "steps between re-scorings", integer=True,
                      label="Re-score every (steps)"),
            ParamSpec("ratio", 1.15, 1.0, 3.0, "replace when s_now * ratio < s_0", label="Staleness factor"),
            ParamSpec("n_hard", 1, 1, 20, "hard negatives cached per anchor", integer=True,
                      label=f"Cached per query {_COUNT}"),
            ParamSpec("filter", "none", help="false-negative filter on mined candidates",
                      choices=("none", "positive_aware", "posterior"), label="Filter", flag=True,
                      choice_labels=("none (Conan)", "positive-aware (s ≤ perc · s⁺)", "posterior (P(FN) < cut)")),
            ParamSpec("perc", 0.95, 0.5, 1.0, "positive-aware filter: drop s > perc * s+",
                      label="Keep s below this share of s⁺", when=(("filter", "positive_aware"),)),
            ParamSpec("drop_above", 0.5, 0.01, 1.0, "posterior filter: drop P(FN) >= this",
                      label="Drop where P(FN) reaches", when=(("filter", "posterior"),)),
            ParamSpec("abs_cap", None, 0.0, 1.0, "also require |s_now| < this to replace (unverified)",
                      optional=True, label="Replace only below |s| (cosine)"),
            ParamSpec("depth", 50, 1, 1000, "candidates searched per anchor for a replacement", integer=True,
                      label=f"Search depth {_COUNT}")),
    meta={"loss": "infonce",
          "no_playground": "its cached hard negatives and their first scores are a history only training builds"})
SAMPLERS.declare(
    "moco_hnf", "fnlab.samplers.moco_hnf:MoCoHNFSampler", label="MoCo with hard-negative filtering (contrast case)",
    short="MoCo-HNF",
    summary="the top-N most similar queue items as negatives, symmetric InfoNCE; picks false negatives first",
    params=(ParamSpec("top_n", 16, 1, 1000, "most similar queue items kept as negatives per anchor", integer=True,
                      label=f"Negatives kept per query {_COUNT}"),),
    meta={"loss": "infonce", "contrast": True})

# ---------------------------------------------------------------- pools for the loss-side methods (docs/METHODS.md)
SAMPLERS.declare(
    "in_batch", "fnlab.samplers.in_batch:InBatchSampler", label="Whole batch (CLIP in-batch, no queue)",
    short="in-batch",
    summary="every pair of the online batch, no draw and no queue: InfoNCE (CLIP), ASL, or W-MSE's no negatives",
    meta={"loss": "infonce",
          "no_playground": "it draws nothing: its loss sees every candidate of the batch alike (random's weights)"})
SAMPLERS.declare(
    "hasa", "fnlab.samplers.hasa:HaSaSampler", label="HaSa (structural false-negative proxies)", short="HaSa",
    summary="the whole pool for HaSa's loss, near-copies of the positive and candidates whose partners resemble "
            "the anchor flagged as proxies",
    params=(ParamSpec("n_proxies", 3, 1, 20, "structural false-negative proxies per anchor", integer=True,
                      label=f"Proxies per query {_COUNT}"),
            ParamSpec("min_similarity", 0.9, -1.0, 1.0, "structural score a proxy needs (cosine within a modality)",
                      label="Proxy threshold (cosine)")),
    meta={"loss": "hasa",
          "no_playground": "its proxies come from the pool's features and partners, which only training holds"})

SAMPLERS.declare(
    "cet", "fnlab.samplers.cet:CETSampler", label="CET (pooling-bias correction, CIKM 2022)", short="CET",
    summary="a relevance and a selection model learned jointly from labels that exist only in the judged pool; "
            "negatives weighted by P(not relevant | unlabelled) (needs a pooled dataset, -o pooling_depth=20)",
    params=(ParamSpec("alpha", 10.0, 0.1, 100.0, "relevance model's start: P(r) = sigmoid(alpha (s - beta))",
                      label="Relevance slope at start"),
            ParamSpec("beta", 0.5, -1.0, 1.0, "relevance model's start: P(r) = sigmoid(alpha (s - beta))",
                      label="Relevance midpoint at start (cosine)"),
            ParamSpec("depth", 20.0, 1.0, 1000.0, "selection model's start: judged depth",
                      label="Judged depth at start (rank)"),
            ParamSpec("slope", 2.0, 0.1, 50.0, "selection model's start: P(o) = sigmoid(slope log(depth/rank))",
                      label="Selection slope at start"),
            ParamSpec("obs_weight", 1.0, 0.0, 10.0, "weight of the observation model's likelihood in the loss",
                      label="Observation-model weight")),
    meta={"loss": "cet", "needs_option": "pooling_depth",
          "no_playground": "its selection model reads the pooling ranks of the training split, which only training "
                           "has"})

# ---------------------------------------------------------------- a guide model's veto around any sampler (last: it
# lists the samplers declared above as its bases, each base's parameters prefixed with its name)
GUIDED_BASES = ("random", "hardest", "semihard", "simans", "positive_aware", "range", "fne", "moco_hnf", "in_batch",
                "hasa")


def _prefixed(base: str) -> tuple[ParamSpec, ...]:
    """``base``'s parameter specs as ``guided`` takes them: named ``{base}_{name}``, shown when ``base`` is chosen."""
    from dataclasses import replace

    return tuple(replace(p, name=f"{base}_{p.name}", flag=False, variant=False,
                         label=f"{SAMPLERS.entry(base).short_title}: {p.title}",
                         when=(("base", base),) + tuple((f"{base}_{k}", v) for k, v in p.when))
                 for p in SAMPLERS.entry(base).params)


SAMPLERS.declare(
    "guided", "fnlab.samplers.guided:GuidedSampler", label="Guide-model veto around a sampler (GISTEmbed)",
    short="guided",
    summary="any sampler with the candidates an independent model (MiniLM) scores above the positive vetoed "
            "(GISTEmbed; mine_hard_negatives' cross_encoder + max_score)",
    params=(ParamSpec("base", "hardest", help="the sampler the veto wraps", choices=GUIDED_BASES, label="Base sampler",
                      flag=True),
            ParamSpec("guide", "auto", help="the independent view: MiniLM of the texts (the built-in sets' shipped "
                      "caption embeddings), the frozen input embeddings, or auto", choices=("auto", "minilm", "inputs"),
                      label="Guide model", choice_labels=("auto", "MiniLM of the texts", "the frozen input embeddings")),
            ParamSpec("margin", 0.0, 0.0, 1.0, "veto where the guide scores g > g+ - margin (0: above the positive)",
                      optional=True, label="Guide margin below its positive score"),
            ParamSpec("relative_margin", None, 0.0, 0.99, "veto where g > g+ - |g+| r", optional=True,
                      label="Guide relative margin"),
            ParamSpec("max_score", None, -1.0, 1.0, "veto where g > max_score", optional=True,
                      label="Guide score ceiling"),
            *(spec for base in GUIDED_BASES for spec in _prefixed(base))),
    meta={"no_playground": "its guide scores are looked up by the training split's item ids, which only training has"})


def available() -> list[str]:
    """Names of the registered samplers, sorted (no import of the samplers or torch)."""
    return SAMPLERS.available()


def entry(name: str) -> Entry:
    """The declared :class:`~fnlab.core.registry.Entry` of sampler ``name`` (labels, specs, ``meta``)."""
    return SAMPLERS.entry(name)


def build(name: str, **params: Any):
    """Build the sampler ``name`` with keyword parameters.

    Raises:
        ValueError: unknown name (the message lists the valid names) or unknown parameter.
    """
    return SAMPLERS.build(name, **params)


def param_specs(name: str) -> list[ParamSpec]:
    """The parameters of sampler ``name`` (``ParamSpec`` each), for the CLI and the app's widgets."""
    return SAMPLERS.param_specs(name)


def build_for_run(name: str, params: dict[str, Any] | None = None, *, posterior: Any = None):
    """Build sampler ``name`` for a view of a trained run: ``params`` plus the run's ``posterior`` when the
    sampler's constructor takes one (FNE), so that a caller names no sampler."""
    import inspect

    params = dict(params or {})
    if "posterior" in inspect.signature(SAMPLERS.get(name).__init__).parameters:
        params.setdefault("posterior", posterior)
    return SAMPLERS.build(name, **params)


def playground_note(name: str) -> str:
    """Why the playground shows no per-batch view of sampler ``name`` (empty when it does)."""
    return str(SAMPLERS.entry(name).meta.get("no_playground", ""))


def default_loss(name: str) -> str:
    """The loss a run with sampler ``name`` uses unless told otherwise."""
    return str(SAMPLERS.entry(name).meta.get("loss", "triplet"))


def variants(separator: str = " · ") -> dict[str, tuple[str, dict[str, Any]]]:
    """``label -> (sampler name, fixed params)`` for every sampler and each value of its ``variant``
    parameter (``"fne · paper"``), in declaration order: the app's playground and the benchmark tables."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for e in SAMPLERS.entries():
        for suffix, fixed in e.variants():
            out[f"{e.name}{separator}{suffix}" if suffix else e.name] = (e.name, fixed)
    return out
