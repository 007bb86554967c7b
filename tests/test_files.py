"""fnlab.core.files: safe readers name the file and say what was expected; one NaN policy; atomic and
multi-file writes leave old files intact on failure; locks; roll-forward of an interrupted commit."""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlab.core import files
from fnlab.core.files import FileFormatError


def _strict_json(text: str):
    """json.loads that refuses the non-standard NaN / Infinity tokens."""
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------------- .npy reader
def test_text_file_renamed_npy_is_not_a_npy_file(tmp_path):
    p = tmp_path / "emb.npy"
    p.write_text("0.1,0.2\n0.3,0.4\n")
    with pytest.raises(FileFormatError) as info:
        files.read_npy(p, "a float array [N, d]")
    msg = str(info.value)
    assert str(p) in msg and "not a .npy file" in msg
    assert "pickle" not in msg.lower() and "allow_pickle" not in msg  # never blamed on / suggests pickling


def test_truncated_npy_named(tmp_path):
    p = tmp_path / "trunc.npy"
    np.save(p, np.ones((100, 8), np.float32))
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(FileFormatError, match=r"trunc\.npy.*truncated"):
        files.read_npy(p)


def test_object_array_folder_empty_npz_missing(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match=r"obj\.npy.*never loads"):
        files.read_npy(obj)
    with pytest.raises(FileFormatError, match="is a folder"):
        files.read_npy(tmp_path)
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"empty\.npy: file is empty"):
        files.read_npy(tmp_path / "empty.npy")
    np.savez(tmp_path / "z.npz", a=np.ones(2))
    with pytest.raises(FileFormatError, match=r"z\.npz.*\.npz archive"):
        files.read_npy(tmp_path / "z.npz")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        files.read_npy(tmp_path / "missing.npy")


def test_npy_roundtrip_path_bytes_and_label(tmp_path):
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    p = files.save_npy(tmp_path / "a.npy", arr)
    assert np.array_equal(files.read_npy(p), arr)
    assert np.array_equal(files.read_npy(p.read_bytes(), name="up.npy"), arr)
    assert np.array_equal(files.read_npy(p, mmap_mode="r"), arr)
    with pytest.raises(FileFormatError, match=r"^up\.npy \(queries\): not a \.npy file"):
        files.read_npy(b"hello", name="up.npy", label="queries")
    with pytest.raises(TypeError, match="object arrays"):
        files.save_npy(tmp_path / "o.npy", np.array([None], dtype=object))


# ---------------------------------------------------------------------------------- table reader
def test_tables(tmp_path):
    header_only = tmp_path / "h.csv"
    header_only.write_text("query,candidate\n")
    with pytest.raises(FileFormatError, match=r"h\.csv.*no rows"):
        files.read_table(header_only, "labelled pairs", columns=("query", "candidate"))
    headerless = tmp_path / "n.csv"
    headerless.write_text("0,1\n1,2\n")
    with pytest.raises(FileFormatError, match=r"n\.csv: no header line.*'query,candidate'"):
        files.read_table(headerless, "labelled pairs", columns=("query", "candidate"))
    wrong = tmp_path / "w.csv"
    wrong.write_text("q,c\n0,1\n")
    with pytest.raises(FileFormatError, match=r"w\.csv: missing column\(s\) \['query', 'candidate'\]"):
        files.read_table(wrong, "labelled pairs", columns=("query", "candidate"))
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(FileFormatError, match="unknown extension '.txt'"):
        files.read_table(tmp_path / "t.txt")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(FileFormatError, match=r"bad\.parquet: not a readable parquet file"):
        files.read_table(tmp_path / "bad.parquet")
    good = pd.DataFrame({"query": [0, 1], "candidate": [1, 0]})
    files.write_table(tmp_path / "g.parquet", good)
    assert files.read_table(tmp_path / "g.parquet", columns=("query",)).equals(good)
    assert files.read_table(good.to_csv(index=False).encode(), name="g.csv").equals(good)


