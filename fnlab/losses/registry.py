"""The loss registry: one declarative entry per loss, read without importing torch.

A new loss is one file (a :class:`fnlab.losses.base.Loss` subclass decorated with ``@register("name")``)
plus one ``LOSSES.declare(...)`` entry here (class path, labels, parameter specs). The CLI's ``--loss``
choices and the app's loss picker read these entries.
"""

from __future__ import annotations

from typing import Any

from fnlab.core.registry import Entry, ParamSpec, Registry

__all__ = ["LOSSES", "register", "available", "build", "param_specs", "entry"]

LOSSES: Registry = Registry("loss")
register = LOSSES.register

_T = ParamSpec("temperature", 0.07, 0.01, 1.0, "softmax temperature t")
_TAU_PLUS = ParamSpec("tau_plus", 0.1, 0.0, 0.5, "expected share of false negatives among negatives")

LOSSES.declare("triplet", "fnlab.losses.triplet:TripletLoss", label="Triplet hinge (the paper's)", short="triplet",
               summary="[m - s+ + s]_+ on the picked negatives (VSE++, FNE)",
               params=(ParamSpec("margin", 0.2, 0.0, 1.0, "hinge margin"),))
LOSSES.declare("infonce", "fnlab.losses.infonce:InfoNCELoss", label="InfoNCE", short="InfoNCE",
               summary="-log e^{s+/t} / (e^{s+/t} + sum e^{s/t})", params=(_T,))
LOSSES.declare("dcl", "fnlab.losses.dcl:DCLLoss", label="Debiased contrastive (DCL)", short="DCL",
               summary="InfoNCE with the negative term debiased for a share tau+ of false negatives",
               params=(_T, _TAU_PLUS))
LOSSES.declare("hcl", "fnlab.losses.hcl:HCLLoss", label="Hard-negative contrastive (HCL)", short="HCL",
               summary="DCL with negatives reweighted by e^{beta s/t}",
               params=(_T, _TAU_PLUS, ParamSpec("beta", 1.0, 0.0, 5.0, "hardness concentration beta")))
LOSSES.declare("fnc", "fnlab.losses.fnc:FNCLoss", label="False-negative cancellation (FNC)", short="FNC",
               summary="InfoNCE that cancels each anchor's top-k negatives above a threshold",
               params=(ParamSpec("temperature", 0.07, 0.01, 1.0, "softmax temperature t"),
                       ParamSpec("top_k", 10, 1, 100, "how many of the most similar negatives may be cancelled",
                                 integer=True),
                       ParamSpec("threshold", 0.7, 0.0, 1.0, "cancel a top-k negative whose similarity exceeds this"),
                       ParamSpec("mode", "elimination", help="cancelled candidates leave the denominator "
                                 "(elimination) or also become positives (attraction)",
                                 choices=("elimination", "attraction"))))

LOSSES.declare("pairwise_logistic", "fnlab.losses.pairwise:PairwiseLogisticLoss", label="Pairwise logistic (STAR)",
               short="pairwise logistic",
               summary="log(1 + e^{(s - s+)/t}) averaged over every valid (anchor, negative) pair (STAR)",
               params=(ParamSpec("temperature", 1.0, 0.01, 2.0, "scale t of s - s+ (1: the official dot-product scale)"),))
LOSSES.declare("lambdarank", "fnlab.losses.lambdarank:LambdaRankLoss", label="LambdaRank, delta-MRR weighted (ADORE)",
               short="LambdaRank",
               summary="RankNet over (positive, negative) pairs of each retrieved list, weighted by |1/r_p - 1/r_n| "
                       "(ADORE; needs a sampler that passes ranks)",
               params=(ParamSpec("sigma", 1.0, 0.1, 50.0, "RankNet slope on the scores"),
                       ParamSpec("metric_cut", 200, 1, 1000, "positions beyond this count 0 in the MRR weight",
                                 integer=True)))
