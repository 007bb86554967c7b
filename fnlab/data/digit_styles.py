"""Handwriting style of scikit-learn digits, and instance-level captions that name it (``digits-precomp``).

Class-level captions ("the digit seven") are relevant to every image of the class, about a tenth of
any split, which is far more false negatives per query than real caption datasets have. Here a caption
names the class (or a generic class group, "an odd digit") *and* the style of the image it was written
for, "a bold italic seven", so it is relevant only to the images of that class group that share the
named style.

**Style attributes**, measured on the raw 8x8 scan ``x`` (ink in [0, 16]) with image moments
(``mu_pq`` = central moments of the ink, ``x`` to the right, ``y`` down):

=========  =================================================  =====================
attribute  measure                                            words (low / high)
=========  =================================================  =====================
ink        total ink, sum of ``x`` (stroke thickness)         "faint" / "bold"
slant      shear ``-mu11 / mu02`` (top leaning to the right)  "upright" / "italic"
width      horizontal spread with the shear removed,           "slender" / "squat"
           ``sqrt(mu20 - mu11^2 / mu02)``
=========  =================================================  =====================

Each measure is split at its median *within the image's class* over all 1797 scans (so "bold" means bold
for a seven, and each level holds half of every class); the words were picked for how far apart
all-MiniLM-L6-v2 puts them (cosine of "a bold seven" / "a faint seven" 0.68, "thick" / "thin" 0.91).

**Captions**: an article, the words of ``n_style`` attributes picked at random (in the order of
:data:`STYLES`), then a class phrase: with probability ``1 - genericness`` one naming the class
("seven", "handwritten 7", "digit seven"), otherwise a generic template true of the class, as in
:mod:`fnlab.data.digits` ("odd digit", "prime number"...). A caption is relevant to an image iff the
image's class is one the class phrase describes and the image's level of every named attribute is the
named one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fnlab.data.digits import GENERIC, NUMBER_WORDS

#: ``(attribute, (word of the low half, word of the high half))``, in caption word order
STYLES = (("ink", ("faint", "bold")), ("slant", ("upright", "italic")), ("width", ("slender", "squat")))
#: class phrases naming one class (``{w}`` number word, ``{d}`` numeral)
SPECIFIC_NOUNS = ("{w}", "handwritten {d}", "digit {w}")
NOT_NAMED = -1  #: entry of a caption's named levels for an attribute it does not mention


def style_measures(raw: np.ndarray) -> np.ndarray:
    """``[N, 3]`` float64: ink, slant and width (the :data:`STYLES` order) of scans ``raw [N, 8, 8]``."""
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
    return np.stack([mass, -mu11 / mu02, width], axis=1)


def style_levels(raw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[N, 3]`` int64 in {0, 1}: each measure's half within the image's class (1 = above the class median).

    Ranks break ties by image order, so every class splits into halves of equal size (the odd one out low).
    """
    measures = style_measures(raw)
    labels = np.asarray(labels)
    levels = np.zeros(measures.shape, dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for a in range(measures.shape[1]):
            rank = np.empty(len(members), dtype=np.int64)
            rank[np.argsort(measures[members, a], kind="stable")] = np.arange(len(members))
            levels[members, a] = (rank >= (len(members) + 1) // 2).astype(np.int64)
    return levels


def style_words(levels: np.ndarray) -> list[str]:
    """The words of every attribute of each image, ``"bold upright slender"``, from ``levels [N, 3]``."""
    return [" ".join(STYLES[a][1][int(v)] for a, v in enumerate(row)) for row in np.asarray(levels)]


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


def make_captions(labels: np.ndarray, levels: np.ndarray, captions_per_image: int, *, genericness: float,
                  n_style: int, rng: np.random.Generator) -> dict:
    """Captions of every image: ``captions_per_image`` per image, image by image.

    Args:
        labels: ``[N]`` classes; levels: ``[N, 3]`` style halves (:func:`style_levels`).
        genericness: probability that a caption names a generic class group instead of the class.
        n_style: how many style attributes each caption names (0..3).
        rng: seeded generator (the only randomness).

    Returns:
        ``{"text": [m] str, "b_to_a": [m], "phrase": [m] class-phrase index, "named": [m, 3] named level or
        NOT_NAMED, "generic": [m] bool, "classes": [m, 10] bool}`` with ``m = N * captions_per_image``.

    Raises:
        ValueError: ``n_style`` outside 0..3 or ``genericness`` outside [0, 1].
    """
    if isinstance(n_style, bool) or int(n_style) != n_style or not 0 <= int(n_style) <= len(STYLES):
        raise ValueError(f"digits-precomp: option 'n_style' must be an integer in [0, {len(STYLES)}], got {n_style!r}")
    if not 0.0 <= float(genericness) <= 1.0:
        raise ValueError(f"digits-precomp: option 'genericness' must be in [0, 1], got {genericness!r}")
    n_style = int(n_style)
    labels, levels = np.asarray(labels, dtype=np.int64), np.asarray(levels, dtype=np.int64)
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
    # n_style attributes per caption: the n_style smallest of a random score per attribute
    picked = np.argsort(rng.random((m, len(STYLES))), axis=1)[:, :n_style]
    named = np.full((m, len(STYLES)), NOT_NAMED, dtype=np.int64)
    rows = np.repeat(np.arange(m), n_style)
    named[rows, picked.ravel()] = levels[img[rows], picked.ravel()]
    texts = []
    for j in range(m):
        words = [STYLES[a][1][v] for a, v in enumerate(named[j]) if v != NOT_NAMED]
        texts.append(_article(" ".join([*words, phrases[phrase[j]]])))
    return {"text": texts, "b_to_a": img, "phrase": phrase, "named": named, "generic": phrase_generic[phrase],
            "classes": phrase_classes[phrase]}


def caption_relevance(captions: dict, labels: np.ndarray, levels: np.ndarray) -> sp.csr_matrix:
    """``[m, N]`` CSR bool: caption j is relevant to image i iff ``labels[i]`` is among the caption's classes
    and ``levels[i]`` equals every level the caption names.

    Captions with the same meaning (class phrase's classes and named levels) share one image mask, so the
    cost is one ``[N]`` comparison per distinct meaning (a few hundred), not per caption.
    """
    labels, levels = np.asarray(labels), np.asarray(levels)
    key = np.concatenate([captions["classes"].astype(np.int64), captions["named"]], axis=1)
    meanings, which = np.unique(key, axis=0, return_inverse=True)
    which = np.asarray(which).ravel()
    masks = []
    for row in meanings:
        ok = row[:10].astype(bool)[labels]
        for a, v in enumerate(row[10:]):
            if v != NOT_NAMED:
                ok &= levels[:, a] == v
        masks.append(ok)
    return sp.csr_matrix(sp.csr_matrix(np.array(masks))[which], dtype=bool)
