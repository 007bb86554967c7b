"""Every st.cache_* wrapper of the app, and the sidebar widgets all pages share.

Pages call these functions only; they never cache on their own. A run is read through one engine loader
(:class:`fnlab.storage.loader.LoadedRun`: config, metrics, dataset splits, embeddings, posterior), and what
its pages show (rankings, similarity distributions, the map's first projection, the example, the scan) is
computed once per run and kept on disk (:class:`fnlab.storage.pages.RunPages`, keyed by the run's
checksum): a page reads instead of computing. Both objects live in ``st.cache_resource``, keyed by the
run's folder, name and its ``run.json`` (so a rewritten run is read again, and a review decision, which
writes beside it, is not a change).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import url
from fnlab import data
from fnlab.data import display

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data" / "shapes"
DIRECTIONS = ("t2i", "i2t")
SPLIT_LABELS = {"test": "test", "val": "val", "train": "train", "all": "all splits"}


def upload_folder():
    """This session's private upload folder (app/uploads.py), removed when the session ends."""
    from app.uploads import UploadFolder

    if "_fn_uploads" not in st.session_state:
        st.session_state["_fn_uploads"] = UploadFolder()
    return st.session_state["_fn_uploads"]


def public_message(err: BaseException) -> str:
    """The error's message for the page: no server temporary paths, never a stack trace."""
    import tempfile

    msg = str(err).strip() or type(err).__name__
    if "_fn_uploads" in st.session_state:
        msg = st.session_state["_fn_uploads"].hide(msg)
    return msg.replace(tempfile.gettempdir() + os.sep, "<temp>/")


def guard(fn):
    """Run a page body; show errors as one ``st.error`` line instead of a stack trace (logged on the server)."""
    try:
        fn()
    except (ValueError, FileNotFoundError, KeyError, IndexError, OSError) as err:
        st.error(public_message(err))
    except Exception as err:  # a bug: one line on the page, the traceback in the server log
        import logging

        logging.getLogger("fnlab.app").exception("page error")
        st.error(f"This page hit an internal error ({type(err).__name__}: {public_message(err)}). "
                 "The details are in the server log.")


# ------------------------------------------------------------------ runs root
# Folders the app never reads runs from or writes runs into (checked on the resolved path).
SYSTEM_FOLDERS = tuple(Path(p) for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc",
                                         "/run", "/sbin", "/sys", "/usr", "/var/lib", "/var/log", "/var/run"))


def default_runs_root() -> str:
    return os.environ.get("FNLAB_RUNS", "runs")


