"""Shared parts of the real-browser tests (``tests/test_browser.py``, ``tests/test_browser_own.py``): a
``streamlit run`` server on localhost, headless Debian chromium (playwright) at 1280 px, waits that poll for the
state they need, screenshots to test-artifacts/ and timings (measured and written out, never asserted).

Its fixtures (``server``, ``own_server``, ``browser``) are module-scoped and made known to pytest by
tests/conftest.py, so each browser test module starts its own server and browser: two xdist workers run the two
modules side by side.
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
from _app_support import REPO, app_env, tiny_runs_root

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = [("", "data"), ("lesson", "lesson"), ("train", "train"), ("rankings", "rankings"),
         ("distributions", "distributions"), ("playground", "playground"), ("embedding_map", "embedding_map"),
         ("suspects", "suspects"), ("compare", "compare"), ("which_sampler", "which_sampler")]
ARTIFACTS = REPO / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
WIDTH = 1280
TIMINGS: list[str] = []
# Every wait polls for the state it needs; this limit only ends a hung test. Generous, since two suites on one busy
# 2-core machine can take minutes for a first page (timings are measured and written out, never asserted).
WAIT_MS = 600_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env: dict[str, str], log_path: Path):
    port = _free_port()
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"], cwd=REPO, env={**os.environ, **env}, stdout=log,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + WAIT_MS / 1000
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, log, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)


def _stop(proc, log) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _needs_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian chromium (make browser-deps) to run the browser test")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _needs_browser()
    root = tiny_runs_root(tmp_path_factory.mktemp("fnlab_browser"))
    from _regime_fixture import write as write_regime_map

    # the Which sampler? page draws a fixed map, whatever bench/results holds
    regime_map = write_regime_map(root.parent / "regime_map.json")
    proc, log, url = _serve({**app_env(root), "FNLAB_REGIME_MAP": str(regime_map)}, root.parent / "streamlit.log")
    _SERVER_ROOTS[url] = str(root)
    try:
        yield url
    finally:
        _stop(proc, log)


@pytest.fixture(scope="module")
def timings_file(request):
    """Writes the module's timings to test-artifacts/<module's timings file> (``TIMINGS_FILE`` of the module)."""
    start = len(TIMINGS)
    yield
    mine = TIMINGS[start:]
    if mine:
        ARTIFACTS.mkdir(exist_ok=True)
        name = getattr(request.module, "TIMINGS_FILE", "browser_timings.txt")
        (ARTIFACTS / name).write_text("\n".join(mine) + "\n")


@pytest.fixture(scope="module")
def browser(timings_file):
    _needs_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _settle(page, timeout: float | None = None) -> float:
    """Wait for the script run an action started to finish; returns the seconds waited."""
    t = time.perf_counter()
    timeout = WAIT_MS if timeout is None else timeout
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout)
    page.wait_for_timeout(300)  # let a rerun start before waiting for it to end
    page.wait_for_selector(IDLE, timeout=timeout)
    return time.perf_counter() - t


# Records, in the page, when each script run ends and the browser has painted after it (two animation frames
# later): timings read these instead of counting the fixed wait of _settle. A page load replaces the observer.
_OBSERVE = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  if (!app || window.__fnlabRuns) return;
  window.__fnlabRuns = [];
  new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') !== 'notRunning') return;
    requestAnimationFrame(() => requestAnimationFrame(() => window.__fnlabRuns.push(performance.now())));
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def _observed(page, action, target=None) -> float | None:
    """Seconds from the gesture to the browser's paint after the last script run it started (the fixed wait
    of :func:`_settle` not counted), or ``None`` when no run was observed (a page load, or nothing reran).
    ``target``: the locator ``action`` clicks; the clock starts once it can be clicked (visible, enabled and
    still), as a user clicks what they see, not while a freshly loaded page still settles."""
    if target is not None:
        target.click(trial=True, timeout=WAIT_MS)
    page.evaluate(_OBSERVE)
    t0 = page.evaluate("() => performance.now()")
    action()
    _settle(page)
    page.wait_for_timeout(50)  # the two frames after the last run
    ends = page.evaluate("() => window.__fnlabRuns || null")
    after = [e for e in (ends or []) if e > t0]
    return (max(after) - t0) / 1000.0 if after else None


def _timed(page, what: str, action, target=None) -> None:
    """Times ``action`` into the timings file (see :func:`_observed`; ``target``: the locator it clicks)."""
    t = time.perf_counter()
    took = _observed(page, action, target)
    if took is not None:
        TIMINGS.append(f"{what:<55} {took:6.2f} s (to the paint after the run)")
    else:
        TIMINGS.append(f"{what:<55} {time.perf_counter() - t:6.2f} s (incl. a fixed 0.30 s wait)")


def _no_errors(page, where: str) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, f"exception on {where}"
    assert page.locator("[data-testid='stAlertContentError']").count() == 0, f"error on {where}"


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _new_page(browser, errors: list[str]):
    # 1280 px wide; tall, because Streamlit scrolls inside the page and a screenshot shows only the window
    page = browser.new_page(viewport={"width": WIDTH, "height": 2400})
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _not_cut_off(page, where: str) -> None:
    """Nothing wider than the window: no horizontal scroll at 1280 px."""
    over = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert over <= 1, f"{where}: content is {over}px wider than the {WIDTH}px window"


def _selectbox_texts(page) -> list[str]:
    """Shown text of every select box (its visible text and its input's value)."""
    return page.evaluate("""() => [...document.querySelectorAll("[data-testid='stSelectbox']")].map(
        el => el.innerText + ' ' + [...el.querySelectorAll('input')].map(i => i.value).join(' '))""")


def _selectbox_shows(page, text: str, timeout: float | None = None) -> list[str]:
    """Wait until a select box shows ``text`` and return every select box's text (the last seen if it never does).

    Polls: under load a page can draw its chart a frame before its select boxes, or be between two reruns."""
    script = """(text) => [...document.querySelectorAll("[data-testid='stSelectbox']")].some(
        el => (el.innerText + ' ' + [...el.querySelectorAll('input')].map(i => i.value).join(' ')).includes(text))"""
    try:
        page.wait_for_function(script, arg=text, timeout=60_000 if timeout is None else timeout)
    except Exception:  # the caller's assertion reports what the page shows
        pass
    return _selectbox_texts(page)


def _click_point(page, below: int = 10**9) -> int:
    """Click, at its exact position, the most isolated embedding-map point with an id below ``below`` (a click
    picks the nearest point, so a point in a crowd may hand the click to a neighbour); returns its id."""
    # Poll: under load the map may still be drawing (or redrawing after a rerun) when this is called.
    got = page.wait_for_function(
        """(below) => {
            const gd = document.querySelector('.js-plotly-plot');
            if (!gd || !gd._fullLayout || !gd._fullData) return null;
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
            const pts = [];
            for (const tr of gd._fullData) {
                if (!tr.customdata || tr.name === 'selected / neighbours') continue;
                for (let i = 0; i < tr.customdata.length; i++) {
                    const cd = tr.customdata[i];
                    pts.push([(Array.isArray(cd) || ArrayBuffer.isView(cd)) ? Number(cd[0]) : cd, r.left + xa._offset + xa.l2p(tr.x[i]),
                              r.top + ya._offset + ya.l2p(tr.y[i])]);
                }
            }
            let best = null, bestGap = 3;  // the most isolated point below `below`, at least 3 px from any other
            for (const [id, x, y] of pts) {
                if (id >= below) continue;
                const gap = Math.min(...pts.filter(([j]) => j !== id).map(([j, u, v]) => Math.hypot(u - x, v - y)));
                if (gap > bestGap) { best = [id, x, y]; bestGap = gap; }
            }
            return best;
        }""", arg=below, timeout=120_000).json_value()
    assert got is not None, "no point on the map sits 3 px from every other"
    page.mouse.click(got[1], got[2])
    return int(got[0])


def _traces(page, plot: int) -> list[dict]:
    """Name, subplot and x / y values of every trace of the ``plot``-th plotly chart on the page."""
    return page.evaluate(
        """(i) => [...document.querySelectorAll('.js-plotly-plot')][i]._fullData.map(t => ({
            name: t.name, axis: t.xaxis || 'x', x: Array.from(t.x || []), y: Array.from(t.y || [])}))""", plot)


def _open_page(page, link: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=link).first.click()
    page.wait_for_selector(f"h1:has-text('{link.split()[0]}')", timeout=WAIT_MS)
    page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
    _settle(page, 120_000)


def _main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def _tables_fit(page, where: str) -> None:
    """No table scrolls sideways: every column is visible at 1280 px."""
    over = page.evaluate("() => [...document.querySelectorAll('.dvn-scroller')].map(e => e.scrollWidth - e.clientWidth)")
    assert all(o <= 2 for o in over), f"{where}: a table is wider than its box by {over} px"


def _goto(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("h1", timeout=WAIT_MS)
    _settle(page)


def _warm_timed(page, what: str, first, second, repeats: int = 2) -> None:
    """A warm interaction, timed (written to browser_timings.txt, never asserted): one untimed warm-up, then
    alternating actions, each from the gesture until the script run it started has finished."""
    first(page)
    _settle(page)
    times, observed = [], True
    for i in range(repeats * 2):
        t = time.perf_counter()
        took = _observed(page, lambda i=i: (second if i % 2 == 0 else first)(page))
        observed &= took is not None
        times.append(took if took is not None else time.perf_counter() - t)
    how = "to the paint after the run" if observed else "incl. a fixed 0.30 s wait"
    TIMINGS.append(f"{'warm: ' + what:<55} {sorted(times)[len(times) // 2]:6.2f} s (median, {how})")


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """The app on a runs folder with one run trained on a folder of texts (documents and queries, no pictures)."""
    from _app_support import own_runs_root

    _needs_browser()
    root = own_runs_root(tmp_path_factory.mktemp("fnlab_browser_own"))
    proc, log, url = _serve(app_env(root), root.parent / "streamlit-own.log")
    try:
        yield url, root
    finally:
        _stop(proc, log)


def _marker(page, plot: int, name: str) -> tuple[str, str]:
    return tuple(page.evaluate(
        """([i, name]) => { const t = [...document.querySelectorAll('.js-plotly-plot')][i]._fullData
             .find(t => t.name === name); return [t.marker.color, t.marker.symbol]; }""", [plot, name]))


_SERVER_ROOTS: dict[str, str] = {}


def server_root(url: str) -> str:
    """The runs folder the module's server shows (set by the ``server`` fixture's environment)."""
    return _SERVER_ROOTS.get(url) or os.environ.get("FNLAB_BROWSER_RUNS", "")
