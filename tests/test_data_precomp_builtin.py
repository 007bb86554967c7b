"""shapes-precomp / digits-precomp (frozen pretrained features) and the precomp loader's caption features and
ground truth. One small real build per dataset is shared by the module (MiniLM is loaded once)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fnlab import data
from fnlab.cli import main
from fnlab.data import DatasetError
from fnlab.data.precomp import load_precomp

SMALL_SHAPES = dict(n_train=40, n_val=10, n_test=10, pretrain_images=120, pretrain_epochs=1, feature_dim=32)
SMALL_DIGITS = dict(n_val=30, n_test=30, n_pretrain=60, pretrain_epochs=1, feature_dim=24, write_images=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("fnlab_cache")
        mp.setenv("FNLAB_CACHE", str(root))
        yield root


# ------------------------------------------------------------------ the precomp loader's new files
def _folder(tmp_path, n_img=3, k=2, d=4, d_text=5, relevance=True, caps_npy=True):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "train_ims.npy", rng.normal(size=(n_img, d)).astype(np.float32))
    (tmp_path / "train_caps.txt").write_text("".join(f"caption {j}\n" for j in range(n_img * k)))
    if caps_npy:
        np.save(tmp_path / "train_caps.npy", rng.normal(size=(n_img * k, d_text)).astype(np.float32))
    if relevance:
        rel = sp.csr_matrix(([True], ([0], [2])), shape=(n_img * k, n_img))  # caption 0 also fits image 2
        sp.save_npz(tmp_path / "train_relevance.npz", rel)
    return tmp_path


def test_precomp_reads_caption_features_and_relevance(tmp_path):
    ds = load_precomp(_folder(tmp_path), "train", captions_per_image=2)
    assert ds.b_kind == "features" and ds.b_inputs.shape == (6, 5)
    np.testing.assert_array_equal(ds.b_inputs, np.load(tmp_path / "train_caps.npy"))
    # labelled pairs are added to the file's relevance: one false negative (caption 0 -> image 2)
    assert ds.relevance.nnz == 7 and ds.false_negative_matrix().nnz == 1
    assert ds.stats().fn_per_query_max == 1
    tokens = load_precomp(tmp_path, "train", captions_per_image=2, caption_features=False)
    assert tokens.b_kind == "tokens"


def test_precomp_without_new_files_is_unchanged(tmp_path):
    ds = load_precomp(_folder(tmp_path, relevance=False, caps_npy=False), "train", captions_per_image=2)
    assert ds.b_kind == "tokens" and ds.relevance is None


@pytest.mark.parametrize("breakage,error,match", [
    ("rel_shape", DatasetError, r"train_relevance.npz: field 'relevance': shape \(2, 2\), expected \(6, 3\)"),
    ("rel_garbage", DatasetError, r"train_relevance.npz: field 'relevance': not a scipy sparse"),
    ("caps_rows", DatasetError, r"train_caps.npy: field 'caption_features': has 4 rows, expected 6"),
    ("caps_missing", FileNotFoundError, r"caption_features=true needs \{split\}_caps.npy"),
])
def test_precomp_bad_files_name_file_and_field(tmp_path, breakage, error, match):
    _folder(tmp_path, caps_npy=breakage != "caps_missing")
    if breakage == "rel_shape":
        sp.save_npz(tmp_path / "train_relevance.npz", sp.csr_matrix(np.eye(2, dtype=bool)))
    elif breakage == "rel_garbage":
        (tmp_path / "train_relevance.npz").write_bytes(b"not an archive")
    elif breakage == "caps_rows":
        np.save(tmp_path / "train_caps.npy", np.zeros((4, 5), np.float32))
    opts = {"caption_features": True} if breakage == "caps_missing" else {}
    with pytest.raises(error, match=match):
        load_precomp(tmp_path, "train", captions_per_image=2, **opts)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_img=st.integers(1, 6), k=st.integers(1, 3), density=st.floats(0, 1), seed=st.integers(0, 1000))
def test_precomp_relevance_round_trips(tmp_path, n_img, k, density, seed):
    """Any relevance written with save_npz reads back as itself plus the labelled pairs."""
    rng = np.random.default_rng(seed)
    rel = rng.random((n_img * k, n_img)) < density
    np.save(tmp_path / "train_ims.npy", rng.normal(size=(n_img, 3)).astype(np.float32))
    (tmp_path / "train_caps.txt").write_text("".join(f"c{j}\n" for j in range(n_img * k)))
    sp.save_npz(tmp_path / "train_relevance.npz", sp.csr_matrix(rel))
    ds = load_precomp(tmp_path, "train", captions_per_image=k)
    want = rel.copy()
    want[np.arange(n_img * k), np.arange(n_img * k) // k] = True
    np.testing.assert_array_equal(ds.relevance.toarray(), want)
    assert ds.false_negative_matrix().nnz == int(want.sum()) - n_img * k


# ------------------------------------------------------------------ shapes-precomp
@pytest.fixture(scope="module")
def shapes_small(cache):
    return {s: data.load("shapes-precomp", split=s, **SMALL_SHAPES) for s in ("train", "test", "all")}


def test_shapes_precomp_is_shapes_as_features(shapes_small):
    train, test = shapes_small["train"], shapes_small["test"]
    assert (train.a_kind, train.b_kind) == ("features", "features")
    assert train.a_inputs.shape == (40, 32) and train.b_inputs.shape == (200, 384)
    assert test.a_inputs.shape == (10, 32) and test.n_b == 50
    np.testing.assert_allclose(np.linalg.norm(train.b_inputs, axis=1), 1.0, atol=1e-5)  # MiniLM is normalised
    src_opts = {k: v for k, v in SMALL_SHAPES.items() if k in ("n_train", "n_val", "n_test")}
    for split, ds in shapes_small.items():
        src = data.load("shapes", split=split, **src_opts)
        # same captions in the same order, same ground truth, same statistics as the source dataset
        assert ds.b_meta["text"].tolist() == src.b_meta["text"].tolist()
        assert (ds.relevance != src.relevance).nnz == 0
        assert ds.stats() == src.stats()
        assert ds.a_meta["label"].tolist() == src.a_meta["label"].tolist()
    # identical texts get identical embeddings, different texts different ones
    texts = train.b_meta["text"].to_numpy()
    same = np.flatnonzero(texts == texts[0])
    other = np.flatnonzero(texts != texts[0])[0]
    assert np.array_equal(train.b_inputs[same], np.repeat(train.b_inputs[:1], len(same), axis=0))
    assert not np.allclose(train.b_inputs[0], train.b_inputs[other])


def test_shapes_precomp_folder_is_the_precomp_layout(shapes_small, cache):
    folders = [f for f in cache.glob("precomp/shapes-precomp-*") if "features" not in f.name]
    assert len(folders) == 1
    folder = folders[0]
    for split in ("train", "val", "test"):
        for suffix in ("_ims.npy", "_caps.txt", "_caps.npy", "_relevance.npz"):
            assert (folder / f"{split}{suffix}").is_file()
    plain = data.load("precomp", root=str(folder), split="test")  # the user-facing loader reads it too
    np.testing.assert_array_equal(plain.a_inputs, shapes_small["test"].a_inputs)
    np.testing.assert_array_equal(plain.b_inputs, shapes_small["test"].b_inputs)
    assert (plain.relevance != shapes_small["test"].relevance).nnz == 0
    info = json.loads((folder / "build.json").read_text())
    assert info["pretrain_seed"] != info["options"]["seed"]  # pretraining images are a different draw
    assert set(info["pretrain"]["heads"]) == {f"{a}_{s}" for a in ("shape", "colour", "size", "position")
                                              for s in (0, 1)}
    # display: every image has a PNG
    assert all(Path(p).is_file() for p in shapes_small["test"].a_meta["image_path"])


def test_shapes_precomp_is_cached_and_deterministic(shapes_small, cache, tmp_path, monkeypatch):
    import fnlab.data.pretrained as pre

    calls = []
    monkeypatch.setattr(pre, "_write_folder", lambda *a, **k: calls.append(1))
    again = data.load("shapes-precomp", split="test", **SMALL_SHAPES)
    assert calls == []  # served from the cache
    monkeypatch.undo()
    monkeypatch.setenv("FNLAB_CACHE", str(tmp_path))
    fresh = data.load("shapes-precomp", split="test", **SMALL_SHAPES)  # rebuilt from scratch elsewhere
    np.testing.assert_array_equal(fresh.a_inputs, again.a_inputs)
    np.testing.assert_array_equal(fresh.b_inputs, again.b_inputs)


def test_shipped_features_skip_pretraining(shapes_small, cache, tmp_path, monkeypatch):
    import shutil

    import fnlab.data.pretrained as pre

    shipped = tmp_path / "shipped"
    for folder in cache.glob("precomp/shapes-precomp-features-*"):
        shutil.copytree(folder, shipped / folder.name)
    monkeypatch.setattr(pre, "shipped_root", lambda: shipped)
    monkeypatch.setenv("FNLAB_CACHE", str(tmp_path / "empty_cache"))

    def no_training(*args, **kwargs):
        raise AssertionError("pretrained although the features were shipped")

    monkeypatch.setattr(pre, "_train_cnn", no_training)
    ds = data.load("shapes-precomp", split="test", **SMALL_SHAPES)
    np.testing.assert_array_equal(ds.a_inputs, shapes_small["test"].a_inputs)


def test_repo_ships_features_for_the_default_options():
    """sample_data/precomp holds the frozen features of both datasets at their defaults (regenerate them with
    fnlab.data.pretrained.ship_default_features after changing the defaults or BUILD_VERSIONS)."""
    import fnlab.data.pretrained as pre

    for name, defaults, keys in (("shapes-precomp", pre.SHAPES_DEFAULTS, pre._SHAPES_IMAGE_KEYS),
                                 ("digits-precomp", pre.DIGITS_DEFAULTS, pre._DIGITS_IMAGE_KEYS)):
        o = pre._check(name, defaults, {})
        folder = pre.shipped_root() / f"{name}-features-{pre._key(name + '/features', {k: o[k] for k in keys})}"
        feats = np.load(folder / "features.npy", allow_pickle=False)
        assert feats.dtype == np.float32 and feats.shape[1] == defaults["feature_dim"]
        assert np.isfinite(feats).all()


def test_repo_ships_caption_embeddings_for_the_default_options(monkeypatch):
    """sample_data/precomp/minilm-captions.npz holds MiniLM's embedding of every caption of both datasets at
    their defaults, so a first build at the defaults never loads MiniLM; other captions are embedded."""
    import fnlab.data.minilm as minilm
    import fnlab.data.pretrained as pre

    with np.load(pre.shipped_root() / pre.CAPTION_TABLE, allow_pickle=False) as z:
        texts, feats = z["texts"], z["features"]
    assert feats.dtype == np.float32 and feats.shape == (len(texts), minilm.DIM)
    assert (texts[:-1] < texts[1:]).all()  # sorted and distinct: the lookup bisects
    opts = {k: v for k, v in pre.SHAPES_DEFAULTS.items()
            if k in ("n_train", "n_val", "n_test", "seed", "genericness", "p_two", "p_scene")}
    caps = {"shapes": data.load("shapes", split="all", **opts).b_meta["text"].astype(str),
            "digits-precomp": pre.digits_source()[1].b_meta["text"].astype(str)}
    for name, c in caps.items():
        assert np.isin(c.unique(), texts).all(), name
    picked = [str(texts[0]), str(texts[len(texts) // 2])]
    got = pre._caption_features([picked[1], picked[0], picked[1]])  # from the table
    np.testing.assert_array_equal(got, feats[[len(texts) // 2, 0, len(texts) // 2]])
    real = minilm.embed_texts(picked)  # the table is MiniLM's own output
    np.testing.assert_allclose(real, feats[[0, len(texts) // 2]], atol=1e-5)
    seen = []
    monkeypatch.setattr(minilm, "embed_texts", lambda t, **kw: seen.append(list(t)) or real[:1].repeat(len(t), 0))
    out = pre._caption_features([picked[0], "a caption nobody shipped"], progress=False)
    assert seen == [["a caption nobody shipped"]]  # only the missing one is embedded
    np.testing.assert_array_equal(out[0], feats[0])


def test_genericness_reuses_image_features_and_moves_fn_density(shapes_small):
    specific = data.load("shapes-precomp", split="train", **SMALL_SHAPES, genericness=0.0)
    generic = data.load("shapes-precomp", split="train", **SMALL_SHAPES, genericness=0.8)
    np.testing.assert_array_equal(specific.a_inputs, generic.a_inputs)  # captions change, images do not
    assert specific.stats().fn_per_query_mean < shapes_small["train"].stats().fn_per_query_mean
    assert shapes_small["train"].stats().fn_per_query_mean < generic.stats().fn_per_query_mean


def test_options_are_checked(cache):
    with pytest.raises(ValueError, match=r"shapes-precomp: unknown option\(s\) \['colour'\]; valid:.*genericness"):
        data.load("shapes-precomp", colour=1)
    with pytest.raises(ValueError, match="'pretrain_epochs' must be a non-negative integer"):
        data.load("shapes-precomp", pretrain_epochs=-1)
    with pytest.raises(ValueError, match="'feature_dim' must be at least 1"):
        data.load("digits-precomp", feature_dim=0)
    with pytest.raises(ValueError, match="must leave training images"):
        data.load("digits-precomp", n_pretrain=1500)
    with pytest.raises(ValueError, match="'genericness' must be a number"):
        data.load("shapes-precomp", genericness="high")
    from fnlab.data.pretrained import SHAPES_DEFAULTS, _check, _key

    same = [_key("shapes-precomp", _check("shapes-precomp", SHAPES_DEFAULTS, {"genericness": g})) for g in (0, 0.0)]
    assert same[0] == same[1]  # -o genericness=0 and 0.0 share one cached build


# ------------------------------------------------------------------ digits-precomp
def test_digits_precomp_pretrains_on_a_disjoint_fold(cache):
    ds = data.load("digits-precomp", split="all", **SMALL_DIGITS)
    assert ds.n_a == 1797 - SMALL_DIGITS["n_pretrain"]
    assert "image_path" not in ds.a_meta.columns  # write_images=False
    assert ds.a_inputs.shape == (ds.n_a, 24) and ds.b_inputs.shape == (5 * ds.n_a, 384)
    folder = next(f for f in cache.glob("precomp/digits-precomp-*") if "features" not in f.name)
    info = json.loads((folder / "build.json").read_text())
    fold = set(info["pretrain_fold_sklearn_index"])
    assert len(fold) == SMALL_DIGITS["n_pretrain"]
    assert fold.isdisjoint(ds.a_meta["sklearn_index"].tolist())
    heads = set(info["pretrain"]["heads"])
    assert {"digit", "an odd digit", "a prime number"} <= heads
    assert {h for h in heads if "/-/" in h} == {"ink (faint/-/bold)", "slant (upright/-/italic)",  # style heads
                                                "width (slender/-/squat)", "height (short/-/tall)",
                                                "balance (top-heavy/-/bottom-heavy)"}
    _check_relevance_by_reading_the_captions(ds)
    test = data.load("digits-precomp", split="test", **SMALL_DIGITS)
    assert test.n_a == SMALL_DIGITS["n_test"]


def _check_relevance_by_reading_the_captions(ds, n_captions: int = 300):
    """Slow reference: parse the words of a seeded sample of captions, and test them image by image against the
    class and the style percentiles, with loops and no shared code with the builder's vectorised relevance."""
    from fnlab.data.digit_styles import STYLES
    from fnlab.data.digits import GENERIC, NUMBER_WORDS

    groups = {t.split(" ", 1)[1]: set(members) for t, members in GENERIC}
    word_side = {w: (f"{attr}_percentile", side) for attr, words in STYLES for side, w in enumerate(words)}
    digit = ds.a_meta["digit"].to_numpy()
    rel = ds.relevance.toarray()
    texts = ds.b_meta["text"].tolist()
    picked = np.random.default_rng(0).choice(len(texts), size=min(n_captions, len(texts)), replace=False)
    for j in sorted(picked.tolist()):
        text = texts[j]
        words = text.split()[1:]  # drop the article
        named = []
        while words and words[0] in word_side:
            named.append(word_side[words.pop(0)])
        phrase = " ".join(words)
        if phrase in groups:
            classes = groups[phrase]
        else:  # "seven", "handwritten 7", "digit seven"
            last = words[-1]
            classes = {int(last)} if last.isdigit() else {NUMBER_WORDS.index(last)}
        mine = ds.a_meta.iloc[ds.b_to_a[j]]
        for column, side in named:  # a caption names only pronounced attributes of its own image, truly
            assert (mine[column] >= 0.5) == bool(side) and not 1 / 3 <= mine[column] < 2 / 3, text
        for i in range(ds.n_a):
            want = int(digit[i]) in classes and all(
                (ds.a_meta[column].iat[i] >= 0.5) == bool(side) for column, side in named)
            assert rel[j, i] == want, (text, i)


