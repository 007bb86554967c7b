"""Real-browser test: streamlit run + headless Debian chromium (playwright) at 1280 px.

Drives every page, the lesson from start to end, the linked views (suspect -> Rankings, map click -> side
panel -> Rankings), sidebar persistence across pages, and a first start that trains the demo run in the
background and then shows its story (the first page's example caption, Rankings and the Sampler playground
opening on it). Asserts content, saves screenshots to test-artifacts/ (gitignored) and writes the measured
timings to test-artifacts/browser_timings.txt and the demo run's figures to test-artifacts/demo_story.txt
(figures only, no timed assertions). Skipped with a reason where chromium or playwright is missing.
"""

from __future__ import annotations

import os
import re
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
    warm_umap_cache(root)
    from _regime_fixture import write as write_regime_map

    # the Which sampler? page draws a fixed map, whatever bench/results holds
    regime_map = write_regime_map(root.parent / "regime_map.json")
    proc, log, url = _serve({**app_env(root), "FNLAB_REGIME_MAP": str(regime_map)}, root.parent / "streamlit.log")
    _SERVER_ROOTS[url] = str(root)
    try:
        yield url
    finally:
        _stop(proc, log)


@pytest.fixture(scope="module", autouse=True)
def timings_file():
    yield
    if TIMINGS:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "browser_timings.txt").write_text("\n".join(TIMINGS) + "\n")


@pytest.fixture(scope="module")
def browser():
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


def _timed(page, what: str, action) -> None:
    t = time.perf_counter()
    action()
    _settle(page)
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


def test_every_page_renders_at_1280px(server, browser):
    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        for path, shot in PAGES:
            _timed(page, f"first open of page {shot}", lambda path=path: page.goto(f"{server}/{path}"))
            page.wait_for_selector("h1", timeout=WAIT_MS)
            if shot not in ("data", "train", "suspects", "lesson"):
                page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
                _settle(page)
            _shot(page, f"page_{shot}")
            _no_errors(page, shot)
            _not_cut_off(page, shot)
            _tables_fit(page, shot)
        # the developer toolbar is off (viewer mode): no Deploy button
        assert page.get_by_text("Deploy", exact=True).count() == 0
        for path, shot in PAGES:  # every page again, now cached (a full page load each time)
            _timed(page, f"cached open of page {shot}", lambda path=path: page.goto(f"{server}/{path}"))
    finally:
        page.close()
    assert not errors, errors


def test_sidebar_choices_persist_across_pages(server, browser):
    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        page.goto(f"{server}/rankings")
        _settle(page)
        side = page.locator("[data-testid='stSidebar']")
        _timed(page, "sidebar: split -> val", lambda: side.get_by_text("val", exact=True).click())
        _timed(page, "sidebar: direction -> image → text", lambda: side.get_by_text("image → text").click())
        for link in ("Distributions", "Embedding map", "Compare runs", "Rankings"):
            _timed(page, f"page change to {link}",
                   lambda link=link: page.locator("[data-testid='stSidebarNav'] a", has_text=link).first.click())
            page.wait_for_selector("h1", timeout=WAIT_MS)
            _settle(page)
            checked = side.locator("input[type='radio']:checked")
            values = [checked.nth(i).evaluate("e => e.closest('label').innerText") for i in range(checked.count())]
            assert "val" in values and any("image → text" in v for v in values), (link, values)
            _no_errors(page, link)
        _shot(page, "sidebar_persisted_rankings")
        assert "run=tiny" in page.url
    finally:
        page.close()
    assert not errors, errors


def test_lesson_from_start_to_end(server, browser):
    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        page.goto(f"{server}/lesson")
        _settle(page)
        for step in range(1, 6):
            page.get_by_text(f"Step {step} of 5").wait_for(timeout=WAIT_MS)
            if step > 1:
                page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
            _settle(page)
            _no_errors(page, f"lesson step {step}")
            _not_cut_off(page, f"lesson step {step}")
            _shot(page, f"lesson_step{step}")
            if step < 5:
                _timed(page, f"lesson: next to step {step + 1}",
                       lambda: page.get_by_role("button", name=re.compile("Next")).click())
        assert page.get_by_text("calibrated").count() >= 1
        page.get_by_role("button", name=re.compile("Start again")).click()
        _settle(page)
        page.get_by_text("Step 1 of 5").wait_for(timeout=WAIT_MS)
    finally:
        page.close()
    assert not errors, errors


