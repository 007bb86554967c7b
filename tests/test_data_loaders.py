"""precomp, pairs and saved-folder loaders on small files the tests write; bad input is rejected clearly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fnlab.data as data
from fnlab.data import DatasetError
from fnlab.data.io import save_dataset

SMALL = dict(n_train=30, n_val=10, n_test=10)


# --------------------------------------------------------------------------------- helpers
def write_precomp(root: Path, n: dict, d: int = 6, regions: int | None = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feats = {}
    for split, k in n.items():
        shape = (k, regions, d) if regions else (k, d)
        f = rng.normal(size=shape).astype(np.float32)
        np.save(root / f"{split}_ims.npy", f)
        caps = [f"a {split} photo number {i} of image {i // 5}" for i in range(5 * k)]
        (root / f"{split}_caps.txt").write_text("\n".join(caps) + "\n", encoding="utf-8")
        feats[split] = f
    return feats


def write_pairs(root: Path, n_a=8, n_b=10, fmt="csv", relevance=True, split=False, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_a, 4)).astype(np.float32)
    b = rng.normal(size=(n_b, 3)).astype(np.float32)
    np.save(root / "a.npy", a)
    np.save(root / "b.npy", b)
    df = pd.DataFrame({"query": np.arange(n_b)[::-1], "candidate": np.arange(n_b) % n_a,
                       "text": [f"query {i}" for i in range(n_b)[::-1]],
                       "image_path": [f"img/{i % n_a}.png" for i in range(n_b)]})
    if split:
        df["split"] = np.where(df["candidate"] < 2, "test", np.where(df["candidate"] < 4, "val", "train"))
    getattr(df, "to_csv" if fmt == "csv" else "to_parquet")(root / f"pairs.{fmt}", index=False)
    rel = None
    if relevance:
        rel = pd.DataFrame({"b": [0, 0, 3], "a": [5, 6, 7]})
        rel.to_csv(root / "relevance.csv", index=False)
    return a, b, df, rel


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ----------------------------------------------------------------------------------- precomp
def test_precomp_layout(tmp_path):
    feats = write_precomp(tmp_path, {"train": 4, "dev": 3, "test": 2})
    val = data.load("precomp", root=tmp_path, split="val")  # dev_* files stand for val
    assert (val.n_a, val.n_b, val.a_kind, val.b_kind) == (3, 15, "features", "tokens")
    assert np.allclose(val.a_inputs, feats["dev"].mean(axis=1), atol=1e-6)  # regions mean-pooled
    assert np.array_equal(val.b_to_a, np.arange(15) // 5)
    assert val.relevance is None and val.stats().relevant_pairs is None
    assert val.captions()[7] == "a dev photo number 7 of image 1"
    # vocabulary from the training captions: "dev" is unknown there
    dev_id = val.b_inputs[0, 1]
    assert dev_id == 1 and val.vocab[:2] == ["<pad>", "<unk>"]
    every = data.load("precomp", root=tmp_path, split="all")
    assert every.n_a == 9 and every.a_meta["split"].tolist() == ["train"] * 4 + ["val"] * 3 + ["test"] * 2
    assert data.spec_of(val) == {"name": "precomp", "root": str(tmp_path), "options": {}}


def test_precomp_two_dim_features_and_repeated_rows(tmp_path):
    f = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.save(tmp_path / "train_ims.npy", np.repeat(f, 5, axis=0))  # one row per caption (COCO style)
    (tmp_path / "train_caps.txt").write_text("\n".join(f"c{i}" for i in range(10)), encoding="utf-8")
    ds = data.load("precomp", root=tmp_path, split="train")
    assert np.array_equal(ds.a_inputs, f)


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("caps_count", r"train_caps.txt: field 'captions': 19 captions for 4 images.*expected 5 per image"),
        ("nan", r"train_ims.npy: field 'image_features': row 2 holds NaN"),
        ("pickle", r"train_ims.npy: field 'image_features': a pickled/object"),
        ("empty_caps", r"train_caps.txt: field 'captions': the file is empty"),
        ("blank_line", r"train_caps.txt: field 'captions': line 3 is empty"),
        ("ndim", r"train_ims.npy: field 'image_features': shape \(4,\), expected"),
        ("strings", r"train_ims.npy: field 'image_features': dtype <U1, expected floating"),
    ],
)
def test_precomp_bad_input(tmp_path, breakage, match):
    write_precomp(tmp_path, {"train": 4})
    ims, caps = tmp_path / "train_ims.npy", tmp_path / "train_caps.txt"
    if breakage == "caps_count":
        caps.write_text("\n".join(caps.read_text().splitlines()[:-1]))
    elif breakage == "nan":
        f = np.load(ims)
        f[2, 1, 0] = np.nan
        np.save(ims, f)
    elif breakage == "pickle":
        np.save(ims, np.array([{"evil": 1}] * 4, dtype=object), allow_pickle=True)
    elif breakage == "empty_caps":
        caps.write_text("")
    elif breakage == "blank_line":
        lines = caps.read_text().splitlines()
        lines[2] = "  "
        caps.write_text("\n".join(lines))
    elif breakage == "ndim":
        np.save(ims, np.zeros(4, np.float32))
    elif breakage == "strings":
        np.save(ims, np.array(list("abcd")))
    before = listing(tmp_path)
    with pytest.raises(DatasetError, match=match):
        data.load("precomp", root=tmp_path, split="train")
    assert listing(tmp_path) == before  # nothing written


def test_precomp_missing_split(tmp_path):
    write_precomp(tmp_path, {"train": 2})
    with pytest.raises(FileNotFoundError, match="val_ims.npy"):
        data.load("precomp", root=tmp_path, split="val")


# ------------------------------------------------------------------------------------- pairs
def _merged_reference(n_a, pairs_values, listed_values, fill):
    """Slow reference: the candidates table's value, else the pairs table's, else ``fill``."""
    out = []
    for i in range(n_a):
        got = listed_values.get(i)
        out.append(got if got is not None else pairs_values.get(i, fill))
    return out


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_candidates_table_describes_unlabelled_candidates_too(tmp_path, fmt):
    """A corpus is larger than its labelled queries: every candidate gets its text, image and split."""
    write_pairs(tmp_path, n_a=8, n_b=3, relevance=False)  # labels candidates 0, 1, 2 only
    cands = pd.DataFrame({"a_text": [f"document {i}" for i in range(8)],
                          "split": ["train", "train", "test", "val", "test", "train", "val", "test"]})
    getattr(cands, "to_csv" if fmt == "csv" else "to_parquet")(tmp_path / f"candidates.{fmt}", index=False)
    ds = data.load("pairs", root=tmp_path, split="all")
    assert ds.a_meta["a_text"].tolist() == [f"document {i}" for i in range(8)]
    assert ds.a_meta["image_path"][1] == str(tmp_path / "img/1.png")  # the pairs table's column still counts
    assert ds.a_meta["image_path"][5] == ""  # an unlabelled candidate with no image: empty, not a made-up path
    test = data.load("pairs", root=tmp_path, split="test")
    assert test.a_ids.tolist() == [2, 4, 7]  # unlabelled candidates 4 and 7 are in test, not train


def test_a_candidates_table_with_ids_lists_some_candidates(tmp_path):
    write_pairs(tmp_path, n_a=8, n_b=3, relevance=False)
    pd.DataFrame({"candidate": [6, 1], "image_path": ["img/6.png", "img/1.png"]}).to_csv(
        tmp_path / "candidates.csv", index=False)
    ds = data.load("pairs", root=tmp_path, split="all")
    assert ds.a_meta["image_path"][6] == str(tmp_path / "img/6.png")
    assert ds.a_meta["image_path"][0] == str(tmp_path / "img/0.png")  # from the pairs table


@pytest.mark.parametrize(
    "table, match",
    [
        (pd.DataFrame({"a_text": ["x"] * 5}), r"candidates.csv: 5 rows but a.npy has 8; expected one row per a.npy"),
        (pd.DataFrame({"a": [0, 9], "a_text": ["x", "y"]}), r"candidates.csv: column 'a' has index 9 outside"),
        (pd.DataFrame({"a": [3, 3], "a_text": ["x", "y"]}), r"candidates.csv: column 'a' lists candidate 3 more"),
        (pd.DataFrame({"a": [3], "note": ["x"]}), r"candidates.csv: no column 'a_text', 'image_path', 'split'"),
        (pd.DataFrame({"a": [3, 4], "split": ["test", "holdout"]}), r"candidates.csv: column 'split' has value "
                                                                    r"'holdout'; expected train, val or test"),
        (pd.DataFrame({"a": [3, 4], "split": ["test", None]}), r"candidates.csv: column 'split' has value"),
        (pd.DataFrame({"a": [0], "image_path": ["other/0.png"]}), r"candidates.csv: column 'image_path' gives "
                                                                  r"candidate 0 'other/0.png', but .*pairs.csv gives"),
    ],
)
def test_a_bad_candidates_table_is_named(tmp_path, table, match):
    write_pairs(tmp_path, n_a=8, n_b=3, relevance=False)
    table.to_csv(tmp_path / "candidates.csv", index=False)
    before = listing(tmp_path)
    with pytest.raises(DatasetError, match=match):
        data.load("pairs", root=tmp_path, split="all")
    assert listing(tmp_path) == before  # nothing written, nothing lost


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_a=st.integers(1, 9), data_=st.data())
def test_candidate_texts_merge_the_two_tables(n_a, data_):
    """Property: with any labelled candidates and any listed candidates (agreeing where both give a text),
    every candidate's text is the candidates table's, else the pairs table's, else empty."""
    labelled = data_.draw(st.lists(st.integers(0, n_a - 1), min_size=1, max_size=6))
    listed = data_.draw(st.lists(st.integers(0, n_a - 1), unique=True, min_size=1, max_size=n_a))
    with_text = data_.draw(st.lists(st.booleans(), min_size=len(listed), max_size=len(listed)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        np.save(root / "a.npy", np.ones((n_a, 2), np.float32))
        np.save(root / "b.npy", np.ones((len(labelled), 2), np.float32))
        pd.DataFrame({"b": range(len(labelled)), "a": labelled,
                      "a_text": [f"doc {c}" for c in labelled]}).to_csv(root / "pairs.csv", index=False)
        texts = [f"doc {c}" if t else None for c, t in zip(listed, with_text, strict=True)]
        pd.DataFrame({"a": listed, "a_text": texts}, dtype=object).to_csv(root / "candidates.csv", index=False)
        got = data.load("pairs", root=root, split="all").a_meta["a_text"].tolist()
    want = _merged_reference(n_a, {c: f"doc {c}" for c in labelled},
                             {c: t for c, t in zip(listed, texts, strict=True)}, "")
    event(f"listed {len(listed)} of {n_a}")
    assert got == want


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_pairs_layout(tmp_path, fmt):
    a, b, df, rel = write_pairs(tmp_path, fmt=fmt, split=True)
    ds = data.load("pairs", root=tmp_path, split="all")
    assert (ds.n_a, ds.n_b, ds.a_kind, ds.b_kind) == (8, 10, "features", "features")
    assert np.array_equal(ds.b_inputs, b[df["query"].to_numpy()])  # B items are the table's rows
    assert np.array_equal(ds.b_ids, df["query"].to_numpy())
    assert np.array_equal(ds.b_to_a, df["candidate"].to_numpy())
    assert ds.captions() == df["text"].tolist()
    assert ds.a_meta["image_path"][1] == str(tmp_path / "img/1.png")
    # relevance: the relevance table (query ids -> table rows) plus the labelled pairs
    dense = np.zeros((10, 8), bool)
    dense[np.arange(10), df["candidate"]] = True
    row_of = {q: r for r, q in enumerate(df["query"])}
    for q, c in zip(rel["b"], rel["a"], strict=True):
        dense[row_of[q], c] = True
    assert np.array_equal(ds.relevance.toarray(), dense)
    test = data.load("pairs", root=tmp_path, split="test")
    assert test.a_ids.tolist() == [0, 1] and set(test.b_to_a.tolist()) == {0, 1}


def test_pairs_random_split_is_seeded(tmp_path):
    write_pairs(tmp_path, n_a=40, n_b=40, relevance=False)
    s1 = data.load("pairs", root=tmp_path, split="val", seed=1)
    s2 = data.load("pairs", root=tmp_path, split="val", seed=1)
    assert np.array_equal(s1.a_ids, s2.a_ids) and s1.relevance is None
    parts = [data.load("pairs", root=tmp_path, split=s).a_ids for s in ("train", "val", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(40))


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("range", r"pairs.csv: column 'candidate' has index 8 outside \[0, 8\)"),
        ("nonnumeric", r"pairs.csv: column 'query' is not numeric"),
        ("dup", r"pairs.csv: column 'query' lists query 3 more than once"),
        ("nan_emb", r"a.npy: field 'a': holds NaN or infinite"),
        ("inf_emb", r"b.npy: field 'b': holds NaN or infinite"),
        ("pickle", r"b.npy: field 'b': holds a pickled/object array"),
        ("shape", r"a.npy: field 'a': shape \(2, 2, 2\), expected 2 dimensions"),
        ("empty_table", r"pairs.csv: field 'pairs': the file is empty"),
        ("no_column", r"pairs.csv: missing column 'b' or 'query'"),
        ("rel_range", r"relevance.csv: column 'a' has index 99 outside"),
        ("float_index", r"pairs.csv: column 'candidate' has non-integer values"),
    ],
)
def test_pairs_bad_input(tmp_path, breakage, match):
    a, b, df, rel = write_pairs(tmp_path)
    table = tmp_path / "pairs.csv"
    if breakage == "range":
        df.loc[2, "candidate"] = 8
    elif breakage == "nonnumeric":
        df["query"] = df["query"].astype(str) + "x"
    elif breakage == "dup":
        df.loc[1, "query"] = 3
    elif breakage == "nan_emb":
        a[1, 1] = np.nan
        np.save(tmp_path / "a.npy", a)
    elif breakage == "inf_emb":
        b[0, 0] = np.inf
        np.save(tmp_path / "b.npy", b)
    elif breakage == "pickle":
        np.save(tmp_path / "b.npy", np.array([[object()]], dtype=object), allow_pickle=True)
    elif breakage == "shape":
        np.save(tmp_path / "a.npy", np.zeros((2, 2, 2), np.float32))
    elif breakage == "no_column":
        df = df.drop(columns=["query"])
    elif breakage == "rel_range":
        pd.DataFrame({"b": [0], "a": [99]}).to_csv(tmp_path / "relevance.csv", index=False)
    elif breakage == "float_index":
        df["candidate"] = df["candidate"] + 0.5
    if breakage == "empty_table":
        table.write_text("")
    elif breakage not in ("nan_emb", "inf_emb", "pickle", "shape", "rel_range"):
        df.to_csv(table, index=False)
    before = listing(tmp_path)
    with pytest.raises(DatasetError, match=match):
        data.load("pairs", root=tmp_path, split="all")
    assert listing(tmp_path) == before


def _valid_reference(q, c, n_a: int, n_b: int) -> bool:
    """Slow check of a pairs table: integer, in range, each query once."""
    try:
        qi, ci = [float(x) for x in q], [float(x) for x in c]
    except (TypeError, ValueError):
        return False
    if not qi or not all(np.isfinite(v) and v == int(v) for v in qi + ci):
        return False
    return (all(0 <= v < n_b for v in qi) and all(0 <= v < n_a for v in ci)
            and len(set(qi)) == len(qi))


cell = st.one_of(st.integers(0, 5), st.integers(0, 5), st.integers(-3, 12), st.floats(allow_nan=True, allow_infinity=True, width=32),
                 st.sampled_from(["x", "", "3"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(cell, cell), min_size=1, max_size=5))
def test_pairs_property_broken_tables(rows):
    """Any table either loads (iff a slow reference says it is valid) or raises DatasetError naming the file."""
    n_a, n_b = 6, 9
    q, c = [r[0] for r in rows], [r[1] for r in rows]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        np.save(root / "a.npy", np.ones((n_a, 2), np.float32))
        np.save(root / "b.npy", np.ones((n_b, 2), np.float32))
        pd.DataFrame({"b": q, "a": c}).to_csv(root / "pairs.csv", index=False)
        # what the CSV reader will see (strings like "3" become numbers, as a user would expect)
        seen = pd.read_csv(root / "pairs.csv")
        ok = pd.api.types.is_numeric_dtype(seen["b"]) and pd.api.types.is_numeric_dtype(seen["a"]) and \
            _valid_reference(seen["b"].tolist(), seen["a"].tolist(), n_a, n_b)
        before = sorted(os.listdir(root))
        event(f"valid={ok}")
        if ok:
            ds = data.load("pairs", root=root, split="all")
            assert ds.n_b == len(rows) and (ds.b_to_a == seen["a"].astype(int)).all()
        else:
            with pytest.raises(DatasetError, match=r"pairs.csv"):
                data.load("pairs", root=root, split="all")
        assert sorted(os.listdir(root)) == before


@settings(max_examples=25, deadline=None)
@given(
    shape=st.one_of(st.tuples(st.integers(1, 4), st.integers(1, 4)).map(list),
                    st.lists(st.integers(0, 4), min_size=0, max_size=3)),
    bad=st.sampled_from([None, np.nan, np.inf, -np.inf]),
    dtype=st.sampled_from(["float32", "float64", "int64", "bool", "U2", "complex64"]),
)
def test_pairs_property_broken_arrays(shape, bad, dtype):
    """a.npy of any shape/dtype/values: loads only when a 2-D finite real array with rows, else DatasetError."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        arr = np.ones(shape, dtype=dtype)
        if bad is not None and arr.size and dtype.startswith("float"):
            arr.flat[0] = bad
        np.save(root / "a.npy", arr)
        np.save(root / "b.npy", np.ones((3, 2), np.float32))
        pd.DataFrame({"b": [0, 1, 2], "a": [0, 0, 0]}).to_csv(root / "pairs.csv", index=False)
        valid = (len(shape) == 2 and shape[0] > 0 and dtype in ("float32", "float64", "int64", "bool")
                 and (bad is None or not dtype.startswith("float") or arr.size == 0))
        event(f"valid={valid}")
        if valid and shape[1] > 0:
            assert data.load("pairs", root=root, split="all").n_a == shape[0]
        elif not valid:
            with pytest.raises(DatasetError, match=r"a.npy: field 'a'"):
                data.load("pairs", root=root, split="all")


# ------------------------------------------------------------------------------ saved folder
def test_saved_folder_round_trip(tmp_path):
    full = data.load("shapes", split="all", **SMALL)
    save_dataset(full, tmp_path / "ds")
    for split in ("train", "val", "test", "all"):
        want = data.load("shapes", split=split, **SMALL)
        got = data.load(str(tmp_path / "ds"), split=split)
        assert np.array_equal(got.a_inputs, want.a_inputs) and np.array_equal(got.b_inputs, want.b_inputs)
        assert np.array_equal(got.b_to_a, want.b_to_a) and np.array_equal(got.a_ids, want.a_ids)
        assert (got.relevance != want.relevance).nnz == 0
        assert got.captions() == want.captions() and got.vocab == want.vocab
        assert got.a_meta.drop(columns="split").equals(want.a_meta.drop(columns="split"))
    assert data.load(str(tmp_path / "ds" / "dataset.json"), split="val").n_a == 10
    # a pairs dataset (features, no text) round-trips too
    write_pairs(tmp_path, relevance=False)
    p = data.load("pairs", root=tmp_path, split="all")
    save_dataset(p, tmp_path / "p")
    q = data.load(str(tmp_path / "p"), split="all")
    assert np.allclose(q.a_inputs, p.a_inputs) and q.relevance is None and q.a_kind == "features"
    assert (q.a_modality, q.b_modality, q.inputs_are_embeddings) == (p.a_modality, p.b_modality, True)


# ------------------------------------------------------------------------------ modality and wording
def test_modalities_follow_what_the_data_provide(tmp_path):
    shapes = data.load("shapes", split="val", **SMALL)
    assert (shapes.a_modality, shapes.b_modality) == ("image", "text")
    assert (shapes.nouns.a_plural, shapes.nouns.b_plural) == ("images", "captions")
    assert not shapes.inputs_are_embeddings
    write_pairs(tmp_path, relevance=False)  # texts on side B, image paths on side A
    p = data.load("pairs", root=tmp_path, split="all")
    assert (p.a_modality, p.b_modality, p.inputs_are_embeddings) == ("image", "text", True)
    df = pd.read_csv(tmp_path / "pairs.csv").drop(columns="image_path")
    df["a_text"] = [f"document {c}" for c in df["candidate"]]
    df.to_csv(tmp_path / "pairs.csv", index=False)
    t = data.load("pairs", root=tmp_path, split="all")  # texts on both sides: documents and queries
    assert (t.a_modality, t.b_modality) == ("text", "text")
    assert (t.nouns.a_plural, t.nouns.b_plural, t.nouns.side("b", plural=False)) == ("documents", "queries", "query")
    df.drop(columns=["a_text", "text"]).to_csv(tmp_path / "pairs.csv", index=False)
    bare = data.load("pairs", root=tmp_path, split="all")  # embeddings only: neutral words
    assert (bare.a_modality, bare.b_modality) == ("item", "item")
    assert (bare.nouns.a_plural, bare.nouns.b_plural) == ("candidates", "queries")
    with pytest.raises(DatasetError, match="a_modality"):
        from dataclasses import replace

        replace(bare, a_modality="video")


def test_side_content_gives_ids_texts_and_paths(tmp_path):
    from fnlab.data.display import a_label, caption, side_content

    a, b, df, _ = write_pairs(tmp_path, relevance=False, split=True)
    val = data.load("pairs", root=tmp_path, split="val")
    qb = side_content(val, "b")
    assert qb["id"].tolist() == val.b_ids.tolist()  # rows of b.npy, not indices within the split
    assert qb["text"].tolist() == [f"query {i}" for i in val.b_ids]
    for ds in (val, data.load("shapes", split="val", **SMALL)):  # one pass over the column, as caption() gives each
        assert side_content(ds, "b")["text"].tolist() == [caption(ds, j) for j in range(ds.n_b)]
    ca = side_content(val, "a")
    assert ca["id"].tolist() == val.a_ids.tolist()
    assert ca["image_path"].tolist() == [str(tmp_path / f"img/{i}.png") for i in val.a_ids]
    df.drop(columns=["text", "image_path"]).to_csv(tmp_path / "pairs.csv", index=False)
    bare = data.load("pairs", root=tmp_path, split="val")
    assert set(side_content(bare, "b")) == {"id"} and set(side_content(bare, "a")) == {"id"}
    assert caption(bare, 0) == f"query {bare.b_ids[0]}" and a_label(bare, 0) == f"candidate {bare.a_ids[0]}"


def test_save_failure_leaves_nothing(tmp_path):
    ds = data.load("shapes", split="val", **SMALL)
    ds.b_meta["bad"] = [object()] * ds.n_b  # not storable in Parquet
    with pytest.raises(ValueError, match="column bad"):  # pyarrow's ArrowInvalid (a ValueError) names the column
        save_dataset(ds, tmp_path / "out")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("json", r"dataset.json: field 'dataset': not valid JSON"),
        ("format", r"dataset.json: field 'format' is 'other'"),
        ("b_to_a", r"field 'b_to_a' has indices outside"),
        ("pickle", r"arrays.npz: field 'b_inputs': holds a pickled/object array"),
        ("rows", r"b_meta.parquet: field 'b_meta': has 3 rows, expected 50"),
    ],
)
def test_saved_folder_bad_input(tmp_path, breakage, match):
    import json

    folder = save_dataset(data.load("shapes", split="val", **SMALL), tmp_path / "ds")
    meta_path, npz = folder / "dataset.json", folder / "arrays.npz"
    if breakage == "json":
        meta_path.write_text("{not json")
    elif breakage == "format":
        meta = json.loads(meta_path.read_text())
        meta["format"] = "other"
        meta_path.write_text(json.dumps(meta))
    elif breakage in ("b_to_a", "pickle"):
        arrs = dict(np.load(npz))
        if breakage == "b_to_a":
            arrs["b_to_a"] = arrs["b_to_a"] + 100
        else:
            arrs["b_inputs"] = np.array([None] * len(arrs["b_to_a"]), dtype=object)
        np.savez(npz, **arrs)
    elif breakage == "rows":
        pd.DataFrame({"text": ["a", "b", "c"]}).to_parquet(folder / "b_meta.parquet")
    with pytest.raises(DatasetError, match=match):
        data.load(str(folder), split="all")


def test_unknown_names():
    with pytest.raises(FileNotFoundError, match="unknown dataset 'nope'"):
        data.load("nope")
    with pytest.raises(ValueError, match="needs root"):
        data.load("pairs")
    assert data.available() == ["shapes", "digits", "shapes-precomp", "digits-precomp", "precomp", "pairs"]


@settings(max_examples=25, deadline=None)
@given(n_img=st.integers(1, 6), n_caps=st.integers(0, 35), regions=st.sampled_from([None, 2]))
def test_precomp_property_caption_counts(n_img, n_caps, regions):
    """Loads iff there are exactly 5 captions per image (or one feature row per caption); else a clear error."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        shape = (n_img, regions, 3) if regions else (n_img, 3)
        np.save(root / "train_ims.npy", np.ones(shape, np.float32))
        (root / "train_caps.txt").write_text("".join(f"caption {i}\n" for i in range(n_caps)), encoding="utf-8")
        expected_images = n_img if n_caps == 5 * n_img else (n_img // 5 if n_caps == n_img and n_img % 5 == 0
                                                              else None)
        if n_caps and expected_images:
            ds = data.load("precomp", root=root, split="train")
            assert (ds.n_a, ds.n_b) == (expected_images, n_caps)
        else:
            match = "the file is empty" if n_caps == 0 else rf"{n_caps} captions for \d+ images"
            with pytest.raises(DatasetError, match=rf"train_caps.txt: field 'captions': .*{match}|{match}"):
                data.load("precomp", root=root, split="train")
        assert sorted(os.listdir(root)) == ["train_caps.txt", "train_ims.npy"]