def test_digits_precomp_relevance_matches_a_slow_reference_at_the_defaults():
    """Planted check at the default options (no CNN, no MiniLM: digits_source only) on a sample of captions."""
    from fnlab.data.pretrained import digits_source

    full = digits_source()[1]
    rng = np.random.default_rng(0)
    test = full.subset(np.flatnonzero(full.a_meta["split"].to_numpy() == "test"), "test")
    sample = test.subset(np.sort(rng.choice(test.n_a, 60, replace=False)), "sample")
    _check_relevance_by_reading_the_captions(sample)
    styled = sample.b_meta["n_style"].to_numpy()
    assert (styled > 0).mean() > 0.8 and styled.max() == 3  # most captions name a style, at most n_style


def test_digits_precomp_false_negatives_per_query_at_the_defaults():
    """Instance-level captions: about 20 false negatives per training query at the defaults (the class-level
    captions had 232), rising with genericness and falling with n_style."""
    from fnlab.data.pretrained import digits_source

    def fn_per_query(**opts):
        full = digits_source(**opts)[1]
        train = full.subset(np.flatnonzero(full.a_meta["split"].to_numpy() == "train"), "train")
        return train.stats().fn_per_query_mean

    default = fn_per_query()
    assert 10 <= default <= 30
    assert fn_per_query(genericness=0.0) < default < fn_per_query(genericness=0.3)
    assert fn_per_query(n_style=1) > default
    assert fn_per_query(n_style=0) > 80  # class-level captions: every image of the class (about 80)


