"""Shared by the app tests: one tiny trained run per test session, in a temporary runs folder.

The runs and their caches (the app's stored pages, every saved split's UMAP map) are built once per test session,
whichever xdist worker asks first (the other waits on a lock, then copies them): a first UMAP fit in a fresh
process spends most of its time compiling, and with every map on disk no app server or page ever starts one.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_ROOT: dict[str, Path] = {}

# ~10 s on 2 busy cores: 64 training images, 2 epochs (1 VSE++ warm-up + 1 with FNE), small model.
TINY = {"dataset": "shapes", "dataset_options": {"n_train": 64, "n_val": 40, "n_test": 40}, "sampler": "fne",
        "epochs": 2, "batch_size": 64, "dim": 32, "width": 16, "text_encoder": "bag", "queue_size": 0, "seed": 0,
        "device": "cpu"}


def _built_once(name: str, base: Path, build: Callable[[Path], None]) -> Path:
    """``base/runs`` (and ``base/cache``, its app cache): a copy of what ``build(folder)`` wrote into
    ``folder/runs`` and ``folder/cache``, built once per test session. Under pytest-xdist the workers of one
    session share the folder above their own temporary folders, so the first worker that asks builds (a lock
    makes the others wait) and every worker copies."""
    from filelock import FileLock  # a dependency of torch

    session = next((p for p in base.parents if re.fullmatch(r"pytest-\d+", p.name)), base.parent)
    shared = session / f"shared-{name}"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "done").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            build(shared)
            (shared / "done").write_text("")
    for part in ("runs", "cache"):
        if (shared / part).is_dir():
            shutil.copytree(shared / part, base / part, dirs_exist_ok=True)
    return base / "runs"


def _build_tiny(folder: Path) -> None:
    from fnlab.storage import pages, runs
    from fnlab.training import train

    root = folder / "runs"
    run = train.train(train.TrainConfig.from_dict(TINY), store=runs.RunStore(root), name="tiny")
    pages.store_for_app(run, root=Path(app_env(root)["FNLAB_CACHE"]) / "pages")
    warm_maps(root, "tiny")


def tiny_runs_root(base: Path) -> Path:
    """A runs folder holding one tiny trained run (trained once per session), with the app's pages of its test
    and val splits stored in the app's cache as ``fnlab train`` stores them, and their UMAP maps."""
    if "root" not in _ROOT:
        _ROOT["root"] = _built_once("tiny", base, _build_tiny)
    return _ROOT["root"]


def app_env(root: Path) -> dict[str, str]:
    """Environment for the app under test: its runs folder, a private cache, no demo training."""
    return {"FNLAB_RUNS": str(root), "FNLAB_CACHE": str(root.parent / "cache"), "FNLAB_NO_DEMO": "1"}


def set_env(env: dict[str, str]) -> dict[str, str | None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return old


def warm_maps(root: Path, run: str, splits: tuple[str, ...] | None = None) -> None:
    """Compute the maps the Embedding map page asks for (same inputs, same cache key: app/mapjob.py's) into
    $FNLAB_CACHE, for ``splits`` (default: every split the run saved). A page or a streamlit server then reads
    them from disk instead of starting a background job that pays numba's first compile again."""
    ensure_repo_on_path()
    from app import mapjob
    from fnlab.analysis import projection
    from fnlab.storage.loader import LoadedRun

    for split in splits or LoadedRun.from_store(root, run).saved_splits:
        projection.umap_2d(mapjob.embeddings(root, run, split), n_neighbors=mapjob.N_NEIGHBORS,
                           random_state=mapjob.RANDOM_STATE, cache_dir=Path(app_env(root)["FNLAB_CACHE"]) / "umap")


def ensure_repo_on_path() -> None:
    """Make ``import app`` work in tests (the app is not an installed package)."""
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def planted_text_folder(root: Path, n: int = 90, *, dim: int = 16, seed: int = 0) -> Path:
    """A small ``pairs`` folder with texts on both sides (documents and queries), a sixth of the documents
    duplicated (each duplicate and its original: false negatives in ``relevance.csv``)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_orig = n * 5 // 6
    docs = rng.standard_normal((n_orig, dim))
    copies = rng.choice(n_orig, size=n - n_orig, replace=False)
    group = np.concatenate([np.arange(n_orig), copies])
    docs = np.concatenate([docs, docs[copies] + 0.02 * rng.standard_normal((len(copies), dim))])
    queries = docs + 0.5 * rng.standard_normal(docs.shape)
    split = rng.choice(["train", "val", "test"], size=n_orig, p=[0.5, 0.25, 0.25])[group]
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "a.npy", docs.astype(np.float32))
    np.save(root / "b.npy", queries.astype(np.float32))
    pd.DataFrame({"b": np.arange(n), "a": np.arange(n), "split": split,
                  "text": [f"how do I use tool {g}" for g in group],
                  "a_text": [f"the manual of tool {g}" for g in group]}).to_csv(root / "pairs.csv", index=False)
    rel = [(i, j) for i in range(n) for j in np.flatnonzero(group == group[i]) if j != i]
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(root / "relevance.csv", index=False)
    return root


def _build_own(folder: Path) -> None:
    from fnlab.storage import runs
    from fnlab.training import train

    data = planted_text_folder(folder / "mine")
    cfg = {"dataset": "pairs", "dataset_root": str(data), "sampler": "fne", "epochs": 1, "batch_size": 32,
           "dim": 16, "queue_size": 0, "seed": 0, "device": "cpu", "eval_splits": ["train", "val", "test"]}
    root = folder / "runs"
    train.train(train.TrainConfig.from_dict(cfg), store=runs.RunStore(root), name="mine")
    warm_maps(root, "mine", ("test", "val", "train", "all"))


def own_runs_root(base: Path) -> Path:
    """A runs folder holding one run trained on :func:`planted_text_folder`, as the app's Train page trains one
    (every split's embeddings saved), once per test session, with the UMAP maps of its splits."""
    if "own" not in _ROOT:
        _ROOT["own"] = _built_once("own", base, _build_own)
    return _ROOT["own"]
