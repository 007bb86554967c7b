"""Datasets for fnlab: built-in generated/real sets with ground truth, and loaders for your own data.

Every dataset name is an entry of the registry :data:`DATASETS` (its loader, labels, one-line summary and
whether it has ground truth); ``fnlab data list`` prints them. Besides the names, :func:`load` takes a
folder holding a dataset saved with :func:`fnlab.data.io.save_dataset` (``dataset.json``).

Example:
    >>> import fnlab.data
    >>> ds = fnlab.data.load("shapes", split="val")
    >>> ds.stats().fn_per_query_mean > 0
    True
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnlab.core.registry import Entry, Registry

if TYPE_CHECKING:
    import numpy as np

    from fnlab.data.base import DatasetError, MatchingDataset

SPLITS = ("train", "val", "test", "all")

#: The dataset registry: a new dataset is one loader file plus one entry here. ``target`` is the loader
#: function; ``meta``: ``root`` (it reads a user's folder, ``root=``), ``name_arg`` (the loader takes the
#: dataset's name first, as :func:`fnlab.data.pretrained.load_pretrained`), ``ground_truth`` (``"yes"`` or
#: ``"optional"``), ``presets`` (``((label, options), ...)``: extra picks for the app's Train page) and
#: ``demo`` (the app's first pick), ``defaults`` (``"module:ATTRIBUTE"``, the loader's option defaults, against
#: which ``-o KEY=VALUE`` values are type-checked). Loaders are imported on first use.
DATASETS: Registry = Registry("dataset", bind=False)
DATASETS.declare(
    "shapes", "fnlab.data.shapes:load_shapes", label="shapes from pixels and words", short="shapes (generated)",
    summary="generated 32x32 images of 1-2 objects, 5 captions of varying specificity",
    meta={"defaults": "fnlab.data.shapes:DEFAULTS", "ground_truth": "yes", "presets": (("600 training images", {"n_train": 600}),
                                             ("2,000 training images", {}))})
DATASETS.declare(
    "digits", "fnlab.data.digits:load_digits", label="digits (scikit-learn handwritten digits)", short="digits",
    summary="scikit-learn handwritten digits with template captions ('an odd digit')", meta={"defaults": "fnlab.data.digits:DEFAULTS", "ground_truth": "yes"})
DATASETS.declare(
    "shapes-precomp", "fnlab.data.pretrained:load_pretrained",
    label="shapes as frozen pretrained features (shapes-precomp, the paper's setting; the demo run)",
    short="shapes as pretrained features (shapes-precomp)",
    summary="shapes as frozen pretrained features (attribute CNN + MiniLM captions); built on first use",
    meta={"defaults": "fnlab.data.pretrained:SHAPES_OPTIONS", "ground_truth": "yes", "name_arg": True, "demo": True})
DATASETS.declare(
    "digits-precomp", "fnlab.data.pretrained:load_pretrained",
    label="digits as frozen pretrained features (digits-precomp)",
    short="digits as pretrained features (digits-precomp)",
    summary="digits as frozen pretrained features (CNN pretrained on a disjoint fold + MiniLM), instance-level "
            "captions naming class and style ('a bold italic seven'); built on first use",
    meta={"defaults": "fnlab.data.pretrained:DIGITS_OPTIONS", "ground_truth": "yes", "name_arg": True})
DATASETS.declare(
    "precomp", "fnlab.data.precomp:load_precomp", label="precomp folder", short="precomp folder",
    summary="VSE/SCAN/FNE precomputed features: --root with {split}_ims.npy, {split}_caps.txt "
            "(+ optional {split}_caps.npy, {split}_relevance.npz)",
    meta={"defaults": "fnlab.data.precomp:DEFAULTS", "ground_truth": "optional", "root": True})
DATASETS.declare(
    "pairs", "fnlab.data.pairs:load_pairs", label="pairs folder", short="pairs folder",
    summary="your own pairs table + .npy embeddings: --root with pairs.csv|parquet, a.npy, b.npy",
    meta={"defaults": "fnlab.data.pairs:DEFAULTS", "ground_truth": "optional", "root": True})

__all__ = [
    "DATASETS", "DatasetError", "MatchingDataset", "SPLITS", "available", "builtin", "entry", "load", "spec_of",
    "dataset_spec", "split_indices",
]


def __getattr__(name: str) -> Any:
    # the dataset types load on first use, so the registry's names are read without numpy or pandas
    if name in ("DatasetError", "MatchingDataset"):
        return getattr(importlib.import_module("fnlab.data.base"), name)
    raise AttributeError(f"module 'fnlab.data' has no attribute {name!r}")


def available() -> list[str]:
    """Names accepted by :func:`load` (besides a saved-dataset folder), in the registry's order."""
    return [e.name for e in DATASETS.entries()]