def checked_folder(text: str, what: str) -> Path:
    """``text`` as a resolved folder path the app may use, or a ``ValueError`` saying why not.

    Relative paths are taken from the working folder; ``..`` and links are resolved, so the folder checked is
    the folder used. The file-system root and system folders are refused.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError(f"{what}: enter a folder path")
    if "\x00" in text:
        raise ValueError(f"{what}: the path holds a NUL character")
    path = Path(os.path.expanduser(text)).resolve()
    if path == Path(path.anchor) or any(path == f or f in path.parents for f in SYSTEM_FOLDERS):
        raise ValueError(f"{what}: {text!r} is a system folder; choose a folder of your own "
                         f"(for example `runs` in the project folder)")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what}: {text!r} is a file, not a folder")
    return path


def default_root() -> Path:
    """The default runs folder, resolved (``$FNLAB_RUNS``, else ``runs`` in the working folder): the one folder
    the demo run trains in without a click."""
    return checked_folder(default_runs_root(), "Runs folder")


@st.cache_resource(show_spinner=False)
def _public(port: int) -> bool:
    from app.listening import every_interface, listening_addresses

    return int(port) in every_interface(listening_addresses())


def warn_if_public() -> None:
    """A warning on every page when this server listens on every network interface, not only on this machine
    (asked of the kernel: the socket of the server's port, :mod:`app.listening`)."""
    port = st.get_option("server.port")
    if port and _public(int(port)):
        st.warning(f"This app is listening on every network interface (port {port}): anyone who can reach this "
                   "machine can open it and read your runs. Start it with `fnlab app` (this machine only) unless "
                   "you mean to share it.", icon=":material/public:")


def runs_root() -> Path:
    """The runs folder chosen in the sidebar (resolved; the default when the box holds a refused path)."""
    try:
        return checked_folder(st.session_state.get(_P["runs_root"]) or default_runs_root(), "Runs folder")
    except ValueError:
        return checked_folder(default_runs_root(), "Runs folder")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def run_names(root: Path) -> list[str]:
    """Complete runs of ``root``, newest first."""
    return _run_names(str(root), _mtime(root))


@st.cache_data(show_spinner=False, ttl=30)
def _run_names(root: str, mtime_key: float) -> list[str]:
    """Complete runs only (``fnlab.storage.runs`` never lists a run still being written), newest first."""
    if not Path(root).is_dir():
        return []
    from fnlab.storage.runs import MARKER, RunStore

    names = RunStore(root).names()
    return sorted(names, key=lambda n: (-_mtime(Path(root) / n / MARKER), n))


def refresh_runs() -> None:
    """Forget the cached run list (after a run was written, renamed or removed)."""
    _run_names.clear()


# ------------------------------------------------------------------ a run, its data and its pages
def run_key(root: Path, name: str) -> tuple:
    """What identifies run ``name``'s contents cheaply: its ``run.json``'s inode, size and modification time
    (rewritten when the run is; review decisions, written beside it, leave it alone)."""
    try:
        st_ = (Path(root) / name / "run.json").stat()
        return (st_.st_ino, st_.st_size, st_.st_mtime_ns)
    except OSError:
        return (0, 0, 0)


@st.cache_resource(show_spinner=False, max_entries=16)
def _loaded(root: str, name: str, key: tuple):
    from fnlab.storage.loader import LoadedRun

    return LoadedRun.from_store(root, name)


def loaded(root: Path, name: str):
    """The run (:class:`fnlab.storage.loader.LoadedRun`), shared by every session."""
    return _loaded(str(root), name, run_key(root, name))


@st.cache_resource(show_spinner=False, max_entries=16)
def _pages(root: str, name: str, key: tuple, cache: str):
    from fnlab.storage.pages import RunPages

    pages = RunPages(_loaded(root, name, key))
    if os.environ.get("FNLAB_PREPARE_PAGES", "1") != "0":
        pages.prepare_in_background()  # every saved split's pages, so that a split change reads them
    return pages


def pages(root: Path, name: str):
    """The run's stored page data (:class:`fnlab.storage.pages.RunPages`)."""
    from fnlab.storage.pages import cache_dir

    return _pages(str(root), name, run_key(root, name), str(cache_dir()))


def get_run(root: Path, name: str):
    """The run's :class:`fnlab.storage.runs.Run` (config, files)."""
    return loaded(root, name).run


def run_metrics(root: Path, name: str) -> pd.DataFrame:
    m = loaded(root, name).metrics
    return m if isinstance(m, pd.DataFrame) else pd.DataFrame(m)


def run_splits(root: Path, name: str) -> tuple[str, ...]:
    """The splits run ``name`` can be analysed on (saved ones, and with its model every split and all)."""
    return loaded(root, name).splits


def _preparing(what: str):
    return st.spinner(f"Preparing {what} for this run (once; it is kept for next time)…")


def run_dataset(root: Path, name: str, split: str):
    r = loaded(root, name)
    if split not in r._datasets:
        with st.spinner(f"Loading the {SPLIT_LABELS.get(split, split)} split…"):
            return r.dataset(split)
    return r.dataset(split)


def run_embeddings(root: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    r = loaded(root, name)
    if split not in r._embeddings and split not in r.saved_splits:
        with st.spinner(f"Encoding the {SPLIT_LABELS.get(split, split)} split with the run's model (once)…"):
            return r.embeddings(split)
    return r.embeddings(split)


def run_posterior(root: Path, name: str):
    """The run's posterior: its ``posterior.json``, else its own estimator fitted as training fits it."""
    r = loaded(root, name)
    if r._posterior is None and not r.run.has("posterior.json"):
        with st.spinner(f"Fitting the run's own posterior ({r.estimator}) once: the run has no posterior.json…"):
            return r.posterior()
    return r.posterior()


def sides(root: str | Path, name: str, split: str, direction: str):
    run_embeddings(Path(root), name, split)
    run_dataset(Path(root), name, split)
    return pages(Path(root), name).sides(split, direction)


def rankings(root: Path, name: str, split: str, direction: str):
    """Every query's top candidates with P(false negative) (:class:`fnlab.analysis.explore.Rankings`)."""
    pg = pages(root, name)
    if not pg.has("rankings", split, direction):
        sides(root, name, split, direction)
        run_posterior(root, name)
        with _preparing(f"the {SPLIT_LABELS.get(split, split)} split's rankings"):
            return pg.rankings(split, direction)
    return pg.rankings(split, direction)


def distribution(root: Path, name: str, split: str, direction: str):
    """``(similarity sample, P(false negative) of its hard pairs)`` (:meth:`RunPages.distribution`)."""
    pg = pages(root, name)
    if not pg.has("distribution", split, direction):
        sides(root, name, split, direction)
        run_posterior(root, name)
        with _preparing(f"the {SPLIT_LABELS.get(split, split)} split's similarity distributions"):
            return pg.distribution(split, direction)
    return pg.distribution(split, direction)


def teaching_example(root: Path, name: str, split: str) -> dict | None:
    """The run's example query and FNE setting (:meth:`fnlab.storage.pages.RunPages.example`): Rankings, the
    Sampler playground and the Lesson open on it, the Data page names it. ``None`` without ground truth."""
    pg = pages(root, name)
    if not pg.has("example", split):
        sides(root, name, split, "t2i")
        run_posterior(root, name)
        with _preparing("the lesson's example"):
            return pg.example(split)
    return pg.example(split)


def example_query(root: Path, name: str, split: str) -> int:
    """The query the app opens on (:func:`teaching_example`), or 0 without ground truth."""
    ex = teaching_example(root, name, split)
    return 0 if ex is None else int(ex["query"])


def pool(root: Path, name: str, split: str, direction: str, size: int):
    """The fixed batch samplers are compared on (:meth:`RunPages.pool`) and its split."""
    pg = pages(root, name)
    ps = pg.pool_split(split)
    s = sides(root, name, ps, direction)
    return pg.pool(split, direction, size), s, ps


def sampler_summary(root: Path, name: str, split: str, direction: str, size: int, samplers: dict,
                    params_of: dict) -> pd.DataFrame:
    """Hardness and false-negative risk of each sampler over the pool (:func:`pool`), one cached row per sampler
    and parameter set: moving one sampler's slider recomputes that sampler's row only."""
    rows = [_summary_row(str(root), name, split, direction, int(size), label,
                         json.dumps(params_of.get(label, {}), sort_keys=True, default=str), run_key(root, name),
                         samplers[label]) for label in samplers]
    return pd.DataFrame(rows, columns=["sampler", "hardness", "fn_risk", "risk_source"])


@st.cache_data(show_spinner=False, max_entries=512)
def _summary_row(root: str, name: str, split: str, direction: str, size: int, label: str, params_json: str,
                 key: tuple, _sampler) -> dict:
    from fnlab.analysis import explore

    b, s, _ = pool(Path(root), name, split, direction, size)
    p_fn = None
    if b.relevant_mask is None:
        pg = pages(Path(root), name)
        if not pg.has("pool-p", pg.pool_split(split), direction, str(int(size))):
            with _preparing("the posterior over the sampler pool"):
                p_fn = pg.pool_probabilities(split, direction, size)
        else:
            p_fn = pg.pool_probabilities(split, direction, size)
    row = explore.sampler_summary(b, explore.sampler_weights(b, {label: _sampler}), p_fn=p_fn)
    return row.iloc[0].to_dict() if len(row) else {"sampler": label, "hardness": float("nan"),
                                                   "fn_risk": float("nan"), "risk_source": "none"}


def scan_run(root: str, name: str, split: str, top_k: int) -> tuple[pd.DataFrame, dict]:
    """The run's scan for suspected false negatives (stored with the run's pages)."""
    pg = pages(Path(root), name)
    if not pg.has("scan", split, str(int(top_k))):
        run_embeddings(Path(root), name, split)
        run_posterior(Path(root), name)
        with st.spinner("Scanning for suspected false negatives (once per split and top K)…"):
            return pg.scan(split, int(top_k))
    return pg.scan(split, int(top_k))


@st.cache_data(show_spinner="Scanning uploaded embeddings…", max_entries=4)
def scan_arrays(q_bytes: bytes, c_bytes: bytes, p_bytes: bytes, names: tuple[str, str, str],
                top_k: int) -> tuple[pd.DataFrame, dict]:
    """Scan uploaded files (their bytes; ``names`` = the three file names, for messages).

    Read with fnlab.core.files' safe readers: nothing is unpickled, and every fault names the file and says what
    was expected.
    """
    from fnlab.analysis import scan
    from fnlab.core import files

    q = files.read_npy(q_bytes, "a float array [queries, dim]", name=names[0], label="queries")
    c = files.read_npy(c_bytes, "a float array [candidates, dim]", name=names[1], label="candidates")
    p = files.read_table(p_bytes, "labelled pairs (query, candidate)", name=names[2], label="positives",
                         columns=("query", "candidate"), integer_columns=("query", "candidate"))
    res = scan.scan(q, c, p, top_k=top_k)
    return res.table, dict(res.summary)


# --------------------------------------------------------------- the embedding map
def map_coords(root: str, name: str, split: str) -> tuple[np.ndarray, bool]:
    """``(coords [n_a + n_b, 2], is_umap)``: the UMAP map once it is on disk; until then the run's stored PCA
    projection, while app/mapjob.py computes the UMAP in the background (a first fit compiles for a minute)."""
    try:
        return _umap_on_disk(root, name, split, run_key(Path(root), name)), True
    except LookupError:
        from app import mapjob

        mapjob.start(root, name, split)
        pg = pages(Path(root), name)
        if not pg.has("projection", split):
            run_embeddings(Path(root), name, split)
        return pg.projection(split), False


def umap_ready(root: str, name: str, split: str) -> bool:
    try:
        _umap_on_disk(root, name, split, run_key(Path(root), name))
        return True
    except LookupError:
        return False


@st.cache_data(show_spinner=False, max_entries=16)
def _umap_on_disk(root: str, name: str, split: str, key: tuple) -> np.ndarray:
    """The UMAP map from its disk cache (never computed here); ``LookupError`` (not cached) when absent."""
    from app import mapjob
    from fnlab.analysis import projection

    a, b = run_embeddings(Path(root), name, split)
    xy = projection.cached_umap(np.concatenate([a, b]), n_neighbors=mapjob.N_NEIGHBORS,
                                random_state=mapjob.RANDOM_STATE)
    if xy is None:
        raise LookupError("the UMAP map is not computed yet")
    return xy


# --------------------------------------------------------------- what a split's items are, in its own words
@dataclass(frozen=True)
class Content:
    """What the pages show of one split's items, in the data's own words.

    ``a_text [n_a]``/``b_text [n_b]``: a short text for every item (a caption, an image's label, a
    document's text, or ``"candidate 7"`` where the data has only embeddings); ``nouns``: what to call them
    (:attr:`fnlab.data.base.MatchingDataset.nouns`); ``images``: side A can be shown as pictures.
    """

    nouns: object
    a_modality: str
    b_modality: str
    a_text: np.ndarray
    b_text: np.ndarray
    images: bool
    directions: dict

    def queries(self, direction: str) -> np.ndarray:
        return self.b_text if direction == "t2i" else self.a_text

    def candidates(self, direction: str) -> np.ndarray:
        return self.a_text if direction == "t2i" else self.b_text

    def query_noun(self, direction: str, plural: bool = False) -> str:
        return self.nouns.side("b" if direction == "t2i" else "a", plural=plural)

    def candidate_noun(self, direction: str, plural: bool = False) -> str:
        return self.nouns.side("a" if direction == "t2i" else "b", plural=plural)

    def candidates_are_images(self, direction: str) -> bool:
        return self.images and direction == "t2i"

    def queries_are_images(self, direction: str) -> bool:
        return self.images and direction == "i2t"

    @property
    def hover(self) -> np.ndarray:
        """Every map point's text: side A first (``image: …``), then side B (``caption: …``)."""
        return np.array([f"{self.nouns.a}: {t}" for t in self.a_text] + [f"{self.nouns.b}: {t}" for t in self.b_text],
                        dtype=object)


def content(root: Path, name: str, split: str) -> Content:
    run_dataset(root, name, split)
    return _content(str(root), name, split, run_key(root, name))


@st.cache_resource(show_spinner=False, max_entries=16)
def _content(root: str, name: str, split: str, key: tuple) -> Content:
    from fnlab.analysis import explore

    ds = loaded(Path(root), name).dataset(split)
    caps = ds.captions()
    b_text = np.array(caps if caps is not None else [display.caption(ds, j) for j in range(ds.n_b)], dtype=object)
    if "label" in ds.a_meta.columns:
        a_text = ds.a_meta["label"].astype(str).to_numpy(dtype=object)
    elif "a_text" in ds.a_meta.columns:
        a_text = ds.a_meta["a_text"].fillna("").astype(str).to_numpy(dtype=object)
    else:
        a_text = np.array([display.a_label(ds, i) for i in range(ds.n_a)], dtype=object)
    for arr in (a_text, b_text):
        arr.setflags(write=False)
    return Content(ds.nouns, ds.a_modality, ds.b_modality, a_text, b_text, ds.a_modality == "image",
                   explore.direction_labels(ds))


def map_hover(root: Path, name: str, split: str) -> np.ndarray:
    """Every map point's text, in the data's words (:attr:`Content.hover`), built once."""
    content(root, name, split)
    return _map_hover(str(root), name, split, run_key(root, name))


@st.cache_resource(show_spinner=False, max_entries=16)
def _map_hover(root: str, name: str, split: str, key: tuple) -> np.ndarray:
    out = _content(root, name, split, key).hover
    out.setflags(write=False)
    return out


def direction_labels(root: Path, name: str) -> dict:
    """``{"t2i": "text → image", "i2t": …}`` in the words of run ``name``'s data."""
    splits = run_splits(root, name)
    return content(root, name, splits[0]).directions if splits else dict.fromkeys(DIRECTIONS, "")


@st.cache_resource(show_spinner=False, max_entries=16)
def _thumb_store(root: str, name: str, split: str, key: tuple, size: int) -> dict[int, str | None]:
    return {}


def thumbs(root: Path, name: str, split: str, ids, size: int = 48) -> list[str | None]:
    """``data:`` URIs of side-A items ``ids`` (for an ImageColumn), encoded once per item and kept for the process;
    ``None`` where the data has no picture."""
    store = _thumb_store(str(root), name, split, run_key(root, name), int(size))
    ds = run_dataset(root, name, split)
    out = []
    for i in ids:
        i = int(i)
        if i not in store:
            store[i] = display.image_data_uri(ds, i, size=size) if ds.a_modality == "image" else None
        out.append(store[i])
    return out


@st.cache_resource(show_spinner=False, max_entries=1024)
def _image(root: str, name: str, split: str, key: tuple, i: int):
    return display.image_array(loaded(Path(root), name).dataset(split), int(i))


def image(root: Path, name: str, split: str, i: int):
    """``[H, W, 3]`` uint8 image of side-A item ``i`` (for ``st.image``), or ``None``."""
    if run_dataset(root, name, split).a_modality != "image":
        return None
    return _image(str(root), name, split, run_key(root, name), int(i))


# --------------------------------------------------------------- datasets the Data page opens by name
@st.cache_resource(show_spinner="Loading dataset…", max_entries=8)
def dataset(name_or_path: str, split: str, root: str | None = None, options_json: str = "{}"):
    kw = json.loads(options_json)
    if root:
        kw["root"] = root
    return data.load(name_or_path, split=split, **kw)


def caption(ds, j: int) -> str:
    return display.caption(ds, int(j))


def a_label(ds, i: int) -> str:
    return display.a_label(ds, int(i))


def a_text(ds, i: int) -> str:
    """Side-A item ``i`` in words: its label, else its text (``a_text``), else ``"candidate 7"``."""
    if "label" not in ds.a_meta.columns and "a_text" in ds.a_meta.columns:
        return str(ds.a_meta["a_text"].iloc[int(i)])
    return display.a_label(ds, int(i))


# ---------------------------------------------------------------- sidebar
# Widget state is per page in a multipage app, so the sidebar's choices live in plain session-state keys
# (_P) that every page's widgets are seeded from and write back to: they survive page changes.
_P = {"runs_root": "_fn_runs_root", "run": "_fn_run", "split": "_fn_split", "direction": "_fn_direction"}
DEMO_RUN = "demo"


def _seed(key: str, default=None) -> None:
    """Give widget ``key`` the persisted value (before the widget is drawn)."""
    if _P[key] in st.session_state:
        st.session_state[key] = st.session_state[_P[key]]
    elif default is not None:
        st.session_state[key] = default


def _keep(key: str) -> None:
    st.session_state[_P[key]] = st.session_state[key]


def read_url() -> None:
    """Once per session: keep the URL's parameters (:func:`app.url.read`) and take the sidebar's from them."""
    if st.session_state.get("_fn_sidebar_url_read"):
        return
    url.read()
    st.session_state["_fn_sidebar_url_read"] = True
    for key in ("split", "direction"):
        value = url.take(key)
        if value:
            st.session_state[f"_fn_url_{key}"] = value
    run = url.take("run")
    if run:
        st.session_state["_fn_url_run"] = run


def default_run(names: list[str]) -> str | None:
    """The run a new session opens: the demo run, else the most recent complete run."""
    if not names:
        return None
    return DEMO_RUN if DEMO_RUN in names else names[0]


def select_run(name: str) -> None:
    """Make ``name`` the run of every page (applied when the sidebar is next drawn)."""
    st.session_state[_P["run"]] = name


def _runs_root_box() -> Path:
    _seed("runs_root", default_runs_root())
    st.text_input("Runs folder", key="runs_root", on_change=_keep, args=("runs_root",),
                  help="Folder holding trained runs (the environment variable FNLAB_RUNS sets the default). "
                       "System folders are refused.")
    _keep("runs_root")
    try:
        checked_folder(st.session_state["runs_root"], "Runs folder")
    except ValueError as err:
        st.error(f"{err}. Showing `{default_runs_root()}` instead.")
    root = runs_root()
    if not root.exists():  # never created from the text box: only by this explicit click
        st.warning(f"`{root}` does not exist.")
        if st.button("Create this folder", key="create_runs_root", icon=":material/create_new_folder:"):
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                st.error(f"Could not create `{root}`: {err.strerror or err}")
            else:
                refresh_runs()
                st.rerun()
    return root


def _pick(key: str, options: list, default) -> None:
    """Seed sidebar widget ``key``: the URL's value once, else the persisted one if still valid, else ``default``."""
    wanted = st.session_state.pop(f"_fn_url_{key}", None)
    if wanted in options:
        st.session_state[_P[key]] = wanted
    if st.session_state.get(_P[key]) not in options:
        st.session_state[_P[key]] = default
    _seed(key)


def sidebar() -> None:
    """Runs folder, run, split and direction pickers shared by every page; the choices survive page changes and
    are in the URL."""
    read_url()
    with st.sidebar:
        root = _runs_root_box()
        names = run_names(root)
        if not names:
            st.session_state["run"] = None
            st.caption("No trained run in this folder yet: train one on the **Train** page.")
            return
        wanted = st.session_state.pop("_fn_url_run", None) or st.session_state.pop("run_pending", None)
        if wanted in names:
            st.session_state[_P["run"]] = wanted
        if st.session_state.get(_P["run"]) not in names:
            st.session_state[_P["run"]] = default_run(names)
        _seed("run")
        st.selectbox("Run", names, key="run", on_change=_keep, args=("run",),
                     help="The trained run every analysis page shows (newest first).")
        _keep("run")
        name = st.session_state["run"]
        try:
            splits = list(run_splits(root, name))
            labels = direction_labels(root, name)
        except (OSError, ValueError) as err:
            st.error(public_message(err))
            return
        _pick("split", splits, splits[0] if splits else None)
        st.radio("Split", splits, key="split", horizontal=True, on_change=_keep, args=("split",),
                 format_func=lambda s: SPLIT_LABELS.get(s, s),
                 help="The split whose items the pages show: a held-out one (test, val), the training split, or "
                      "all splits at once. A split the run did not save is encoded with its model once.")
        _pick("direction", list(DIRECTIONS), "t2i")
        st.radio("Direction", list(DIRECTIONS), key="direction", horizontal=True, on_change=_keep,
                 args=("direction",), format_func=labels.get,
                 help=f"{labels['t2i']}: side-B items are the queries and side-A items the candidates; "
                      f"{labels['i2t']}: the other way round.")
        for key in ("split", "direction"):
            _keep(key)
        url.set_shared(run=name, split=st.session_state["split"], direction=st.session_state["direction"])


def direction() -> str:
    """The direction chosen in the sidebar: ``"t2i"`` or ``"i2t"``."""
    return st.session_state.get("direction") or st.session_state.get(_P["direction"]) or "t2i"


# ---------------------------------------------------------------- the query every page shares
def _query_key(direction_: str) -> str:
    """Queries are indices within one run's split: the shared one is kept per run, split and direction."""
    run = st.session_state.get("run") or st.session_state.get(_P["run"])
    split = st.session_state.get("split") or st.session_state.get(_P["split"])
    return f"_fn_query|{run}|{split}|{direction_}"


def shared_query(direction_: str) -> int | None:
    """The query last chosen on any page (Rankings, the Sampler playground, Distributions) in ``direction_``."""
    return st.session_state.get(_query_key(direction_))


def share_query(direction_: str, q: int) -> None:
    st.session_state[_query_key(direction_)] = int(q)


def bind_query(key: str, direction_: str, n: int, default: int) -> None:
    """Seed query widget ``key`` (before it is drawn) with the query every page shares in ``direction_``: one sent
    from another page, else the URL's ``query`` (on the session's first visit), else the one chosen last on any
    page, else ``default``. Draw the widget with ``on_change=on_query_change, args=(key, direction_)``."""
    sent = st.session_state.pop("_fn_send_query", None)
    if sent is not None and sent[0] == direction_ and 0 <= int(sent[1]) < n:
        share_query(direction_, int(sent[1]))
    text = url.take("query")
    if text is not None:
        try:
            if 0 <= int(text) < n:
                share_query(direction_, int(text))
        except ValueError:
            pass
    q = shared_query(direction_)
    if q is None or not 0 <= q < n:
        q = int(default)
        share_query(direction_, q)
    st.session_state[key] = q


def on_query_change(key: str, direction_: str) -> None:
    """A query widget changed: every page follows."""
    if st.session_state.get(key) is not None:
        share_query(direction_, int(st.session_state[key]))


#: the page a button's callback asked for: app/main.py switches to it before any page draws (:func:`go_pending`)
_GOTO = "_fn_goto"


def open_ranking(direction_: str, query: int) -> None:
    """A button's ``on_click``: Rankings showing ``query`` (in ``direction_``), opened by the run the click starts."""
    st.session_state[_P["direction"]] = direction_
    st.session_state["_fn_send_query"] = (direction_, int(query))
    share_query(direction_, int(query))
    st.session_state[_GOTO] = "views/rankings.py"


def open_playground(query: int) -> None:
    """A button's ``on_click``: the Sampler playground showing query ``query`` (text → image)."""
    st.session_state[_P["direction"]] = "t2i"
    st.session_state["_fn_send_query"] = ("t2i", int(query))
    share_query("t2i", int(query))
    st.session_state[_GOTO] = "views/playground.py"


def open_on_map(point: int) -> None:
    """A button's ``on_click``: the Embedding map with point ``point`` selected (side A first, then side B)."""
    st.session_state["map_selected_ids"] = [int(point)]
    st.session_state["_fn_map_sent"] = True
    st.session_state[_GOTO] = "views/embedding_map.py"


def go_pending() -> None:
    """Switch to the page a button's callback asked for (:func:`open_ranking`...), if any. Called by app/main.py
    before any page draws, and at the start of a fragment holding such a button (a click there reruns the fragment
    only): the click's run goes straight to the target page instead of first redrawing what the button was on."""
    target = st.session_state.pop(_GOTO, None)
    if target is not None:
        st.switch_page(target)


def current_run() -> tuple[Path, str, str] | None:
    """``(root, run name, split)`` from the sidebar, or ``None`` (with a message) when there is no run."""
    name = st.session_state.get("run")
    if not name:
        from app import jobs

        root = runs_root()
        if jobs.running(root):
            st.info("The demo run is training in the background (the bar above): this page fills in when it is done. "
                    "The Data page works meanwhile.")
        elif not root.exists():
            st.info(f"The runs folder `{root}` does not exist: create it in the sidebar, or point the sidebar's "
                    "*Runs folder* at a folder of runs.")
        else:
            st.info("No trained run yet. Train one on the **Train** page, or point the sidebar's *Runs folder* at a "
                    "folder of runs.")
            # the demo run trains outside the default folder only on a click
            if root != default_root() and st.button("Train the demo run in this folder", key="demo_here"):
                from app.training import demo_config

                jobs.start(root, DEMO_RUN, demo_config())
                st.rerun()
        return None
    return runs_root(), name, st.session_state.get("split") or "test"
