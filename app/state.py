"""Every st.cache_* wrapper of the app, and the sidebar widgets all pages share.

Pages call these functions only; they never cache on their own. Big read-only arrays (embeddings,
datasets, posteriors) live in ``st.cache_resource`` keyed by path and modification time; small tables
and UMAP coordinates in ``st.cache_data`` keyed by plain values (DESIGN.md §5).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import streamlit as st

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data" / "shapes"
SPLITS = ("test", "val")


class NotAvailable(RuntimeError):
    """A part of fnlab the page needs is not installed / written yet."""


def optional(module: str) -> ModuleType | None:
    """Import an fnlab module, or ``None`` when it does not exist yet."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def need(module: str, what: str) -> ModuleType:
    mod = optional(module)
    if mod is None:
        raise NotAvailable(f"{what} is not available yet (module `{module}` is missing).")
    return mod


def guard(fn):
    """Run a page body; show user errors as ``st.error`` instead of a stack trace."""
    try:
        fn()
    except NotAvailable as err:
        st.info(str(err))
    except (ValueError, FileNotFoundError, KeyError, IndexError, OSError) as err:
        st.error(f"{type(err).__name__}: {err}")


# ------------------------------------------------------------------ runs root
def default_runs_root() -> str:
    return os.environ.get("FNLAB_RUNS", "runs")


def runs_root() -> Path:
    return Path(st.session_state.get("runs_root") or default_runs_root())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def run_names(root: Path) -> list[str]:
    return _run_names(str(root), _mtime(root))


@st.cache_data(show_spinner=False, ttl=30)
def _run_names(root: str, _mtime_key: float) -> list[str]:
    """Complete runs only (``fnlab.runs`` never lists a run still being written)."""
    if not Path(root).is_dir():
        return []
    from fnlab.runs import RunStore

    return sorted(RunStore(root).names())


def get_run(root: Path, name: str):
    return _get_run(str(root), name, _mtime(Path(root) / name))


@st.cache_resource(show_spinner=False, max_entries=16)
def _get_run(root: str, name: str, _mtime_key: float):
    from fnlab.runs import RunStore

    return RunStore(root).load(name)


def run_metrics(root: Path, name: str) -> pd.DataFrame:
    m = get_run(root, name).metrics
    return m if isinstance(m, pd.DataFrame) else pd.DataFrame(m)


# --------------------------------------------------------------- datasets
@st.cache_resource(show_spinner="Loading dataset…", max_entries=8)
def dataset(name_or_path: str, split: str, root: str | None = None, options_json: str = "{}"):
    data = need("fnlab.data", "Dataset loading")
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
    from fnlab import explore

    ds = run_dataset(Path(root), name, split)
    a, b = run_embeddings(Path(root), name, split)
    return explore.sides(ds, a, b, direction)


def run_posterior(root: Path, name: str):
    """The run's fitted posterior (``posterior.json``), else one fitted here on the val split."""
    return _run_posterior(str(root), name, _mtime(Path(root) / name))


def posterior_from_params(params: dict):
    post = optional("fnlab.posterior")
    if post is None:
        raise NotAvailable("Posteriors are not available yet (module `fnlab.posterior` is missing).")
    if hasattr(post, "from_params"):
        return post.from_params(params)
    keys = ("pos_mean", "pos_std", "neg_mean", "neg_std", "prior_pos")
    return post.GaussianPosterior(**{k: params[k] for k in keys if k in params})


@st.cache_resource(show_spinner=False, max_entries=16)
def _run_posterior(root: str, name: str, _mtime_key: float):
    run = _get_run(root, name, _mtime_key)
    try:
        return posterior_from_params(run.load_json("posterior"))
    except (FileNotFoundError, KeyError, ValueError, TypeError, OSError):
        pass
    from fnlab import explore
    from fnlab.posterior import GaussianPosterior

    smp = explore.similarity_sample(sides(root, name, "val", "t2i"))
    return GaussianPosterior.fit(smp.positive, smp.hardest, prior_pos=1e-4)


@st.cache_resource(show_spinner="Computing similarities…", max_entries=32)
def similarity_sample(root: str, name: str, split: str, direction: str):
    from fnlab import explore

    return explore.similarity_sample(sides(root, name, split, direction))


@st.cache_data(show_spinner="Computing the UMAP map (first time only)…", max_entries=16)
def umap_coords(root: str, name: str, split: str, n_neighbors: int, _mtime_key: float) -> np.ndarray:
    from fnlab import projection

    a, b = run_embeddings(Path(root), name, split)
    both = np.concatenate([a, b])
    return projection.umap_2d(both, n_neighbors=n_neighbors, random_state=0)


