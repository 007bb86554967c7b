"""Every st.cache_* wrapper of the app, and the sidebar widgets all pages share.

Pages call these functions only; they never cache on their own. Big read-only arrays (embeddings,
datasets, posteriors) live in ``st.cache_resource`` keyed by path and modification time; small tables
and UMAP coordinates in ``st.cache_data`` keyed by plain values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fnlab import data
from fnlab.data import display

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data" / "shapes"
SPLITS = ("test", "val")


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
def _run_names(root: str, _mtime_key: float) -> list[str]:
    """Complete runs only (``fnlab.storage.runs`` never lists a run still being written), newest first."""
    if not Path(root).is_dir():
        return []
    from fnlab.storage.runs import MARKER, RunStore

    names = RunStore(root).names()
    return sorted(names, key=lambda n: (-_mtime(Path(root) / n / MARKER), n))


def refresh_runs() -> None:
    """Forget the cached run list (after a run was written or removed)."""
    _run_names.clear()


def get_run(root: Path, name: str):
    return _get_run(str(root), name, _mtime(Path(root) / name))


@st.cache_resource(show_spinner=False, max_entries=16)
def _get_run(root: str, name: str, _mtime_key: float):
    from fnlab.storage.runs import RunStore

    return RunStore(root).load(name)


def run_metrics(root: Path, name: str) -> pd.DataFrame:
    m = get_run(root, name).metrics
    return m if isinstance(m, pd.DataFrame) else pd.DataFrame(m)


# --------------------------------------------------------------- datasets
@st.cache_resource(show_spinner="Loading dataset…", max_entries=8)
def dataset(name_or_path: str, split: str, root: str | None = None, options_json: str = "{}"):
    kw = json.loads(options_json)
    if root:
        kw["root"] = root
    return data.load(name_or_path, split=split, **kw)


def run_dataset(root: Path, name: str, split: str):
    spec = get_run(root, name).config.get("dataset")
    if not spec:
        raise ValueError(f"run {name!r} records no dataset in its config.json")
    if isinstance(spec, str):
        spec = {"name": spec}
    return dataset(spec["name"], split, spec.get("root"), json.dumps(spec.get("options") or {}, sort_keys=True))


def run_embeddings(root: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    return _run_embeddings(str(root), name, split, _mtime(Path(root) / name))


@st.cache_resource(show_spinner="Loading embeddings…", max_entries=16)
def _run_embeddings(root: str, name: str, split: str, _mtime_key: float) -> tuple[np.ndarray, np.ndarray]:
    run = _get_run(root, name, _mtime_key)
    a, b = run.load_array(f"emb_a_{split}"), run.load_array(f"emb_b_{split}")
    a, b = np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


@st.cache_resource(show_spinner=False, max_entries=32)
def sides(root: str, name: str, split: str, direction: str):
    from fnlab.analysis import explore

    ds = run_dataset(Path(root), name, split)
    a, b = run_embeddings(Path(root), name, split)
    return explore.sides(ds, a, b, direction)


def run_posterior(root: Path, name: str):
    """The run's fitted posterior (``posterior.json``), else one fitted here on the val split."""
    return _run_posterior(str(root), name, _mtime(Path(root) / name))


@st.cache_resource(show_spinner=False, max_entries=16)
def _run_posterior(root: str, name: str, _mtime_key: float):
    from fnlab.posterior import fit_dataset, from_params

    run = _get_run(root, name, _mtime_key)
    try:
        return from_params(run.load_json("posterior"))
    except (FileNotFoundError, KeyError, ValueError, TypeError, OSError):
        pass
    # a run without posterior.json: fit it as training does

    ds = run_dataset(Path(root), name, "val")
    a, b = run_embeddings(Path(root), name, "val")
    return fit_dataset(a, b, ds)


#: the example caption's labelled image ranks at most this high (Rankings opens on it)
EXAMPLE_MAX_RANK = 3
#: ... and FNE draws a false negative for it at most this share of the time (hardest: every time)
EXAMPLE_MAX_FNE_RISK = 0.25


