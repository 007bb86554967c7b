"""shapes and digits: determinism, splits, and relevance against slow references written here."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fnlab.data as data
from fnlab.data import display
from fnlab.data.digits import NUMBER_WORDS

SMALL = dict(n_train=60, n_val=20, n_test=20)


# ------------------------------------------------------------------ references (slow, obvious)
def _parse_shapes_caption(text: str) -> list[dict]:
    """Caption text -> list of object descriptions {attr: value} (an independent parser)."""
    descs = []
    for part in text.split(" and "):
        d = {}
        for attr, words in (("size", ("small", "large")),
                            ("colour", ("red", "green", "blue", "yellow", "purple", "orange")),
                            ("shape", ("circle", "square", "triangle", "cross"))):
            for w in words:
                if re.search(rf"\b{w}\b", part):
                    d[attr] = w
        for pos, phrase in (("left", "on the left"), ("centre", "in the centre"), ("right", "on the right")):
            if phrase in part:
                d["position"] = pos
        descs.append(d)
    return descs


def _objects(row) -> list[dict]:
    return [{a: row[f"{a}_{s}"] for a in ("shape", "colour", "size", "position")} for s in range(int(row["n_objects"]))]


def _fits(desc: dict, obj: dict) -> bool:
    return all(obj[k] == v for k, v in desc.items())


def shapes_reference(ds) -> np.ndarray:
    """Dense [n_b, n_a] relevance by looping over captions and images."""
    objs = [_objects(r) for _, r in ds.a_meta.iterrows()]
    out = np.zeros((ds.n_b, ds.n_a), bool)
    done: dict[str, int] = {}  # identical caption text -> row already computed
    for j, text in enumerate(ds.b_meta["text"]):
        if text in done:
            out[j] = out[done[text]]
            continue
        done[text] = j
        descs = _parse_shapes_caption(text)
        for i, ob in enumerate(objs):
            if len(descs) == 1:
                out[j, i] = any(_fits(descs[0], o) for o in ob)
            else:
                out[j, i] = any(
                    _fits(descs[0], ob[x]) and _fits(descs[1], ob[y])
                    for x in range(len(ob)) for y in range(len(ob)) if x != y
                )
    return out


DIGIT_SETS = {
    "an odd digit": {1, 3, 5, 7, 9}, "an even digit": {0, 2, 4, 6, 8}, "a digit above five": {6, 7, 8, 9},
    "a digit below five": {0, 1, 2, 3, 4}, "a small number": {0, 1, 2, 3}, "a large number": {7, 8, 9},
    "a prime number": {2, 3, 5, 7}, "a multiple of three": {3, 6, 9}, "a digit": set(range(10)),
}


def digits_classes(text: str) -> set[int]:
    if text in DIGIT_SETS:
        return DIGIT_SETS[text]
    last = text.split()[-1]
    return {int(last)} if last.isdigit() else {NUMBER_WORDS.index(last)}


def digits_reference(ds) -> np.ndarray:
    labels = ds.a_meta["digit"].tolist()
    out = np.zeros((ds.n_b, ds.n_a), bool)
    for j, text in enumerate(ds.b_meta["text"]):
        classes = digits_classes(text)
        for i, c in enumerate(labels):
            out[j, i] = c in classes
    return out


# ------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("genericness", [0.0, 0.3, 0.8])
def test_shapes_relevance_matches_reference(genericness):
    ds = data.load("shapes", split="all", genericness=genericness, seed=3, **SMALL)
    assert np.array_equal(ds.relevance.toarray(), shapes_reference(ds))
    assert ds.labelled_matrix().multiply(ds.relevance).nnz == ds.n_b  # own image is always relevant


def test_shapes_is_deterministic_and_splits_partition():
    a = data.load("shapes", split="all", seed=5, **SMALL)
    b = data.load("shapes", split="all", seed=5, **SMALL)
    c = data.load("shapes", split="all", seed=6, **SMALL)
    assert np.array_equal(a.a_inputs, b.a_inputs) and a.captions() == b.captions()
    assert not np.array_equal(a.a_inputs, c.a_inputs)
    parts = {s: data.load("shapes", split=s, seed=5, **SMALL) for s in ("train", "val", "test")}
    assert [parts[s].n_a for s in parts] == [60, 20, 20]
    assert all(parts[s].n_b == 5 * parts[s].n_a for s in parts)
    ids = np.concatenate([parts[s].a_ids for s in parts])
    assert sorted(ids.tolist()) == list(range(100))
    # a split's relevance is the full relevance restricted to the split
    v = parts["val"]
    assert (v.relevance != a.relevance[v.b_ids][:, v.a_ids]).nnz == 0


def test_shapes_inputs_and_vocab():
    ds = data.load("shapes", split="val", **SMALL)
    assert ds.a_inputs.shape == (20, 3, 32, 32) and ds.a_inputs.dtype == np.uint8
    assert ds.b_inputs.dtype == np.int64 and ds.vocab[:2] == ["<pad>", "<unk>"]
    assert (ds.b_inputs < len(ds.vocab)).all() and (ds.b_inputs != 1).all()  # closed vocabulary: no <unk>
    from fnlab.data.text import decode

    assert [decode(r, ds.vocab) for r in ds.b_inputs] == ds.captions()
    assert ds.a_inputs.std() > 10  # noise and objects, not a flat image


def test_genericness_raises_false_negatives():
    rates = [data.load("shapes", split="train", genericness=g, p_scene=0.0, **SMALL).stats().fn_per_query_mean
             for g in (0.0, 0.5, 1.0)]
    assert rates[0] < rates[1] < rates[2]
    assert rates[2] == 59  # "a shape" matches all 60 training images


def test_shapes_bad_options():
    with pytest.raises(ValueError, match="genericness"):
        data.load("shapes", genericness=2)
    with pytest.raises(ValueError, match="unknown option"):
        data.load("shapes", colours=3)
    with pytest.raises(ValueError, match="split"):
        data.load("shapes", split="dev")


def test_display_helpers():
    ds = data.load("shapes", split="val", **SMALL)
    arr = display.image_array(ds, 0)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr, ds.a_inputs[0].transpose(1, 2, 0))
    uri = display.image_data_uri(ds, 0, size=64)
    assert uri.startswith("data:image/png;base64,")
    import base64
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert im.size == (64, 64)
    assert display.caption(ds, 3) == ds.b_meta["text"][3]


def test_a_transparent_picture_is_shown_over_white(tmp_path):
    """A user's PNG with an alpha channel (an icon): transparent pixels white, opaque ones as drawn, half-covered
    ones blended (slow reference: the compositing formula per pixel)."""
    from dataclasses import replace

    import pandas as pd
    from PIL import Image

    rgba = np.zeros((4, 4, 4), np.uint8)  # black under full transparency, as icon files often store it
    rgba[0, 0] = (200, 10, 10, 255)
    rgba[1, 1] = (0, 0, 255, 128)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "icon.png")
    base = data.load("shapes", split="val", **SMALL)
    ds = replace(base, a_kind="features", a_meta=pd.DataFrame({"image_path": [str(tmp_path / "icon.png")] * base.n_a}))
    got = display.image_array(ds, 0).astype(int)
    alpha = rgba[..., 3:4] / 255.0
    want = np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(int)
    assert np.abs(got - want).max() <= 1
    assert (got[3, 3] == 255).all() and tuple(got[0, 0]) == (200, 10, 10)


# ------------------------------------------------------------------------------------ digits
def test_digits_relevance_matches_reference():
    ds = data.load("digits", split="val", n_val=60, n_test=60)
    assert ds.n_a == 60 and ds.n_b == 300
    assert np.array_equal(ds.relevance.toarray(), digits_reference(ds))
    # pixels are the sklearn scans: the brightest 8x8 block matches the original digit's ink
    from fnlab.data.digits import digits_csv_path

    raw = np.loadtxt(digits_csv_path(), delimiter=",")  # the file sklearn.datasets.load_digits reads
    idx = ds.a_meta["sklearn_index"].to_numpy()
    orig = raw[idx, :64].reshape(-1, 8, 8)
    assert (ds.a_meta["digit"].to_numpy() == raw[idx, 64]).all()
    small = ds.a_inputs[:, 0].reshape(60, 8, 4, 8, 4).mean(axis=(2, 4))
    corr = np.corrcoef(small.ravel(), orig.ravel())[0, 1]
    assert corr > 0.9


def test_digits_genericness_knob():
    specific = data.load("digits", split="test", genericness=0.0)
    assert specific.b_meta["generic"].sum() == 0
    # with only class captions, FN per query = images of the same class - 1
    labels = specific.a_meta["digit"].to_numpy()
    expect = np.bincount(labels, minlength=10)[labels[specific.b_to_a]] - 1
    assert np.array_equal(np.diff(specific.false_negative_matrix().indptr), expect)
    generic = data.load("digits", split="test", genericness=1.0)
    assert generic.stats().fn_per_query_mean > specific.stats().fn_per_query_mean