@st.cache_data(show_spinner="Scanning for suspected false negatives…", max_entries=16)
def scan_run(root: str, name: str, split: str, top_k: int, _mtime_key: float) -> tuple[pd.DataFrame, dict]:
    scan = need("fnlab.scan", "The scan")
    ds = run_dataset(Path(root), name, split)
    a, b = run_embeddings(Path(root), name, split)
    res = scan.scan_dataset(a, b, ds, top_k=top_k)
    return res.table, dict(res.summary)


@st.cache_data(show_spinner="Scanning uploaded embeddings…", max_entries=4)
def scan_arrays(q_bytes: bytes, c_bytes: bytes, p_bytes: bytes, p_name: str, top_k: int) -> tuple[pd.DataFrame, dict]:
    import io

    scan = need("fnlab.scan", "The scan")
    q = np.load(io.BytesIO(q_bytes), allow_pickle=False)
    c = np.load(io.BytesIO(c_bytes), allow_pickle=False)
    if p_name.endswith(".csv"):
        p = pd.read_csv(io.BytesIO(p_bytes))
    elif p_name.endswith(".parquet"):
        p = pd.read_parquet(io.BytesIO(p_bytes))
    else:
        raise ValueError(f"positives file {p_name!r}: expected .csv or .parquet")
    res = scan.scan(q, c, p, top_k=top_k)
    return res.table, dict(res.summary)


@st.cache_data(show_spinner=False, max_entries=4096)
def thumb(ds_key: tuple, i: int, size: int = 64) -> str | None:
    """``data:`` URI of image ``i`` of the dataset identified by ``ds_key`` (see :func:`ds_key`)."""
    display = optional("fnlab.data.display")
    if display is None:
        return None
    return display.image_data_uri(dataset(*ds_key), int(i), size=size)


def ds_key(root: Path, name: str, split: str) -> tuple:
    spec = get_run(root, name).config.get("dataset") or {}
    if isinstance(spec, str):
        spec = {"name": spec}
    return (spec.get("name"), split, spec.get("root"), json.dumps(spec.get("options") or {}, sort_keys=True))


def caption(ds, j: int) -> str:
    display = optional("fnlab.data.display")
    if display is not None:
        return display.caption(ds, int(j))
    caps = ds.captions()
    return caps[int(j)] if caps else f"query {int(j)}"


def a_label(ds, i: int) -> str:
    display = optional("fnlab.data.display")
    if display is not None and hasattr(display, "a_label"):
        return display.a_label(ds, int(i))
    return f"image {int(i)}"


# ---------------------------------------------------------------- sidebar
def sidebar() -> None:
    """Runs folder, run and split pickers, shared by every page (values in ``st.session_state``)."""
    with st.sidebar:
        st.text_input("Runs folder", value=default_runs_root(), key="runs_root",
                      help="Folder holding trained runs (env FNLAB_RUNS sets the default).")
        names = run_names(runs_root())
        if names:
            pending = st.session_state.pop("run_pending", None)
            if pending in names:
                st.session_state["run"] = pending
            if st.session_state.get("run") not in names:
                st.session_state["run"] = names[-1]
            st.selectbox("Run", names, key="run", help="Trained run used by the analysis pages.")
            st.radio("Split", SPLITS, key="split", horizontal=True,
                     help="Held-out split whose embeddings the pages show.")
        else:
            st.session_state["run"] = None
            st.caption(f"No trained run in `{runs_root()}` yet: train one on the **Train** page.")


def current_run() -> tuple[Path, str, str] | None:
    """``(root, run name, split)`` from the sidebar, or ``None`` (with a message) when there is no run."""
    name = st.session_state.get("run")
    if not name:
        st.info("No trained run yet. Train one on the **Train** page (about a minute on the sample data), "
                "or point the sidebar's *Runs folder* at a folder of runs.")
        return None
    return runs_root(), name, st.session_state.get("split", SPLITS[0])


def run_key(root: Path, name: str) -> float:
    return _mtime(Path(root) / name)


@st.cache_resource(show_spinner=False, max_entries=1024)
def image(ds_key: tuple, i: int):
    """``[H, W, 3]`` uint8 image of A item ``i`` (for ``st.image``), or ``None``."""
    display = optional("fnlab.data.display")
    if display is None:
        return None
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
    display = optional("fnlab.data.display")
    out = []
    for i in ids:
        i = int(i)
        if i not in store:
            store[i] = display.image_data_uri(dataset(*ds_key), i, size=size) if display else None
        out.append(store[i])
    return out
