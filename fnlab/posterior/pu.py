"""Positive-unlabelled posterior over every signal of a pair (fnlab's default estimator, ``"pu"``).

Labelled pairs are some of the matches; unlabelled pairs mix non-matches and unlabelled matches (the
false negatives). A labelled pair is not a random draw from the matches: it is its query's *designated*
match, which a trained model scores above the query's other matches, so priors and densities that assume
"selected completely at random" (SCAR) overshoot or undershoot (Bekker & Davis, "Learning from positive
and unlabeled data: a survey", 2020, Sec. 3-4). The posterior therefore learns each kind of evidence from
where the data show it without that bias, and says which:

1. **Group matches, learned from labelled pairs** (:class:`fnlab.posterior.linear.LinearEvidence`). Where
   labelled pairs show a *transitive* signal (several captions an image: ``query_neighbour``; several
   positives a query: ``positive_neighbour``; and their second-view forms), a tied-covariance Gaussian
   mixture over the margin to the query's own positive and those signals is fitted on labelled pairs
   (left out of their own sets) and a stratified sample of unlabelled pairs weighted to the pool (each
   query's top candidates, and uniform pairs), by EM with missing values. Its prior is the pool's. The
   rows a scan shows (each query's top ``window`` unlabelled candidates) hold a larger share of matches
   than the pool, so that share is estimated on its own from the transitive signals alone, by Elkan &
   Noto's label frequency (:mod:`fnlab.posterior.labelfreq`), and the log-odds of pairs in the window is
   shifted so that their mean posterior is that share. There the margin is left out where it ranks those
   rows against the transitive signals (:data:`MIN_LEAD_AGREEMENT`).
2. **Near-copies of the labelled positive, learned from the data's own duplicates**
   (:class:`fnlab.posterior.duplicates.DuplicateGroup`). Where no labelled pair shows a transitive signal
   (one labelled candidate a query and one labelled query a candidate), nothing says how close an
   unlabelled match sits to the labelled one except the data: the candidates a scan shows that are
   near-copies of the labelled positive form a group of their own. Its share among the scanned rows is
   found by a one-dimensional mixture on ``atanh(positive_neighbour)``. This evidence is also used in
   image-text data (duplicate images match the same captions).
3. **Queries without a labelled positive.** Where the first two are silent for lack of a positive, a
   candidate is a match when it is as similar to the query as labelled matches are: a mixture on ``s``
   whose positive component is the labelled similarities' (:class:`fnlab.posterior.mixture.MixturePosterior`),
   fitted on those queries' top candidates. Where the first two are silent for *every* query (no labelled pair
   shows a transitive signal and the scanned rows hold no group of near-copies of the labelled positive), that
   mixture is fitted on every query's rows and gives every pair its P (``similar_only``), and the status says
   "uncalibrated: rank only": nothing in the data then says whether the unlabelled matches there are few or
   many, and a P near 0 for every pair would read as "no false negatives" where the data are silent.

``P(false negative) = 1 - (1 - P_group)(1 - P_copy)`` (a pair is a match if either holds); for a query
without a positive (every query with ``similar_only``), ``P_designated``. :attr:`PUPosterior.prior_pos` is the model's share of matches over
the pool sample, :attr:`PUPosterior.prior_window` over the scanned rows. :attr:`PUPosterior.status` says
"uncalibrated: rank only" (with the reason) where the data cannot support a probability: too few
labelled pairs, a fit that did not converge, a prior at its bound, a window share that could not be
estimated, a window whose rows are mostly matches (:data:`MAX_WINDOW_SHARE`), or labelled pairs that sit well
above the rows the fit calls matches on the signals that share was estimated from (:data:`MAX_LABELLED_LEAD`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fnlab.core.registry import ParamSpec
from fnlab.posterior.base import Status
from fnlab.posterior.duplicates import DuplicateGroup, z_scale
from fnlab.posterior.gmm import PRIOR_CAP, PRIOR_FLOOR, best_bin_prior, fit_em, log_density_ratio
from fnlab.posterior.labelfreq import match_share
from fnlab.posterior.linear import FEATURES, TRANSITIVE, LinearEvidence, features_of
from fnlab.posterior.mixture import MixturePosterior
from fnlab.posterior.signals import SIGNALS, PairContext, PairSignals

__all__ = ["FEATURES", "MIN_LABELLED", "PUPosterior", "features_of", "stratified_unlabelled_sample"]

#: share of labelled pairs that must show a transitive signal for it to anchor the fit (a few
#: queries with a second positive do not make a one-positive dataset)
MIN_SHOWN_SHARE = 0.1

#: a transitive signal (or the second view's margin) joins the group evidence only where labelled pairs rank
#: above the pool's unlabelled pairs on it at least this often (weighted AUROC). A signal the labels do not
#: separate carries no evidence: a second view of unrelated texts made every scanned pair look like a match
#: (label frequency on a feature that cannot tell labelled from unlabelled says "all of them")
MIN_SHOWN_AUROC = 0.6

#: fewer labelled pairs than this cannot say what a match looks like: the posterior ranks, no more
MIN_LABELLED = 30

#: above this estimated share of matches among the rows a scan shows, the fit calls most of those rows matches:
#: either a query matches a whole class (the labelled positive is one match among many and says little about
#: which shown rows are not), or the transitive signals barely tell labelled pairs from the rest, which drives
#: the label-frequency share up (Elkan & Noto's ``c`` is the mean classifier score of labelled pairs: a weak
#: classifier understates it). Either way P is not a calibrated per-pair probability there
#: (bench/calibration.py's class-level families put 0.94-0.95 here, true 0.83-0.90; `shapes` runs with a
#: 1,000-image test split 0.65-0.78, true 0.30-0.32; every other family and real text <= 0.19)
MAX_WINDOW_SHARE = 0.5

#: above this AUROC of labelled pairs against the window rows weighted by their fitted P, on the transitive
#: signals the window's share of matches was estimated from, labelled pairs sit well above what the fit calls
#: matches: they are not a random sample of the matches on those signals (a caption resembles its own image's
#: other captions beyond what relevance explains, e.g. captions written from one image's details), which is the
#: assumption the label-frequency share rests on, and the share comes out low. Under that assumption the AUROC is
#: 0.5 (the P-weighted rows are distributed as the labelled ones); 0.7 is about a large effect (two normal
#: distributions 0.74 standard deviations apart). The AUROC rises with P's shortfall (bench/calibration.py's
#: captions families, bench/fn_detection.py): the sets that pass with a top-window ECE of at most 0.06 read
#: 0.51-0.64, `digits-precomp` reads 0.81-0.83 (P about 0.17 where 0.53 are matches)
MAX_LABELLED_LEAD = 0.7

#: the group evidence's first features, before the transitive ones: the margin to the query's own positive
#: (the raw similarity was tried too: it ranked dense class-level matches better and captions worse,
#: bench/calibration.py)
LEAD = ("margin",)

#: the margin enters the P of the rows a scan shows (each query's top ``window``) only where it ranks them the way
#: the transitive signals do (mean Spearman correlation above this); outside them it always does. A labelled pair's
#: margin is imputed where its query has one positive (:func:`_fit_linear`), so nothing labelled anchors its
#: direction: where a query matches a whole class, the
#: designated positive sits far above its class-mates for a precise query and the margin ranks matches *below*
#: non-matches (bench/calibration.py's class-level families: AUROC 0.37-0.41 against the truth, Spearman -0.19 to
#: -0.21 with ``query_neighbour``; `digits` from scratch: -0.16), while over the pool it still tells a query's class
#: from the rest (`digits`' pool AUROC 0.964 with it, 0.940 without)
MIN_LEAD_AGREEMENT = 0.0

#: most rows the mixture for queries without a positive is fitted on
MAX_DESIGNATED_ROWS = 50_000

#: labelled pairs the mixture for queries without a positive needs (their similarities are its positive component)
MIN_DESIGNATED = 10

#: the signals whose near-copy evidence the duplicate group reads (the largest of those present)
COPY_SIGNALS = ("positive_neighbour", "view_positive_neighbour")

#: every signal the fit may read (mutual rank is left out: training inflates it for labelled pairs)
FIT_SIGNALS = tuple(n for n in SIGNALS if n not in ("candidate_hubness", "query_duplicate"))

#: uniform pairs in the sample when there is no group evidence to fit (they only give the pool's prior)
COPY_ONLY_RANDOM = 10_000

#: at most this many window rows (each sampled query's top ``window``) enter the fit
MAX_WINDOW_ROWS = 200_000


def stratified_unlabelled_sample(ctx: PairContext, *, top_k: int, n_random: int, max_queries: int,
                                 rng: np.random.Generator,
                                 with_window: bool = False) -> tuple[np.ndarray, ...]:
    """Unlabelled pairs standing for the whole pool: ``(query [n], candidate [n], weight [n])``.

    Stratum T: the top-``top_k`` unlabelled candidates of up to ``max_queries`` queries (all
    queries when there are fewer), each weighted ``|T| / sampled``. Stratum R: ``n_random`` pairs
    drawn uniformly among unlabelled pairs (:meth:`PairContext.draw_unlabelled`), or every unlabelled pair
    where the pool holds at most ``n_random`` pairs (the population itself, not a sample of it with repeats),
    those that fall inside their query's top-``top_k`` dropped, weighted ``(pool - |T|) / kept``. Weights sum
    to the number of unlabelled pairs. Stratum T comes first; ``with_window`` also returns its size and every
    pair's similarity (the search's scores, no second computation).
    """
    nq = ctx.n_queries
    chosen = np.arange(nq) if nq <= max_queries else np.sort(rng.choice(nq, size=max_queries, replace=False))
    if nq * ctx.n_candidates <= n_random:
        rq, rc = np.divmod(np.arange(nq * ctx.n_candidates, dtype=np.int64), ctx.n_candidates)
        keep = ~ctx.is_labelled(rq, rc)
        rq, rc = rq[keep], rc[keep]
    else:
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
    r_sim = ctx.similarity(rq, rc)
    # ... and so does one of its query's top-k (whose search score and r_sim may differ in the last bit)
    in_t = (r_sim >= kth) | (idx[ri] == rc[:, None]).any(axis=1)
    rq, rc, r_sim = rq[~in_t], rc[~in_t], r_sim[~in_t]
    rest = ctx.n_unlabelled - size_t
    w_t = np.full(tq.size, size_t / max(tq.size, 1), dtype=np.float64)
    w_r = np.full(rq.size, rest / max(rq.size, 1), dtype=np.float64) if rest > 0 else np.zeros(rq.size)
    out = (np.concatenate([tq, rq]), np.concatenate([tc, rc]), np.concatenate([w_t, w_r]))
    if not with_window:
        return out
    return (*out, int(tq.size), np.concatenate([scores[ci][valid], r_sim]).astype(np.float32))


@dataclass
class _Sample:
    """What one fit reads: labelled pairs, the pool sample (window rows first) and their signals."""

    lab_q: np.ndarray
    lab_c: np.ndarray
    lab_sim: np.ndarray
    lab_sig: PairSignals
    q: np.ndarray
    c: np.ndarray
    weight: np.ndarray
    sig: PairSignals
    n_window: int  # the first n_window rows are the window stratum (each sampled query's top `window`)


class PUPosterior:
    """The default posterior (module docstring).

    Attributes: ``linear`` (:class:`LinearEvidence` or ``None``), ``copies``
    (:class:`DuplicateGroup` or ``None``), ``designated`` (the mixture for queries without a positive, or
    ``None``), ``similar_only`` (the mixture gives every pair its P: the data show no other evidence), ``prior_pos`` (share of false negatives among unlabelled pairs), ``prior_window`` (among each
    query's top ``window`` unlabelled candidates), ``pos_mean`` (mean labelled-positive similarity, FNE's
    cut-down reads it), ``n_iter_``, ``converged_``, ``status``, ``notes``, ``share_trusted`` (False where the
    window's share of matches, the mean of P over the rows a scan shows, could not be estimated, rests on too few
    labelled pairs, or a check contradicts the assumption it rests on: FNE's density rules then read no density).

    Args (of :meth:`fit_context`):
        window: the candidates a query shows in a scan (the scan passes its ``top_k``).
        top_k: candidates per query in the top stratum of the pool sample.
        n_random: uniform unlabelled pairs in the pool sample.
        max_queries: queries whose top candidates enter the sample.
        max_iter, tol: EM stopping rule.
    """

    estimator = "pu"
    ready = True
    PARAMS = (
        ParamSpec("window", 10, 1, 1000, "candidates a query shows in a scan (the calibrated window)", integer=True),
        ParamSpec("top_k", 10, 1, 200, "each query's most similar unlabelled candidates in the fit sample",
                  integer=True),
        ParamSpec("n_random", 50_000, 1000, 1_000_000, "uniform unlabelled pairs in the fit sample", integer=True),
        ParamSpec("max_queries", 20_000, 100, 1_000_000, "queries whose top-k enter the fit sample", integer=True),
    )

    def __init__(self, *, linear: LinearEvidence | None = None, copies: DuplicateGroup | None = None,
                 copy_signals: tuple[str, ...] = (), designated: MixturePosterior | None = None,
                 prior_pos: float = 0.0, prior_window: float = 0.0, window: int = 10, pos_mean: float = 0.0,
                 pos_std: float = 1.0, n_iter: int = 0, converged: bool = True, status: Status | None = None,
                 notes: tuple[str, ...] = (), prior_shift: float = 0.0, share_trusted: bool = True,
                 similar_only: bool = False) -> None:
        self.linear, self.copies, self.designated = linear, copies, designated
        self.similar_only = bool(similar_only) and designated is not None
        self.copy_signals = tuple(copy_signals)
        self.prior_pos, self.prior_window, self.window = float(prior_pos), float(prior_window), int(window)
        self.pos_mean, self.pos_std = float(pos_mean), float(pos_std)
        self.n_iter_, self.converged_ = int(n_iter), bool(converged)
        self.status = status or Status()
        self.notes = tuple(notes)
        self.prior_shift = float(prior_shift)  # log-odds added to every pair: a prior given by the user
        self.share_trusted = bool(share_trusted)

    # ------------------------------------------------------------------ protocol members
    @property
    def features_(self) -> tuple[str, ...]:
        """The features of the linear evidence (empty without it)."""
        return self.linear.features if self.linear is not None else ()

    @property
    def signals(self) -> tuple[str, ...]:
        """The pair signals it reads (:class:`fnlab.posterior.base.Posterior`)."""
        needs = {"similarity"}
        if self.linear is not None:
            needs |= set(self.linear.signals)
        if self.copies is not None and self.copies.found:
            needs |= set(self.copy_signals) | {"positive_duplicate"}
        if self.designated is not None and not self.similar_only:
            needs |= {"positive_similarity"}
        return tuple(n for n in SIGNALS if n in needs)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit_context(cls, ctx: PairContext, *, prior: float | str = "auto", seed: int = 0, window: int = 10,
                    top_k: int = 10, n_random: int = 50_000, max_queries: int = 20_000, max_iter: int = 300,
                    tol: float = 1e-5) -> PUPosterior:
        """Fit on a :class:`PairContext` (labels only, never ground truth).

        Raises:
            ValueError: fewer than 2 labelled pairs, no unlabelled pair, or a prior outside (0, 1).
        """
        fixed = None if prior == "auto" else float(prior)
        if fixed is not None and not 0 < fixed < 1:
            raise ValueError(f"prior must be 'auto' or lie in (0, 1), got {prior!r}")
        rng = np.random.default_rng(seed)
        ctx.window = int(window)  # the window this posterior is fitted for: its query_threshold signal
        sample = _draw(ctx, window=int(window), n_random=n_random, max_queries=max_queries, rng=rng)
        notes: list[str] = list(ctx.notes)
        reasons: list[str] = []
        if sample.lab_q.size < MIN_LABELLED:
            reasons.append(f"{sample.lab_q.size} labelled pairs: too few to learn what a match looks like "
                           f"(at least {MIN_LABELLED})")
        linear, it, conv, share_trusted = _fit_linear(sample, fixed, rng, notes, reasons, max_iter=max_iter, tol=tol)
        copies, copy_signals = _fit_copies(sample, notes, seed)
        similar_only = linear is None and (copies is None or not copies.found)
        if linear is None and copies is not None and copies.found:
            notes.append("no labelled pair shows a transitive signal, so near-copies of the labelled positive are the "
                         "only unlabelled matches P can see: a match that is not a near-copy (an edited or reworded "
                         "document, another item of the same kind) keeps P near 0; a low P says 'not a copy', not "
                         "'not a match'")
        designated = _fit_designated(sample, notes, every_query=similar_only) if linear is None else None
        similar_only = similar_only and designated is not None
        if similar_only:
            reasons.append("nothing but similarity tells a match here: no labelled pair shows a transitive signal "
                           "(several matches a query or a candidate) and the scanned rows hold no group of "
                           "near-copies of the labelled positive, so P is a mixture on similarity (as similar as "
                           "labelled matches are), which orders the rows as similarity does and cannot say how many "
                           "are matches")
        if copies is not None:  # the EM iterations of every mixture the fit ran
            it, conv = it + copies.n_iter, conv and copies.converged
        if designated is not None:
            it, conv = it + designated.n_iter_, conv and designated.converged_
        post = cls(linear=linear, copies=copies, copy_signals=copy_signals, designated=designated,
                   window=int(window), pos_mean=float(sample.lab_sim.mean()), pos_std=float(sample.lab_sim.std()),
                   n_iter=it, converged=conv, notes=tuple(notes), similar_only=similar_only,
                   share_trusted=share_trusted and sample.lab_q.size >= MIN_LABELLED and not similar_only)
        p = np.nan_to_num(post.prob_false_negative(sample.sig).double().numpy(), nan=0.0)
        if fixed is not None:  # the user's prior: every pair's log-odds shifted so that the pool's share is it
            post.prior_shift = _solve_shift(_logit(p), fixed, weights=sample.weight)
            notes.append(f"prior {fixed:.3g} given: log-odds of every pair shifted by {post.prior_shift:+.2f}")
            p = np.nan_to_num(post.prob_false_negative(sample.sig).double().numpy(), nan=0.0)
        post.prior_pos = float(np.clip((sample.weight * p).sum() / sample.weight.sum(), PRIOR_FLOOR, 1 - PRIOR_FLOOR))
        post.prior_window = float(p[:sample.n_window].mean()) if sample.n_window else 0.0
        if post.prior_window > MAX_WINDOW_SHARE:
            reasons.append(f"the fit puts about {post.prior_window:.0%} of the rows a scan shows among the matches (a "
                           "query matching a whole class, or signals that cannot tell a class-mate from a match): P "
                           "there is at best a share, not a per-pair probability, and it may rank these rows no better "
                           "than raw similarity: compare the two")
        post.notes = tuple(notes)
        post.status = Status(False, "; ".join(reasons)) if reasons else Status()
        return post

    # ------------------------------------------------------------------ applying
    def parts(self, signals: PairSignals) -> dict[str, torch.Tensor]:
        """The probability each kind of evidence gives (``[*]`` each, NaN where it says nothing):
        ``group`` (linear evidence), ``copy`` (near-copy of the labelled positive), ``designated``
        (as similar as labelled matches, for queries without a positive)."""
        shape = tuple(signals.similarity.shape)
        out = {}
        if self.linear is not None:
            out["group"] = torch.sigmoid(self.linear.log_odds(signals))
        z = self._copy_z(signals)
        if z is not None:
            out["copy"] = torch.as_tensor(self.copies.prob(z.numpy()), dtype=torch.float64).reshape(shape)
        if self.designated is not None:
            pos = signals.positive_similarity
            no_pos = (torch.ones(shape, dtype=torch.bool) if pos is None or self.similar_only
                      else torch.broadcast_to(torch.isnan(pos.double().cpu()), shape))
            p = _monotone(self.designated, signals.similarity.double().cpu()).reshape(shape)
            out["designated"] = torch.where(no_pos, p, torch.full_like(p, float("nan")))
        return out

    def _copy_z(self, signals: PairSignals) -> torch.Tensor | None:
        """``[*]`` the duplicate statistic ``atanh`` of the largest near-copy signal (identical content: the cap)."""
        if self.copies is None or not self.copies.found:
            return None
        shape = tuple(signals.similarity.shape)
        vals = [torch.broadcast_to(getattr(signals, n).double().cpu(), shape) for n in self.copy_signals
                if getattr(signals, n) is not None]
        if not vals:
            return None
        best = torch.stack(vals).nan_to_num(nan=-2.0).amax(0)
        best = torch.where(torch.stack([torch.isnan(v) for v in vals]).all(0), torch.full_like(best, float("nan")), best)
        if signals.positive_duplicate is not None:
            dup = torch.broadcast_to(signals.positive_duplicate.double().cpu(), shape) > 0.5
            best = torch.where(dup, torch.ones_like(best), best)
        return torch.as_tensor(z_scale(best.numpy()))

    def prob_false_negative(self, signals: PairSignals | Any, pos_sims: Any = None) -> torch.Tensor:
        """P(false negative) per pair; same shape as the similarities (float64 for float64 input).

        ``signals``: a :class:`PairSignals`, or a similarity tensor (with ``pos_sims``) for callers
        that have only those (the missing evidence is then left out).
        """
        if not isinstance(signals, PairSignals):
            signals = PairSignals.of(signals, pos_sims)
        sim = signals.similarity
        parts = self.parts(signals)
        miss = torch.ones(tuple(sim.shape), dtype=torch.float64)
        for name in ("group", "copy"):
            if name in parts:
                miss = miss * (1.0 - parts[name].cpu().nan_to_num(nan=0.0))
        p = 1.0 - miss
        if "designated" in parts:
            d = parts["designated"].cpu()
            p = torch.where(torch.isnan(d), p, d)
        if self.prior_shift:
            p = torch.sigmoid(torch.logit(p.clamp(1e-12, 1 - 1e-12)) + self.prior_shift)
        want = sim.dtype if sim.is_floating_point() else torch.float32
        return p.to(device=sim.device, dtype=torch.float64 if want == torch.float64 else torch.float32)

    def log_odds(self, signals: PairSignals) -> torch.Tensor:
        """``logit`` of :meth:`prob_false_negative` (float64)."""
        p = self.prob_false_negative(signals).double().clamp(1e-300, 1 - 1e-16)
        return torch.log(p) - torch.log1p(-p)

    def explain(self, signals: PairSignals, *, probs: Any = None, min_p: float = 0.05, top: int = 2) -> list[str]:
        """Why each pair is suspected, in words: the evidence behind its P, strongest first, e.g.
        ``"near-copy of the labelled positive (0.98); its labelled queries say the same (0.91)"``
        (:mod:`fnlab.posterior.reasons`). ``signals`` of ``[N]`` pairs -> ``N`` strings ("" below ``min_p``)."""
        from fnlab.posterior.reasons import explain

        return explain(self, signals, probs=probs, min_p=min_p, top=top)

    # ------------------------------------------------------------------ persistence
    def params(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "prior_pos": self.prior_pos, "prior_window": self.prior_window,
                "window": self.window, "features": list(self.features_), "pos_mean": self.pos_mean,
                "pos_std": self.pos_std, "n_iter": self.n_iter_, "converged": self.converged_,
                "linear": None if self.linear is None else self.linear.params(),
                "copies": None if self.copies is None else {**self.copies.params(),
                                                            "signals": list(self.copy_signals)},
                "designated": None if self.designated is None else self.designated.params(),
                "similar_only": self.similar_only,
                "prior_shift": self.prior_shift, "share_trusted": self.share_trusted, "status": self.status.to_dict(),
                "notes": list(self.notes)}

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> PUPosterior:
        """Rebuild from :meth:`params`.

        Raises:
            ValueError: a missing or malformed field (posterior.json files of older fnlab versions
            included: refit them).
        """
        try:
            copies = p.get("copies")
            designated = p.get("designated")
            return cls(linear=None if p.get("linear") is None else LinearEvidence.from_params(p["linear"]),
                       copies=None if copies is None else DuplicateGroup.from_params(copies),
                       copy_signals=tuple(copies["signals"]) if copies else (),
                       designated=None if designated is None else MixturePosterior.from_params(designated),
                       prior_pos=float(p["prior_pos"]), prior_window=float(p.get("prior_window", 0.0)),
                       window=int(p.get("window", 10)), pos_mean=float(p["pos_mean"]),
                       pos_std=float(p.get("pos_std", 1.0)), n_iter=int(p.get("n_iter", 0)),
                       converged=bool(p.get("converged", True)), status=Status.from_dict(p.get("status")),
                       notes=tuple(p.get("notes", ())), prior_shift=float(p.get("prior_shift", 0.0)),
                       share_trusted=bool(p.get("share_trusted", True)),
                       similar_only=bool(p.get("similar_only", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"posterior params of estimator 'pu': missing or malformed field ({e}); a posterior.json "
                             "written by an older fnlab: refit it") from None


#: the slope that orders a flat stretch of :func:`_monotone` by similarity: at most 4% of the value (at s = -1);
#: it acts only where P is a mixture on similarity alone, which the status calls "uncalibrated: rank only"
TIE_SLOPE = 0.02


def _monotone(mix: MixturePosterior, sims: torch.Tensor) -> torch.Tensor:
    """``P(match | s)`` of a two-Gaussian mixture made increasing in ``s`` the conservative way: at each ``s``
    the smallest posterior at ``s`` or at any higher similarity (with unequal variances the two-Gaussian
    posterior turns down again in the upper tail; this never raises a value, so it never invents a
    confident one). The posterior is evaluated at ``s`` itself (the higher similarities on a grid of 4001
    points over ``[-1, 1]``), so values are not rounded to the grid, and a flat stretch (a tail turned down) is
    ordered by similarity by a factor ``1 - TIE_SLOPE (1 - s)`` (:data:`TIE_SLOPE`): a posterior that ties where
    similarity does not would rank the same rows worse than similarity (bench/calibration.py's labels-2 and
    labels-20). The factor must survive the scan table's float32: neighbouring rows of a large scan differ in
    ``s`` by ~1e-5, so a slope of 1e-4 left them tied (relative differences of 1e-9 against float32's 6e-8).
    Shapes: ``sims [*]`` -> ``[*]`` float64."""
    grid = torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64)
    above = torch.flip(torch.cummin(torch.flip(mix.prob_false_negative(grid).double(), [0]), dim=0).values, [0])
    s = sims.double().clamp(-1.0, 1.0)
    nxt = torch.ceil((s + 1.0) * 2000.0).long().clamp(0, 4000)
    env = torch.minimum(mix.prob_false_negative(s).double(), above[nxt])
    return env * (1.0 - TIE_SLOPE * (1.0 - s))


def _draw(ctx: PairContext, *, window: int, n_random: int, max_queries: int, rng: np.random.Generator) -> _Sample:
    """Labelled pairs and the pool sample (window stratum first), with their signals. Where no labelled
    pair shows a transitive signal (no group evidence to fit), the uniform stratum only serves the pool's
    prior: :data:`COPY_ONLY_RANDOM` pairs."""
    lq, lc, lsim = ctx.positive_similarities()
    if lq.size < 2:
        raise ValueError(f"the 'pu' posterior needs at least 2 labelled pairs, got {lq.size}")
    lab_sig = ctx.signals(lq, lc, leave_pair_out=True, names=FIT_SIGNALS, similarity=lsim)
    if not _shown_in(lab_sig):
        n_random = min(int(n_random), COPY_ONLY_RANDOM)
    max_queries = max(1, min(int(max_queries), MAX_WINDOW_ROWS // max(int(window), 1)))
    uq, uc, uw, n_window, usim = stratified_unlabelled_sample(ctx, top_k=window, n_random=n_random,
                                                              max_queries=max_queries, rng=rng, with_window=True)
    if uq.size < 2:
        raise ValueError("the 'pu' posterior needs unlabelled pairs; every pair is labelled")
    return _Sample(lq, lc, lsim, lab_sig, uq, uc, uw, ctx.signals(uq, uc, names=FIT_SIGNALS, similarity=usim),
                   n_window)


def _shown(sample: _Sample) -> tuple[str, ...]:
    """The transitive features that enough labelled pairs show (left out of their own sets)."""
    return _shown_in(sample.lab_sig)


def _shown_in(lab_sig: PairSignals) -> tuple[str, ...]:
    out = []
    for name in TRANSITIVE:
        v = getattr(lab_sig, FEATURES[name][0])
        if v is not None and float(torch.isfinite(v).double().mean()) >= MIN_SHOWN_SHARE:
            out.append(name)
    return tuple(out)


def _fit_linear(sample: _Sample, fixed: float | None, rng: np.random.Generator, notes: list[str],
                reasons: list[str], *, max_iter: int, tol: float) -> tuple[LinearEvidence | None, int, bool, bool]:
    """The group-match evidence (module docstring, 1), or ``None`` where labelled pairs show no
    transitive signal. Returns ``(evidence, EM iterations, converged, share trusted)``: the last is False where
    the window's share of matches could not be estimated or a check contradicts the assumption it rests on
    (:func:`_window_shift`)."""
    shown = _shown(sample)
    if not shown:
        return None, 0, True, True
    names = (*LEAD, *shown) if sample.lab_sig.positive_similarity is not None else shown
    if "view_margin" in FEATURES and sample.lab_sig.view_positive_similarity is not None:
        names = (*names[:len(LEAD)], "view_margin", *names[len(LEAD):]) if "margin" in names else names
    lab = features_of(sample.lab_sig, names).numpy()
    unl = features_of(sample.sig, names).numpy()
    silent = [n for j, n in enumerate(names)
              if n != "margin" and _weighted_auroc(lab[:, j], unl[:, j], sample.weight) < MIN_SHOWN_AUROC]
    if silent:
        notes.append(f"signal(s) {', '.join(silent)} left out: labelled pairs do not rank above unlabelled ones "
                     f"on them (AUROC < {MIN_SHOWN_AUROC})")
        keep_cols = [j for j, n in enumerate(names) if n not in silent]
        names, lab, unl = tuple(names[j] for j in keep_cols), lab[:, keep_cols], unl[:, keep_cols]
        shown = tuple(n for n in shown if n not in silent)
        if not shown:
            return None, 0, True, True
    for j, name in enumerate(names):
        if name in ("margin", "view_margin"):
            # A labelled pair whose query has no other positive shows no margin. For a true match it is
            # the difference of two positive similarities (as the "relative" estimator models it): each
            # labelled similarity paired with that of a random other labelled pair.
            gap = np.isnan(lab[:, j])
            sims = (sample.lab_sig.similarity if name == "margin" else sample.lab_sig.view_similarity).numpy()
            lab[gap, j] = sims[gap] - sims[rng.permutation(sims.size)][gap]
    keep = [j for j in range(len(names)) if np.isfinite(unl[:, j]).sum() >= 2 and np.nanstd(unl[:, j]) > 0]
    if len(keep) < len(names):
        notes.append(f"feature(s) {', '.join(n for j, n in enumerate(names) if j not in keep)} dropped: no spread")
    names, lab, unl = tuple(names[j] for j in keep), lab[:, keep], unl[:, keep]
    if not names:
        return None, 0, True, True
    notes.append(f"group evidence on {', '.join(names)}: labelled pairs show {', '.join(shown)}")
    unbiased = _unbiased(shown)
    pi, means, covs, it, conv = _em_with_prior(lab, unl, sample.weight, names, fixed, notes,
                                               pool_share=_pool_share(sample, unbiased), max_iter=max_iter, tol=tol)
    if not conv:
        reasons.append(f"the EM stopped unconverged after {it} iterations")
    if pi <= PRIOR_FLOOR * 10 or pi >= PRIOR_CAP * 0.9:
        reasons.append(f"the group evidence's prior ran to its bound ({pi:.2g})")
    linear = LinearEvidence(names, means, covs[0], pi, window=int(sample.sig.window or 10),
                            window_drop=_disagreeing_leads(sample, names, unl, shown, notes))
    linear.window_shift, trusted = _window_shift(sample, linear, unbiased, notes, reasons)
    return linear, it, conv, trusted


def _disagreeing_leads(sample: _Sample, names: tuple[str, ...], unl: np.ndarray, shown: tuple[str, ...],
                       notes: list[str]) -> tuple[str, ...]:
    """The margins of ``names`` (``margin``, ``view_margin``) that rank the window rows against the transitive
    signals ``shown`` (mean Spearman correlation at most :data:`MIN_LEAD_AGREEMENT`): the posterior leaves them out
    there (:attr:`LinearEvidence.window_drop`). ``unl`` ``[U, m]``: the sample's features of ``names``, window
    rows first."""
    from scipy.stats import spearmanr

    n = sample.n_window
    trans = [names.index(t) for t in shown if t in names]
    if n < 20 or not trans:
        return ()
    out = []
    for lead in ("margin", "view_margin"):
        if lead not in names:
            continue
        j = names.index(lead)
        rhos = []
        for t in trans:
            x, y = unl[:n, j], unl[:n, t]
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 20 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                rhos.append(float(spearmanr(x[ok], y[ok])[0]))
        if rhos and np.mean(rhos) <= MIN_LEAD_AGREEMENT:
            out.append(lead)
            notes.append(f"{lead} left out of the scanned rows' P: it ranks them against {', '.join(shown)} (Spearman "
                         f"{np.mean(rhos):+.2f})")
    return tuple(out)


def _weighted_auroc(lab: np.ndarray, unl: np.ndarray, weight: np.ndarray) -> float:
    """``P(a labelled value > an unlabelled one)`` (ties count half), unlabelled rows weighted by ``weight``
    (``[U]``, the sample's weights to the pool); NaN rows left out. 0.5 where either side is empty."""
    ok_l, ok_u = np.isfinite(lab), np.isfinite(unl)
    a, u, w = lab[ok_l], unl[ok_u], np.asarray(weight, np.float64)[ok_u]
    if not a.size or not u.size or w.sum() <= 0:
        return 0.5
    order = np.argsort(u, kind="stable")
    u, cw = u[order], np.concatenate([[0.0], np.cumsum(w[order])])
    below = cw[np.searchsorted(u, a, side="left")]
    upto = cw[np.searchsorted(u, a, side="right")]
    return float(np.mean((below + 0.5 * (upto - below)) / cw[-1]))


def _unbiased(shown: tuple[str, ...]) -> tuple[str, ...]:
    """The transitive signals the label-frequency shares read: the second view's where labelled pairs show
    them (training pulled labelled pairs together in the embedding space, not in a view it never saw),
    else the embedding space's."""
    view = tuple(n for n in shown if n.startswith("view_"))
    return view or shown


def _em_with_prior(lab: np.ndarray, unl: np.ndarray, weight: np.ndarray, names: tuple[str, ...],
                   fixed: float | None, notes: list[str], *, pool_share: float, max_iter: int, tol: float):
    """:func:`fit_em`; where the mixture's own prior runs to a bound (its positive component found no
    mode of its own), the pool's share of matches from the transitive signals (``pool_share``,
    :func:`fnlab.posterior.labelfreq.match_share`), or else Best Bin Estimation on the margin, and the fit
    again with that prior fixed."""
    pi, means, covs, it, conv = fit_em(lab, unl, weight, prior=fixed, max_iter=max_iter, tol=tol)
    if fixed is None and (pi <= PRIOR_FLOOR * 10 or pi >= PRIOR_CAP * 0.9):
        if np.isfinite(pool_share) and PRIOR_FLOOR < pool_share < PRIOR_CAP:
            est, how = pool_share, "label frequency on the transitive signals (Elkan & Noto 2008)"
        elif "margin" in names:
            j = names.index("margin")
            est, how = best_bin_prior(lab[:, j], unl[:, j], weight), "best bin estimation on the margin (Garg et al. 2021)"
        else:
            return pi, means, covs, it, conv
        notes.append(f"the mixture's prior ran to its bound ({pi:.2g}); prior {est:.3g} by {how}, then refitted")
        pi, means, covs, it2, conv = fit_em(lab, unl, weight, prior=est, max_iter=max_iter, tol=tol)
        it += it2
    return pi, means, covs, it, conv


def _pool_share(sample: _Sample, shown: tuple[str, ...]) -> float:
    """The pool's share of matches by label frequency on the transitive signals: labelled pairs against
    the uniform stratum of the sample (NaN when it cannot be estimated)."""
    cols = [FEATURES[name][0] for name in shown]
    lab_x = np.stack([getattr(sample.lab_sig, c).numpy() for c in cols], axis=1)
    uni_x = np.stack([getattr(sample.sig, c).numpy()[sample.n_window:] for c in cols], axis=1)
    share, _ = match_share(lab_x, uni_x)
    # the uniform stratum leaves out the window rows: put them back at the window's weight
    w = sample.weight
    rest = float(w[sample.n_window:].sum())
    if not np.isfinite(share) or rest <= 0:
        return float("nan")
    return float(share * rest / w.sum())


def _window_shift(sample: _Sample, linear: LinearEvidence, shown: tuple[str, ...], notes: list[str],
                  reasons: list[str]) -> tuple[float, bool]:
    """The log-odds shift that makes the window rows' mean posterior equal their share of matches as
    estimated from the transitive signals (:func:`fnlab.posterior.labelfreq.match_share`), and whether that share
    can be trusted: False where it could not be estimated or labelled pairs sit above what the fit calls matches
    (``MAX_LABELLED_LEAD``). No shift (and nothing to distrust) where the sample has no window."""
    n = sample.n_window
    if n < 20:
        return 0.0, True
    qthr = sample.sig.query_threshold
    if qthr is None:
        return 0.0, True
    # labelled pairs that would sit in the window were they unlabelled: s at least the query's window-th
    thr = qthr.numpy()[:n]
    by_query = dict(zip(sample.q[:n].tolist(), thr.tolist(), strict=False))
    lab_thr = np.array([by_query.get(int(q), np.inf) for q in sample.lab_q])
    eligible = sample.lab_sim >= lab_thr
    cols = [FEATURES[name][0] for name in shown]
    lab_x = np.stack([getattr(sample.lab_sig, c).numpy()[eligible] for c in cols], axis=1)
    win_x = np.stack([getattr(sample.sig, c).numpy()[:n] for c in cols], axis=1)
    share, c = match_share(lab_x, win_x)
    if not np.isfinite(share):
        reasons.append(f"the share of matches among the scanned rows could not be estimated ({int(eligible.sum())} "
                       "labelled pairs rank within the window)")
        return 0.0, False
    g = linear.log_odds(_head(sample.sig, n)).numpy()
    shift = _solve_shift(g, share)
    notes.append(f"window of {len(np.unique(sample.q[:n]))} queries' top rows: share of matches {share:.3g} by "
                 f"label frequency on {', '.join(shown)} (Elkan & Noto 2008; c = {c:.3g}); log-odds shifted by "
                 f"{shift:+.2f} there")
    lead, name = _labelled_lead(lab_x, win_x, 1.0 / (1.0 + np.exp(-np.clip(g + shift, -700, 700))), shown)
    notes.append(f"labelled pairs against the scanned rows weighted by P on {name}: AUROC {lead:.2f} (0.5 where "
                 f"labelled pairs are a random sample of the matches; above {MAX_LABELLED_LEAD} P is called uncalibrated)")
    if lead > MAX_LABELLED_LEAD:
        reasons.append(f"labelled pairs rank above the scanned rows the fit calls matches on {name} (AUROC {lead:.2f}; "
                       "0.5 if they were a random sample of the matches): the share of matches rests on that, so P "
                       "may be off by a large factor, too high or too low; rank by it, do not read it as a probability")
    return shift, lead <= MAX_LABELLED_LEAD


def _labelled_lead(lab_x: np.ndarray, win_x: np.ndarray, p: np.ndarray, names: tuple[str, ...]) -> tuple[float, str]:
    """How far labelled pairs sit above the rows the fit calls matches: the largest, over the columns of ``lab_x``
    (``[L, m]``) and ``win_x`` (``[n, m]``), of the AUROC of labelled values against the window rows weighted by
    their P (``[n]``); 0.5 when the fit's matches are distributed as the labelled pairs. Returns ``(AUROC, name)``."""
    best, which = 0.5, names[0] if names else ""
    if p.sum() <= 0:
        return best, which
    for j, name in enumerate(names):
        a = _weighted_auroc(lab_x[:, j], win_x[:, j], p)
        if a > best:
            best, which = a, name
    return best, which


def _head(sig: PairSignals, n: int) -> PairSignals:
    mask = np.zeros(sig.similarity.shape[0], dtype=bool)
    mask[:n] = True
    return sig.select(mask)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _solve_shift(g: np.ndarray, share: float, weights: np.ndarray | None = None) -> float:
    """``d`` with ``mean(sigmoid(g + d)) = share`` (weighted; bisection: the mean rises with ``d``)."""
    share = float(np.clip(share, 1e-9, 1 - 1e-9))
    w = np.ones_like(g) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    lo, hi = -60.0, 60.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(w @ (1.0 / (1.0 + np.exp(-np.clip(g + mid, -700, 700))))) < share:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _fit_copies(sample: _Sample, notes: list[str], seed: int) -> tuple[DuplicateGroup | None, tuple[str, ...]]:
    """The near-copy evidence (module docstring, 2) on the window rows, or ``None`` without the signal."""
    names = tuple(n for n in COPY_SIGNALS if getattr(sample.sig, n) is not None)
    if not names or sample.n_window < 10:
        return None, ()
    n = sample.n_window
    vals = np.stack([getattr(sample.sig, name).numpy()[:n] for name in names])
    best = np.where(np.isnan(vals).all(axis=0), np.nan, np.nan_to_num(vals, nan=-2.0).max(axis=0))
    if sample.sig.positive_duplicate is not None:
        best = np.where(sample.sig.positive_duplicate.numpy()[:n] > 0.5, 1.0, best)
    group = DuplicateGroup.fit(z_scale(best), seed=seed)
    if group.found:
        notes.append(f"near-copies of the labelled positive: a group of {group.share:.2%} of the scanned rows at "
                     f"similarity ~{group.level:.3f} to it ({', '.join(names)})")
    return group, names


def _fit_designated(sample: _Sample, notes: list[str], *, every_query: bool = False) -> MixturePosterior | None:
    """The evidence for queries without a labelled positive (module docstring, 3): a mixture on ``s`` over
    their window rows (``every_query``: over every query's), its positive component at the labelled
    similarities' moments."""
    pos = sample.sig.positive_similarity
    n = sample.n_window
    if pos is None or n == 0 or every_query:
        no_pos = np.ones(n, dtype=bool)
    else:
        no_pos = np.isnan(pos.numpy()[:n])
    if no_pos.sum() < 10:
        return None
    sims = sample.sig.similarity.numpy()[:n][no_pos]
    if sims.size > MAX_DESIGNATED_ROWS:  # a seeded subsample: a one-dimensional mixture needs no more
        sims = sims[np.random.default_rng(0).choice(sims.size, MAX_DESIGNATED_ROWS, replace=False)]
    mix = MixturePosterior.fit_em(sample.lab_sim, sims, neg_sims=sims, anchored_positive=True)
    whose = "of every query" if every_query else "of queries without a labelled positive"
    notes.append(f"{int(no_pos.sum())} scanned rows {whose}: a match is as similar as labelled matches are "
                 f"(mixture on s, share {mix.prior_pos:.3g})")
    return mix


# kept for callers of the former module layout
_score = log_density_ratio
