"""Positive-unlabelled posterior over all the signals of a pair (fnlab's default estimator, ``"pu"``).

The labelled pairs are a sample of the matches; the unlabelled pairs are a mixture of
non-matches and unlabelled matches (the false negatives) with class prior ``pi``. Each pair is
described by a feature vector built from :class:`fnlab.posterior.signals.PairSignals`.

**Which features.** Offered: ``[s, s - s+, positive_neighbour, query_neighbour, s - candidate_hubness]``
(only those the data provide; an entry may be missing for some pairs). A positive-unlabelled fit
learns the false negatives' distribution from the labelled pairs, so it matters which features the
labelled pairs show as an unlabelled match would:

* When labelled pairs show a *transitive* signal (``query_neighbour``: the candidate's other
  labelled queries, as in image-text data with several captions an image; ``positive_neighbour``:
  the query's other positives), the fit uses the margin ``s - s+`` and those signals only. The raw
  similarity is left out: a labelled positive is its query's *designated* match, which a trained
  model scores above the query's other matches (the labelled pairs are not "selected completely at
  random" in ``s``), while the margin measures every candidate against the query's own positive.
  A labelled pair shows no margin of its own; for a true match it is the difference of two positive
  similarities, imputed by pairing each labelled similarity with a random other one (as the
  ``relative`` estimator). Features no labelled pair shows are left out: their positive component
  would be learned from unlabelled structure alone, which latched onto clusters of non-matches
  (measured in ``bench/fn_detection.py``); so is the mutual rank, which training inflates for
  labelled pairs.
* Otherwise (one labelled pair per query and per candidate, as in a query-document corpus) the fit
  uses all offered features, anchored by the similarity of the labelled pairs; ``positive_neighbour``
  (a near-duplicate of the labelled positive is almost surely a match) is then learned from the
  unlabelled pairs, where duplicates form their own mode. A fitted feature whose weight says "more
  similar, less likely a match" is dropped and the model refitted: every feature is a similarity in
  which the candidate enters positively.

The model is a two-component Gaussian mixture in that space,

    f_U(x) = pi N(x; mu+, S+) + (1 - pi) N(x; mu-, S-),

both components sharing one covariance
(so the log-odds is linear in ``x``: a logistic model; separate covariances were tried and
over-fitted clusters of pairs that were not matches), fitted by EM with missing values (Ghahramani & Jordan, "Supervised learning from incomplete data
via an EM approach", NIPS 1994: the E-step imputes each component's conditional mean and adds its
conditional covariance), on

* the labelled pairs, known members of the positive component, with their signals computed
  leaving the pair out (what the pair would show had it not been labelled);
* a stratified sample of unlabelled pairs: every query's top-``top_k`` unlabelled candidates
  (where false negatives concentrate) and a uniform sample of the rest, each row weighted by
  the share of the pool it stands for, so that ``pi`` and the posterior are those of the whole
  unlabelled pool.

``pi`` is the class prior among unlabelled pairs; it is estimated as the mixture proportion of the
positive component, the semi-supervised mixture-model approach to positive-unlabelled prior
estimation (e.g. Ward, Hastie et al., "Presence-only data and the EM algorithm", Biometrics 2009,
who fit it by EM; see also the mixture-proportion estimation literature: Elkan & Noto, KDD 2008;
Ramaswamy, Scott & Tewari, ICML 2016). Where every feature is shown by labelled pairs (the first
case above), the prior is then re-estimated by Best Bin Estimation on the fitted model's log-odds
(Garg, Wu, Smola, Balakrishnan & Lipton, "Mixture proportion estimation and PU learning: a modern
approach", NeurIPS 2021: the upper tail of a score where labelled pairs are purest bounds ``pi``),
and the model refitted with it fixed; a mixture prior that runs to either bound falls back to the
same estimator on the margin. The posterior of an unlabelled pair is then

    P(FN | x) = pi N+(x) / (pi N+(x) + (1 - pi) N-(x)),

with missing features marginalised out exactly (drop their rows and columns). The same fitted
model therefore also serves callers that offer fewer signals, such as the FNE sampler during
training, which sees only ``s`` and ``s+``.

Why not the labelled-vs-unlabelled classifier of Elkan & Noto: its "selected completely at
random" assumption fails for pairs. A labelled positive is the *designated* match of its query,
and features such as the similarity to the labelled positive are undefined for a labelled pair
of a one-positive query, so a classifier would separate labelled from unlabelled on missingness
alone. The mixture uses the labelled pairs where their signals exist and learns the rest of the
positive component from the unlabelled structure.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from fnlab.core.registry import ParamSpec
from fnlab.posterior.base import Status
from fnlab.posterior.signals import PairContext, PairSignals

__all__ = ["FEATURES", "PUPosterior", "features_of", "stratified_unlabelled_sample"]

#: the smallest and largest prior the EM may reach
PRIOR_FLOOR, PRIOR_CAP = 1e-7, 0.5

#: the transitive signals: evidence from the labelled pairs of the query or the candidate
TRANSITIVE = ("positive_neighbour", "query_neighbour")

#: share of labelled pairs that must show a transitive signal for it to anchor the fit (a few
#: queries with a second positive do not make a one-positive dataset)
MIN_SHOWN_SHARE = 0.1

#: feature names, in order, and the signals each needs
FEATURES = {
    "similarity": ("similarity",),
    "margin": ("similarity", "positive_similarity"),
    "positive_neighbour": ("positive_neighbour",),
    "query_neighbour": ("query_neighbour",),
    "mutual": ("similarity", "candidate_hubness"),
}


def features_of(signals: PairSignals, names: tuple[str, ...]) -> torch.Tensor:
    """``[*, m]`` float64 features ``names`` of :data:`FEATURES`; NaN where a signal is missing."""
    s = signals.similarity.double()
    cols = []
    for name in names:
        needs = FEATURES[name]
        parts = [getattr(signals, n) for n in needs]
        if any(p is None for p in parts):
            cols.append(torch.full_like(s, float("nan")))
            continue
        parts = [p.to(device=s.device, dtype=torch.float64) for p in parts]
        if name == "similarity":
            v = s
        elif name == "margin":
            v = s - parts[1]
        elif name == "mutual":
            v = s - parts[1]
        else:
            v = parts[0]
        cols.append(torch.broadcast_to(v, s.shape))
    return torch.stack(cols, dim=-1)


def stratified_unlabelled_sample(ctx: PairContext, *, top_k: int, n_random: int, max_queries: int,
                                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unlabelled pairs standing for the whole pool: ``(query [n], candidate [n], weight [n])``.

    Stratum T: the top-``top_k`` unlabelled candidates of up to ``max_queries`` queries (all
    queries when there are fewer), each weighted ``|T| / sampled``. Stratum R: ``n_random`` pairs
    drawn uniformly among unlabelled pairs (:meth:`PairContext.draw_unlabelled`), those that fall
    inside their query's top-``top_k`` dropped, weighted ``(pool - |T|) / kept``. Weights sum to the
    number of unlabelled pairs.
    """
    nq = ctx.n_queries
    chosen = np.arange(nq) if nq <= max_queries else np.sort(rng.choice(nq, size=max_queries, replace=False))
    rq, rc = ctx.draw_unlabelled(n_random, rng)
    # one search, over the queries the sample touches only (not every query of a large scan)
    rows = np.union1d(chosen, rq)
    scores, idx = ctx.topk_unlabelled(top_k, rows=rows)
    ci = np.searchsorted(rows, chosen)  # rows is sorted: the position of each query's top-k
    valid = idx[ci] >= 0
    tq = np.repeat(chosen, idx.shape[1]).reshape(len(chosen), -1)[valid]
    tc = idx[ci][valid]
    # |T| over every query: min(top_k, its unlabelled candidates)
    size_t = int(np.minimum(idx.shape[1], ctx.n_candidates - np.diff(ctx.positives.indptr)).sum())
    ri = np.searchsorted(rows, rq)
    kth = np.where(idx[ri, -1] >= 0, scores[ri, -1], -np.inf)  # a pair at or above it sits in stratum T
    in_t = ctx.similarity(rq, rc) >= kth
    rq, rc = rq[~in_t], rc[~in_t]
    rest = ctx.n_unlabelled - size_t
    w_t = np.full(tq.size, size_t / max(tq.size, 1), dtype=np.float64)
    w_r = np.full(rq.size, rest / max(rq.size, 1), dtype=np.float64) if rest > 0 else np.zeros(rq.size)
    return np.concatenate([tq, rq]), np.concatenate([tc, rc]), np.concatenate([w_t, w_r])