def entry(name: str) -> Entry:
    """The registry entry of dataset ``name`` (labels, summary, ``meta``)."""
    return DATASETS.entry(name)


def builtin() -> list[str]:
    """The datasets that need no folder of the user's (generated or shipped, all with ground truth)."""
    return [e.name for e in DATASETS.entries() if not e.meta.get("root")]


def split_indices(split_of_a: np.ndarray, split: str, where: str) -> np.ndarray:
    """Indices of the A items in ``split`` given each A item's split name (``all``: every item).

    Raises:
        ValueError: ``split`` is not one of train, val, test, all.
    """
    import numpy as np

    if split not in SPLITS:
        raise ValueError(f"{where}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "all":
        return np.arange(len(split_of_a))
    return np.flatnonzero(np.asarray(split_of_a) == split)


def _load_registered(e: Entry, split: str, root: str | Path | None, options: dict[str, Any]) -> MatchingDataset:
    """Call a registered loader: ``loader([name,] [root,] split, **options)`` (its entry's ``meta``)."""
    loader = DATASETS.get(e.name)
    args: list[Any] = [e.name] if e.meta.get("name_arg") else []
    if e.meta.get("root"):
        if root is None:
            raise ValueError(f"dataset {e.name!r} needs root= (the folder holding its files)")
        args.append(root)
    return loader(*args, split, **options)


def dataset_spec(name: str, root: str | None = None, options: dict | None = None) -> dict:
    """The JSON-able description a run's ``config.json`` stores: ``{"name", "root", "options"}``.

    ``fnlab.data.load(**spec, split=...)`` rebuilds the dataset.
    """
    return {"name": str(name), "root": None if root is None else str(root), "options": dict(options or {})}


def spec_of(ds: MatchingDataset) -> dict:
    """How to rebuild ``ds`` (without its split): the spec :func:`load` recorded on it.

    Raises:
        ValueError: ``ds`` was not made by :func:`load` (no spec recorded).
    """
    if not ds.spec:
        raise ValueError(f"dataset {ds.name!r} has no recorded spec: build it with fnlab.data.load")
    return dataset_spec(ds.spec["name"], ds.spec.get("root"), ds.spec.get("options"))


def load(
    name_or_path: str | Path, *, split: str = "train", root: str | Path | None = None, **options
) -> MatchingDataset:
    """Load one split of a dataset.

    Args:
        name_or_path: ``shapes``, ``digits``, ``shapes-precomp``, ``digits-precomp`` (frozen pretrained
            features, built and cached on first use: :mod:`fnlab.data.pretrained`), ``precomp`` or
            ``pairs`` (the last two need ``root``),
            or a folder holding a saved dataset (with ``dataset.json``).
        split: ``train``, ``val``, ``test`` or ``all``.
        root: the data folder for ``precomp`` and ``pairs``.
        **options: loader options (see each loader's docstring), e.g. ``genericness=0.5``.

    Returns:
        the split as a :class:`MatchingDataset`; ``ds.spec`` records how to rebuild it.

    Raises:
        ValueError: unknown name/split/option; :class:`DatasetError` for bad files;
        FileNotFoundError: a missing folder or file.
    """
    name = str(name_or_path)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if name in DATASETS:
        ds = _load_registered(DATASETS.entry(name), split, root, options)
    else:
        path = Path(name)
        if path.name == "dataset.json":
            path = path.parent
        if not (path / "dataset.json").is_file():
            raise FileNotFoundError(
                f"unknown dataset {name!r}: expected one of {', '.join(available())} "
                "or a folder holding a saved dataset (dataset.json)"
            )
        if options:
            raise ValueError(f"a saved dataset folder takes no options, got {sorted(options)}")
        from fnlab.data.io import load_folder

        ds = load_folder(path, split)
        name = os.path.abspath(path)
    # absolute: a run records this spec, and is read later from another working folder (the app, `fnlab eval`)
    ds.spec = dataset_spec(name, None if root is None else os.path.abspath(os.path.expanduser(root)), options)
    return ds