def test_digits_precomp_style_words_are_balanced_within_classes():
    from fnlab.data.digit_styles import STYLES, pronounced, style_percentiles, style_sides
    from fnlab.data.digits import read_sklearn_digits

    raw, labels = read_sklearn_digits()
    pct = style_percentiles(raw, labels)
    assert pct.shape == (1797, len(STYLES))
    for c in range(10):
        share_high = style_sides(pct[labels == c]).mean(axis=0)
        assert np.all(np.abs(share_high - 0.5) < 0.01)  # each word true of half of every class
        assert np.all(np.abs(pronounced(pct[labels == c]).mean(axis=0) - 2 / 3) < 0.02)


def test_digits_precomp_bad_style_options():
    from fnlab.data.pretrained import digits_source

    with pytest.raises(ValueError, match="option 'n_style' must be an integer in \\[0, 5\\]"):
        digits_source(n_style=6)
    with pytest.raises(ValueError, match="'n_style' must be a non-negative integer"):
        digits_source(n_style=1.5)
    with pytest.raises(ValueError, match="'genericness' must be in \\[0, 1\\]"):
        digits_source(genericness=1.5)


# ------------------------------------------------------------------ CLI
def test_cli_info_and_train(shapes_small, capsys, tmp_path):
    opts = [x for k, v in SMALL_SHAPES.items() for x in ("-o", f"{k}={v}")]
    assert main(["data", "info", "shapes-precomp", "--split", "test", *opts, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["a_dim"] == 32 and info["b_dim"] == 384
    assert info["fn_per_query_mean"] == pytest.approx(shapes_small["test"].stats().fn_per_query_mean)
    assert main(["data", "list"]) == 0
    assert "shapes-precomp" in capsys.readouterr().out
    rc = main(["train", "--dataset", "shapes-precomp", *opts, "--sampler", "hardest", "--epochs", "1",
               "--batch-size", "16", "--queue-size", "0", "--dim", "16", "--device", "cpu", "--threads", "1",
               "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["name"] == "shapes-precomp"