def _selectbox_texts(page) -> list[str]:
    """Shown text of every select box (its visible text and its input's value)."""
    return page.evaluate("""() => [...document.querySelectorAll("[data-testid='stSelectbox']")].map(
        el => el.innerText + ' ' + [...el.querySelectorAll('input')].map(i => i.value).join(' '))""")


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


def test_linked_views(server, browser):
    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        # Suspect -> its query in Rankings.
        page.goto(f"{server}/suspects")
        _settle(page)
        text = page.locator("[data-testid='stMarkdownContainer']", has_text=re.compile(r"^Caption \d+")).first.inner_text()
        query = int(re.match(r"Caption (\d+)", text).group(1))
        _timed(page, "suspect -> open in Rankings",
               lambda: page.get_by_role("button", name=re.compile("Open this caption in Rankings")).click())
        page.wait_for_selector("h1:has-text('Rankings')", timeout=WAIT_MS)
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        _shot(page, "linked_suspect_to_rankings")
        assert any(f"#{query}:" in t for t in _selectbox_texts(page)), (query, _selectbox_texts(page))
        assert f"query={query}" in page.url
        # Rankings -> the map with that caption selected (40 images come first).
        _timed(page, "rankings -> show on the map",
               lambda: page.get_by_role("button", name=re.compile("Show on the map")).click())
        page.get_by_text(f"Point {40 + query}").first.wait_for(timeout=WAIT_MS)
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        _shot(page, "linked_rankings_to_map")
        # A click on another map point selects it.
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        clicked = []
        _timed(page, "map: click a point", lambda: clicked.append(_click_point(page, below=40)))  # an image
        page.get_by_text(f"Point {clicked[0]},").first.wait_for(timeout=WAIT_MS)
        _shot(page, "map_point_clicked")
        # Text search on the map.
        box = page.get_by_role("textbox", name="Find on the map")
        box.fill("circle")
        _timed(page, "map: text search", lambda: box.press("Enter"))
        assert page.get_by_text(re.compile(r"[\d,]+ found: select one")).count() == 1
        # The map point -> its ranking (image 3: image -> text).
        _timed(page, "map point -> open its ranking",
               lambda: page.get_by_role("button", name=re.compile("Open its ranking")).click())
        page.wait_for_selector("h1:has-text('Rankings')", timeout=WAIT_MS)
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        assert any(f"#{clicked[0]}:" in t for t in _selectbox_texts(page)), _selectbox_texts(page)
        _no_errors(page, "linked views")
        _shot(page, "linked_map_to_rankings")
    finally:
        page.close()
    assert not errors, errors


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


