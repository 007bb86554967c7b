"""AppTest of every page on a tiny trained run: main widgets driven, no exception, expected elements."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("streamlit")
from _app_support import REPO, app_env, tiny_runs_root  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = str(REPO / "app" / "main.py")
TIMEOUT = 60


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tiny_runs_root(tmp_path_factory.mktemp("fnlab_app"))
    e = app_env(root)
    old = {k: os.environ.get(k) for k in e}
    os.environ.update(e)
    yield e
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _open(page: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _plotly(at: AppTest) -> list:
    return at.get("plotly_chart")


def test_data_page_intro_stats_gallery(env):
    at = _open()
    _ok(at)
    assert "false negative" in at.markdown[0].value.lower()
    assert at.sidebar.selectbox(key="run").value == "tiny"
    labels = [m.label for m in at.metric]
    assert "False negatives" in labels and "Images (A)" in labels
    assert len(at.dataframe) == 1
    at.selectbox(key="data_source").set_value("pairs folder").run()
    at.text_input(key="data_folder").set_value("/no/such/folder").run()
    assert not at.exception
    assert "does not exist" in at.error[0].value  # a clear message, not a stack trace


def test_rankings_page(env):
    at = _open("views/rankings.py")
    _ok(at)
    assert len(_plotly(at)) == 1 and len(at.dataframe) == 1
    at.slider(key="rk_k").set_value(10).run()
    at.sidebar.radio(key="direction").set_value("i2t").run()
    _ok(at)
    at.text_input(key="rk_search").set_value("zzzz-no-match").run()
    _ok(at)
    assert at.warning


def test_distributions_page(env):
    at = _open("views/distributions.py")
    _ok(at)
    assert len(_plotly(at)) == 3  # histogram, posterior curve, reliability diagram
    at.radio(key="ds_scope").set_value("one query").run()
    _ok(at)
    assert len(_plotly(at)) == 3


def test_playground_page(env):
    at = _open("views/playground.py")
    _ok(at)
    assert len(_plotly(at)) == 2  # weight bars + hardness/risk scatter
    at.slider(key="pg_fne · paper_tau").set_value(5.0).run()
    at.slider(key="pg_simans_a").set_value(2.0).run()
    at.multiselect(key="pg_samplers").set_value(["hardest", "oracle · simans", "range", "positive_aware"]).run()
    _ok(at)
    at.checkbox(key="pg_range_range_max_on").check().run()
    at.sidebar.radio(key="direction").set_value("i2t").run()
    _ok(at)
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 4


def test_embedding_map_page(env):
    at = _open("views/embedding_map.py")
    _ok(at)
    assert len(_plotly(at)) == 1
    at.number_input(key="map_manual").set_value(45).run()  # a caption (40 images first)
    _ok(at)
    assert any("Point 45" in m.value for m in at.markdown)
    at.selectbox(key="map_colour").set_value("false-negative status").run()
    _ok(at)
    assert len(at.dataframe) >= 2  # its pair and its neighbours


def test_suspects_page_decisions_persist(env):
    at = _open("views/suspects.py")
    _ok(at)
    at.slider(key="sus_range").set_value((0.0, 1.0)).run()
    _ok(at)
    before = at.metric[3].value
    at.button(key="sus_fn").click().run()
    _ok(at)
    assert int(at.metric[3].value) == int(before) + 1
    # A fresh session (as after an interrupted one) sees the decision.
    at2 = _open("views/suspects.py")
    assert int(at2.metric[3].value) == int(before) + 1
    at2.radio(key="sus_fmt").set_value("parquet").run()
    _ok(at2)
    assert at2.get("download_button")


def test_compare_and_train_pages(env):
    at = _open("views/compare.py")
    _ok(at)
    assert len(_plotly(at)) == 2 and len(at.dataframe) == 1
    at = _open("views/train.py")
    _ok(at)
    assert at.button  # the form's submit button exists
    at.selectbox(key="tr_sampler").set_value("simans").run()
    _ok(at)
