"""Bad flags, bad files and faults that used to be silent or unclear: each is now one line naming the flag or the
file (exit code 2), or correct behaviour. No training here (flags are refused before any work); the CLI runs
in-process."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _app_support import ensure_repo_on_path

from fnlab.cli import describe_error, main
from fnlab.core import files

ensure_repo_on_path()


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    c = rng.standard_normal((60, 8)).astype(np.float32)
    np.save(tmp_path / "Q.npy", (c[:30] + 0.3 * rng.standard_normal((30, 8))).astype(np.float32))
    np.save(tmp_path / "C.npy", c)
    pd.DataFrame({"query": np.arange(30), "candidate": np.arange(30)}).to_csv(tmp_path / "P.csv", index=False)
    return tmp_path


SCAN = ["scan", "--queries", "Q.npy", "--candidates", "C.npy", "--positives", "P.csv", "--quiet",
        "--negative-sample", "2000"]
TRAIN = ["train", "--dataset", "shapes", "--epochs", "1", "--no-progress", "--out", "runs/x"]


@pytest.mark.parametrize("argv, flag", [
    ([*TRAIN, "--lr", "inf"], "--lr"),
    ([*TRAIN, "--lr", "nan"], "--lr"),
    ([*TRAIN, "--lr", "0"], "--lr"),
    ([*TRAIN, "--seed", "-1"], "--seed"),
    ([*TRAIN, "--momentum", "1"], "--momentum"),
    ([*TRAIN, "--epochs", "0"], "--epochs"),
    ([*TRAIN, "--batch-size", "1"], "--batch-size"),
    ([*TRAIN, "--tau", "nan"], "--tau"),
    ([*TRAIN, "--temperature", "inf"], "--temperature"),
    ([*TRAIN, "-o", "n_train=abc"], "-o/--option n_train"),
    ([*TRAIN, "-o", "genericness=nan"], "-o/--option genericness"),
    ([*TRAIN, "-o", "n_val=1.5"], "-o/--option n_val"),
    ([*SCAN, "--out", "s.parquet", "--suspect-threshold", "nan"], "--suspect-threshold"),
    ([*SCAN, "--out", "s.parquet", "--suspect-threshold", "2"], "--suspect-threshold"),
    ([*SCAN, "--out", "s.parquet", "--top-k", "0"], "--top-k"),
    ([*SCAN, "--out", "s.parquet", "--seed", "-3"], "--seed"),
    (["eval", "runs/x", "--fn-top-k", "0"], "--fn-top-k"),
    (["app", "--port", "70000", "--print-command"], "--port"),
])
def test_a_bad_flag_value_is_one_line_naming_the_flag_before_any_work(ws, capsys, monkeypatch, argv, flag):
    import fnlab.training.train as training

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started"))
    before = snapshot(ws)
    rc, err = run_cli(argv, capsys)
    line = one_line(err)
    assert rc == 2 and flag in line and "error:" in line, line
    assert snapshot(ws) == before and not (ws / "runs").exists()


def test_every_dataset_option_table_the_cli_checks_against_exists():
    import importlib

    from fnlab.cli.train import DATASET_DEFAULTS

    for name, (module, attr) in DATASET_DEFAULTS.items():
        assert isinstance(getattr(importlib.import_module(module), attr), dict), name


def test_top_k_is_capped_at_the_candidates_and_refused_by_name_where_it_cannot_fit(ws, capsys, monkeypatch):
    assert main([*SCAN, "--out", "s.parquet", "--top-k", "1000000000"]) == 0
    summary = json.loads((ws / "s.parquet.summary.json").read_text())
    table = pd.read_parquet(ws / "s.parquet")
    assert summary["top_k"] == 60 and table.groupby("query").size().max() == 59  # every candidate but its positive
    from fnlab.cli import scan as scan_cli

    monkeypatch.setattr(scan_cli, "_memory_bytes", lambda: 10_000)
    rc, err = run_cli([*SCAN, "--out", "s2.parquet", "--top-k", "40"], capsys)
    line = one_line(err)
    assert rc == 2 and "--top-k 40" in line and "memory" in line and not (ws / "s2.parquet").exists()


def test_ray_top_k_is_capped_and_a_batch_too_large_names_top_k():
    from fnlab.analysis.scan import ScanInputError
    from fnlab.analysis.scan.ray import _check_top_k

    assert _check_top_k(10**9, 80, 40) == 80
    with pytest.raises(ScanInputError, match=r"^top_k 1000000000: a batch of 4,096"):
        _check_top_k(10**9, 10**9, 4096)
    from fnlab.cli.scan import _flag_names

    assert _flag_names("top_k 5: too big").startswith("--top-k 5")


@pytest.mark.parametrize("table, expect", [
    ("query,candidate\n0,0\n1,\n2,2\n", "column 'candidate', row 1 (line 3 of the file) is empty (NaN)"),
    ("query,candidate\n0,0\n1.5,1\n", "column 'query', row 1 (line 3 of the file) holds 1.5"),
    ("query,candidate\nabc,0\n", "column 'query', row 0 (line 2 of the file) holds 'abc'"),
])
def test_a_positives_table_with_a_missing_or_wrong_id_names_file_column_and_row(ws, capsys, table, expect):
    (ws / "bad.csv").write_text(table)
    before = snapshot(ws)
    rc, err = run_cli([*SCAN[:5], "--positives", "bad.csv", "--out", "s.parquet"], capsys)
    line = one_line(err)
    assert rc == 2 and "bad.csv (positives)" in line and expect in line, line
    assert snapshot(ws) == before


def test_a_parquet_positives_table_with_nan_names_the_row(ws, capsys):
    pd.DataFrame({"query": [0.0, np.nan], "candidate": [0, 1]}).to_parquet(ws / "bad.parquet")
    rc, err = run_cli([*SCAN[:5], "--positives", "bad.parquet", "--out", "s.parquet"], capsys)
    assert rc == 2 and "column 'query', row 1 is empty (NaN)" in one_line(err)
    df = files.read_table(ws / "P.csv", columns=("query", "candidate"), integer_columns=("query", "candidate"))
    assert df["query"].dtype == np.int64


def test_a_ray_import_that_fails_otherwise_than_importerror_is_one_line(ws, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise RuntimeError("protobuf version mismatch\nsecond line")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    rc, err = run_cli(["scan", "--engine", "ray", *SCAN[1:], "--out", "ray-out"], capsys)
    line = one_line(err)
    assert rc == 2 and "Ray is installed but could not be imported (RuntimeError: protobuf version mismatch" in line
    assert not (ws / "ray-out").exists()


def test_an_unexpected_failure_is_one_line_with_exit_code_1(ws, capsys, monkeypatch):
    from fnlab.cli import runs as runs_cli

    monkeypatch.setattr(runs_cli, "run_list", lambda args: [][1])  # a bug
    rc, err = run_cli(["runs", "list"], capsys)
    line = one_line(err)
    assert rc == 1 and "internal error: IndexError" in line and "FNLAB_DEBUG=1" in line


def test_a_full_disk_is_named_however_the_writer_reports_it(tmp_path, monkeypatch):
    torch_text = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 251520 vs 251408")
    real = os.statvfs

    class Full:
        def __init__(self, st):
            self.f_bavail, self.f_frsize = 0, st.f_frsize

    monkeypatch.setattr(os, "statvfs", lambda p: Full(real(p)))
    err = files._named(torch_text, tmp_path / "run" / "model.pt")
    assert err.errno == errno.ENOSPC and describe_error(err).endswith("model.pt: no space left on the device")
    monkeypatch.setattr(os, "statvfs", real)
    arrow = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert files._named(arrow, tmp_path / "t.parquet").errno == errno.ENOSPC
    assert files._named(RuntimeError("bad pickle"), tmp_path / "x.pt").errno is None  # space left: not a full disk


def test_a_full_disk_while_saving_a_run_file_says_so(tmp_path, monkeypatch):
    from fnlab.storage.runs import RunStore

    def full_save(arr, path, *a, **k):
        raise RuntimeError("file write failed")

    w = RunStore(tmp_path / "runs").create({"sampler": "x"}, name="r")
    import torch

    monkeypatch.setattr(torch, "save", full_save)
    monkeypatch.setattr(files, "disk_full", lambda folder: True)
    with pytest.raises(OSError) as info:
        w.save_state_dict("model", {})
    assert info.value.errno == errno.ENOSPC and "model.pt: no space left" in describe_error(info.value)
    w.abort()


# ------------------------------------------------------------------------------------- review log
def test_a_damaged_line_of_the_review_log_is_skipped_with_a_warning_and_the_rest_kept(tmp_path):
    from fnlab.analysis import review

    log = review.FolderDecisions(tmp_path, session="s1")
    log.record("t2i", 1, 10, review.FALSE_NEGATIVE)
    log.record("t2i", 2, 20, review.TRUE_NEGATIVE)
    lines = log.path.read_text().splitlines()
    damaged = [lines[0], '{"id": "x", "direction": "t2i", "query": "abc", "candidate": 1, "decision": "false negative"}',
               "{not json", lines[1]]
    log.path.write_text("\n".join(damaged) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = log.load()
    msgs = [str(w.message) for w in caught if issubclass(w.category, review.ReviewLogWarning)]
    assert len(msgs) == 2 and "line 2 skipped" in msgs[0] and "line 3 skipped" in msgs[1]
    assert all(str(log.path) in m for m in msgs) and len(log.problems) == 2
    assert sorted(zip(got["query"], got["decision"], strict=True)) == [(1, review.FALSE_NEGATIVE),
                                                                       (2, review.TRUE_NEGATIVE)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log.record("t2i", 3, 30, review.FALSE_NEGATIVE)  # later writes keep working
        assert len(log.load()) == 3 and log.undo()["query"] == 3


# ------------------------------------------------------------------------------------- uploads
def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _declare(data: bytes, size: int) -> bytes:
    """The zip with its one member's declared (uncompressed) size changed in both headers."""
    buf = bytearray(data)
    central = buf.rfind(b"PK\x01\x02")
    buf[central + 24:central + 28] = size.to_bytes(4, "little")
    buf[22:26] = size.to_bytes(4, "little")
    return bytes(buf)