def test_first_start_trains_the_demo_run_and_it_tells_the_story(tmp_path, browser):
    """The real first start: no run, an empty dataset cache (only what the repository ships). The demo run trains
    in the background; then the first page points at its example caption, Rankings opens on it with the labelled
    image in the top 3 behind a false negative, and the Sampler playground opens on it too: hardest draws a false
    negative for it, FNE much less often, and over a batch of training captions (the pool samplers see in training)
    FNE's false-negative risk is below hardest's and SimANS's (the numbers go to test-artifacts/demo_story.txt)."""
    _needs_browser()
    root = tmp_path / "runs"
    env = {"FNLAB_RUNS": str(root), "FNLAB_CACHE": str(tmp_path / "cache")}
    proc, log, url = _serve(env, tmp_path / "streamlit.log")
    errors: list[str] = []
    page = _new_page(browser, errors)
    story: list[str] = []
    try:
        t0 = time.perf_counter()
        page.goto(f"{url}/")
        training = page.get_by_text("Training the demo run").first
        picker = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
        training.or_(picker).wait_for(timeout=WAIT_MS)  # the progress bar, or (a very busy machine) the run itself
        if training.is_visible():
            _shot(page, "first_start_training")
            # Clicks and page changes while it trains neither stop it nor claim another session trains it.
            page.locator("[data-testid='stSidebarNav'] a", has_text="Rankings").first.click()
            page.wait_for_timeout(1500)
            assert page.get_by_text("Another session").count() == 0
            page.goto(f"{url}/")
        picker.wait_for(timeout=WAIT_MS)
        ready = time.perf_counter() - t0
        _settle(page)
        assert "run=demo" in page.url and any("demo" in t for t in _selectbox_texts(page))
        TIMINGS.append(f"{'first start: demo trained, first page ready':<55} {ready:6.2f} s")
        story.append(f"first start to a ready first page: {ready:.1f} s (load average {os.getloadavg()[0]:.2f})")
        _no_errors(page, "first start")

        # The first page's two sentences name the example caption.
        text = page.locator("[data-testid='stMarkdownContainer']", has_text="An example on run demo").first.inner_text()
        m = re.search(r"caption #(\d+) “(.+?)” finds its labelled image at rank (\d+), behind (\d+) image", text)
        assert m, text
        query, rank = int(m.group(1)), int(m.group(3))
        story.append(f"first page: {text}")
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        named = re.search(r"caption #(\d+)", readme[readme.index("### The demo run"):])
        assert named and int(named.group(1)) == query, "the README's example caption is not the app's"
        _shot(page, "first_start_ready")

        # Rankings opens on it: the labelled image in the top 3, a false negative above it.
        _open_page(page, "Rankings")
        assert any(f"#{query}:" in t for t in _selectbox_texts(page)), (query, _selectbox_texts(page))
        bars = {t["name"]: t["x"] for t in _traces(page, 0)}
        pos_rank, fn_ranks = min(bars["labelled positive"]), sorted(bars.get("false negative", []))
        assert pos_rank == rank <= 3 and fn_ranks and fn_ranks[0] < pos_rank, (pos_rank, fn_ranks)
        story.append(f"Rankings, query #{query}: labelled positive at rank {pos_rank}; false negatives at ranks "
                     f"{fn_ranks}")
        _no_errors(page, "rankings")
        _not_cut_off(page, "rankings")
        _shot(page, "story_rankings")

        # The Sampler playground opens on it too.
        _open_page(page, "Sampler playground")
        assert any(f"#{query}:" in t for t in _selectbox_texts(page)), (query, _selectbox_texts(page))
        traces = _traces(page, 0)
        axes = sorted({t["axis"] for t in traces}, key=lambda a: int(a[1:] or 1))
        # the subplots' titles, top to bottom: the page's samplers in the order of their rows
        names = [t for t in page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.annotations"
                                          ".map(a => a.text)") if not t.startswith("labelled positive")]
        on_fn = {n: sum(sum(t["y"]) for t in traces if t["axis"] == a and t["name"] == "false negative")
                 for n, a in zip(names, axes, strict=True)}
        risk = {t["name"]: t["y"][0] for t in _traces(page, 1)}
        story.append(f"playground, query #{query}: probability of drawing a false negative (top 30 shown): "
                     + ", ".join(f"{n} {v:.1%}" for n, v in on_fn.items()))
        story.append("playground, batch of 128 training captions against the training split: false-negative risk "
                     + ", ".join(f"{n} {v:.1%}" for n, v in risk.items()))
        assert on_fn["hardest"] > 0.99 and on_fn["fne · calibrated"] < 0.5 * on_fn["hardest"], on_fn
        assert risk["fne · calibrated"] < risk["hardest"] and risk["fne · paper"] < risk["hardest"], risk
        assert risk["fne · calibrated"] < risk["simans"], risk
        _no_errors(page, "playground")
        _not_cut_off(page, "playground")
        _shot(page, "story_playground")
    finally:
        page.close()
        _stop(proc, log)
        if story:
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "demo_story.txt").write_text("\n".join(story) + "\n")
    assert not errors, errors


# ------------------------------------------------------------------ issue 24: own data, URL, review keys, polish
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
    times = []
    for i in range(repeats * 2):
        t = time.perf_counter()
        (second if i % 2 == 0 else first)(page)
        _settle(page)
        times.append(time.perf_counter() - t)
    TIMINGS.append(f"{'warm: ' + what:<55} {sorted(times)[len(times) // 2]:6.2f} s (median, incl. a fixed 0.30 s wait)")


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


