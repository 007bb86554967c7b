"""Real-browser test: streamlit run + headless Debian chromium (playwright) at 1280 px, on a runs folder of tiny runs.

Drives every page, the lesson from start to end, the linked views (suspect -> Rankings, map click -> side
panel -> Rankings), sidebar persistence across pages, a reload that reopens the view and the review keys.
Asserts content, saves screenshots to test-artifacts/ (gitignored) and writes the measured timings to
test-artifacts/browser_timings.txt (no timed assertions). Skipped with a reason where chromium or playwright is
missing. The first start, the own-folder walk and the polish items are in tests/test_browser_own.py.
"""

from __future__ import annotations

import os
import re
import time
from functools import partial

import pytest
from _browser import (
    PAGES,
    TIMINGS,
    WAIT_MS,
    _click_point,
    _goto,
    _new_page,
    _no_errors,
    _not_cut_off,
    _open_page,
    _selectbox_shows,
    _settle,
    _shot,
    _tables_fit,
    _timed,
)

pytestmark = pytest.mark.browser
TIMINGS_FILE = "browser_timings.txt"


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
        # /data, the Data page's name in the menu, opens it (it is the root page; this read "Page not found")
        _goto(page, f"{server}/data")
        _settle(page)
        assert page.locator("h1").first.inner_text().startswith("fnlab"), page.locator("h1").first.inner_text()
        assert page.get_by_text("Page not found").count() == 0
        assert "/data" not in page.url, page.url
        if os.environ.get("FNLAB_BROWSER_TIMINGS"):  # bench/browser_speed.py: every page again, now cached
            for path, shot in PAGES:  # (a full page load each time); a timing only, so not in the suite
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
        val, i2t = side.get_by_text("val", exact=True), side.get_by_text("image → text")
        _timed(page, "sidebar: split -> val", val.click, target=val)
        _timed(page, "sidebar: direction -> image → text", i2t.click, target=i2t)
        for link in ("Distributions", "Embedding map", "Compare runs", "Rankings"):
            nav = page.locator("[data-testid='stSidebarNav'] a", has_text=link).first
            _timed(page, f"page change to {link}", nav.click, target=nav)
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
                nxt = page.get_by_role("button", name=re.compile("Next"))
                _timed(page, f"lesson: next to step {step + 1}", nxt.click, target=nxt)
        assert page.get_by_text("calibrated").count() >= 1
        page.get_by_role("button", name=re.compile("Start again")).click()
        _settle(page)
        page.get_by_text("Step 1 of 5").wait_for(timeout=WAIT_MS)
    finally:
        page.close()
    assert not errors, errors


def test_linked_views(server, browser):
    errors: list[str] = []
    page = _new_page(browser, errors)
    try:
        # Suspect -> its query in Rankings.
        page.goto(f"{server}/suspects")
        _settle(page)
        text = page.locator("[data-testid='stMarkdownContainer']", has_text=re.compile(r"^Caption \d+")).first.inner_text()
        query = int(re.match(r"Caption (\d+)", text).group(1))
        link = page.get_by_role("button", name=re.compile("Open this caption in Rankings"))
        _timed(page, "suspect -> open in Rankings", link.click, target=link)
        page.wait_for_selector("h1:has-text('Rankings')", timeout=WAIT_MS)
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        _shot(page, "linked_suspect_to_rankings")
        texts = _selectbox_shows(page, f"#{query}:")
        assert any(f"#{query}:" in t for t in texts), (query, texts)
        assert f"query={query}" in page.url
        # Rankings -> the map with that caption selected (40 images come first).
        link = page.get_by_role("button", name=re.compile("Show on the map"))
        _timed(page, "rankings -> show on the map", link.click, target=link)
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
        link = page.get_by_role("button", name=re.compile("Open its ranking"))
        _timed(page, "map point -> open its ranking", link.click, target=link)
        page.wait_for_selector("h1:has-text('Rankings')", timeout=WAIT_MS)
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        texts = _selectbox_shows(page, f"#{clicked[0]}:")
        assert any(f"#{clicked[0]}:" in t for t in texts), texts
        _no_errors(page, "linked views")
        _shot(page, "linked_map_to_rankings")
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
        texts = _selectbox_shows(page, "#6:")
        assert any("#6:" in t for t in texts), texts
        page.reload()
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        _settle(page)
        for part in ("split=val", "direction=i2t", "query=6", "k=20", "threshold=0.3"):
            assert part in page.url, (part, page.url)
        checked = page.locator("[data-testid='stSidebar'] input[type='radio']:checked")
        values = [checked.nth(i).evaluate("e => e.closest('label').innerText") for i in range(checked.count())]
        assert "val" in values and any("image → text" in v for v in values), values
        texts = _selectbox_shows(page, "#6:")
        assert any("#6:" in t for t in texts), texts
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


def _review_card(page) -> str:
    """The Suspects card's query and candidate: two suspects may share a candidate (an image two captions fit)."""
    md = page.locator("[data-testid='stMarkdownContainer']")
    return (md.filter(has_text=re.compile(r"^\w+ \d+:")).first.inner_text() + " / "
            + md.filter(has_text=re.compile(r"^Candidate ")).first.inner_text())