@pytest.fixture
def upload():
    from app import uploads

    folder = uploads.UploadFolder()
    yield folder
    folder.cleanup()


def test_an_upload_is_refused_from_its_declared_size_before_anything_is_written(upload, monkeypatch):
    from app import uploads

    forged = _declare(_zip({"zeros.bin": b"\0" * (1 << 20)}), 600 << 20)  # 1 MB that says 600 MiB
    written = []
    monkeypatch.setattr(uploads, "_copy_member", lambda *a, **k: written.append(a) or 0)
    with pytest.raises(uploads.UploadError, match=r"extracts to 600 MiB \(its declared sizes\)"):
        upload.extract(forged, "big.zip")
    assert written == [] and list(upload.path.iterdir()) == []
    bomb = _zip({"zeros.bin": b"\0" * (24 << 20)})  # 24 MiB of zeros: about 24 KB packed
    with pytest.raises(uploads.UploadError, match="to 1 .* at most 100 to 1 is accepted"):
        upload.extract(bomb, "bomb.zip")
    assert written == [] and list(upload.path.iterdir()) == []


def test_a_member_larger_than_it_declares_is_cut_off(upload):
    from app import uploads

    lying = _declare(_zip({"data.bin": os.urandom(200_000)}), 1000)
    with pytest.raises(uploads.UploadError) as err:
        upload.extract(lying, "lying.zip")
    assert str(err.value).startswith("lying.zip:") and list(upload.path.iterdir()) == []