def test_own_folder_walk(own_server, browser):
    """A user's folder of texts: every page speaks of documents and queries (never images or captions), every split
    and all of them can be shown, and the export carries the texts."""
    url, _ = own_server
    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        for path, shot in PAGES:
            _goto(page, f"{url}/{path}")
            if shot in ("rankings", "distributions", "playground", "embedding_map"):
                page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
                _settle(page)
            text = _main_text(page) + page.locator("[data-testid='stSidebar']").inner_text()
            for word in ("image", "caption"):
                assert word not in text.lower(), (shot, [line for line in text.splitlines() if word in line.lower()])
            _no_errors(page, f"own {shot}")
            _not_cut_off(page, f"own {shot}")
            _tables_fit(page, f"own {shot}")
            _shot(page, f"own_{shot}")
        assert "query → document" in page.locator("[data-testid='stSidebar']").inner_text()
        # every split, and all of them
        _goto(page, f"{url}/rankings")
        side = page.locator("[data-testid='stSidebar']")
        _timed(page, "own data: split -> all splits", lambda: side.get_by_text("all splits", exact=True).click())
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        assert "split=all" in page.url
        _no_errors(page, "own rankings, all splits")
        _shot(page, "own_rankings_all_splits")
        # the suspects export: texts beside the ids
        _goto(page, f"{url}/suspects?split=test")
        with page.expect_download(timeout=WAIT_MS) as got:
            page.get_by_role("button", name=re.compile("Download .* rows")).click()
        csv = Path(got.value.path()).read_text()
        header = csv.splitlines()[0].split(",")
        assert {"query_id", "query_text", "candidate_id", "candidate_text"} <= set(header), header
        assert "how do I use tool" in csv and "the manual of tool" in csv
    finally:
        page.close()
    assert not errors, errors


def test_reload_reopens_the_view(server, browser):
    """Split, direction, query and the page's controls survive a reload and travel in a shared link."""
    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        _goto(page, f"{server}/rankings?split=val&direction=i2t&query=6&k=20&threshold=0.3")
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        assert any("#6:" in t for t in _selectbox_texts(page)), _selectbox_texts(page)
        page.reload()
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        for part in ("split=val", "direction=i2t", "query=6", "k=20", "threshold=0.3"):
            assert part in page.url, (part, page.url)
        checked = page.locator("[data-testid='stSidebar'] input[type='radio']:checked")
        values = [checked.nth(i).evaluate("e => e.closest('label').innerText") for i in range(checked.count())]
        assert "val" in values and any("image → text" in v for v in values), values
        assert any("#6:" in t for t in _selectbox_texts(page))
        assert page.get_by_text("Candidates shown (top K)").count() == 1
        _shot(page, "url_reload_rankings")
        # a link to another page's view, shared: the map with a point selected
        other = _new_page(browser, errors)
        _goto(other, f"{server}/embedding_map?point=45&colour=side")
        other.get_by_text("Point 45,").first.wait_for(timeout=WAIT_MS)
        from playwright.sync_api import (
            expect,  # retries: under load the box may take a frame more than the text
        )
        expect(other.locator("input[type='number']").first).to_have_value("45", timeout=60_000)  # the point box shows it
        _shot(other, "url_shared_map_point")
        other.close()
    finally:
        page.close()
    assert not errors, errors


def test_review_keys_answer_at_once_and_n_always_advances(server, browser):
    errors: list[str] = []
    page = _new_page(browser, errors)

    def reviewed() -> int:
        return int(re.sub(r"\D", "", page.locator("[data-testid='stMetric']", has_text="Reviewed").first
                          .inner_text().split("\n")[-1]))

    def card() -> str:
        return page.locator("[data-testid='stMarkdownContainer']", has_text=re.compile(r"^Candidate ")).first.inner_text()

    try:
        _goto(page, f"{server}/suspects")
        page.locator("[data-testid='stMetric']", has_text="Reviewed").first.wait_for(timeout=WAIT_MS)
        page.wait_for_selector(IDLE, timeout=WAIT_MS)
        before, first = reviewed(), card()
        _timed(page, "review: F pressed as soon as the page is idle", lambda: page.keyboard.press("f"))
        assert reviewed() == before + 1 and card() != first
        _timed(page, "review: U (undo)", lambda: page.keyboard.press("u"))
        assert reviewed() == before and card() == first
        cards = [card()]
        for _ in range(3):
            _timed(page, "review: N (next card)", lambda: page.keyboard.press("n"))
            cards.append(card())
        assert len(set(cards)) == 4, cards  # every N moved on
        page.keyboard.press("n")
        page.wait_for_timeout(60)
        page.keyboard.press("n")  # a second N while the first redraws: one more card, not the same one
        _settle(page)
        page.wait_for_timeout(500)
        _settle(page)
        assert card() not in cards[-1:], "a second N kept the same card"
        _shot(page, "review_after_keys")
        _no_errors(page, "review")
    finally:
        page.close()
    assert not errors, errors


def _marker(page, plot: int, name: str) -> tuple[str, str]:
    return tuple(page.evaluate(
        """([i, name]) => { const t = [...document.querySelectorAll('.js-plotly-plot')][i]._fullData
             .find(t => t.name === name); return [t.marker.color, t.marker.symbol]; }""", [plot, name]))


