"""The posterior estimators by name: a declarative registry read without importing any estimator (nor torch).

Each estimator is one entry of :data:`ESTIMATORS`: its class path (imported on first :meth:`Registry.get`),
a label and a one-line summary. ``fnlab --help`` lists the names from here, so building the command's
parser loads no estimator. The tunable parameters still live on each class (``PARAMS``):
:func:`param_specs` imports the class to read them.

This module imports nothing but :mod:`fnlab.core.registry`.

Example:
    >>> from fnlab.posterior.registry import available, describe
    >>> available()[0]
    'pu'
    >>> describe("paper").startswith("FNE's posterior")
    True
"""

from __future__ import annotations

from fnlab.core.registry import ParamSpec, Registry

__all__ = ["DEFAULT_ESTIMATOR", "ESTIMATORS", "available", "check_estimator", "describe", "param_specs"]

#: the estimator fnlab fits unless told otherwise
DEFAULT_ESTIMATOR = "pu"

#: name -> estimator class (``fit_context``/``from_params``), imported on first use
ESTIMATORS: Registry = Registry("posterior estimator", bind=False)
ESTIMATORS.declare(
    "paper", "fnlab.posterior.gaussian:GaussianPosterior", label="FNE's Gaussians (paper)",
    summary="FNE's posterior: Gaussians on labelled positives and hardest negatives, prior fixed at 1e-4")
ESTIMATORS.declare(
    "mixture", "fnlab.posterior.mixture:MixturePosterior", label="mixture on s",
    summary="mixture on the similarity s alone, positive component at the labelled pairs' moments, "
            "prior estimated by EM")
ESTIMATORS.declare(
    "relative", "fnlab.posterior.relative:RelativePosterior", label="mixture on s - s+",
    summary="per-anchor mixture on the margin s - s+ to the query's labelled positive, prior estimated by EM")
ESTIMATORS.declare(
    "pu", "fnlab.posterior.pu:PUPosterior", label="positive-unlabelled (all signals)",
    summary="positive-unlabelled: group matches from the transitive signals labelled pairs show (margin, the "
            "candidate's labelled queries, the query's other positives, in each view), near-copies of the labelled "
            "positive from the data's own duplicate group, queries without a positive from labelled similarities; "
            "shares of matches in the scanned rows and in the pool by label frequency")


def available() -> list[str]:
    """Estimator names accepted by :func:`fnlab.posterior.fit`, the default first."""
    return [DEFAULT_ESTIMATOR, *[n for n in ESTIMATORS.available() if n != DEFAULT_ESTIMATOR]]


def check_estimator(name: str) -> str:
    """``name`` if it is an estimator, else ``ValueError`` listing the valid names (no work done)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown posterior estimator {name!r}; valid names: {', '.join(available())}")
    return name


def describe(name: str) -> str:
    """One line on what estimator ``name`` computes."""
    return ESTIMATORS.entry(check_estimator(name)).summary


def param_specs(name: str) -> list[ParamSpec]:
    """The tunable parameters of estimator ``name`` (declared in the entry, else the class's ``PARAMS``)."""
    entry = ESTIMATORS.entry(check_estimator(name))
    return list(entry.params or getattr(ESTIMATORS.get(name), "PARAMS", ()))
