"""Fitting the posterior on the scanned data: one fit (and one account of it) for every engine.

:func:`fit_scan_posterior` fits :func:`fnlab.posterior.fit` on the scan's :class:`fnlab.posterior.PairContext`;
:func:`scan_posterior` picks the given posterior or that fit and gathers the notes; :func:`status_fields` is the
summary's account of its calibration. Imports no engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fnlab.analysis.scan.inputs import ScanInputError

__all__ = ["fit_scan_posterior", "scan_posterior", "status_fields", "rowwise_dot"]


def rowwise_dot(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, step: int = 65536) -> np.ndarray:
    """``[P]`` float32 dot products of rows ``a[ia]`` and ``b[ib]`` (the labelled pairs' similarities), in
    blocks of ``step`` rows."""
    out = np.empty(ia.size, dtype=np.float32)
    for s in range(0, ia.size, step):
        out[s:s + step] = np.einsum("ij,ij->i", a[ia[s:s + step]], b[ib[s:s + step]])
    return out


def fit_scan_posterior(estimator: str, prior: float | str, ctx: Any, *, seed: int = 0):
    """The scan's posterior fit: :func:`fnlab.posterior.fit` on the scan's :class:`PairContext`,
    calibrated for the rows the scan shows (``window`` = the context's window, the scan's ``top_k``) where
    the estimator has that parameter.

    One entry point for every engine (:mod:`fnlab.analysis.scan.local`, :mod:`fnlab.analysis.scan.ray`).

    Returns:
        ``(posterior, description of the method)``; apply it with :func:`suspects_table`.

    Raises:
        ScanInputError: the estimator cannot be fitted on these inputs.
    """
    from fnlab import posterior as post_mod

    extra = {"window": ctx.window} if any(p.name == "window" for p in post_mod.param_specs(estimator)) else {}
    try:
        post = post_mod.fit(estimator, ctx, prior=prior, seed=seed, **extra)
    except ValueError as err:
        raise ScanInputError(f"posterior estimator {estimator!r}: {err}") from None
    how = f"fnlab.posterior.fit({estimator!r}, prior={prior!r}): {post_mod.describe(estimator)}"
    return post, how


def scan_posterior(ctx: Any, posterior: Any, estimator: str, prior: float | str, seed: int,
                   notes: list[str]) -> tuple[Any, str, str]:
    """The posterior a scan applies, for every engine: ``posterior`` when given (a run's), else
    :func:`fit_scan_posterior` on the scan's context; the context's and the posterior's notes are
    added to ``notes`` once each. Returns ``(posterior, how its prior was set, estimator name)``."""
    if posterior is None:
        post, prior_method = fit_scan_posterior(estimator, prior, ctx, seed=seed)
    else:
        post, prior_method = posterior, "given (fitted elsewhere, e.g. a run's posterior.json)"
        estimator = post.estimator
    if post.window is not None and post.window != ctx.window:
        # a posterior calibrated for another window (a run's, for its top 10): pairs are placed in its window
        notes.append(f"the posterior is calibrated for each query's top {post.window} candidates; rows ranked "
                     f"below that get its pool calibration")
        ctx.window = post.window
    if not post.status.calibrated:
        notes.append(f"P(false negative) is {post.status}: read it as a ranking, not as a probability")
    for msg in ctx.notes + list(post.notes):
        if msg not in notes:
            notes.append(msg)
    return post, prior_method, estimator


def status_fields(post: Any) -> dict[str, Any]:
    """The summary's account of the posterior's calibration (every engine): ``status`` ("calibrated" or
    "uncalibrated: rank only"), ``status_reason``, ``calibration_window`` (each query's top candidates it
    is calibrated for; ``None``: not window-specific) and ``prior_window`` (the share of matches it puts
    among them, where it has one)."""
    out = {"status": post.status.label, "status_reason": post.status.reason, "calibration_window": post.window}
    prior_window = post.params().get("prior_window")
    if prior_window is not None:
        out["prior_window"] = float(prior_window)
    return out
