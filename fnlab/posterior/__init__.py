"""False-negative posteriors: P(a labelled "negative" pair is really a match | its signals).

One package, one fitting path, one call shape:

* :func:`fit` ``(name, context, *, prior="auto", seed=0, **params)`` fits an estimator on a
  :class:`PairContext` (query and candidate embeddings plus the labelled pairs; labels only,
  never ground truth). :func:`fit_dataset` builds the context of a dataset split first.
* :func:`prob_false_negative` ``(posterior, signals)`` applies any fitted posterior to
  :class:`PairSignals` (or to a similarity tensor with optional positive similarities).
* :func:`from_params` rebuilds a posterior from ``posterior.params()`` (a run's ``posterior.json``).

Estimators (:func:`available`, :func:`describe`, :func:`param_specs`):

==========  =====================================================================================
``pu``      default: positive-unlabelled, each kind of evidence learned where the data show it without
            the designated positive's bias: group matches from the transitive signals labelled pairs
            show, near-copies of the labelled positive from the data's own duplicate group, queries
            without a positive from labelled similarities; calibrated for the scan's window and the
            pool, with a status (:mod:`.pu`)
``relative``  one-dimensional, on the margin ``s - s+``; prior estimated (:mod:`.relative`)
``mixture``   one-dimensional EM mixture on ``s``, positive component at the labelled pairs'
            moments; prior estimated (:mod:`.mixture`)
``paper``   FNE's posterior (Li et al., ACM MM 2023): Gaussians fitted by moments on labelled
            positives and hardest negatives, prior fixed at 1e-4 (:mod:`.gaussian`)
==========  =====================================================================================

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> from fnlab.posterior import PairContext, PairSignals, fit, prob_false_negative
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 8)); x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> ctx = PairContext(x[:100], x[100:], sp.eye(100, format="csr", dtype=bool))
    >>> post = fit("paper", ctx)
    >>> float(prob_false_negative(post, PairSignals.of(np.array([0.9])))[0]) >= 0
    True
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from fnlab.posterior.registry import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    available,
    check_estimator,
    describe,
    param_specs,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from fnlab.posterior.base import Estimator, Posterior
    from fnlab.posterior.signals import PairContext, PairSignals

# The estimator classes and the signal types load on first use (``fnlab.posterior.PUPosterior``), so the
# registry's names are read without importing torch (``fnlab --help``).
_LAZY = {
    "PAPER_PRIOR": "fnlab.posterior.gaussian", "GaussianPosterior": "fnlab.posterior.gaussian",
    "RunningGaussianStats": "fnlab.posterior.gaussian", "normal_log_pdf": "fnlab.posterior.gaussian",
    "MixturePosterior": "fnlab.posterior.mixture", "PUPosterior": "fnlab.posterior.pu",
    "RelativePosterior": "fnlab.posterior.relative", "SIGNALS": "fnlab.posterior.signals",
    "PairContext": "fnlab.posterior.signals", "PairSignals": "fnlab.posterior.signals",
    "pair_member": "fnlab.posterior.signals",
    "Estimator": "fnlab.posterior.base", "Posterior": "fnlab.posterior.base",
    "PosteriorBase": "fnlab.posterior.base", "Status": "fnlab.posterior.base",
}

__all__ = [
    "DEFAULT_ESTIMATOR", "ESTIMATORS", "PAPER_PRIOR", "SIGNALS", "Estimator", "GaussianPosterior", "MixturePosterior",
    "PUPosterior", "PairContext", "PairSignals", "Posterior", "PosteriorBase", "RelativePosterior", "RunningGaussianStats", "Status",
    "available",
    "check_estimator", "check_prior", "describe", "fit", "fit_dataset", "from_params", "normal_log_pdf", "pair_member",
    "param_specs", "prob_false_negative",
]

#: names older runs wrote in posterior.json, read as today's estimators
_LEGACY = {"gaussian": "paper", "anchored": "mixture"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fnlab.posterior' has no attribute {name!r}")


def check_prior(prior: float | str) -> float | str:
    """``"auto"`` or the prior as a float in (0, 1); ``ValueError`` otherwise (no work done)."""
    if prior == "auto":
        return prior
    try:
        value = float(prior)
    except (TypeError, ValueError):
        raise ValueError(f"prior must be 'auto' or a number in (0, 1), got {prior!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"prior must be 'auto' or a number in (0, 1), got {prior!r}")
    return value


def fit(name: str, context: PairContext, *, prior: float | str = "auto", seed: int = 0, **params: Any) -> Posterior:
    """Fit estimator ``name`` on ``context`` (labelled pairs and unlabelled pairs drawn from it).

    Args:
        name: one of :func:`available`.
        context: the :class:`PairContext` (embeddings and labelled pairs).
        prior: P(match) among unlabelled pairs, or ``"auto"`` to estimate it (``paper``: 1e-4).
        seed: seeds every random draw; equal seeds give equal posteriors.
        **params: the estimator's parameters (:func:`param_specs`).

    Raises:
        ValueError: unknown name or parameter, a prior outside (0, 1), too little data.
    """
    cls: Estimator = ESTIMATORS.get(check_estimator(name))
    prior = check_prior(prior)
    accepted = [p for p in inspect.signature(cls.fit_context).parameters
                if p not in ("self", "cls", "ctx", "prior", "seed")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"posterior estimator {name!r} got unknown parameter(s) {', '.join(unknown)}; "
                         f"valid parameters: {', '.join(accepted) or 'none'}")
    return cls.fit_context(context, prior=prior, seed=seed, **params)


def fit_dataset(emb_a: np.ndarray, emb_b: np.ndarray, dataset: Any, name: str = DEFAULT_ESTIMATOR, *,
                direction: str = "t2i", prior: float | str = "auto", seed: int = 0, **params: Any) -> Any:
    """:func:`fit` on one split of a dataset: captions query images (``"t2i"``) by default.

    Shapes: ``emb_a [n_a, d]``, ``emb_b [n_b, d]`` unit rows of the split's items.
    """
    from fnlab.posterior.signals import PairContext

    check_estimator(name)
    return fit(name, PairContext.from_dataset(emb_a, emb_b, dataset, direction=direction), prior=prior,
               seed=seed, **params)


def prob_false_negative(posterior: Any, signals: PairSignals | Any, pos_sims: Any = None) -> torch.Tensor:
    """P(false negative) of each pair under ``posterior``: the one call every part of fnlab uses.

    Args:
        posterior: a fitted posterior (:func:`fit`, :func:`from_params`, or the FNE running stats).
        signals: :class:`PairSignals`, or a similarity tensor/array (any shape).
        pos_sims: with a bare similarity tensor, the anchors' positive similarities (broadcast).

    Returns:
        a tensor shaped like the similarities.
    """
    from fnlab.posterior.signals import PairSignals

    if not isinstance(signals, PairSignals):
        signals = PairSignals.of(signals, pos_sims)
    return posterior.prob_false_negative(signals)


def from_params(params: dict[str, Any]) -> Posterior:
    """Rebuild a posterior from ``params()`` (e.g. a run's ``posterior.json``): the registered
    estimator named by its ``estimator`` field (older names read as today's) rebuilds itself.

    Raises:
        ValueError: a missing or non-numeric field, or an unknown ``estimator``.
    """
    if not isinstance(params, dict):
        raise ValueError(f"posterior params must be a dict, got {type(params).__name__}")
    est = params.get("estimator", "paper")
    est = _LEGACY.get(est, est)
    if est not in ESTIMATORS.available():
        raise ValueError(f"posterior params: unknown estimator {est!r}; expected one of {', '.join(available())}")
    cls: Estimator = ESTIMATORS.get(est)
    return cls.from_params(params)