def test_polish(server, browser, tmp_path):
    """Each polish item of issue 24, checked and photographed."""
    import shutil

    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        # the map while its UMAP is computing (val split): axes say PCA; a clicked point shows in the point box
        _goto(page, f"{server}/embedding_map?split=val")
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        titles = page.evaluate("() => { const l = document.querySelector('.js-plotly-plot')._fullLayout;"
                               " return [l.xaxis.title.text, l.yaxis.title.text]; }")
        assert titles in (["PCA 1", "PCA 2"], ["UMAP 1", "UMAP 2"]), titles
        assert ("PCA" in titles[0]) == (page.get_by_text("PCA while UMAP computes").count() > 0)
        _shot(page, "polish_map_projection_axes")
        point = _click_point(page)
        page.get_by_text(f"Point {point},").first.wait_for(timeout=WAIT_MS)
        _settle(page)
        assert page.locator("input[type='number']").first.input_value() == str(point)
        # colour options are words, not field names
        page.locator("[data-testid='stSelectbox']", has_text="Colour by").first.click()
        options = page.get_by_role("option").all_inner_texts()
        assert "number of objects" in options and not [o for o in options if "_" in o], options
        _shot(page, "polish_map_colour_options")
        page.keyboard.press("Escape")
        _tables_fit(page, "map")
        # the training curves: warm-up marked, FN-rate axis a share from 0; the Train page shows the finished run
        _goto(page, f"{server}/train")
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        assert page.get_by_text("Training curves of run tiny").count() == 1
        layout = page.evaluate("() => { const l = document.querySelector('.js-plotly-plot')._fullLayout;"
                               " return [l.yaxis3.range, l.annotations.map(a => a.text)]; }")
        assert 0 <= layout[0][0] <= 1e-9 and layout[0][1] <= 1.0, layout
        assert any("warm-up" in t for t in layout[1]), layout[1]
        _shot(page, "polish_train_finished_curves")
        # one colour and marker per sampler, in the Lesson and the playground
        _goto(page, f"{server}/lesson?step=4")
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        lesson = {n: _marker(page, 1, n) for n in ("hardest", "fne · calibrated")}
        _shot(page, "polish_lesson_step4")
        _goto(page, f"{server}/playground")
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        play = {n: _marker(page, 1, n) for n in ("hardest", "fne · calibrated")}
        assert lesson == play, (lesson, play)
        _shot(page, "polish_playground_styles")
        # Compare: runs of two datasets are flagged; no "None"; rename and delete from the app
        from _app_support import own_runs_root

        runs = tmp_path / "runs"
        shutil.copytree(Path(server_root(server)) / "tiny", runs / "tiny")
        shutil.copytree(own_runs_root(tmp_path / "own") / "mine", runs / "mine")
        _goto(page, f"{server}/compare")
        box = page.locator("[data-testid='stSidebar']").get_by_role("textbox", name="Runs folder")
        box.fill(str(runs))
        box.press("Enter")
        _settle(page)
        page.locator("[data-testid='stSelectbox']", has_text="Dataset").first.click()
        page.get_by_role("option", name=re.compile("every dataset")).click()
        _settle(page)
        page.locator("[data-testid='stMultiSelect']", has_text="Runs").first.wait_for(timeout=WAIT_MS)
        assert page.get_by_text(re.compile("come from 2 different datasets")).count() == 1
        assert "None" not in _main_text(page)
        _tables_fit(page, "compare")
        _shot(page, "polish_compare_two_datasets")
        page.get_by_text("Rename or delete a run").click()
        page.get_by_role("textbox", name="New name").fill("tiny-renamed")
        page.get_by_role("textbox", name="New name").press("Enter")
        _settle(page)
        page.get_by_role("button", name=re.compile("Rename")).click()
        _settle(page)
        assert (runs / "tiny-renamed" / "run.json").is_file() and not (runs / "tiny").exists()
        _shot(page, "polish_compare_renamed")
        _no_errors(page, "polish")
    finally:
        page.close()
    assert not errors, errors


_SERVER_ROOTS: dict[str, str] = {}


def server_root(url: str) -> str:
    """The runs folder the module's server shows (set by the ``server`` fixture's environment)."""
    return _SERVER_ROOTS.get(url) or os.environ.get("FNLAB_BROWSER_RUNS", "")