@pytest.mark.parametrize("members, expect", [
    ({"a": b"file", "a/b.txt": b"x"}, "both as a file and as a folder"),
    ({"a/b.txt": b"x", "a": b"file"}, "both as a file and as a folder"),
    ({"d/": b"", "d": b"file"}, "both as a file and as a folder"),
    ({"x" * 300 + ".txt": b"x"}, "name too long"),
    ({"/".join(c * 250 for c in "yzwvu") + "/f": b"x"}, "name too long"),
])
def test_zip_layouts_that_cannot_be_extracted_are_upload_errors(upload, members, expect):
    from app import uploads

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        data = _zip(members)
    with pytest.raises(uploads.UploadError, match=expect) as err:
        upload.extract(data, "odd.zip")
    assert str(err.value).startswith("odd.zip:") and str(upload.path) not in str(err.value)
    assert list(upload.path.iterdir()) == []


def test_two_members_with_one_name_are_refused(upload):
    from app import uploads

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("pairs.csv", b"query,candidate\n0,0\n")
            zf.writestr("pairs.csv", b"evil")
    with pytest.raises(uploads.UploadError, match="two members named 'pairs.csv'"):
        upload.extract(buf.getvalue(), "dup.zip")


# ------------------------------------------------------------------------------------- listening
def test_the_app_finds_the_sockets_it_listens_on_and_which_are_open_to_every_interface():
    from app.listening import every_interface, listening_addresses

    if listening_addresses() is None:
        pytest.skip("no /proc/self/net/tcp here")
    public, local = socket.socket(), socket.socket()
    try:
        public.bind(("0.0.0.0", 0))
        local.bind(("127.0.0.1", 0))
        public.listen()
        local.listen()
        got = listening_addresses()
        assert ("0.0.0.0", public.getsockname()[1]) in got and ("127.0.0.1", local.getsockname()[1]) in got
        assert public.getsockname()[1] in every_interface(got)
        assert local.getsockname()[1] not in every_interface(got)
    finally:
        public.close()
        local.close()
    assert every_interface([("::", 8501), ("::1", 8502)]) == [8501]