# ---------------------------------------------------------------------------------- JSON policy
def test_json_writes_null_for_nan_and_names_bad_files(tmp_path):
    obj = {"a": float("nan"), "b": [np.float32(np.inf), 1.5], "c": np.int64(3), "d": np.array([np.nan, 2.0]),
           "e": np.bool_(True)}
    p = files.write_json(tmp_path / "x.json", obj)
    assert _strict_json(p.read_text()) == {"a": None, "b": [None, 1.5], "c": 3, "d": [None, 2.0], "e": True}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileFormatError, match=r"bad\.json: not valid JSON"):
        files.read_json(tmp_path / "bad.json")
    with pytest.raises(TypeError):
        files.dumps({"x": object()})


@settings(max_examples=80, deadline=None)
@given(st.recursive(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.none() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4),
                    max_leaves=20))
def test_dumps_is_always_standard_json(obj):
    """Property: whatever floats a structure holds, the text parses as standard JSON; finite values survive."""
    back = _strict_json(files.dumps(obj))

    def same(a, b):
        if isinstance(a, float) and not math.isfinite(a):
            return b is None
        if isinstance(a, dict):
            return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b

    assert same(obj, back)


# ---------------------------------------------------------------------------------- atomic writes
def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = files.write_text(tmp_path / "f.txt", "old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        files.atomic_write(p, fail)
    assert p.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["f.txt"]

    def torch_like(tmp):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with pytest.raises(OSError, match=r"f\.txt: could not write"):  # torch.save's disk-full error
        files.atomic_write(p, torch_like)


def test_commit_files_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    files.commit_files({a: lambda t: t.write_text("a1"), b: lambda t: t.write_text("b1")})
    assert (a.read_text(), b.read_text()) == ("a1", "b1")

    def fail(t):
        t.write_text("partial")
        raise OSError(28, "No space left on device", str(t))

    with pytest.raises(OSError):
        files.commit_files({a: lambda t: t.write_text("a2"), b: fail})
    assert (a.read_text(), b.read_text()) == ("a1", "b1")  # the failed commit changed nothing
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name) == []
    with pytest.raises(ValueError, match="same path"):
        files.commit_files({a: lambda t: None, tmp_path / "sub" / ".." / "a.txt": lambda t: None})
    with pytest.raises(ValueError, match="wrote no file"):
        files.commit_files({a: lambda t: None})
    assert a.read_text() == "a1"


def test_recover_rolls_an_interrupted_commit_forward(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    files.commit_files({a: lambda t: t.write_text("old"), b: lambda t: t.write_text("old")})
    # what a process killed after writing its journal leaves: complete temporaries and the journal,
    # one rename already done
    ta, tb = tmp_path / ".a.txt.tmp-1-x", tmp_path / ".b.txt.tmp-1-y"
    ta.write_text("new")
    tb.write_text("new")
    files.write_text(tmp_path / ".a.txt.commit.json", json.dumps({"renames": [[str(ta), str(a)], [str(tb), str(b)]]}))
    os.replace(ta, a)
    assert (a.read_text(), b.read_text()) == ("new", "old")  # inconsistent until recovered
    assert files.recover(a) is True
    assert (a.read_text(), b.read_text()) == ("new", "new")
    assert not (tmp_path / ".a.txt.commit.json").exists() and files.recover(a) is False


def test_dead_writers_temporaries_are_cleaned(tmp_path):
    a = tmp_path / "a.txt"
    dead = tmp_path / ".a.txt.tmp-999999999-abcd"  # no such pid
    dead.write_text("left by a killed scan")
    files.commit_files({a: lambda t: t.write_text("x")})
    assert not dead.exists() and a.read_text() == "x"


def test_concurrent_commits_leave_one_complete_set(tmp_path):
    a, b = tmp_path / "table.txt", tmp_path / "summary.txt"
    errors = []

    def writer(tag: str) -> None:
        try:
            for i in range(20):
                value = f"{tag}-{i}"
                files.commit_files({a: lambda t, v=value: t.write_text(v), b: lambda t, v=value: t.write_text(v)})
                assert a.read_text() != "" and b.read_text() != ""
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert a.read_text() == b.read_text()  # table and summary from the same writer


def test_locks(tmp_path):
    lock = tmp_path / ".x.lock"
    assert not files.is_locked(lock)
    fd = files.try_lock(lock)
    assert fd is not None and files.is_locked(lock)
    assert files.try_lock(lock) is None  # a second holder is refused at once
    files.unlock(fd, remove=lock)
    assert not lock.exists() and not files.is_locked(lock)