def test_review_keys_answer_at_once_and_n_always_advances(server, browser):
    errors: list[str] = []
    page = _new_page(browser, errors)

    def reviewed() -> int:
        return int(re.sub(r"\D", "", page.locator("[data-testid='stMetric']", has_text="Reviewed").first
                          .inner_text().split("\n")[-1]))

    card = partial(_review_card, page)

    def keys_on() -> None:
        """The page shows the keys' hint once its listener works (app/keys.py): a user presses after that."""
        page.locator("[data-testid='fnlab-keys'].on").first.wait_for(timeout=WAIT_MS)
        assert "F false negative" in page.locator("[data-testid='fnlab-keys']").first.inner_text()

    def until(ok, what: str, seconds: float = 30.0) -> None:
        """A press may take a while to show on a loaded machine; a lost press never shows."""
        end = time.perf_counter() + seconds
        while not ok():
            listener = page.evaluate("() => { const g = window.__fnlabKeys; return g ? {mounted: !!g.send, "
                                     "log: g.log, handled: g.ack, sends: g.seq, resends: g.tries} : null; }")
            assert time.perf_counter() < end, f"{what} (the page's key listener: {listener})"
            page.wait_for_timeout(100)
        seen = card()
        _settle(page)
        assert ok(), (f"{what}: after the change to {seen[:60]!r} the card went back; the page's key listener: "
                      + str(page.evaluate("() => { const g = window.__fnlabKeys; return g ? {log: g.log, handled: "
                                          "g.ack, sends: g.seq, resends: g.tries} : null; }")))

    try:
        _goto(page, f"{server}/suspects")
        page.locator("[data-testid='stMarkdownContainer']", has_text=re.compile(r"^Candidate ")).first.wait_for(
            timeout=WAIT_MS)  # the card is drawn: a reviewer presses now, before the page has settled
        drawn = time.perf_counter()
        keys_on()
        lag = time.perf_counter() - drawn
        # how long after the card the keys work: a timing for bench/browser_speed.py, not a pass mark (a loaded
        # machine decides it; the hint shows when they work)
        TIMINGS.append(f"{'review: keys live after the card is drawn':<55} {lag:6.2f} s")
        before, first = reviewed(), card()
        _timed(page, "review: F pressed as soon as the keys show", lambda: page.keyboard.press("f"))
        until(lambda: reviewed() == before + 1 and card() != first, "F pressed as soon as the keys showed was lost")
        _timed(page, "review: U (undo)", lambda: page.keyboard.press("u"))
        until(lambda: reviewed() == before and card() == first, "U was lost")
        cards = [card()]
        for _ in range(3):
            _timed(page, "review: N (next card)", lambda: page.keyboard.press("n"))
            until(lambda: card() != cards[-1], "N kept the same card")
            cards.append(card())
        assert len(set(cards)) == 4, cards  # every N moved on
        # bursts faster than any redraw: every press counts, none twice
        for k in "fff":
            page.keyboard.press(k)
        until(lambda: reviewed() == before + 3, "a quick F press was lost or counted twice")
        for k in "uuu":
            page.keyboard.press(k)
        until(lambda: reviewed() == before, "a quick U press was lost or counted twice")
        page.keyboard.press("n")
        page.wait_for_timeout(60)
        page.keyboard.press("n")  # a second N while the first redraws: both reach the server and are handled
        until(lambda: page.evaluate("() => { const g = window.__fnlabKeys; return g.ack === g.log.length; }"),
              "a quick N press never reached the server")  # where the card then stands: the test below
        # an update lost on its way to the server (seen on a busy machine: the log held the presses, the page never
        # reran): the browser sends the log again when the server has not handled it a moment later
        shown = card()
        page.evaluate("() => { const g = window.__fnlabKeys; g.kept = g.send; g.send = () => {}; }")
        page.keyboard.press("n")
        page.evaluate("() => { const g = window.__fnlabKeys; g.send = g.kept; }")
        until(lambda: card() != shown, "an N whose update was lost was never sent again")
        _shot(page, "review_after_keys")
        # keys pressed on another page never decide a card here
        _open_page(page, "Rankings")
        page.keyboard.press("f")
        page.keyboard.press("t")
        _settle(page)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Suspects").first.click()
        page.locator("[data-testid='stMetric']", has_text="Reviewed").first.wait_for(timeout=WAIT_MS)
        _settle(page)
        keys_on()
        assert reviewed() == before, "a key pressed on Rankings decided a card on Suspects"
        shown = card()
        page.keyboard.press("n")
        until(lambda: card() != shown, "N on Suspects after a visit to Rankings was lost")
        assert reviewed() == before, "keys pressed on Rankings were replayed on Suspects"
        _no_errors(page, "review")
    finally:
        page.close()
    assert not errors, errors


def test_two_quick_n_presses_after_quick_undos_leave_the_card_moved(server, browser):
    """Seen failing in the full suite on a busy 2-core machine while a card was read by its candidate alone (a later
    suspect with the same image read as the same card); a card is read by query and candidate since."""
    errors: list[str] = []
    page = _new_page(browser, errors)

    card = partial(_review_card, page)

    def handled() -> bool:
        return page.evaluate("() => { const g = window.__fnlabKeys; return g.ack === g.log.length; }")

    try:
        _goto(page, f"{server}/suspects")
        page.locator("[data-testid='fnlab-keys'].on").first.wait_for(timeout=WAIT_MS)
        for k in "fffuuu":
            page.keyboard.press(k)
        page.wait_for_function("() => { const g = window.__fnlabKeys; return g.ack === g.log.length; }",
                               timeout=120_000)
        _settle(page)
        shown = card()
        page.keyboard.press("n")
        page.wait_for_timeout(60)
        page.keyboard.press("n")
        page.wait_for_function("() => { const g = window.__fnlabKeys; return g.ack === g.log.length; }",
                               timeout=120_000)
        _settle(page)
        assert handled() and card() != shown, "two quick N presses after three quick U presses left the card where it was"
    finally:
        page.close()
    assert not errors, errors