LOSSES.declare("infonce_bml", "fnlab.losses.bml:InfoNCEBMLLoss", label="InfoNCE + bidirectional margin (ClusterNS)",
               short="InfoNCE + BML",
               summary="InfoNCE plus a band -beta < s - s+ < -alpha on the sampler's suspected false negatives "
                       "(ClusterNS)",
               params=(ParamSpec("temperature", 0.05, 0.01, 1.0, "softmax temperature t"),
                       ParamSpec("alpha", 0.2, 0.0, 1.0, "BML: flagged candidates stay at least alpha below s+"),
                       ParamSpec("beta", 0.5, 0.0, 2.0, "BML: flagged candidates stay at most beta below s+"),
                       ParamSpec("bml_weight", 1e-4, 0.0, 1.0, "weight of the BML term")))

# ---------------------------------------------------------------- loss-side answers to false negatives (docs/METHODS.md)
LOSSES.declare("hasa", "fnlab.losses.hasa:HaSaLoss", label="HaSa (hardness- and structure-aware InfoNCE)",
               short="HaSa",
               summary="hardness-weighted InfoNCE whose negative mass is debiased by tau x the structural "
                       "false-negative proxies' mass (HaSa, WWW 2024; proxies from the hasa sampler)",
               params=(_T,
                       ParamSpec("tau", 1e-4, 0.0, 0.5, "weight of the proxies' mass subtracted from the negatives' "
                                 "(official 1e-4; a proxy is attracted once tau v_f exceeds its hardness weight)"),
                       ParamSpec("margin", 1.0, 0.0, 5.0, "subtracted from the positive's logit (official 1)"),
                       ParamSpec("n_neg", None, 1, 10_000, "N of N/(1 - tau) (None: the anchor's negatives; the "
                                 "official code uses the embedding width)", integer=True, optional=True)))
LOSSES.declare("asl", "fnlab.losses.asl:AsymmetricPairLoss", label="Asymmetric loss (ASL) on pairs", short="ASL",
               summary="focal binary loss per (anchor, candidate) pair with a probability margin: confident "
                       "negatives (p -> 1) and easy ones (p <= 0.05) get almost no push (ASL, ICCV 2021)",
               params=(ParamSpec("temperature", 0.1, 0.01, 1.0, "logit (s - bias) / temperature"),
                       ParamSpec("bias", 0.5, -1.0, 1.0, "logit (s - bias) / temperature"),
                       ParamSpec("gamma_pos", 1.0, 0.0, 5.0, "focusing exponent of the positives"),
                       ParamSpec("gamma_neg", 4.0, 0.0, 10.0, "focusing exponent of the negatives"),
                       ParamSpec("clip", 0.05, 0.0, 0.5, "probability margin m: negatives with p <= m are dropped"),
                       ParamSpec("focal", "detached", help="focusing weights without gradient (official) or in "
                                 "the graph", choices=("detached", "in_graph"))))
LOSSES.declare("wmse", "fnlab.losses.wmse:WMSELoss", label="W-MSE (whitening, no negatives)", short="W-MSE",
               summary="each modality whitened in sub-batches, then 2 - 2 cos over the labelled pairs: no negatives "
                       "at all (W-MSE, ICML 2021)",
               params=(ParamSpec("w_size", 128, 2, 4096, "rows per whitening sub-batch (must exceed the width)",
                                 integer=True),
                       ParamSpec("w_iter", 1, 1, 16, "random sub-batch partitions per step", integer=True),
                       ParamSpec("w_eps", 0.0, 0.0, 0.5, "covariance shrinkage towards the identity")))

LOSSES.declare("cet", "fnlab.losses.cet:CETLoss", label="CET (pooling-bias corrected InfoNCE)", short="CET",
               summary="InfoNCE with each negative weighted by P(not relevant | unlabelled) from a relevance and a "
                       "selection model learned jointly (CET, CIKM 2022; needs the cet sampler)",
               params=(_T,))

def available() -> list[str]:
    """Names of the registered losses, sorted (no import of the losses or torch)."""
    return LOSSES.available()


def entry(name: str) -> Entry:
    """The declared entry of loss ``name`` (labels, specs)."""
    return LOSSES.entry(name)


def build(name: str, **params: Any):
    """Build loss ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid names) or unknown parameter.
    """
    return LOSSES.build(name, **params)


def param_specs(name: str) -> list[ParamSpec]:
    """The parameters of loss ``name``."""
    return LOSSES.param_specs(name)
