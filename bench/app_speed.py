"""How fast the app answers interactions once warm, quiet and while other processes keep every core busy.

Usage:
    python bench/app_speed.py [--runs DIR] [--repeats 3] [--browser] [--no-load]

``--runs`` is a runs folder with at least one run (default: $FNLAB_RUNS, else ``runs/``). Before timing, the run's
stored pages and its UMAP map are computed (untimed, as the app's background job and map job would). Then:

* **AppTest** (Streamlit's test runner, no browser): each page is opened, every interaction done once to warm the
  caches, then timed ``--repeats`` times, alternating between two values so each rerun really changes something.
* **Browser** (``--browser``; headless Debian chromium through playwright, 1280 px): a real ``streamlit run``
  server; each interaction is timed from the click or key press until the script run it started has finished
  and the browser has drawn two frames after it (a MutationObserver on Streamlit's script state, no fixed waits).

Both are measured quiet and, unless ``--no-load``, again while ``os.cpu_count()`` busy-looping processes keep every
core busy (what a laptop running a training job looks like). Medians go to bench/results/app_speed.txt with the
load average beside them. Targets (issue 24): warm interactions at most 0.5 s quiet, at most 1 s under load.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# page -> list of (label, widget kind, key, value A, value B); "button" clicks (values unused)
INTERACTIONS = {
    "views/data.py": [("gallery size", "slider", "data_gallery_n", 12, 24)],
    "views/lesson.py": [("next / back step", "button", "lesson_next", None, None)],
    "views/rankings.py": [("top K", "slider", "rk_k", 10, 20), ("threshold", "slider", "rk_threshold", 0.3, 0.7),
                          ("query", "selectbox", "rk_query_t2i", 3, 0),
                          ("split (sidebar)", "radio", "split", "val", "test"),
                          ("direction (sidebar)", "radio", "direction", "i2t", "t2i")],
    "views/distributions.py": [("one query / whole split", "radio", "ds_scope", "query", "split"),
                               ("estimator", "selectbox", "ds_estimator", "paper", "the run's own")],
    "views/playground.py": [("FNE paper tau", "slider", "pg_fne · paper_tau", 2.0, 0.5),
                            ("SimANS a", "slider", "pg_simans_a", 2.0, 0.5),
                            ("query", "selectbox", "pg_query_t2i", 3, 0)],
    "views/embedding_map.py": [("select a point", "number_input", "map_manual", 5, 7),
                               ("colour by", "selectbox", "map_colour", "side", "false-negative status"),
                               ("text search", "text_input", "map_search", "red", "circle")],
    "views/suspects.py": [("posterior range", "slider", "sus_range", (0.3, 1.0), (0.0, 1.0))],
    "views/compare.py": [("runs shown", "multiselect", "cmp_runs", None, None)],
}


def _busy() -> None:  # one core's worth of load
    while True:
        pass


@contextlib.contextmanager
def load(on: bool):
    """``os.cpu_count()`` busy processes (normal priority) while the block runs."""
    procs = []
    if on:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_busy, daemon=True) for _ in range(os.cpu_count() or 2)]
        for p in procs:
            p.start()
        time.sleep(2.0)
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(5)


def prepare(runs: str) -> str:
    """The newest run's stored pages and UMAP maps, computed untimed. Returns the run's name."""
    sys.path.insert(0, str(REPO))
    from app import mapjob
    from fnlab.analysis import projection
    from fnlab.storage.loader import LoadedRun
    from fnlab.storage.pages import RunPages
    from fnlab.storage.runs import RunStore

    names = RunStore(runs).names()
    if not names:
        sys.exit(f"no run in {runs}: train one first (make demo, or fnlab train --out {runs}/NAME)")
    name = "demo" if "demo" in names else names[0]
    run = LoadedRun.from_store(runs, name)
    pages = RunPages(run)
    pages.prepare(["test", "val"])
    pages.example("test")
    for split in ("test", "val"):
        a, b = run.embeddings(split)
        import numpy as np

        projection.umap_2d(np.concatenate([a, b]), n_neighbors=mapjob.N_NEIGHBORS, random_state=mapjob.RANDOM_STATE)
    return name


# ------------------------------------------------------------------ AppTest
def apptest_times(repeats: int) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(page, interaction): (first, median warm)}`` seconds."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=600)
    at.run()
    out = {}
    for page, steps in INTERACTIONS.items():
        at.switch_page(page)
        t = time.perf_counter()
        at.run()
        first_open = time.perf_counter() - t
        if at.exception or at.error:
            sys.exit(f"{page}: {(at.exception or at.error)[0].value}")
        t = time.perf_counter()
        at.run()
        out[(page, "open page")] = (first_open, time.perf_counter() - t)
        for label, kind, key, a, b in steps:
            out[(page, label)] = _apptest_step(at, page, label, kind, key, a, b, repeats)
    return out


def _apptest_step(at, page, label, kind, key, a, b, repeats):
    def widget():
        return getattr(at, kind)(key=key)

    if kind == "button":
        def act(i):
            (at.button(key=key) if i % 2 == 0 else at.button(key="lesson_back")).click()
    else:
        if kind == "multiselect":
            a, b = widget().value[:1], list(widget().value)

        def act(i, a=a, b=b):
            widget().set_value(a if i < 0 else (b if i % 2 == 0 else a))
    t = time.perf_counter()
    act(-1 if kind != "button" else 0)
    at.run()
    first = time.perf_counter() - t
    if kind == "button":
        at.button(key="lesson_back").click()
        at.run()
    times = []
    for i in range(repeats * 2):
        t = time.perf_counter()
        act(i)
        at.run()
        times.append(time.perf_counter() - t)
        if at.exception or at.error:
            sys.exit(f"{page} {label}: {(at.exception or at.error)[0].value}")
    act(0)  # back to value B (the default), untimed
    at.run()
    return first, statistics.median(times)


# ------------------------------------------------------------------ browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
WATCH = """() => { window.__fn = []; window.__t0 = performance.now(); const el = document.querySelector("[data-testid='stApp']");
  if (window.__fnObs) window.__fnObs.disconnect();
  window.__fnObs = new MutationObserver(() => window.__fn.push([performance.now(),
      el.getAttribute('data-test-script-state')]));
  window.__fnObs.observe(el, {attributes: true, attributeFilter: ['data-test-script-state']}); }"""
# the time from the last gesture (window.__t0; an action that opens a list first resets it) until the script run it
# started has finished and two frames are drawn
SETTLED = """() => new Promise(done => { const t0 = window.__t0;
  const check = () => { const s = window.__fn; const ran = s.some(x => x[1] === 'running');
    const last = s.length ? s[s.length - 1] : null;
    if (ran && last && last[1] === 'notRunning')
      requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
    else setTimeout(check, 10); };
  check(); })"""


def serve(env: dict[str, str]):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(Path(tempfile.gettempdir()) / f"fnlab-bench-streamlit-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"], cwd=REPO, env={**os.environ, **env}, stdout=log,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, log, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("streamlit did not start")


def _slider(page, label: str, key: str):
    el = page.locator("[data-testid='stSlider']", has_text=label).first.get_by_role("slider").first
    el.focus()
    page.keyboard.press(key)


def _select(page, label: str, option: str, where: str = "main"):
    scope = page.locator("[data-testid='stSidebar']") if where == "sidebar" else page.locator("section.main, "
                                                                                               "[data-testid='stMain']")
    scope.locator("[data-testid='stSelectbox']", has_text=label).first.click()
    opt = page.get_by_role("option", name=option).first
    opt.wait_for()
    page.evaluate("() => { window.__t0 = performance.now(); }")  # the list is open: time the choice only
    opt.click()


def _radio(page, option: str, where: str = "main"):
    scope = page.locator("[data-testid='stSidebar']") if where == "sidebar" else page.locator("[data-testid='stMain']")
    scope.locator("label", has_text=option).first.click()


# path -> list of (label, action A, action B): alternated, so every action changes something
BROWSER = {
    "rankings": [("top K", lambda p: _slider(p, "Candidates shown", "ArrowRight"),
                  lambda p: _slider(p, "Candidates shown", "ArrowLeft")),
                 ("threshold", lambda p: _slider(p, "Suspect threshold", "ArrowRight"),
                  lambda p: _slider(p, "Suspect threshold", "ArrowLeft")),
                 ("split (sidebar)", lambda p: _radio(p, "val", "sidebar"), lambda p: _radio(p, "test", "sidebar")),
                 ("direction (sidebar)", lambda p: _radio(p, "image → text", "sidebar"),
                  lambda p: _radio(p, "text → image", "sidebar"))],
    "distributions": [("one query / whole split", lambda p: _radio(p, "one caption"),
                       lambda p: _radio(p, "the whole split")),
                      ("estimator", lambda p: _select(p, "Posterior", "paper"),
                       lambda p: _select(p, "Posterior", "the run's own"))],
    "playground": [("FNE tau", lambda p: _slider(p, "Sharpness τ", "ArrowRight"),
                    lambda p: _slider(p, "Sharpness τ", "ArrowLeft")),
                   ("SimANS a", lambda p: _slider(p, "Sharpness a", "ArrowRight"),
                    lambda p: _slider(p, "Sharpness a", "ArrowLeft"))],
    "embedding_map": [("colour by", lambda p: _select(p, "Colour by", "side"),
                       lambda p: _select(p, "Colour by", "false-negative status"))],
    "lesson": [("next / back step", lambda p: p.get_by_role("button", name="Next").click(),
                lambda p: p.get_by_role("button", name="Back").click())],
    "suspects": [("next card (N key)", lambda p: p.keyboard.press("n"), lambda p: p.keyboard.press("n"))],
}


def browser_times(url: str, repeats: int) -> dict[tuple[str, str], tuple[float, float]]:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = b.new_page(viewport={"width": 1280, "height": 1600})
        try:
            for path, steps in BROWSER.items():
                t = time.perf_counter()
                page.goto(f"{url}/{path}")
                page.wait_for_selector("h1", timeout=600_000)
                page.wait_for_selector(IDLE, timeout=600_000)
                page.wait_for_timeout(1500)
                opened = time.perf_counter() - t
                out[(f"views/{path}.py", "open page")] = (opened, float("nan"))
                for label, first, second in steps:
                    times = []
                    for i in range(repeats * 2 + 1):
                        page.evaluate(WATCH)
                        (first if i % 2 == 0 else second)(page)
                        times.append(page.evaluate(SETTLED) / 1000)
                        page.wait_for_timeout(200)
                    out[(f"views/{path}.py", label)] = (times[0], statistics.median(times[1:]))
        finally:
            b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=os.environ.get("FNLAB_RUNS", "runs"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also time a real browser (headless chromium)")
    ap.add_argument("--no-load", action="store_true", help="quiet only: skip the run under load")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "app_speed.txt"))
    args = ap.parse_args()
    runs = str(Path(args.runs).resolve())
    os.environ.update(FNLAB_RUNS=runs, FNLAB_NO_DEMO="1")
    os.environ.setdefault("FNLAB_CACHE", tempfile.mkdtemp(prefix="fnlab_bench_cache_"))
    t0 = time.perf_counter()
    name = prepare(runs)
    results: dict[str, dict] = {}
    loads: dict[str, float] = {}
    for cond in ("quiet", "load") if not args.no_load else ("quiet",):
        with load(cond == "load"):
            loads[f"AppTest {cond}"] = os.getloadavg()[0]
            results[f"AppTest {cond}"] = apptest_times(args.repeats)
            loads[f"AppTest {cond}"] = max(loads[f"AppTest {cond}"], os.getloadavg()[0])
            if args.browser:
                proc, log, url = serve({"FNLAB_RUNS": runs, "FNLAB_NO_DEMO": "1",
                                        "FNLAB_CACHE": os.environ["FNLAB_CACHE"]})
                try:
                    results[f"browser {cond}"] = browser_times(url, args.repeats)
                finally:
                    proc.terminate()
                    proc.wait(10)
                    log.close()
                loads[f"browser {cond}"] = os.getloadavg()[0]
    cols = list(results)
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    lines = [f"fnlab app speed on {platform.node()} ({os.cpu_count()} CPUs), run {name!r}; warm = median of "
             f"{args.repeats * 2} after one untimed warm-up; 'load' = {os.cpu_count()} busy processes on top",
             "load average (1 min) at the end of each: " + ", ".join(f"{c} {v:.1f}" for c, v in loads.items()),
             f"{'page':<24} {'interaction':<26} " + " ".join(f"{c + ' warm (s)':>22}" for c in cols)]
    for page, label in keys:
        cells = []
        for c in cols:
            v = results[c].get((page, label))
            cells.append(f"{v[1]:>22.3f}" if v is not None and v[1] == v[1] else f"{'-':>22}")
        lines.append(f"{page:<24} {label:<26} " + " ".join(cells))
    lines.append(f"total wall time {time.perf_counter() - t0:.1f} s")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