@st.cache_data(show_spinner=False, max_entries=16)
def teaching_example(root: str, name: str, split: str, _mtime_key: float) -> dict | None:
    """The run's example caption (text → image), the one the app opens on: Rankings and the Sampler playground
    select it first, the Data page's introduction and the Lesson point at it. ``None`` without ground truth.

    The first caption, in split order, that shows the story: its labelled image ranks in the top
    :data:`EXAMPLE_MAX_RANK`, behind at least one ground-truth false negative; hardest-negative mining's pick
    (its most similar unlabelled image) is a false negative; and FNE (calibrated, with the run's posterior)
    draws a false negative at most :data:`EXAMPLE_MAX_FNE_RISK` of the time. Where no caption meets all four,
    the first that meets the most (in that order of importance) wins.

    Returns:
        ``query``, ``positive`` (its best-ranked labelled image), ``false_negative`` (its best-ranked false
        negative), ``positive_rank``, ``false_negatives_above``, ``hardest_pick_is_fn``, ``fne_fn_risk`` and
        ``hardest_fn_risk`` (the probability that each draws a false negative for this caption).
    """
    s = sides(root, name, split, "t2i")
    fnm = s.false_negatives
    if fnm is None or fnm.nnz == 0:
        return None
    from fnlab import samplers as smp
    from fnlab.analysis import explore

    samplers = {"hardest": smp.build("hardest"),
                "fne": smp.build_for_run("fne", posterior=run_posterior(Path(root), name))}
    best, best_score = None, -1
    for start in range(0, min(len(s.queries), 4096), 256):  # chunks: stop at the first caption that has it all
        qs = np.arange(start, min(start + 256, len(s.queries)))
        b = explore.batch(s, qs)
        sims, pos, fn = b.sims.numpy(), b.positive_mask.numpy(), b.false_negative_mask.numpy()
        best_pos = np.where(pos, sims, -np.inf).max(axis=1)
        above = (fn & (sims > best_pos[:, None])).sum(axis=1)
        pos_rank = (sims > best_pos[:, None]).sum(axis=1) + 1
        pick = np.where(pos, -np.inf, sims).argmax(axis=1)
        pick_is_fn = fn[np.arange(len(qs)), pick]
        risk = {k: (w / w.sum(dim=1, keepdim=True).clamp_min(1e-30) * b.false_negative_mask).sum(dim=1).numpy()
                for k, w in explore.sampler_weights(b, samplers).items()}
        score = (8 * (pos_rank <= EXAMPLE_MAX_RANK) + 4 * (above >= 1) + 2 * pick_is_fn
                 + (risk["fne"] <= EXAMPLE_MAX_FNE_RISK))
        i = int(np.argmax(score))
        if score[i] > best_score:
            fn_sims = np.where(fn[i], sims[i], -np.inf)
            best_score = int(score[i])
            best = {"query": int(qs[i]), "positive": int(np.argmax(np.where(pos[i], sims[i], -np.inf))),
                    "false_negative": int(np.argmax(fn_sims)) if np.isfinite(fn_sims).any() else None,
                    "positive_rank": int(pos_rank[i]), "false_negatives_above": int(above[i]),
                    "hardest_pick_is_fn": bool(pick_is_fn[i]), "fne_fn_risk": float(risk["fne"][i]),
                    "hardest_fn_risk": float(risk["hardest"][i])}
        if best_score == 15:
            break
    return best


def example_query(root: Path, name: str, split: str) -> int:
    """The caption the app opens on (:func:`teaching_example`), or 0 without ground truth."""
    ex = teaching_example(str(root), name, split, run_key(root, name))
    return 0 if ex is None else int(ex["query"])


@st.cache_resource(show_spinner=False, max_entries=32)
def pool_split(root: Path, name: str, split: str) -> str:
    """The split whose candidates the samplers' batch summary draws from: the run's training split when it saved
    those embeddings (the demo run does), else ``split``.

    Samplers are made for the pool training gives them (FNE's queue holds 8224 features, SimANS ranks the top 100
    of it); on a test split of 200 images SimANS's top 100 is half the pool and it draws almost at random, which is
    not what it does in training."""
    return "train" if get_run(root, name).has("emb_a_train.npy") else split


def query_batch(root: str, name: str, split: str, direction: str, size: int):
    """A fixed random batch of ``size`` queries against every candidate (``explore.batch``), computed once."""
    from fnlab.analysis import explore

    s = sides(root, name, split, direction)
    qs = np.random.default_rng(0).choice(len(s.queries), size=min(size, len(s.queries)), replace=False)
    return explore.batch(s, qs)


@st.cache_resource(show_spinner=False, max_entries=32)
def hard_pair_probs(root: str, name: str, split: str, direction: str, _mtime_key: float = 0.0) -> np.ndarray:
    """The run's P(false negative) of each query's top unlabelled candidates (``similarity_sample().hard``)."""
    smp = similarity_sample(root, name, split, direction)
    s = sides(root, name, split, direction)
    out = s.prob_false_negative(run_posterior(Path(root), name), smp.hard_query, smp.hard_candidate)
    out.setflags(write=False)
    return out


@st.cache_resource(show_spinner="Computing similarities…", max_entries=32)
def similarity_sample(root: str, name: str, split: str, direction: str):
    from fnlab.analysis import explore

    return explore.similarity_sample(sides(root, name, split, direction))


