"""The Posterior protocol: every estimator satisfies it, from_params dispatches through the registry,
and callers read the members it declares (no probing)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fnlab import posterior as P
from fnlab.posterior.base import Posterior, PosteriorBase, Status

REPO = Path(__file__).resolve().parent.parent


def small_context(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((240, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:80] + 0.3 * x[80:160]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return P.PairContext(q, x[80:], sp.eye(80, 160, format="csr", dtype=bool))


@pytest.mark.parametrize("name", P.available())
def test_every_estimator_is_a_posterior_and_rebuilds_through_the_registry(name):
    post = P.fit(name, small_context(), seed=0)
    assert isinstance(post, Posterior)
    assert post.estimator == name and "similarity" in post.signals
    assert isinstance(post.status, Status) and post.ready
    back = P.from_params(post.params())
    assert type(back) is type(post) and back.signals == post.signals
    assert str(back.status) == str(post.status)


def test_fne_running_stats_are_a_posterior():
    stats = P.RunningGaussianStats()
    assert isinstance(stats, Posterior) and not stats.ready and not stats.status.calibrated


def test_from_params_asks_the_registered_class(monkeypatch):
    calls = []

    class Fake(PosteriorBase):
        @classmethod
        def fit_context(cls, ctx, *, prior="auto", seed=0):  # pragma: no cover - not called here
            return cls()

        @classmethod
        def from_params(cls, params):
            calls.append(params)
            return cls()

    from fnlab.core.registry import Entry

    monkeypatch.setitem(P.ESTIMATORS._entries, "fake", Entry("fake", "", summary="a test estimator"))
    monkeypatch.setitem(P.ESTIMATORS._classes, "fake", Fake)
    got = P.from_params({"estimator": "fake", "x": 1})
    assert isinstance(got, Fake) and calls == [{"estimator": "fake", "x": 1}]
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        P.from_params({"estimator": "nope"})


def test_status_labels_and_round_trip():
    assert str(Status()) == "calibrated"
    s = Status(False, "2 labelled pairs")
    assert s.label == "uncalibrated: rank only" and "2 labelled pairs" in str(s)
    assert Status.from_dict(s.to_dict()) == s and Status.from_dict(None) == Status()
    with pytest.raises(ValueError, match="status"):
        Status.from_dict({"calibrated": "yes"})


def test_paper_posterior_says_it_is_not_calibrated():
    post = P.GaussianPosterior(0.6, 0.1, 0.1, 0.1)
    assert not post.status.calibrated and "0.0001" in post.status.reason


def test_fne_reads_the_protocol_not_the_pu_module():
    tree = ast.parse((REPO / "fnlab" / "samplers" / "fne.py").read_text())
    imported = {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not any(name.startswith("fnlab.posterior.pu") for name in imported), imported
    from fnlab import samplers as S
    from fnlab.samplers.fne import pool_signals_of

    class Reads(PosteriorBase):
        signals = ("similarity", "query_neighbour")
        pos_mean = 0.5

        def prob_false_negative(self, sig, pos_sims=None):
            return torch.zeros_like(sig.similarity)

    assert pool_signals_of(Reads()) == ("query_neighbour",)
    S.build("fne", posterior=Reads())
    with pytest.raises(ValueError, match="Posterior"):
        S.build("fne", posterior=object())
