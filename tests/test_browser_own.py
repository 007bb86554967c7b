"""Real-browser test, second part: the first start (no run: the demo run trains in the background, then its
story: the first page's example caption, Rankings and the Sampler playground opening on it), a run trained on a
folder of texts walked page by page, and the polish items. Same harness as tests/test_browser.py (tests/_browser.py);
timings go to test-artifacts/browser_timings_own.txt and the demo run's figures to test-artifacts/demo_story.txt.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from _app_support import REPO
from _browser import (
    ARTIFACTS,
    PAGES,
    TIMINGS,
    WAIT_MS,
    _click_point,
    _goto,
    _main_text,
    _marker,
    _needs_browser,
    _new_page,
    _no_errors,
    _not_cut_off,
    _open_page,
    _selectbox_shows,
    _serve,
    _settle,
    _shot,
    _stop,
    _tables_fit,
    _timed,
    _traces,
    server_root,
)

pytestmark = pytest.mark.browser
TIMINGS_FILE = "browser_timings_own.txt"


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
        texts = _selectbox_shows(page, "demo")
        assert "run=demo" in page.url and any("demo" in t for t in texts), texts
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
        demo = readme[readme.index("### The demo run"):]
        named = re.search(r"caption #(\d+)", demo)
        assert named, "the README's demo story names no caption"
        if int(named.group(1)) != query:  # the pick follows the trained embeddings, whose last bits follow the CPU
            story.append(f"the README names caption #{named.group(1)}; this machine's first start picked #{query}")
            assert "differ between machines" in demo, "the README's example caption is not the app's, and it " \
                                                      "does not say the pick can differ between machines"
        _shot(page, "first_start_ready")

        # Rankings opens on it: the labelled image in the top 3, a false negative above it.
        _open_page(page, "Rankings")
        texts = _selectbox_shows(page, f"#{query}:")
        assert any(f"#{query}:" in t for t in texts), (query, texts)
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
        texts = _selectbox_shows(page, f"#{query}:")
        assert any(f"#{query}:" in t for t in texts), (query, texts)
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
        every = side.get_by_text("all splits", exact=True)
        _timed(page, "own data: split -> all splits", every.click, target=every)
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
