"""The app never creates a folder or starts work from a text box, and says so when it serves every network
interface; ``fnlab app`` listens on 127.0.0.1 from any working folder. AppTest on the tiny run (shared with the page
tests), plus one real server for the launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from _app_support import REPO, app_env, ensure_repo_on_path, tiny_runs_root  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ensure_repo_on_path()

MAIN = str(REPO / "app" / "main.py")
TIMEOUT = 600  # a limit for one script run on a busy machine, not a speed target: it only ends a hung run
WAIT_S = 900  # the same for a server to come up


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The tiny run in the default runs folder; the demo run is NOT switched off, so a test sees if it starts."""
    root = tiny_runs_root(tmp_path_factory.mktemp("fnlab_app_safety"))
    e = {k: v for k, v in app_env(root).items() if k != "FNLAB_NO_DEMO"}
    old = {k: os.environ.get(k) for k in [*e, "FNLAB_NO_DEMO"]}
    os.environ.update(e)
    os.environ.pop("FNLAB_NO_DEMO", None)
    yield e
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _open(page: str = "views/rankings.py") -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_a_typed_runs_folder_that_does_not_exist_is_never_created_and_no_demo_starts(env, tmp_path):
    at = _open()
    for typed in (str(tmp_path / "no" / "such" / "dir"), f"{tmp_path}/a/../b"):
        at.sidebar.text_input(key="runs_root").set_value(typed).run()
        assert not at.exception, at.exception
        assert any("does not exist" in w.value for w in at.sidebar.warning), [w.value for w in at.sidebar.warning]
        assert [b.label for b in at.sidebar.button] == ["Create this folder"]
        assert any("does not exist" in i.value for i in at.info)  # the page says so too
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created: not no/, not a/, not b/
    # an existing folder without runs: the demo run is offered, not started
    (tmp_path / "empty").mkdir()
    at.sidebar.text_input(key="runs_root").set_value(str(tmp_path / "empty")).run()
    assert not at.exception and list((tmp_path / "empty").iterdir()) == []
    assert any(b.label == "Train the demo run in this folder" for b in at.button)
    # the explicit click creates the folder
    at.sidebar.text_input(key="runs_root").set_value(str(tmp_path / "new" / "runs")).run()
    at.sidebar.button(key="create_runs_root").click().run()
    assert not at.exception and (tmp_path / "new" / "runs").is_dir() and not at.sidebar.warning
    assert list((tmp_path / "new" / "runs").iterdir()) == []


def test_the_page_warns_when_the_server_listens_on_every_interface(env):
    from streamlit import config

    from app import state

    at = _open("views/data.py")
    assert not [w for w in at.warning if "every network interface" in w.value]
    public = socket.socket()
    old = config.get_option("server.port")
    try:
        public.bind(("0.0.0.0", 0))
        public.listen()
        config.set_option("server.port", public.getsockname()[1])  # as if this were the server's socket
        state._public.clear()
        at = _open("views/data.py")
        assert any("every network interface" in w.value and "fnlab app" in w.value for w in at.warning)
    finally:
        public.close()
        config.set_option("server.port", old)
        state._public.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fnlab_app_listens_on_this_machine_only_from_any_working_folder(tmp_path):
    from app.listening import listening_addresses

    if listening_addresses() is None:
        pytest.skip("no /proc here")
    port = _free_port()
    env = {**os.environ, "FNLAB_NO_DEMO": "1", "FNLAB_RUNS": str(tmp_path / "runs"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "fnlab.cli", "app", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, f"the server did not answer in {WAIT_S} s"
            time.sleep(0.5)
        served = [(a, p) for a, p in listening_addresses(f"/proc/{proc.pid}") or [] if p == port]
        assert served == [("127.0.0.1", port)], served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "runs").exists() and not Path(tmp_path, ".streamlit").exists()


def test_the_launcher_passes_every_server_setting_itself():
    from fnlab.cli.app import command

    cmd = command("127.0.0.1", 8600)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--server.headless") + 1] == "true" and Path(cmd[cmd.index("run") + 1]).samefile(MAIN)
    make = (REPO / "Makefile").read_text()
    assert "fnlab.cli app --address $(ADDRESS)" in make and "ADDRESS ?= 127.0.0.1" in make
