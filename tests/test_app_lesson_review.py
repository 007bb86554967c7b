"""The lesson tells the truth of the data it shows (its sentences come from the numbers its charts draw; a sampler
as safe as FNE is named), and the review never drops a key (every N advances one card, F/T decide the card at the
head of the queue)."""

from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("streamlit")
from _app_support import REPO, app_env, ensure_repo_on_path, set_env, tiny_runs_root  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ensure_repo_on_path()
MAIN = str(REPO / "app" / "main.py")
TIMEOUT = 600  # a limit for one script run on a busy machine, not a speed target


def _ex(pool: dict, params=None) -> dict:
    return {"fne_params": params or {}, "pool": pool}


def test_a_sampler_as_safe_as_fne_is_named_with_its_numbers():
    from app.lesson_text import DEFAULT_FNE, safety_sentences

    pool = {"fne": {"fn_risk": 0.295, "hardness": 0.63}, "hardest": {"fn_risk": 0.87, "hardness": 0.84},
            "semihard": {"fn_risk": 0.22, "hardness": 0.61}, "random": {"fn_risk": 0.10, "hardness": 0.36}}
    out = safety_sentences(_ex(pool))
    semi = next(s for s in out if s.startswith("**semihard**"))
    assert "safer here (22.0% against 29.5%)" in semi and "easier (mean similarity 0.61 against 0.63)" in semi
    assert any(s.startswith("**random**") for s in out) and not any("hardest" in s for s in out)
    assert DEFAULT_FNE not in " ".join(out)  # the lesson shows FNE at its default here: no second FNE line
    # FNE at a stricter setting is the safest: no other sampler is called as safe, and its default is compared
    pool["fne rule=keep"] = {"fn_risk": 0.05, "hardness": 0.55}
    out = safety_sentences(_ex(pool, {"rule": "keep"}))
    assert not any(s.startswith("**semihard**") for s in out)
    default = next(s for s in out if s.startswith("FNE at its default setting"))
    assert "29.5%" in default and "semihard (22.0%)" in default and "random (10.0%)" in default


def test_an_equally_safe_sampler_within_ten_percent_counts_as_safe():
    from app.lesson_text import safety_sentences

    pool = {"fne": {"fn_risk": 0.20, "hardness": 0.6}, "hardest": {"fn_risk": 0.9, "hardness": 0.8},
            "semihard": {"fn_risk": 0.21, "hardness": 0.65}, "random": {"fn_risk": 0.5, "hardness": 0.3}}
    (only,) = safety_sentences(_ex(pool))
    assert only.startswith("**semihard** is as safe here (21.0% against 20.0%) and its negatives are harder")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tiny_runs_root(tmp_path_factory.mktemp("fnlab_lesson"))
    old = set_env(app_env(root))
    yield app_env(root)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _open(page: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"page": page, **(query or {})})
    at.run()
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    return at


def _percent(text: str, after: str) -> float:
    return float(re.search(re.escape(after) + r"\D*?([\d.]+)%", text).group(1)) / 100


def test_step_four_says_what_its_chart_shows(env):
    """Every risk the text of step 4 quotes is the one its scatter draws for that sampler."""
    at = _open("lesson", {"step": "4"})
    text = " ".join(m.value for m in at.markdown)
    scatter = at.get("plotly_chart")[1]
    import json

    points = {t["name"]: t["y"][0] for t in json.loads(scatter.proto.spec)["data"]}
    fne = next(n for n in points if n.startswith("fne · "))
    assert "Over a batch" in text, text
    batch = text[text.index("Over a batch"):]
    # the text rounds to 0.1%: at most half of that away from the chart's value
    assert abs(_percent(batch, "captions,") - points[fne]) <= 0.0005 + 1e-9
    assert abs(_percent(batch, "against") - points["hardest"]) <= 0.0005 + 1e-9
    for name, risk in points.items():  # every sampler the text calls as safe is at most 10% above FNE in the chart
        if f"**{name}** is" in text:
            assert risk <= points[fne] * 1.10 + 1e-9
        elif name not in ("hardest", fne) and not name.startswith("fne"):
            assert risk > points[fne] * 1.10, (name, risk, points[fne])  # and none that is, is left unnamed


def test_review_every_key_acts_on_the_next_card(env):
    at = _open("suspects")

    def card():
        md = [m.value for m in at.markdown]
        return next(m for m in md if m.startswith("**Caption")), next(m for m in md if m.startswith("**Candidate"))

    seen = [card()]
    for _ in range(3):  # N: a new pair each time (the same query may come back with another candidate)
        at.button(key="sus_next").click().run()
        seen.append(card())
    assert len(set(seen)) == 4, seen
    before = int(at.metric[3].value)
    decided = card()
    at.button(key="sus_fn").click().run()
    assert int(at.metric[3].value) == before + 1 and card() != decided
    at.button(key="sus_tn").click().run()
    assert int(at.metric[3].value) == before + 2
    at.button(key="sus_undo_btn").click().run()
    at.button(key="sus_undo_btn").click().run()
    assert int(at.metric[3].value) == before and card() == decided  # undo brings the card back
