"""Real-browser smoke test: streamlit run + headless Debian chromium (playwright), every page, screenshots.

Screenshots go to test-artifacts/ (gitignored). Skipped with a reason where chromium or playwright is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _app_support import REPO, app_env, tiny_runs_root, warm_umap_cache

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = [("", "data"), ("train", "train"), ("rankings", "rankings"), ("distributions", "distributions"),
         ("playground", "playground"), ("embedding_map", "embedding_map"), ("suspects", "suspects"),
         ("compare", "compare")]
ARTIFACTS = REPO / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian chromium (make browser-deps) to run the browser test")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    root = tiny_runs_root(tmp_path_factory.mktemp("fnlab_browser"))
    warm_umap_cache(root)
    port = _free_port()
    env = {**os.environ, **app_env(root)}
    log = open(root.parent / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {(root.parent / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _settle(page, timeout: float = 90_000) -> None:
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    page.wait_for_timeout(400)  # let a rerun start before waiting for it to end
    page.wait_for_selector(IDLE, timeout=timeout)


def test_every_page_renders_without_exception(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            for path, shot in PAGES:
                page.goto(f"{server}/{path}")
                _settle(page)
                page.wait_for_selector("h1", timeout=30_000)
                if shot not in ("data", "train", "suspects"):
                    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
                    _settle(page)
                page.screenshot(path=str(ARTIFACTS / f"page_{shot}.png"), full_page=True)
                assert page.locator("[data-testid='stException']").count() == 0, f"exception on page {shot!r}"
                assert page.locator("[data-testid='stAlertContentError']").count() == 0, f"error on page {shot!r}"
            # Lasso on the embedding map: the side panel then lists the selected points.
            page.goto(f"{server}/embedding_map")
            _settle(page)
            plot = page.locator(".js-plotly-plot .nsewdrag").first
            box = plot.bounding_box()
            assert box is not None
            cx, cy, w, h = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"], box["height"]
            page.mouse.move(cx - w * 0.35, cy - h * 0.35)
            page.mouse.down()
            for fx, fy in ((0.35, -0.35), (0.35, 0.35), (-0.35, 0.35), (-0.35, -0.3)):
                page.mouse.move(cx + w * fx, cy + h * fy, steps=8)
            page.mouse.up()
            _settle(page)
            page.wait_for_selector("text=points selected", timeout=30_000)
            assert page.locator("[data-testid='stException']").count() == 0
            page.screenshot(path=str(ARTIFACTS / "page_embedding_map_lasso.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
