"""Shared by the app tests: one tiny trained run per test session, in a temporary runs folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_ROOT: dict[str, Path] = {}

# ~10 s on 2 busy cores: 64 training images, 2 epochs (1 VSE++ warm-up + 1 with FNE), small model.
TINY = {"dataset": "shapes", "dataset_options": {"n_train": 64, "n_val": 40, "n_test": 40}, "sampler": "fne",
        "epochs": 2, "batch_size": 64, "dim": 32, "width": 16, "text_encoder": "bag", "queue_size": 0, "seed": 0,
        "device": "cpu"}


def tiny_runs_root(base: Path) -> Path:
    """A runs folder holding one tiny trained run (trained once per session), with the app's pages of its test
    and val splits stored in the app's cache as ``fnlab train`` stores them."""
    if "root" in _ROOT:
        return _ROOT["root"]
    from fnlab.storage import pages, runs
    from fnlab.training import train

    root = base / "runs"
    run = train.train(train.TrainConfig.from_dict(TINY), store=runs.RunStore(root), name="tiny")
    pages.store_for_app(run, root=Path(app_env(root)["FNLAB_CACHE"]) / "pages")
    _ROOT["root"] = root
    return root


def app_env(root: Path) -> dict[str, str]:
    """Environment for the app under test: its runs folder, a private cache, no demo training."""
    return {"FNLAB_RUNS": str(root), "FNLAB_CACHE": str(root.parent / "cache"), "FNLAB_NO_DEMO": "1"}


def set_env(env: dict[str, str]) -> dict[str, str | None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return old


def warm_umap_cache(root: Path, run: str = "tiny", split: str = "test", n_neighbors: int = 15) -> None:
    """Compute the map the Embedding map page asks for (same inputs, same cache key) into $FNLAB_CACHE.

    A streamlit subprocess then reads it from disk instead of paying numba's first-compile cost again.
    """
    import numpy as np

    from fnlab.analysis import projection
    from fnlab.storage import runs

    r = runs.RunStore(root).load(run)
    a = np.ascontiguousarray(r.load_array(f"emb_a_{split}"), dtype=np.float32)
    b = np.ascontiguousarray(r.load_array(f"emb_b_{split}"), dtype=np.float32)
    projection.umap_2d(np.concatenate([a, b]), n_neighbors=n_neighbors, random_state=0,
                       cache_dir=Path(app_env(root)["FNLAB_CACHE"]) / "umap")


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


def own_runs_root(base: Path) -> Path:
    """A runs folder holding one run trained on :func:`planted_text_folder`, as the app's Train page trains one
    (every split's embeddings saved), once per test session."""
    if "own" in _ROOT:
        return _ROOT["own"]
    from fnlab.storage import runs
    from fnlab.training import train

    folder = planted_text_folder(base / "mine")
    cfg = {"dataset": "pairs", "dataset_root": str(folder), "sampler": "fne", "epochs": 1, "batch_size": 32,
           "dim": 16, "queue_size": 0, "seed": 0, "device": "cpu", "eval_splits": ["train", "val", "test"]}
    root = base / "runs"
    train.train(train.TrainConfig.from_dict(cfg), store=runs.RunStore(root), name="mine")
    _ROOT["own"] = root
    return root