def map_coords(root: str, name: str, split: str, _mtime_key: float) -> tuple[np.ndarray, bool]:
    """``(coords [n_a + n_b, 2], is_umap)``: the UMAP map once it is on disk; until then an instant PCA
    projection, while app/mapjob.py computes the UMAP in the background (a first fit compiles for a minute)."""
    try:
        return _umap_on_disk(root, name, split, _mtime_key), True
    except LookupError:
        from app import mapjob

        mapjob.start(root, name, split)
        return _pca_map(root, name, split, _mtime_key), False


def umap_ready(root: str, name: str, split: str) -> bool:
    from app import mapjob
    from fnlab.analysis import projection

    a, b = run_embeddings(Path(root), name, split)
    return projection.cached_umap(np.concatenate([a, b]), n_neighbors=mapjob.N_NEIGHBORS,
                                  random_state=mapjob.RANDOM_STATE) is not None


@st.cache_data(show_spinner=False, max_entries=16)
def _umap_on_disk(root: str, name: str, split: str, _mtime_key: float) -> np.ndarray:
    """The UMAP map from its disk cache (never computed here); ``LookupError`` (not cached) when absent."""
    from app import mapjob
    from fnlab.analysis import projection

    a, b = run_embeddings(Path(root), name, split)
    xy = projection.cached_umap(np.concatenate([a, b]), n_neighbors=mapjob.N_NEIGHBORS,
                                random_state=mapjob.RANDOM_STATE)
    if xy is None:
        raise LookupError("the UMAP map is not computed yet")
    return xy


@st.cache_data(show_spinner=False, max_entries=16)
def _pca_map(root: str, name: str, split: str, _mtime_key: float) -> np.ndarray:
    from fnlab.analysis import projection

    a, b = run_embeddings(Path(root), name, split)
    return projection.pca_2d(np.concatenate([a, b]))


@st.cache_data(show_spinner="Scanning for suspected false negatives…", max_entries=16)
def scan_run(root: str, name: str, split: str, top_k: int, _mtime_key: float) -> tuple[pd.DataFrame, dict]:
    from fnlab.analysis import scan

    ds = run_dataset(Path(root), name, split)
    a, b = run_embeddings(Path(root), name, split)
    # the run's own posterior, so a pair shows the same P(FN) here, on Rankings and in fnlab eval
    res = scan.scan_dataset(a, b, ds, top_k=top_k, posterior=run_posterior(Path(root), name))
    return res.table, dict(res.summary)


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


@st.cache_data(show_spinner=False, max_entries=4096)
def thumb(ds_key: tuple, i: int, size: int = 64) -> str | None:
    """``data:`` URI of image ``i`` of the dataset identified by ``ds_key`` (see :func:`ds_key`)."""
    return display.image_data_uri(dataset(*ds_key), int(i), size=size)


def ds_key(root: Path, name: str, split: str) -> tuple:
    spec = get_run(root, name).config.get("dataset") or {}
    if isinstance(spec, str):
        spec = {"name": spec}
    return (spec.get("name"), split, spec.get("root"), json.dumps(spec.get("options") or {}, sort_keys=True))


def caption(ds, j: int) -> str:
    return display.caption(ds, int(j))


def a_label(ds, i: int) -> str:
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
    """Once per session: take ``run``, ``split``, ``direction``, ``query`` and ``point`` from the URL."""
    if st.session_state.get("_fn_url_read"):
        return
    st.session_state["_fn_url_read"] = True
    qp = st.query_params
    if qp.get("split") in SPLITS:
        st.session_state[_P["split"]] = qp["split"]
    if qp.get("direction") in ("t2i", "i2t"):
        st.session_state[_P["direction"]] = qp["direction"]
    if qp.get("run"):
        st.session_state["_fn_url_run"] = qp["run"]
    for key in ("query", "point"):
        try:
            st.session_state[f"_fn_url_{key}"] = int(qp[key])
        except (KeyError, TypeError, ValueError):
            pass


def default_run(names: list[str]) -> str | None:
    """The run a new session opens: the demo run, else the most recent complete run."""
    if not names:
        return None
    return DEMO_RUN if DEMO_RUN in names else names[0]


def select_run(name: str) -> None:
    """Make ``name`` the run of every page (applied when the sidebar is next drawn)."""
    st.session_state[_P["run"]] = name