class PUPosterior:
    """Two-component Gaussian mixture over pair features, fitted positive-unlabelled (module docstring).

    Fitted attributes: ``prior_pos`` (``pi``, the share of false negatives among unlabelled pairs),
    ``means_ [2, m]`` and ``covs_ [2, m, m]`` (row 0 negative, row 1 positive), ``features_``,
    ``n_iter_``, ``converged_``; ``pos_mean`` is the mean labelled-positive similarity (what FNE's
    cut-down ``s <= mu+ - margin`` uses).

    Args:
        top_k: candidates per query in the top stratum of the fit sample.
        n_random: uniform unlabelled pairs in the fit sample.
        max_queries: queries whose top-k enter the fit sample.
        max_iter, tol: EM stopping rule (largest parameter change).
    """

    estimator = "pu"
    ready = True
    PARAMS = (
        ParamSpec("top_k", 10, 1, 200, "each query's most similar unlabelled candidates in the fit sample",
                  integer=True),
        ParamSpec("n_random", 50_000, 1000, 1_000_000, "uniform unlabelled pairs in the fit sample", integer=True),
        ParamSpec("max_queries", 20_000, 100, 1_000_000, "queries whose top-k enter the fit sample", integer=True),
    )

    def __init__(self, *, features: tuple[str, ...] = (), prior_pos: float = 0.01, means: Any = None,
                 covs: Any = None, pos_mean: float = 0.0, pos_std: float = 1.0, n_iter: int = 0,
                 converged: bool = False, notes: tuple[str, ...] = ()) -> None:
        self.features_ = tuple(features)
        self.prior_pos = float(prior_pos)
        m = len(self.features_)
        self.means_ = np.zeros((2, m)) if means is None else np.asarray(means, dtype=np.float64).reshape(2, m)
        self.covs_ = (np.stack([np.eye(m)] * 2) if covs is None
                      else np.asarray(covs, dtype=np.float64).reshape(2, m, m))
        self.pos_mean, self.pos_std = float(pos_mean), float(pos_std)
        self.n_iter_, self.converged_ = int(n_iter), bool(converged)
        self.notes = tuple(notes)
        self._linear: dict[tuple[int, ...], tuple[np.ndarray, float]] = {}  # fitted parameters never change

    @property
    def signals(self) -> tuple[str, ...]:
        """The pair signals its features are made of (:class:`fnlab.posterior.base.Posterior`)."""
        needs = {sig for f in self.features_ for sig in FEATURES[f]} | {"similarity"}
        from fnlab.posterior.signals import SIGNALS

        return tuple(n for n in SIGNALS if n in needs)

    @property
    def status(self) -> Status:
        """Uncalibrated when the EM stopped unconverged or its prior ran to a bound."""
        if self.prior_pos <= PRIOR_FLOOR * 10 or self.prior_pos >= PRIOR_CAP * 0.9:
            return Status(False, f"the prior ran to its bound ({self.prior_pos:.2g})")
        if self.n_iter_ > 0 and not self.converged_:
            return Status(False, f"the EM stopped unconverged after {self.n_iter_} iterations")
        return Status()

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit_context(cls, ctx: PairContext, *, prior: float | str = "auto", seed: int = 0, top_k: int = 10,
            n_random: int = 50_000, max_queries: int = 20_000, max_iter: int = 300,
            tol: float = 1e-5) -> PUPosterior:
        """Fit on a :class:`PairContext` (labels only, never ground truth).

        Raises:
            ValueError: fewer than 2 labelled pairs, no unlabelled pair, or a prior outside (0, 1).
        """
        rng = np.random.default_rng(seed)
        lq, lc, lsim = ctx.positive_similarities()
        if lq.size < 2:
            raise ValueError(f"the 'pu' posterior needs at least 2 labelled pairs, got {lq.size}")
        uq, uc, uw = stratified_unlabelled_sample(ctx, top_k=top_k, n_random=n_random, max_queries=max_queries,
                                                  rng=rng)
        if uq.size < 2:
            raise ValueError("the 'pu' posterior needs unlabelled pairs; every pair is labelled")
        names = tuple(n for n in FEATURES if all(s in ctx.signal_names for s in FEATURES[n]))
        lab = features_of(ctx.signals(lq, lc, leave_pair_out=True), names).numpy()
        if "margin" in names:
            # A labelled pair whose query has no other positive shows no margin. For a true match
            # the margin is the difference of two positive similarities (the query's designated
            # positive and another match), modelled as in the "relative" estimator by pairing each
            # labelled similarity with that of a random other labelled pair. Without it the
            # margin's positive component would be learned from unlabelled structure alone (and
            # latch onto queries whose labelled positive is itself a poor match).
            j = names.index("margin")
            gap = np.isnan(lab[:, j])
            if gap.any():
                lab[gap, j] = lsim[gap] - lsim[rng.permutation(lsim.size)][gap]
        notes = list(ctx.notes)
        names, lab = _anchored_features(names, lab, notes)
        unl = features_of(ctx.signals(uq, uc), names).numpy()
        keep = [j for j, n in enumerate(names)
                if np.isfinite(unl[:, j]).sum() >= 2 and np.nanstd(unl[:, j]) > 0]
        dropped = [names[j] for j in range(len(names)) if j not in keep]
        if dropped:
            notes.append(f"feature(s) {', '.join(dropped)} dropped: no spread or too few values")
        names = tuple(names[j] for j in keep)
        lab, unl = lab[:, keep], unl[:, keep]
        fixed = None if prior == "auto" else float(prior)
        if fixed is not None and not 0 < fixed < 1:
            raise ValueError(f"prior must be 'auto' or lie in (0, 1), got {prior!r}")
        all_names, all_lab, all_unl = names, lab, unl
        anchored = bool((np.isfinite(lab).mean(axis=0) >= MIN_SHOWN_SHARE).all())  # labelled pairs show every feature
        scored = False
        while True:
            pi, means, covs, it, conv = _fit_em(lab, unl, uw, prior=fixed, max_iter=max_iter, tol=tol)
            worst = _worst_inverted_feature(names, means, covs)
            if worst is None or len(names) <= 1:
                if fixed is None and (pi <= PRIOR_FLOOR * 10 or pi >= PRIOR_CAP * 0.9) and "margin" in all_names:
                    # the mixture found no positive component, or called half the pool positive (a
                    # shifted copy of the negatives' shape is barely identifiable where the classes
                    # overlap): estimate the prior on its own from the margin, then refit with it fixed
                    j = all_names.index("margin")
                    fixed = best_bin_prior(all_lab[:, j], all_unl[:, j], uw)
                    notes.append(f"the mixture's prior ran to its bound ({pi:.2g}); prior {fixed:.3g} by best bin "
                                 "estimation on "
                                 "the margin s - s+ (Garg et al., NeurIPS 2021), then refitted")
                    names, lab, unl = all_names, all_lab, all_unl
                    continue
                if prior == "auto" and not scored and anchored:
                    # every feature is shown by labelled pairs: the prior by Best Bin Estimation on the
                    # fitted model's score (its purest top bin, Garg et al. 2021), then refitted with it
                    scored = True
                    fixed = best_bin_prior(_score(lab, means, covs), _score(unl, means, covs), uw)
                    notes.append(f"prior {fixed:.3g} by best bin estimation on the fitted log-odds "
                                 f"(before: {pi:.3g}), then refitted")
                    continue
                break
            notes.append(f"feature {names[worst]} dropped: the fit made P(FN) fall as it rises")
            keep = [j for j in range(len(names)) if j != worst]
            names, lab, unl = tuple(names[j] for j in keep), lab[:, keep], unl[:, keep]
        return cls(features=names, prior_pos=pi, means=means, covs=covs, pos_mean=float(lsim.mean()),
                   pos_std=float(lsim.std()), n_iter=it, converged=conv, notes=tuple(notes))

    # ------------------------------------------------------------------ applying
    def log_odds(self, signals: PairSignals) -> torch.Tensor:
        """``log pi N+(x) - log (1 - pi) N-(x)`` per pair, marginalising missing features."""
        offered = set(signals.offered())
        present = [j for j, n in enumerate(self.features_) if all(sig in offered for sig in FEATURES[n])]
        names = tuple(self.features_[j] for j in present)
        base = math.log(self.prior_pos) - math.log1p(-self.prior_pos)
        shape = tuple(torch.broadcast_shapes(*[getattr(signals, n).shape for n in offered]))
        device = signals.similarity.device
        if not names:
            return torch.full(shape, base, dtype=torch.float64, device=device)
        if np.allclose(self.covs_[0], self.covs_[1]):
            fast = self._linear_log_odds(signals, names, present, base, shape)
            if fast is not None:
                return fast
        flat = features_of(signals, names).reshape(-1, len(names))
        idx = torch.as_tensor(present, device=device)
        means = torch.as_tensor(self.means_, device=device)[:, idx]
        covs = torch.as_tensor(self.covs_, device=device)[:, idx][:, :, idx]
        nan = torch.isnan(flat)
        if not bool(nan.any()):  # the hot path (FNE's pool): every entry has every offered feature
            out = base + _log_normal(flat, means[1], covs[1]) - _log_normal(flat, means[0], covs[0])
            return out.reshape(shape)
        out = torch.zeros(flat.shape[0], dtype=torch.float64, device=device)
        # one group per pattern of observed features (usually one or two patterns)
        patterns, inverse = torch.unique(~nan, dim=0, return_inverse=True)
        for p in range(patterns.shape[0]):
            o = patterns[p]
            rows = inverse == p
            if not bool(o.any()):
                out[rows] = base
                continue
            xo = flat[rows][:, o]
            lp = _log_normal(xo, means[1][o], covs[1][o][:, o])
            ln = _log_normal(xo, means[0][o], covs[0][o][:, o])
            out[rows] = base + lp - ln
        return out.reshape(shape)

    def _linear_log_odds(self, signals: PairSignals, names: tuple[str, ...], present: list[int], base: float,
                         shape: tuple[int, ...]) -> torch.Tensor | None:
        """Shared covariance: the log-odds is linear, ``w . (x - (mu+ + mu-) / 2) + log(pi / (1 - pi))`` with
        ``w = S^-1 (mu+ - mu-)`` over the offered features (the FNE sampler's hot path: one pass over
        ``[B, M]``, no ``[B, M, m]`` stack). ``None`` when some entry misses a feature (general path)."""
        cols = []
        for name in names:
            col = features_of(signals, (name,))[..., 0]
            if bool(torch.isnan(col).any()):
                return None
            cols.append(col)
        key = tuple(present)
        if key not in self._linear:  # one solve per set of offered features (FNE asks many times a step)
            sub = np.ix_(present, present)
            w_ = np.linalg.solve(self.covs_[0][sub], self.means_[1][present] - self.means_[0][present])
            self._linear[key] = (w_, float(w_ @ (0.5 * (self.means_[1][present] + self.means_[0][present]))))
        w, offset = self._linear[key]
        out = torch.full(shape, base - offset, dtype=torch.float64, device=signals.similarity.device)
        for wj, col in zip(w, cols, strict=True):
            out = out + float(wj) * col
        return out

    def prob_false_negative(self, signals: PairSignals | Any, pos_sims: Any = None) -> torch.Tensor:
        """P(false negative) per pair; same shape as the similarities (float64 for float64 input).

        ``signals``: a :class:`PairSignals`, or a similarity tensor (with ``pos_sims``) for callers
        that have only those.
        """
        if not isinstance(signals, PairSignals):
            signals = PairSignals.of(signals, pos_sims)
        p = self.log_odds(signals).sigmoid()
        want = signals.similarity.dtype if signals.similarity.is_floating_point() else torch.float32
        return p.to(device=signals.similarity.device, dtype=torch.float64 if want == torch.float64 else torch.float32)

    def params(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "prior_pos": self.prior_pos, "features": list(self.features_),
                "means": self.means_.tolist(), "covs": self.covs_.tolist(), "pos_mean": self.pos_mean,
                "pos_std": self.pos_std, "n_iter": self.n_iter_, "converged": self.converged_,
                "notes": list(self.notes)}

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> PUPosterior:
        try:
            return cls(features=tuple(p["features"]), prior_pos=float(p["prior_pos"]), means=p["means"],
                       covs=p["covs"], pos_mean=float(p["pos_mean"]), pos_std=float(p.get("pos_std", 1.0)),
                       n_iter=int(p.get("n_iter", 0)), converged=bool(p.get("converged", False)),
                       notes=tuple(p.get("notes", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"posterior params of estimator 'pu': missing or malformed field ({e})") from None


# ---------------------------------------------------------------------------- maths
def best_bin_prior(labelled: np.ndarray, unlabelled: np.ndarray, weights: np.ndarray, *, delta: float = 0.1,
                   min_share: float = 0.05) -> float:
    """Mixture proportion of positives among unlabelled values by Best Bin Estimation (Garg, Wu,
    Smola, Balakrishnan & Lipton, "Mixture proportion estimation and PU learning: a modern approach",
    NeurIPS 2021): ``min_t (q_U(t) + c_U) / (q_P(t) - c_P)`` over upper tails ``[t, inf)``, with
    ``q_P``, ``q_U`` the shares of labelled and (weighted) unlabelled values in the tail and ``c`` their
    Hoeffding confidence terms; tails holding fewer than ``min_share`` of the labelled values are skipped.

    Shapes: ``labelled [L]``, ``unlabelled [U]``, ``weights [U]`` (NaN entries ignored). Clipped to
    ``[PRIOR_FLOOR, 0.5]``.
    """
    lab = labelled[np.isfinite(labelled)]
    ok = np.isfinite(unlabelled)
    unl, w = unlabelled[ok], weights[ok]
    if lab.size < 2 or unl.size < 2:
        return PRIOR_FLOOR
    order = np.argsort(unl)
    unl, w = unl[order], w[order]
    tail_w = np.cumsum(w[::-1])[::-1] / w.sum()  # weighted share of unlabelled values >= unl[i]
    n_eff = w.sum() ** 2 / (w * w).sum()  # effective sample size of the weighted sample
    c_u = np.sqrt(np.log(4 / delta) / (2 * n_eff))
    c_p = np.sqrt(np.log(4 / delta) / (2 * lab.size))
    best = 0.5
    for t in np.quantile(lab, np.linspace(0.0, 1.0 - min_share, 40)):
        q_p = float((lab >= t).mean())
        i = int(np.searchsorted(unl, t, side="left"))
        q_u = float(tail_w[i]) if i < unl.size else 0.0
        if q_p - c_p > 0:
            best = min(best, (q_u + c_u) / (q_p - c_p))
    return float(min(max(best, PRIOR_FLOOR), 0.5))


def _anchored_features(names: tuple[str, ...], lab: np.ndarray, notes: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """The features the fit uses, from those offered (module docstring, "Which features"), with the
    labelled rows ``lab [L, len(names)]`` cut to them; the choice gets a note."""
    shown = [n for j, n in enumerate(names)
             if n in TRANSITIVE and np.isfinite(lab[:, j]).mean() >= MIN_SHOWN_SHARE]
    if "margin" not in names or not shown:
        return names, lab
    chosen = ("margin", *shown)
    left = [n for n in names if n not in chosen]
    notes.append(f"features {', '.join(chosen)}: labelled pairs show {', '.join(shown)}, so the margin to the "
                 f"query's own positive anchors the fit; {', '.join(left) or 'nothing'} left out")
    keep = [names.index(n) for n in chosen]
    return chosen, lab[:, keep]


def _score(x: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """Log-density ratio ``log N+(x) - log N-(x)`` per row of ``x [n, m]`` (missing entries marginalised)."""
    obs = ~np.isnan(x)
    patterns, inverse = np.unique(obs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    return (_component_stats(x, patterns, inverse, means[1], covs[1])[0]
            - _component_stats(x, patterns, inverse, means[0], covs[0])[0])


def _worst_inverted_feature(names: tuple[str, ...], means: np.ndarray, covs: np.ndarray) -> int | None:
    """Index of the feature whose discriminant weight most contradicts "more similar, more likely a
    match" (standardised weight below zero), or ``None``. Every feature is a similarity or a
    difference of similarities in which the candidate enters positively, so a fitted model whose
    log-odds falls as one of them rises has latched onto other structure than matches; the
    similarity itself is judged by its total coefficient (it also enters margin and mutual)."""
    w = np.linalg.solve(0.5 * (covs[0] + covs[1]), means[1] - means[0])
    sd = np.sqrt(np.diag(0.5 * (covs[0] + covs[1])))
    score = w * sd
    if "similarity" in names:
        i = names.index("similarity")
        pulls = [names.index(n) for n in ("margin", "mutual") if n in names]
        total = w[i] + sum(w[j] for j in pulls)
        score[i] = np.inf  # the similarity itself always stays
        if total < 0 and pulls and score.min() >= 0:
            # s falls out of favour through the features that also contain it: drop the strongest
            return max(pulls, key=lambda j: score[j])
    score[0] = np.inf  # the anchor feature (margin or similarity) always stays
    worst = int(np.argmin(score))
    return worst if score[worst] < 0 else None


def _log_normal(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """``log N(x; mean, cov)`` for rows of ``x [n, m]``."""
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False)
    return -0.5 * (z * z).sum(0) - torch.log(torch.diagonal(chol)).sum() - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _np_log_normal(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * (z * z).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _component_stats(x: np.ndarray, obs_patterns: np.ndarray, inverse: np.ndarray, mean: np.ndarray,
                     cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per row: log-density of its observed part, the row with missing entries imputed by the
    component's conditional mean, and per pattern the conditional covariance of the missing block
    (embedded in ``[m, m]``)."""
    n, m = x.shape
    ll = np.empty(n)
    filled = np.where(np.isnan(x), 0.0, x)
    extra = []
    for p, o in enumerate(obs_patterns):
        rows = inverse == p
        mis = ~o
        c_add = np.zeros((m, m))
        if not o.any():
            ll[rows] = 0.0
            filled[np.ix_(rows, mis)] = mean[mis]
            c_add = cov.copy()
            extra.append(c_add)
            continue
        xo = x[np.ix_(rows, o)]
        s_oo = cov[np.ix_(o, o)]
        ll[rows] = _np_log_normal(xo, mean[o], s_oo)
        if mis.any():
            gain = np.linalg.solve(s_oo, cov[np.ix_(o, mis)]).T  # [mis, o]
            filled[np.ix_(rows, mis)] = mean[mis] + (xo - mean[o]) @ gain.T
            c_add[np.ix_(mis, mis)] = cov[np.ix_(mis, mis)] - gain @ cov[np.ix_(o, mis)]
        extra.append(c_add)
    return ll, filled, extra


def _fit_em(lab: np.ndarray, unl: np.ndarray, weights: np.ndarray, *, prior: float | None, max_iter: int,
            tol: float, prior_bounds: tuple[float, float] = (PRIOR_FLOOR, PRIOR_CAP), ridge: float = 1e-5,
            tied: bool = True) -> tuple[float, np.ndarray, np.ndarray, int, bool]:
    """EM for the positive-unlabelled mixture with missing features (module docstring).

    ``lab [L, m]`` labelled pairs (positive component, responsibility 1), ``unl [U, m]`` unlabelled
    sample with pool weights ``weights [U]``. The labelled pairs are given, together, the weight of
    the unlabelled positives (``pi * sum(weights)``) so that neither group swamps the other, and each
    at least the weight of one sampled unlabelled row (so the anchor never fades as ``pi`` shrinks).
    Returns ``(pi, means [2, m], covs [2, m, m], iterations, converged)``.
    """
    x = np.concatenate([lab, unl])
    n_lab, m = lab.shape[0], x.shape[1]
    obs = ~np.isnan(x)
    patterns, inverse = np.unique(obs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    total_w = float(weights.sum())
    lo, hi = prior_bounds

    def moments(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        filled = np.where(obs, x, 0.0)
        cnt = (w[:, None] * obs).sum(0)
        mean = (w[:, None] * filled).sum(0) / np.maximum(cnt, 1e-300)
        dev = np.where(obs, x - mean, 0.0)
        cov = np.diag((w[:, None] * dev * dev).sum(0) / np.maximum(cnt, 1e-300))
        return mean, cov + ridge * np.eye(m)

    # start: responsibilities from the similarity alone (labelled pairs' moments against the
    # weighted unlabelled sample, prior 1%), then one moment step with missing entries skipped
    sim = x[:, 0]  # the anchor feature (margin or similarity): always first, set for every labelled pair
    lab_m, lab_s = float(np.nanmean(sim[:n_lab])), float(np.nanstd(sim[:n_lab])) + 1e-3
    seen = np.isfinite(sim[n_lab:])
    unl_m = float(np.average(sim[n_lab:][seen], weights=weights[seen]))
    unl_s = float(np.sqrt(np.average((sim[n_lab:][seen] - unl_m) ** 2, weights=weights[seen]))) + 1e-3
    pi = prior if prior is not None else 0.01
    d0 = (-0.5 * ((sim - lab_m) / lab_s) ** 2 - math.log(lab_s) + 0.5 * ((sim - unl_m) / unl_s) ** 2
          + math.log(unl_s) + math.log(pi) - math.log1p(-pi))
    r0 = 0.5 * (1.0 + np.tanh(0.5 * np.clip(np.nan_to_num(d0, nan=math.log(pi) - math.log1p(-pi)), -700, 700)))
    r0[:n_lab] = 1.0
    w0 = np.concatenate([np.full(n_lab, max(pi * total_w / max(n_lab, 1), total_w / max(weights.size, 1))), weights])
    mean_n, cov_n = moments(w0 * (1.0 - r0))
    mean_p, cov_p = moments(w0 * r0)
    means, covs = np.stack([mean_n, mean_p]), np.stack([cov_n, cov_p])
    it, converged = 0, False
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        stats = [_component_stats(x, patterns, inverse, means[k], covs[k]) for k in (0, 1)]
        d = stats[1][0] - stats[0][0] + math.log(pi) - math.log1p(-pi)
        r = 0.5 * (1.0 + np.tanh(0.5 * np.clip(d, -700, 700)))  # sigmoid without overflow
        r[:n_lab] = 1.0
        new_pi = pi
        if prior is None:
            new_pi = float(np.clip((weights * r[n_lab:]).sum() / total_w, lo, hi))
        lab_w = max(new_pi * total_w / max(n_lab, 1), total_w / max(weights.size, 1))  # floor: one sampled row each
        w_all = np.concatenate([np.full(n_lab, lab_w), weights])
        new_means, new_covs = np.empty_like(means), np.empty_like(covs)
        sums = [0.0, 0.0]
        for k, resp in ((0, 1.0 - r), (1, r)):
            a = w_all * resp
            a_sum = max(float(a.sum()), 1e-300)
            _, filled, extra = stats[k]
            mu = (a[:, None] * filled).sum(0) / a_sum
            dev = filled - mu
            cov = (a[:, None] * dev).T @ dev
            for p in range(len(patterns)):
                cov += a[inverse == p].sum() * extra[p]
            new_means[k], new_covs[k] = mu, cov
            sums[k] = a_sum
        if tied:  # one covariance for both components: the log-odds is linear in x (a logistic model)
            shared = (new_covs[0] + new_covs[1]) / (sums[0] + sums[1])
            new_covs[0] = new_covs[1] = shared
        else:
            new_covs[0] /= sums[0]
            new_covs[1] /= sums[1]
        for k in (0, 1):
            new_covs[k] = 0.5 * (new_covs[k] + new_covs[k].T) + ridge * np.eye(m)
        change = max(float(np.abs(new_means - means).max()), float(np.abs(new_covs - covs).max()),
                     abs(new_pi - pi) / max(pi, 1e-12) * 1e-2)
        means, covs, pi = new_means, new_covs, new_pi
        if change < tol:
            converged = True
            break
    return float(pi), means, covs, it, converged
