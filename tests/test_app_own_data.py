"""The app on a user's own folder (texts on both sides, no pictures): every page works, its words follow the
data, any split or all of them can be analysed, exports carry the texts beside the ids, and a run can be
renamed or deleted from the app (only runs fnlab wrote)."""

from __future__ import annotations

import io
import os
import shutil

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from _app_support import REPO, app_env, ensure_repo_on_path, own_runs_root, set_env  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ensure_repo_on_path()
MAIN = str(REPO / "app" / "main.py")
TIMEOUT = 600  # a limit for one script run on a busy machine, not a speed target
PAGES = ["views/data.py", "views/lesson.py", "views/train.py", "views/rankings.py", "views/distributions.py",
         "views/playground.py", "views/embedding_map.py", "views/suspects.py", "views/compare.py",
         "views/which_sampler.py"]
IMAGE_WORDS = ("image", "caption", "picture")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = own_runs_root(tmp_path_factory.mktemp("fnlab_own_app"))
    old = set_env(app_env(root))
    yield app_env(root)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _open(page=None, query=None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    if query:
        at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page).run()
    _ok(at)
    return at


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _texts(at) -> str:
    """Every label and text the page shows (widget labels, markdown, captions, metrics, table headers)."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [m.label for m in at.metric] + [x.value for x in at.subheader] + [i.value for i in at.info]
    for kind in ("selectbox", "radio", "slider", "text_input", "number_input", "multiselect", "checkbox"):
        parts += [w.label for w in at.get(kind)]
    parts += [str(o) for r in at.sidebar.radio for o in r.options]
    for d in at.dataframe:
        parts += [str(c) for c in d.value.columns]
    return "\n".join(parts)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_works_and_speaks_of_documents_and_queries(env, page):
    at = _open(page)
    text = _texts(at).lower()
    assert not [w for w in IMAGE_WORDS if w in text], [line for line in text.splitlines()
                                                     if any(w in line for w in IMAGE_WORDS)][:5]
    if page == "views/data.py":
        assert [m.label for m in at.metric][:2] == ["Documents (A)", "Queries (B)"]
        assert "image" not in list(at.dataframe[0].value.columns)
    if page == "views/rankings.py":
        assert "image" not in list(at.dataframe[0].value.columns)
        assert "document" in text and "query" in text


def test_the_sidebar_offers_every_split_and_all_of_them(env):
    at = _open("views/rankings.py")
    assert list(at.sidebar.radio(key="split").options) == ["test", "val", "train", "all splits"]
    assert [o for o in at.sidebar.radio(key="direction").options] == ["query → document", "document → query"]
    for split in ("train", "all"):
        at.sidebar.radio(key="split").set_value(split).run()
        _ok(at)
        assert len(at.get("plotly_chart")) == 1 and len(at.dataframe) == 1
        n = len(at.selectbox(key="rk_query_t2i").options)
        from fnlab.storage.loader import LoadedRun

        assert n == LoadedRun.from_store(env["FNLAB_RUNS"], "mine").dataset(split).n_b
    for page in ("views/suspects.py", "views/embedding_map.py", "views/distributions.py"):
        at.switch_page(page).run()
        _ok(at)
        assert at.sidebar.radio(key="split").value == "all"


def test_exports_carry_texts_beside_the_ids(env, downloads, monkeypatch):
    """Every export carries the texts beside the ids; the Suspects page, which reruns on every review key,
    serialises its export again only when the table changed (a decision, an undo)."""
    from fnlab.analysis import review

    built = []
    real = review.export_bytes
    monkeypatch.setattr(review, "export_bytes", lambda *a, **k: built.append(1) or real(*a, **k))
    at = _open("views/suspects.py")
    at.radio(key="sus_fmt").set_value("csv").run()
    _ok(at)
    table = pd.read_csv(io.BytesIO(downloads["suspects-mine-test.csv"]))
    for col in ("query", "query_id", "query_text", "candidate", "candidate_id", "candidate_text", "split"):
        assert col in table.columns, list(table.columns)
    assert table["query_text"].str.startswith("how do I use tool").all()
    assert table["candidate_text"].str.startswith("the manual of tool").all()
    n = len(built)
    at.run()
    _ok(at)
    assert len(built) == n  # nothing changed: the same bytes
    at.button(key="sus_fn").click().run()
    _ok(at)
    assert len(built) == n + 1
    table = pd.read_csv(io.BytesIO(downloads["suspects-mine-test.csv"]))
    assert (table["decision"] == review.FALSE_NEGATIVE).sum() == 1, table["decision"].value_counts()
    at.button(key="sus_undo_btn").click().run()  # leave the module's run as it was
    _ok(at)
    table = pd.read_csv(io.BytesIO(downloads["suspects-mine-test.csv"]))
    assert (table["decision"] == review.FALSE_NEGATIVE).sum() == 0
    _open("views/rankings.py")
    ranking = pd.read_csv(io.BytesIO(next(v for k, v in downloads.items() if k.startswith("ranking-mine"))))
    assert {"candidate_id", "candidate_text", "query_text"} <= set(ranking.columns)


@pytest.fixture
def downloads(monkeypatch):
    """``{file name: bytes}`` of every download button the app draws (AppTest's media storage, recorded; a
    button whose data is built on click gets what the click would download)."""
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    got: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id
    real_deferred = MediaFileManager.add_deferred

    def record(self, path_or_data, mimetype, kind, filename=None):
        if isinstance(path_or_data, bytes) and filename:
            got[filename] = path_or_data
        return real(self, path_or_data, mimetype, kind, filename)

    def record_deferred(self, data_callable, mimetype, *args, file_name=None, **kwargs):
        data = data_callable()
        if file_name:
            got[file_name] = data.encode() if isinstance(data, str) else data
        return real_deferred(self, data_callable, mimetype, *args, file_name=file_name, **kwargs)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)
    return got


def test_rename_and_delete_from_the_app(env, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(os.path.join(env["FNLAB_RUNS"], "mine"), root / "mine")
    shutil.copytree(os.path.join(env["FNLAB_RUNS"], "mine"), root / "other")
    at = _open("views/compare.py")
    at.sidebar.text_input(key="runs_root").set_value(str(root)).run()
    _ok(at)
    at.selectbox(key="cmp_manage_run").set_value("other").run()
    at.text_input(key="cmp_new_name").set_value("renamed").run()
    at.button(key="cmp_rename").click().run()
    _ok(at)
    assert (root / "renamed" / "run.json").is_file() and not (root / "other").exists()
    assert "renamed" in at.sidebar.selectbox(key="run").options
    (root / "renamed" / "notes.txt").write_text("mine, not fnlab's")  # now fnlab must refuse to delete it
    at.selectbox(key="cmp_manage_run").set_value("renamed").run()
    at.checkbox(key="cmp_delete_sure").check().run()
    at.button(key="cmp_delete").click().run()
    assert at.error and "notes.txt" in at.error[0].value, [e.value for e in at.error]
    assert (root / "renamed" / "notes.txt").is_file()
    at.selectbox(key="cmp_manage_run").set_value("mine").run()
    at.checkbox(key="cmp_delete_sure").check().run()
    at.button(key="cmp_delete").click().run()
    _ok(at)
    assert not (root / "mine").exists() and "mine" not in at.sidebar.selectbox(key="run").options


def test_the_train_page_offers_the_runs_own_folder_first(env, monkeypatch):
    from app import jobs
    from fnlab.storage.loader import LoadedRun

    started = {}
    monkeypatch.setattr(jobs, "start", lambda root, name, config: started.update(name=name, config=config) or True)
    at = _open("views/train.py")
    box = at.selectbox(key="tr_dataset")
    folder = LoadedRun.from_store(env["FNLAB_RUNS"], "mine").dataset_spec["root"]  # where it was trained
    assert box.options[0] == f"the dataset of run mine ({folder})" and box.value == box.options[0]
    at.text_input(key="tr_name").set_value("another-sampler")
    [b for b in at.button if "Train" in b.label][0].click().run()
    _ok(at)
    assert started["name"] == "another-sampler"
    assert (started["config"]["dataset"], started["config"]["dataset_root"]) == ("pairs", folder)