def sidebar() -> None:
    """Runs folder, run, split and direction pickers shared by every page; the choices survive page changes."""
    read_url()
    with st.sidebar:
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
        names = run_names(root)
        if names:
            wanted = st.session_state.pop("_fn_url_run", None) or st.session_state.pop("run_pending", None)
            if wanted in names:
                st.session_state[_P["run"]] = wanted
            if st.session_state.get(_P["run"]) not in names:
                st.session_state[_P["run"]] = default_run(names)
            _seed("run")
            st.selectbox("Run", names, key="run", on_change=_keep, args=("run",),
                         help="The trained run every analysis page shows (newest first).")
            _seed("split", SPLITS[0])
            st.radio("Split", SPLITS, key="split", horizontal=True, on_change=_keep, args=("split",),
                     help="Held-out split whose images and captions the pages show.")
            _seed("direction", "t2i")
            st.radio("Direction", ["t2i", "i2t"], key="direction", horizontal=True, on_change=_keep,
                     args=("direction",), format_func={"t2i": "text → image", "i2t": "image → text"}.get,
                     help="text → image: captions are the queries and images the candidates; image → text: "
                          "the other way round.")
            for key in ("run", "split", "direction"):
                _keep(key)
            st.query_params["run"] = st.session_state["run"]
        else:
            st.session_state["run"] = None
            st.caption("No trained run in this folder yet: train one on the **Train** page.")


def direction() -> str:
    """The direction chosen in the sidebar: ``"t2i"`` or ``"i2t"``."""
    return st.session_state.get("direction") or st.session_state.get(_P["direction"]) or "t2i"


def open_ranking(direction_: str, query: int) -> None:
    """Switch to Rankings showing ``query`` (in ``direction_``)."""
    st.session_state[_P["direction"]] = direction_
    st.session_state["_rk_focus"] = int(query)
    st.switch_page("views/rankings.py")


def open_playground(query: int) -> None:
    """Switch to the Sampler playground showing caption ``query`` (text → image)."""
    st.session_state[_P["direction"]] = "t2i"
    st.session_state["pg_query_t2i"] = int(query)
    st.switch_page("views/playground.py")


def open_on_map(point: int) -> None:
    """Switch to the Embedding map with point ``point`` selected (images first, then captions)."""
    st.session_state["map_selected_ids"] = [int(point)]
    st.switch_page("views/embedding_map.py")


def url_index(key: str) -> int | None:
    """``query`` or ``point`` from the URL this session opened with (once), else ``None``."""
    return st.session_state.pop(f"_fn_url_{key}", None)


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
    return runs_root(), name, st.session_state.get("split", SPLITS[0])


def run_key(root: Path, name: str) -> float:
    return _mtime(Path(root) / name)


@st.cache_resource(show_spinner=False, max_entries=1024)
def image(ds_key: tuple, i: int):
    """``[H, W, 3]`` uint8 image of A item ``i`` (for ``st.image``), or ``None``."""
    return display.image_array(dataset(*ds_key), int(i))


@st.cache_resource(show_spinner=False, max_entries=16)
def caption_array(ds_key: tuple) -> np.ndarray:
    """Caption text of every B item of the dataset ``ds_key`` (computed once; index it with arrays)."""
    ds = dataset(*ds_key)
    caps = ds.captions()
    out = np.array(caps if caps is not None else [caption(ds, j) for j in range(ds.n_b)], dtype=object)
    out.setflags(write=False)
    return out


@st.cache_resource(show_spinner=False, max_entries=16)
def map_hover(ds_key: tuple) -> np.ndarray:
    """Text of every embedding-map point: images first (``image: …``), then captions (``caption: …``)."""
    out = np.array([f"image: {t}" for t in label_array(ds_key)] + [f"caption: {t}" for t in caption_array(ds_key)],
                   dtype=object)
    out.setflags(write=False)
    return out


@st.cache_resource(show_spinner=False, max_entries=16)
def label_array(ds_key: tuple) -> np.ndarray:
    """Short label of every A item of the dataset ``ds_key``."""
    ds = dataset(*ds_key)
    if "label" in ds.a_meta.columns:
        out = ds.a_meta["label"].astype(str).to_numpy(dtype=object)
    else:
        out = np.array([a_label(ds, i) for i in range(ds.n_a)], dtype=object)
    out.setflags(write=False)
    return out


@st.cache_resource(show_spinner=False, max_entries=16)
def _thumb_store(ds_key: tuple, size: int) -> dict[int, str | None]:
    return {}


def thumbs(ds_key: tuple, ids, size: int = 48) -> list[str | None]:
    """``data:`` URIs of A items ``ids`` (for ImageColumn), encoded once per item and kept for the process."""
    store = _thumb_store(ds_key, int(size))
    out = []
    for i in ids:
        i = int(i)
        if i not in store:
            store[i] = display.image_data_uri(dataset(*ds_key), i, size=size)
        out.append(store[i])
    return out
