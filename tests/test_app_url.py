"""Everything in the URL: the page, run, split, direction, query, point and each page's main controls. A page's
URL, opened in a new session (a reload, a shared link), reopens exactly that view."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("streamlit")
from _app_support import REPO, app_env, ensure_repo_on_path, set_env, tiny_runs_root  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ensure_repo_on_path()
MAIN = str(REPO / "app" / "main.py")
TIMEOUT = 600  # a limit for one script run on a busy machine, not a speed target


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tiny_runs_root(tmp_path_factory.mktemp("fnlab_url"))
    old = set_env(app_env(root))
    yield app_env(root)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _open(query: dict) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    _ok(at)
    return at


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _url(at) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else str(v)) for k, v in at.query_params.items()}


def _reload(at, page: str) -> AppTest:
    """A new session opened on the URL ``at`` shows (the page is the URL's path; here ``page=``)."""
    return _open({**_url(at), "page": page})


def test_rankings_view_round_trips(env):
    at = _open({"page": "rankings", "run": "tiny", "split": "val", "direction": "i2t", "query": "5", "k": "20",
                "threshold": "0.3"})
    assert at.title[0].value == "Rankings"
    assert (at.sidebar.radio(key="split").value, at.sidebar.radio(key="direction").value) == ("val", "i2t")
    assert at.selectbox(key="rk_query_i2t").value == 5
    assert at.slider(key="rk_k").value == 20 and at.slider(key="rk_threshold").value == pytest.approx(0.3)
    at.slider(key="rk_k").set_value(12).run()
    at.selectbox(key="rk_query_i2t").set_value(7).run()
    _ok(at)
    url = _url(at)
    assert (url["run"], url["split"], url["direction"], url["query"], url["k"]) == ("tiny", "val", "i2t", "7", "12")
    again = _reload(at, "rankings")
    assert again.selectbox(key="rk_query_i2t").value == 7 and again.slider(key="rk_k").value == 12
    assert again.sidebar.radio(key="split").value == "val"


def test_bad_url_values_fall_back_to_defaults_with_no_error(env):
    at = _open({"page": "rankings", "run": "no-such-run", "split": "holdout", "direction": "sideways",
                "query": "999999", "k": "abc", "threshold": "7"})
    assert at.title[0].value == "Rankings"
    assert at.sidebar.selectbox(key="run").value == "tiny"
    assert at.sidebar.radio(key="split").value == "test" and at.slider(key="rk_k").value == 15


def test_the_query_follows_from_page_to_page(env):
    """A query chosen on Rankings is the one the playground and Distributions show (and back)."""
    at = _open({"page": "rankings", "run": "tiny"})
    at.selectbox(key="rk_query_t2i").set_value(11).run()
    at.switch_page("views/playground.py").run()
    _ok(at)
    assert at.selectbox(key="pg_query_t2i").value == 11
    at.selectbox(key="pg_query_t2i").set_value(4).run()
    at.switch_page("views/distributions.py").run()
    at.radio(key="ds_scope").set_value("query").run()
    _ok(at)
    assert at.selectbox(key="ds_query_t2i").value == 4
    at.selectbox(key="ds_query_t2i").set_value(9).run()
    at.switch_page("views/rankings.py").run()
    assert at.selectbox(key="rk_query_t2i").value == 9


def test_distributions_controls_round_trip(env):
    at = _open({"page": "distributions", "run": "tiny", "scope": "query", "query": "3", "estimator": "paper",
                "prior_mode": "fixed", "prior": "0.01"})
    assert at.radio(key="ds_scope").value == "query" and at.selectbox(key="ds_query_t2i").value == 3
    assert at.selectbox(key="ds_estimator").value == "paper" and at.radio(key="ds_prior_mode").value == "fixed"
    assert at.select_slider(key="ds_prior").value == pytest.approx(0.01)
    assert any("prior you fixed is 0.01" in m.value for m in at.markdown)
    at.select_slider(key="ds_prior").set_value(0.2).run()
    _ok(at)
    assert _url(at)["prior"] == "0.2"
    assert _reload(at, "distributions").select_slider(key="ds_prior").value == pytest.approx(0.2)


def test_playground_samplers_and_parameters_round_trip(env):
    at = _open({"page": "playground", "run": "tiny", "query": "2", "samplers": "hardest,semihard", "m": "20",
                "semihard.margin": "0.35"})
    assert at.multiselect(key="pg_samplers").value == ["hardest", "semihard"]
    assert at.slider(key="pg_m").value == 20 and at.selectbox(key="pg_query_t2i").value == 2
    assert at.slider(key="pg_semihard_margin").value == pytest.approx(0.35)
    at.slider(key="pg_semihard_margin").set_value(0.1).run()
    _ok(at)
    assert _url(at)["semihard.margin"] == "0.1"
    again = _reload(at, "playground")
    assert again.slider(key="pg_semihard_margin").value == pytest.approx(0.1)
    assert again.multiselect(key="pg_samplers").value == ["hardest", "semihard"]


def test_map_point_and_colour_round_trip(env):
    at = _open({"page": "embedding_map", "run": "tiny", "point": "45", "colour": "side"})
    assert at.session_state["map_selected_ids"] == [45] and at.number_input(key="map_manual").value == 45
    assert at.selectbox(key="map_colour").value == "side"
    at.number_input(key="map_manual").set_value(3).run()
    _ok(at)
    assert _url(at)["point"] == "3"
    again = _reload(at, "embedding_map")
    assert any("**Point 3**" in m.value for m in again.markdown)


def test_lesson_step_suspects_and_compare_round_trip(env):
    at = _open({"page": "lesson", "run": "tiny", "step": "3"})
    assert at.get("progress")[0].proto.text.startswith("Step 3 of 5")
    at.button(key="lesson_next").click().run()
    assert _url(at)["step"] == "4"
    sus = _open({"page": "suspects", "run": "tiny", "range": "0.2,0.9", "sort": "similarity", "top_k": "10"})
    assert sus.slider(key="sus_range").value == pytest.approx((0.2, 0.9))
    assert sus.selectbox(key="sus_sort").value == "similarity" and sus.slider(key="sus_topk").value == 10
    cmp_ = _open({"page": "compare", "run": "tiny", "runs": "tiny", "metrics": "recall.rsum"})
    assert cmp_.multiselect(key="cmp_runs").value == ["tiny"]
    assert cmp_.multiselect(key="cmp_metrics").value == ["recall.rsum"]
    data = _open({"page": "data", "run": "tiny", "data_split": "val", "n": "8"})
    assert data.selectbox(key="data_split").value == "val" and data.slider(key="data_gallery_n").value == 8
