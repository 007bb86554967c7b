"""The app's background training jobs (lock files, crashes) and its bounded, private zip uploads."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from types import SimpleNamespace

import pandas as pd
import pytest
from _app_support import ensure_repo_on_path

ensure_repo_on_path()
from app import jobs, uploads  # noqa: E402


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _wait(pred, timeout: float = 900.0) -> None:
    """Poll ``pred`` until it holds; the deadline is generous (a busy 2-core machine running two suites may take
    minutes to start a job's Python and torch): it only ends a test that would otherwise hang."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout:.0f} s")
        time.sleep(0.1)


def _final(root, name: str):
    """The job's final status (done or failed), polled for."""
    _wait(lambda: jobs.status(root, name) is not None and jobs.status(root, name).state != "running")
    return jobs.status(root, name)


# ---------------------------------------------------------------------------------------------- jobs
def test_a_lock_held_by_a_live_process_blocks_a_second_job_and_a_dead_ones_is_released(tmp_path):
    (tmp_path / jobs.JOBS).mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        jobs._write_json(jobs._lock(tmp_path, "demo"), {"pid": holder.pid, "started": time.time()})
        jobs._write_json(jobs._progress(tmp_path, "demo"), {"state": "running", "fraction": 0.4, "text": "epoch 2"})
        st = jobs.status(tmp_path, "demo")
        assert st.state == "running" and st.fraction == 0.4 and st.pid == holder.pid
        assert jobs.start(tmp_path, "demo", {"dataset": "shapes"}) is False  # one job per run, no second start
        assert [j.name for j in jobs.running(tmp_path)] == ["demo"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died (a crash, kill -9): the lock is stale, released by the next reader, and reported.
    st = jobs.status(tmp_path, "demo")
    assert st.state == "failed" and "stopped unexpectedly" in st.error
    assert not jobs._lock(tmp_path, "demo").exists()
    assert jobs.running(tmp_path) == []


def test_a_failing_job_reports_one_line_and_releases_its_lock(tmp_path):
    assert jobs.start(tmp_path, "bad", {"dataset": "no-such-dataset", "epochs": 1}) is True
    st = _final(tmp_path, "bad")
    assert st.state == "failed" and "no-such-dataset" in st.error and "\n" not in st.error
    assert "Traceback" not in st.error
    assert not jobs._lock(tmp_path, "bad").exists()  # released before the final state was written
    assert not (tmp_path / "bad").exists()  # no half run
    # After a failure the same name can be started again (the failed attempt is not reused).
    assert jobs.start(tmp_path, "bad", {"dataset": "no-such-dataset", "epochs": 1}) is True
    assert _final(tmp_path, "bad").state == "failed" and not jobs._lock(tmp_path, "bad").exists()


def test_a_job_releases_its_lock_before_it_writes_its_final_state(tmp_path, monkeypatch):
    """In-process: the final state is written only once the lock is gone, so whoever sees it finds no lock."""
    (tmp_path / jobs.JOBS).mkdir()
    jobs._write_json(jobs._lock(tmp_path, "bad"), {"pid": os.getpid(), "started": time.time()})
    seen = []
    real_write = jobs._write_json

    def write(path, obj):
        if path == jobs._progress(tmp_path, "bad") and obj.get("state") != "running":
            seen.append((obj["state"], jobs._lock(tmp_path, "bad").exists()))
        real_write(path, obj)

    monkeypatch.setattr(jobs, "_write_json", write)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the job's handlers are not this test process's
    rc = jobs.main(["--root", str(tmp_path), "--name", "bad", "--config", '{"dataset": "no-such-dataset"}'])
    assert rc == 1 and seen == [("failed", False)]
    # between the two steps (lock gone, progress still 'running' with a live pid) the job still reads as running
    real_write(jobs._progress(tmp_path, "bad"), {"state": "running", "fraction": 0.9, "text": "", "pid": os.getpid()})
    assert jobs.status(tmp_path, "bad").state == "running"
    real_write(jobs._progress(tmp_path, "bad"), {"state": "running", "fraction": 0.9, "text": "", "pid": 2**22 + 7})
    assert jobs.status(tmp_path, "bad").state == "failed"  # ... and as failed when that process is gone


def test_a_killed_job_leaves_no_lock_behind(tmp_path):
    cfg = {"dataset": "shapes", "dataset_options": {"n_train": 64, "n_val": 40, "n_test": 40}, "sampler": "random",
           "epochs": 50, "batch_size": 32, "dim": 16, "width": 8, "text_encoder": "bag", "queue_size": 0,
           "device": "cpu"}
    assert jobs.start(tmp_path, "killed", cfg)
    pid = jobs.status(tmp_path, "killed").pid
    os.kill(pid, signal.SIGKILL)
    assert _final(tmp_path, "killed").state == "failed"
    assert not jobs._lock(tmp_path, "killed").exists()
    assert not (tmp_path / "killed").exists()


# ------------------------------------------------------------------------------------------- uploads
def test_zip_extraction_is_bounded_in_size_and_count_and_a_failure_leaves_nothing(tmp_path):
    folder = uploads.UploadFolder()
    try:
        assert oct(folder.path.stat().st_mode & 0o777) == "0o700"  # private to the server user
        bomb = _zip({"zeros.bin": b"\0" * (3 << 20)})  # 3 MiB of zeros compress to a few KiB
        assert len(bomb) < 50_000
        with pytest.raises(uploads.UploadError, match="extracts to 3 MiB .* at most 1 MiB"):
            folder.extract(bomb, "bomb.zip", max_bytes=1 << 20)
        assert list(folder.path.iterdir()) == []  # the failed extraction is gone, never reused
        many = _zip({f"f{i}.txt": b"x" for i in range(6)})
        with pytest.raises(uploads.UploadError, match="at most 5"):
            folder.extract(many, "many.zip", max_files=5)
        ok = folder.extract(many, "many.zip")
        assert sorted(p.name for p in ok.iterdir()) == [f"f{i}.txt" for i in range(6)]
        assert folder.extract(many, "many.zip") == ok  # the same upload is extracted once
        path = folder.path
    finally:
        folder.cleanup()
    assert not path.exists()  # removed with the session


@pytest.mark.parametrize("member", ["../escape.txt", "/abs.txt", "a/../../b.txt"])
def test_zip_members_outside_the_folder_are_refused(member):
    folder = uploads.UploadFolder()
    try:
        with pytest.raises(uploads.UploadError, match="unsafe path"):
            folder.extract(_zip({member: b"x"}), "evil.zip")
        assert not (folder.path.parent / "escape.txt").exists()
    finally:
        folder.cleanup()


def test_corrupt_zip_and_zip_without_dataset_give_clear_messages_without_server_paths():
    folder = uploads.UploadFolder()
    try:
        good = _zip({"notes/readme.txt": b"hello"})
        corrupt = good[:30] + b"\xff" * 40 + good[70:]
        with pytest.raises(uploads.UploadError) as err:
            folder.extract(corrupt, "broken.zip")
        assert str(err.value).startswith("broken.zip:") and str(folder.path) not in str(err.value)
        with pytest.raises(uploads.UploadError) as err:
            folder.extract(b"not a zip at all", "text.zip")
        assert "not a valid zip file" in str(err.value)
        extracted = folder.extract(good, "notes.zip")
        with pytest.raises(uploads.UploadError, match="holds no dataset") as err:
            uploads.dataset_root(extracted)
        assert str(folder.path) not in str(err.value)
    finally:
        folder.cleanup()


def test_uploaded_image_paths_must_stay_inside_the_upload(tmp_path):
    inside = SimpleNamespace(a_meta=pd.DataFrame({"image_path": [str(tmp_path / "img" / "0.png"), ""]}))
    uploads.check_confined(inside, tmp_path)
    for bad in ("/etc/passwd", str(tmp_path / ".." / "other.png")):
        ds = SimpleNamespace(a_meta=pd.DataFrame({"image_path": [str(tmp_path / "ok.png"), bad]}))
        with pytest.raises(uploads.UploadError, match="candidate 1 points outside the uploaded folder"):
            uploads.check_confined(ds, tmp_path)


def test_folder_boxes_resolve_paths_and_refuse_system_folders(tmp_path):
    pytest.importorskip("streamlit")
    from app import state

    assert state.checked_folder(str(tmp_path / "a" / ".." / "runs"), "Runs folder") == (tmp_path / "runs").resolve()
    for system in ("/", "/etc", "/usr/lib/../bin", "/proc/self"):
        with pytest.raises(ValueError, match="is a system folder"):
            state.checked_folder(system, "Runs folder")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        state.checked_folder(str(tmp_path / "f.txt"), "Runs folder")
    assert not (tmp_path / "runs").exists()  # checking creates nothing
