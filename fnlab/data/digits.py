"""``digits``: scikit-learn's handwritten digits (real 8x8 scans, 1797 images) with template captions.

Each image is upsampled (bilinear) to ``[3, 32, 32]`` uint8 (grey repeated over RGB) and gets
5 captions. With probability ``1 - genericness`` a caption names the class ("the digit seven",
"a handwritten 7", "the number seven"); otherwise it is a generic template true of the class,
chosen at random among those that apply:

=========================  ===================
"an odd digit"             1 3 5 7 9
"an even digit"            0 2 4 6 8
"a digit above five"       6 7 8 9
"a digit below five"       0 1 2 3 4
"a small number"           0 1 2 3
"a large number"           7 8 9
"a prime number"           2 3 5 7
"a multiple of three"      3 6 9
"a digit"                  all
=========================  ===================

A caption is relevant to every image whose class it describes, so generic captions have many
false negatives (FNE, Li et al., ACM MM 2023, Sec. 1). Relevance is computed per caption
template against the class of every image, stored as CSR.

Splits: a seeded permutation of the 1797 images, ``n_val`` and ``n_test`` images (300 each by
default, 1500 captions) and the rest for training.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fnlab.data.base import MatchingDataset
from fnlab.data.text import build_vocab, encode

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPECIFIC = ("the digit {w}", "a handwritten {d}", "the number {w}")
GENERIC = (
    ("an odd digit", (1, 3, 5, 7, 9)),
    ("an even digit", (0, 2, 4, 6, 8)),
    ("a digit above five", (6, 7, 8, 9)),
    ("a digit below five", (0, 1, 2, 3, 4)),
    ("a small number", (0, 1, 2, 3)),
    ("a large number", (7, 8, 9)),
    ("a prime number", (2, 3, 5, 7)),
    ("a multiple of three", (3, 6, 9)),
    ("a digit", tuple(range(10))),
)
CAPTIONS_PER_IMAGE = 5
DEFAULTS = dict(n_val=300, n_test=300, seed=0, genericness=0.4, image_size=32)


def _check_options(opts: dict) -> dict:
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"digits: unknown option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **opts}
    for k in ("n_val", "n_test", "seed", "image_size"):
        if int(o[k]) != o[k] or int(o[k]) < 0:
            raise ValueError(f"digits: option {k!r} must be a non-negative integer, got {o[k]!r}")
        o[k] = int(o[k])
    if o["n_val"] + o["n_test"] >= 1797:
        raise ValueError("digits: n_val + n_test must leave training images (there are 1797)")
    if not 8 <= o["image_size"] <= 128:
        raise ValueError(f"digits: option 'image_size' must be in [8, 128], got {o['image_size']}")
    o["genericness"] = float(o["genericness"])
    if not 0.0 <= o["genericness"] <= 1.0:
        raise ValueError(f"digits: option 'genericness' must be in [0, 1], got {o['genericness']}")
    return o


def caption_classes() -> tuple[list[str], np.ndarray]:
    """Every caption text and ``[n_texts, 10]`` bool: which classes it describes."""
    texts, rows = [], []
    for c in range(10):
        for t in SPECIFIC:
            texts.append(t.format(w=NUMBER_WORDS[c], d=c))
            rows.append(np.arange(10) == c)
    for t, classes in GENERIC:
        texts.append(t)
        rows.append(np.isin(np.arange(10), classes))
    return texts, np.array(rows)


def digits_csv_path() -> Path:
    """The ``digits.csv.gz`` that scikit-learn ships (found without importing scikit-learn, which is slow)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the digits dataset needs scikit-learn installed (pip install scikit-learn)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-learn's digits file is missing at {path}")
    return path


def read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 scans ``[1797, 8, 8]`` float32 in [0, 16] and labels ``[1797]`` int64, in scikit-learn's order."""
    raw = np.loadtxt(digits_csv_path(), delimiter=",", dtype=np.float32)
    return raw[:, :64].reshape(-1, 8, 8), raw[:, 64].astype(np.int64)


@lru_cache(maxsize=4)
def _generate(items: tuple) -> MatchingDataset:
    from scipy.ndimage import zoom

    o = dict(items)
    raw, labels = read_sklearn_digits()
    images = raw / 16.0
    n = len(labels)
    rng = np.random.default_rng(o["seed"])
    order = rng.permutation(n)
    images, labels, orig = images[order], labels[order], order
    s = o["image_size"]
    big = zoom(images, (1, s / 8, s / 8), order=1, grid_mode=True, mode="nearest")
    pixels = np.repeat(np.clip(np.rint(big * 255), 0, 255).astype(np.uint8)[:, None], 3, axis=1)

    texts_all, classes = caption_classes()
    n_specific = 10 * len(SPECIFIC)
    m = n * CAPTIONS_PER_IMAGE
    img = np.repeat(np.arange(n), CAPTIONS_PER_IMAGE)
    cls = labels[img]
    generic = rng.random(m) < o["genericness"]
    spec_choice = cls * len(SPECIFIC) + rng.integers(0, len(SPECIFIC), m)
    # generic templates true of the class, one picked uniformly: random scores masked by applicability
    applies = classes[n_specific:, :].T[cls]  # [m, n_generic]
    scores = np.where(applies, rng.random(applies.shape), -1.0)
    gen_choice = n_specific + scores.argmax(axis=1)
    text_id = np.where(generic, gen_choice, spec_choice)
    texts = [texts_all[t] for t in text_id]
    # [m, n]: the caption's classes contain the image's class = [m, 10] @ [10, n] (sparse product)
    cap_cls = sp.csr_matrix(classes[text_id].astype(np.int32))
    cls_img = sp.csr_matrix((np.ones(n, np.int32), (labels, np.arange(n))), shape=(10, n))
    rel = sp.csr_matrix(cap_cls @ cls_img, dtype=bool)
    vocab = build_vocab(texts_all)
    split = np.array(["test"] * o["n_test"] + ["val"] * o["n_val"] + ["train"] * (n - o["n_val"] - o["n_test"]))
    a_meta = pd.DataFrame({"split": split, "label": [NUMBER_WORDS[c] for c in labels], "digit": labels,
                           "sklearn_index": orig})
    b_meta = pd.DataFrame({"text": texts, "generic": generic, "n_classes": classes[text_id].sum(axis=1)})
    return MatchingDataset(
        name="digits", split="all", b_to_a=img, a_inputs=pixels, b_inputs=encode(texts, vocab),
        a_kind="pixels", b_kind="tokens", relevance=rel, a_meta=a_meta, b_meta=b_meta, vocab=vocab,
    )


def load_digits(split: str = "train", **options) -> MatchingDataset:
    """The ``digits`` dataset, one split (``train``, ``val``, ``test`` or ``all``).

    Options (defaults in :data:`DEFAULTS`): ``n_val``, ``n_test``, ``seed``, ``genericness`` in [0, 1]
    (share of generic captions: the false-negative knob), ``image_size`` (pixels).

    Returns:
        a :class:`MatchingDataset`: ``a_inputs [n_a, 3, S, S]`` uint8, ``b_inputs [n_b, L]`` token ids,
        ``relevance [n_b, n_a]`` CSR bool, 5 captions per image.
    """
    o = _check_options(options)
    full = _generate(tuple(sorted(o.items())))
    from fnlab.data import split_indices

    return full.subset(split_indices(full.a_meta["split"].to_numpy(), split, "digits"), split)
