"""``shapes``: a generated image-caption set with exact ground-truth false negatives.

Each image (``[3, S, S]`` uint8, S = 32 by default) shows one or two objects on a noisy
dark background. An object has four attributes:

============  =========================================================
shape         circle, square, triangle, cross
colour        red, green, blue, yellow, purple, orange (jittered)
size          small, large (radius jittered)
position      left, centre, right (two-object images: one left, one right)
============  =========================================================

Every image gets 5 captions of varying specificity. An *object caption* names ``k`` of the
four attributes of one of its objects ("a shape", "a red shape", "a red circle",
"a small red circle on the left"); a *scene caption* (two-object images only) describes
both objects ("a red circle on the left and a blue shape on the right").
``k ~ Binomial(4, 1 - genericness)`` for object captions and ``Binomial(3, 1 - genericness)``
per object for scene captions (position always named there), so ``genericness`` is the
knob for the false-negative rate: 0 gives only fully specific captions, 1 only "a shape"
(and "a shape on the left and a shape on the right" for scene captions).

A caption is **relevant** to every image that satisfies it (some object matches every named
attribute; for a scene caption, the two objects match the two descriptions). Generic captions
are relevant to many images that are not their labelled one: the false negatives that FNE
(Li et al., ACM MM 2023, Sec. 1, Fig. 1) describes. Relevance is computed by checking
attributes, vectorised over the distinct caption meanings, and stored as a sparse CSR matrix.

Splits: the first ``n_train`` images are ``train``, then ``n_val`` ``val``, then ``n_test``
``test``; everything is a deterministic function of the options and ``seed``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fnlab.data.base import MatchingDataset
from fnlab.data.text import build_vocab, encode

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
POSITIONS = ("left", "centre", "right")
_POS_PHRASE = ("on the left", "in the centre", "on the right")
_PALETTE = np.array(
    [[220, 40, 40], [40, 180, 60], [50, 100, 235], [230, 215, 40], [165, 60, 210], [245, 140, 20]],
    dtype=np.float32,
)
ATTRS = ("shape", "colour", "size", "position")
CAPTIONS_PER_IMAGE = 5

DEFAULTS = dict(
    n_train=2000, n_val=200, n_test=200, seed=0, genericness=0.3, p_two=0.5, p_scene=0.3,
    image_size=32, noise=12.0,
)


def _check_options(opts: dict) -> dict:
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"shapes: unknown option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **opts}
    for k in ("n_train", "n_val", "n_test", "seed", "image_size"):
        if int(o[k]) != o[k] or int(o[k]) < 0:
            raise ValueError(f"shapes: option {k!r} must be a non-negative integer, got {o[k]!r}")
        o[k] = int(o[k])
    for k in ("genericness", "p_two", "p_scene"):
        o[k] = float(o[k])
        if not 0.0 <= o[k] <= 1.0:
            raise ValueError(f"shapes: option {k!r} must be in [0, 1], got {o[k]!r}")
    if o["image_size"] < 16:
        raise ValueError(f"shapes: option 'image_size' must be at least 16, got {o['image_size']}")
    if o["n_train"] + o["n_val"] + o["n_test"] == 0:
        raise ValueError("shapes: n_train + n_val + n_test must be positive")
    o["noise"] = float(o["noise"])
    return o


# ----------------------------------------------------------------------------- images
def _render(objs: np.ndarray, rng: np.random.Generator, size: int, noise: float) -> np.ndarray:
    """Pixels ``[n, 3, size, size]`` uint8 for objects ``objs [n, 2, 4]`` (-1 = no object)."""
    n = objs.shape[0]
    scale = size / 32.0
    img = rng.uniform(15, 45, size=(n, 1, 1, 1)).astype(np.float32) * np.ones((1, 3, size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for slot in range(2):
        present = objs[:, slot, 0] >= 0
        shape, colour, sz, pos = (objs[:, slot, a] for a in range(4))
        cx = (np.array([8.0, 16.0, 24.0])[np.clip(pos, 0, 2)] + rng.uniform(-2, 2, n)) * scale
        cy = (16.0 + rng.uniform(-5, 5, n)) * scale
        r = (np.where(sz == 1, 7.0, 4.0) + rng.uniform(-0.6, 0.6, n)) * scale
        dx = xx[None] - cx[:, None, None]
        dy = yy[None] - cy[:, None, None]
        rr = r[:, None, None]
        circle = dx**2 + dy**2 <= rr**2
        square = (np.abs(dx) <= 0.85 * rr) & (np.abs(dy) <= 0.85 * rr)
        t = (dy + rr) / (1.8 * rr)  # 0 at the apex, 1 at the base
        triangle = (t >= 0) & (t <= 1) & (np.abs(dx) <= t * rr)
        arm = 0.35 * rr
        cross = ((np.abs(dx) <= arm) & (np.abs(dy) <= rr)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= rr))
        masks = np.stack([circle, square, triangle, cross])  # [4, n, S, S]
        mask = masks[np.clip(shape, 0, 3), np.arange(n)] & present[:, None, None]
        col = _PALETTE[np.clip(colour, 0, 5)] + rng.uniform(-25, 25, size=(n, 3)).astype(np.float32)
        img = np.where(mask[:, None], col[:, :, None, None], img)
    img = img + rng.normal(0, noise, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- captions
def _describe(desc: np.ndarray, scene_pos: bool = False) -> str:
    """Text of one object description ``[4]`` (-1 = attribute not named)."""
    shape, colour, size, pos = (int(v) for v in desc)
    words = ["a"]
    if size >= 0:
        words.append(SIZES[size])
    if colour >= 0:
        words.append(COLOURS[colour])
    words.append(SHAPES[shape] if shape >= 0 else "shape")
    if pos >= 0:
        words.append(_POS_PHRASE[pos])
    return " ".join(words)


def _caption_text(sig: np.ndarray) -> str:
    """Text of a caption signature ``[2, 4]`` (row 1 all -2 for an object caption)."""
    if sig[1, 0] == -2:
        return _describe(sig[0])
    return f"{_describe(sig[0])} and {_describe(sig[1])}"


def _draw_captions(objs: np.ndarray, rng: np.random.Generator, g: float, p_scene: float) -> tuple:
    """Caption signatures ``[m, 2, 4]`` for ``CAPTIONS_PER_IMAGE`` captions per image."""
    n = objs.shape[0]
    m = n * CAPTIONS_PER_IMAGE
    img = np.repeat(np.arange(n), CAPTIONS_PER_IMAGE)
    two = objs[img, 1, 0] >= 0
    scene = two & (rng.random(m) < p_scene)
    slot = np.where(two, rng.integers(0, 2, m), 0)
    sig = np.full((m, 2, 4), -2, dtype=np.int64)
    # object captions: k of the 4 attributes of one object, chosen at random
    k = rng.binomial(4, 1.0 - g, size=m)
    ranks = rng.random((m, 4)).argsort(axis=1).argsort(axis=1)
    named = ranks < k[:, None]
    obj = objs[img, slot]
    sig[:, 0] = np.where(named, obj, -1)
    # scene captions: both objects, position always named, k2 of the other three each
    for s in range(2):
        k2 = rng.binomial(3, 1.0 - g, size=m)
        r2 = rng.random((m, 3)).argsort(axis=1).argsort(axis=1)
        named2 = np.concatenate([r2 < k2[:, None], np.ones((m, 1), bool)], axis=1)
        d = np.where(named2, objs[img, s], -1)
        sig[scene, s] = d[scene]
    specificity = np.where(scene, (sig[:, :, :3] >= 0).sum(axis=(1, 2)) + 2, k)
    return img, sig, scene, specificity


_CARD = (len(SHAPES), len(COLOURS), len(SIZES), len(POSITIONS))
#: every possible object, ``[n_codes, 4]``; an object's code is its row here
_ALL_OBJECTS = np.stack(np.meshgrid(*[np.arange(c) for c in _CARD], indexing="ij"), -1).reshape(-1, 4)


def _codes(objs: np.ndarray) -> np.ndarray:
    """``[n, 2]`` object codes (row of :data:`_ALL_OBJECTS`), -1 where no object."""
    code = np.ravel_multi_index(tuple(np.clip(objs[..., a], 0, None) for a in range(4)), _CARD)
    return np.where(objs[..., 0] >= 0, code, -1)


def _desc_table(descs: np.ndarray) -> np.ndarray:
    """``[u, n_codes + 1]`` bool: description ``u`` (``[u, 4]``, -1 = any) fits object code ``c``;
    the last column (code -1, no object) is always False."""
    ok = (descs[:, None, :] == -1) | (descs[:, None, :] == _ALL_OBJECTS[None])
    return np.concatenate([ok.all(-1), np.zeros((len(descs), 1), bool)], axis=1)


def relevance_matrix(sig: np.ndarray, objs: np.ndarray, *, chunk: int = 512) -> sp.csr_matrix:
    """``[m, n]`` sparse bool: caption ``j`` (signature ``sig[j]``) is true of image ``i`` (``objs[i]``).

    A caption is checked once per distinct signature, against every possible object (a small table),
    then gathered over images' object codes: vectorised, no loop over pairs.
    """
    flat = sig.reshape(len(sig), -1)
    uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
    uniq = uniq.reshape(-1, 2, 4)
    codes = _codes(objs)  # [n, 2], -1 indexes the always-False column
    blocks = []
    for start in range(0, len(uniq), chunk):
        u = uniq[start : start + chunk]
        t0 = _desc_table(u[:, 0])
        t1 = _desc_table(np.where(u[:, 1] == -2, -1, u[:, 1]))
        m00, m01 = t0[:, codes[:, 0]], t0[:, codes[:, 1]]  # [c, n]
        single = m00 | m01
        pair = (m00 & t1[:, codes[:, 1]]) | (m01 & t1[:, codes[:, 0]])
        is_scene = u[:, 1, 0] != -2
        blocks.append(sp.csr_matrix(np.where(is_scene[:, None], pair, single)))
    uniq_rel = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, len(objs)), dtype=bool)
    return sp.csr_matrix(uniq_rel[np.asarray(inverse).ravel()], dtype=bool)


def _meta(objs: np.ndarray) -> pd.DataFrame:
    cols: dict[str, object] = {"n_objects": (objs[:, :, 0] >= 0).sum(axis=1)}
    names = (SHAPES, COLOURS, SIZES, POSITIONS)
    for s in range(2):
        for a, attr in enumerate(ATTRS):
            v = objs[:, s, a]
            cols[f"{attr}_{s}"] = np.where(v >= 0, np.array(names[a], dtype=object)[np.clip(v, 0, None)], "")
    labels = []
    for o in objs:
        parts = [_describe(o[s]) for s in range(2) if o[s, 0] >= 0]
        labels.append(" and ".join(parts))
    cols["label"] = labels
    return pd.DataFrame(cols)


@lru_cache(maxsize=8)
def _generate(items: tuple) -> MatchingDataset:
    o = dict(items)
    n = o["n_train"] + o["n_val"] + o["n_test"]
    rng = np.random.default_rng(o["seed"])
    objs = np.stack(
        [rng.integers(0, len(SHAPES), (n, 2)), rng.integers(0, len(COLOURS), (n, 2)),
         rng.integers(0, len(SIZES), (n, 2)), np.zeros((n, 2), np.int64)],
        axis=-1,
    ).astype(np.int64)
    two = rng.random(n) < o["p_two"]
    objs[:, 0, 3] = np.where(two, 0, rng.integers(0, 3, n))
    objs[:, 1, 3] = 2
    objs[~two, 1] = -1
    pixels = _render(objs, rng, o["image_size"], o["noise"])
    img, sig, scene, specificity = _draw_captions(objs, rng, o["genericness"], o["p_scene"])
    texts = [_caption_text(s) for s in sig]
    vocab = build_vocab(
        [" ".join(SHAPES + COLOURS + SIZES + ("a", "shape", "and", "on", "in", "the", "left", "centre", "right"))]
    )
    rel = relevance_matrix(sig, objs)
    split = np.array(["train"] * o["n_train"] + ["val"] * o["n_val"] + ["test"] * o["n_test"])
    a_meta = _meta(objs)
    a_meta.insert(0, "split", split)
    b_meta = pd.DataFrame({"text": texts, "specificity": specificity, "scene": scene})
    return MatchingDataset(
        name="shapes", split="all", b_to_a=img, a_inputs=pixels, b_inputs=encode(texts, vocab),
        a_kind="pixels", b_kind="tokens", relevance=rel, a_meta=a_meta, b_meta=b_meta, vocab=vocab,
    )


def load_shapes(split: str = "train", **options) -> MatchingDataset:
    """The ``shapes`` dataset, one split (``train``, ``val``, ``test`` or ``all``).

    Options (defaults in :data:`DEFAULTS`): ``n_train``, ``n_val``, ``n_test`` (images per split),
    ``seed``, ``genericness`` in [0, 1] (how generic captions are: the false-negative rate knob),
    ``p_two`` (share of two-object images), ``p_scene`` (share of two-object images' captions that
    describe both objects), ``image_size`` (pixels, >= 16), ``noise`` (pixel noise std).

    Returns:
        a :class:`MatchingDataset` with ``a_inputs [n_a, 3, S, S]`` uint8, ``b_inputs [n_b, L]`` int64
        token ids, ``relevance [n_b, n_a]`` CSR bool, 5 captions per image.

    Raises:
        ValueError: an unknown option or a value out of range.
    """
    o = _check_options(options)
    full = _generate(tuple(sorted(o.items())))
    from fnlab.data import split_indices

    return full.subset(split_indices(full.a_meta["split"].to_numpy(), split, "shapes"), split)
