"""Handwriting style of scikit-learn digits, and instance-level captions that name it (``digits-precomp``).

Class-level captions ("the digit seven") are relevant to every image of the class, about a tenth of
any split: far more false negatives per query than real caption datasets have, and retrieval that
saturates. Here a caption names the class (or a generic class group, "an odd digit") *and* the style of
the image it was written for, "a bold italic tall seven", so it is relevant only to the images of that
class group that share the named style.

**Style attributes**, measured on the raw 8x8 scan ``x`` (ink in [0, 16]) with image moments
(``mu_pq`` = central moments of the ink, ``x`` to the right, ``y`` down, ``cy`` the ink's mean row):

=========  =================================================  ===========================
attribute  measure                                            words (low / high)
=========  =================================================  ===========================
ink        total ink, sum of ``x`` (stroke thickness)         "faint" / "bold"
slant      shear ``-mu11 / mu02`` (top leaning to the right)  "upright" / "italic"
width      horizontal spread with the shear removed,           "slender" / "squat"
           ``sqrt(mu20 - mu11^2 / mu02)``
height     vertical spread ``sqrt(mu02)``                     "short" / "tall"
balance    ``cy``                                             "top-heavy" / "bottom-heavy"
=========  =================================================  ===========================

Every measure is turned into a percentile *within the image's class* over all 1797 scans, so "bold"
means bold for a seven and each word is true of half of every class. The words were picked for how far
apart all-MiniLM-L6-v2 puts them (cosine of "a bold seven" / "a faint seven" 0.68, of "a thick seven" /
"a thin seven" 0.91).

**Named when pronounced, true of the half** (the vagueness of real captions). A caption names an
attribute only where its image is pronounced on it, in the lowest or the top third of its class
(:data:`PRONOUNCED`), and it names at most ``n_style`` of them (picked at random, written in the order of
:data:`STYLES`). A word is *true* of every image on its side of the class median. So "a bold seven" is
written for sevens in the top third of ink but is relevant to every seven above the median (false
negatives), while the nearest true negatives lie below the median, a sixth of the class away from any
image the caption was written for: they can be told apart, as the discrete attributes of ``shapes`` can.
(Splitting at the median for both leaves the hardest true negatives indistinguishable from the
positives, and then even the oracle sampler learns nothing from them.)

**Captions**: an article, the style words, then a class phrase: with probability ``1 - genericness`` one
naming the class ("seven", "handwritten 7", "digit seven"), otherwise a generic template true of the
class, as in :mod:`fnlab.data.digits` ("odd digit", "prime number"...). A caption is relevant to an image
iff the image's class is one the class phrase describes and the image lies on the named side of its class
median for every attribute the caption names.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fnlab.data.digits import GENERIC, NUMBER_WORDS

#: ``(attribute, (word of the low half, word of the high half))``, in caption word order (measures in
#: :func:`style_measures`' column order)
STYLES = (("ink", ("faint", "bold")), ("slant", ("upright", "italic")), ("width", ("slender", "squat")),
          ("height", ("short", "tall")), ("balance", ("top-heavy", "bottom-heavy")))
#: class phrases naming one class (``{w}`` number word, ``{d}`` numeral)
SPECIFIC_NOUNS = ("{w}", "handwritten {d}", "digit {w}")
NOT_NAMED = -1  #: entry of a caption's named levels for an attribute it does not mention
#: an attribute is named only when pronounced: in the lowest or the top third of the image's class
PRONOUNCED = 1.0 / 3.0


def style_measures(raw: np.ndarray) -> np.ndarray:
    """``[N, 5]`` float64: ink, slant, width, height and balance (the :data:`STYLES` order) of scans
    ``raw [N, 8, 8]``."""
    x = np.asarray(raw, dtype=np.float64)
    n = len(x)
    ys, xs = np.mgrid[0 : x.shape[1], 0 : x.shape[2]].astype(np.float64)
    mass = x.reshape(n, -1).sum(1)
    safe = np.maximum(mass, 1e-9)
    cx = (x * xs).reshape(n, -1).sum(1) / safe
    cy = (x * ys).reshape(n, -1).sum(1) / safe
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    mu20 = (x * dx * dx).reshape(n, -1).sum(1) / safe
    mu02 = np.maximum((x * dy * dy).reshape(n, -1).sum(1) / safe, 1e-9)
    mu11 = (x * dx * dy).reshape(n, -1).sum(1) / safe
    width = np.sqrt(np.maximum(mu20 - mu11**2 / mu02, 0.0))
    return np.stack([mass, -mu11 / mu02, width, np.sqrt(mu02), cy], axis=1)


def style_percentiles(raw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[N, A]`` float64 in (0, 1) (``A = len(STYLES)``): each measure's percentile within the image's class
    over ``raw``.

    The percentile of the image of rank ``r`` (0-based, ties broken by image order) among the ``n`` images of
    its class is ``(r + 0.5) / n``.
    """
    measures = style_measures(raw)
    labels = np.asarray(labels)
    pct = np.zeros(measures.shape, dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for a in range(measures.shape[1]):
            rank = np.empty(len(members), dtype=np.float64)
            rank[np.argsort(measures[members, a], kind="stable")] = np.arange(len(members))
            pct[members, a] = (rank + 0.5) / len(members)
    return pct


def style_sides(pct: np.ndarray) -> np.ndarray:
    """``[N, A]`` int64: 1 where the image is above its class median on the attribute, else 0 (the index of the
    word in :data:`STYLES` that is *true* of it)."""
    return (np.asarray(pct) >= 0.5).astype(np.int64)


def style_tertiles(pct: np.ndarray) -> np.ndarray:
    """``[N, A]`` int64: 0 lowest third of the class, 1 middle third, 2 top third (the pretraining targets)."""
    return np.minimum((np.asarray(pct) * 3).astype(np.int64), 2)


def pronounced(pct: np.ndarray) -> np.ndarray:
    """``[N, A]`` bool: the attribute is pronounced (in the lowest or the top :data:`PRONOUNCED` share of the
    class), so a caption may name it."""
    pct = np.asarray(pct)
    return (pct < PRONOUNCED) | (pct >= 1.0 - PRONOUNCED)


def style_words(pct: np.ndarray) -> list[str]:
    """The words a caption may use for each image, ``"bold italic"`` (pronounced attributes only)."""
    sides, shown = style_sides(pct), pronounced(pct)
    return [" ".join(STYLES[a][1][int(v)] for a, v in enumerate(row) if shown[i, a]) for i, row in enumerate(sides)]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def class_phrases() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every class phrase, ``[n_phrases, 10]`` bool (which classes it describes) and ``[n_phrases]`` bool
    (generic). Specific phrases come first, class by class; generic ones are :data:`digits.GENERIC` without
    their article."""
    texts, rows = [], []
    for c in range(10):
        for t in SPECIFIC_NOUNS:
            texts.append(t.format(w=NUMBER_WORDS[c], d=c))
            rows.append(np.arange(10) == c)
    for t, classes in GENERIC:
        texts.append(t.split(" ", 1)[1])
        rows.append(np.isin(np.arange(10), classes))
    generic = np.arange(len(texts)) >= 10 * len(SPECIFIC_NOUNS)
    return texts, np.array(rows), generic


def make_captions(labels: np.ndarray, pct: np.ndarray, captions_per_image: int, *, genericness: float,
                  n_style: int, rng: np.random.Generator) -> dict:
    """Captions of every image: ``captions_per_image`` per image, image by image.

    Args:
        labels: ``[N]`` classes; pct: ``[N, A]`` style percentiles within the class (:func:`style_percentiles`).
        genericness: probability that a caption names a generic class group instead of the class.
        n_style: how many style attributes a caption names at most (0..A, ``A = len(STYLES)``): that many of the image's
            pronounced attributes, picked at random, or all of them where it has fewer.
        rng: seeded generator (the only randomness).

    Returns:
        ``{"text": [m] str, "b_to_a": [m], "phrase": [m] class-phrase index, "named": [m, A] named side or
        NOT_NAMED, "generic": [m] bool, "classes": [m, 10] bool}`` with ``m = N * captions_per_image``.

    Raises:
        ValueError: ``n_style`` outside 0..A or ``genericness`` outside [0, 1].
    """
    if isinstance(n_style, bool) or int(n_style) != n_style or not 0 <= int(n_style) <= len(STYLES):
        raise ValueError(f"digits-precomp: option 'n_style' must be an integer in [0, {len(STYLES)}], got {n_style!r}")
    if not 0.0 <= float(genericness) <= 1.0:
        raise ValueError(f"digits-precomp: option 'genericness' must be in [0, 1], got {genericness!r}")
    n_style = int(n_style)
    labels = np.asarray(labels, dtype=np.int64)
    sides, shown = style_sides(pct), pronounced(pct)
    phrases, phrase_classes, phrase_generic = class_phrases()
    n_specific = 10 * len(SPECIFIC_NOUNS)
    m = len(labels) * captions_per_image
    img = np.repeat(np.arange(len(labels)), captions_per_image)
    cls = labels[img]
    generic = rng.random(m) < genericness
    spec_choice = cls * len(SPECIFIC_NOUNS) + rng.integers(0, len(SPECIFIC_NOUNS), m)
    applies = phrase_classes[n_specific:, :].T[cls]  # [m, n_generic]: generic phrases true of the class
    scores = np.where(applies, rng.random(applies.shape), -1.0)
    phrase = np.where(generic, n_specific + scores.argmax(axis=1), spec_choice)
    # up to n_style pronounced attributes per caption: the n_style best of a random score, pronounced first
    score = rng.random((m, len(STYLES))) + np.where(shown[img], 0.0, 2.0)
    rank = np.argsort(np.argsort(score, axis=1), axis=1)
    take = (rank < n_style) & shown[img]
    named = np.where(take, sides[img], NOT_NAMED).astype(np.int64)
    texts = []
    for j in range(m):
        words = [STYLES[a][1][v] for a, v in enumerate(named[j]) if v != NOT_NAMED]
        texts.append(_article(" ".join([*words, phrases[phrase[j]]])))
    return {"text": texts, "b_to_a": img, "phrase": phrase, "named": named, "generic": phrase_generic[phrase],
            "classes": phrase_classes[phrase]}


def caption_relevance(captions: dict, labels: np.ndarray, sides: np.ndarray) -> sp.csr_matrix:
    """``[m, N]`` CSR bool: caption j is relevant to image i iff ``labels[i]`` is among the caption's classes
    and ``sides[i]`` (:func:`style_sides`) equals every side the caption names.

    Captions with the same meaning (class phrase's classes and named levels) share one image mask, so the
    cost is one ``[N]`` comparison per distinct meaning (a few hundred), not per caption.
    """
    labels, sides = np.asarray(labels), np.asarray(sides)
    key = np.concatenate([captions["classes"].astype(np.int64), captions["named"]], axis=1)
    meanings, which = np.unique(key, axis=0, return_inverse=True)
    which = np.asarray(which).ravel()
    masks = []
    for row in meanings:
        ok = row[:10].astype(bool)[labels]
        for a, v in enumerate(row[10:]):
            if v != NOT_NAMED:
                ok &= sides[:, a] == v
        masks.append(ok)
    return sp.csr_matrix(sp.csr_matrix(np.array(masks))[which], dtype=bool)
