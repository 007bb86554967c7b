"""Datasets for fnlab: built-in generated/real sets with ground truth, and loaders for your own data.

==============  =============================================================================  ============
name            what                                                                           ground truth
==============  =============================================================================  ============
shapes          generated 32x32 images of 1-2 objects, 5 captions of varying specificity       yes
digits          scikit-learn's handwritten digits, template captions ("an odd digit")          yes
shapes-precomp  ``shapes`` as frozen features: pretrained attribute CNN + MiniLM captions      yes
digits-precomp  ``digits`` as frozen features + MiniLM, captions naming class and style        yes
precomp         VSE/SCAN/FNE precomputed features (``{split}_ims.npy``, ``{split}_caps.txt``)  optional
pairs           your own pairs table + ``.npy`` embeddings/features (+ optional relevance)     optional
(folder)        a dataset saved with :func:`fnlab.data.io.save_dataset` (``dataset.json``)     as saved
==============  =============================================================================  ============

Example:
    >>> import fnlab.data
    >>> ds = fnlab.data.load("shapes", split="val")
    >>> ds.stats().fn_per_query_mean > 0
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fnlab.data.base import DatasetError, MatchingDataset

SPLITS = ("train", "val", "test", "all")
_BUILTIN = ("shapes", "digits")
_PRETRAINED = ("shapes-precomp", "digits-precomp")
_LOADERS = ("precomp", "pairs")

__all__ = [
    "DatasetError", "MatchingDataset", "SPLITS", "available", "load", "spec_of", "dataset_spec",
    "split_indices",
]


def available() -> list[str]:
    """Names accepted by :func:`load` (besides a saved-dataset folder)."""
    return [*_BUILTIN, *_PRETRAINED, *_LOADERS]


def split_indices(split_of_a: np.ndarray, split: str, where: str) -> np.ndarray:
    """Indices of the A items in ``split`` given each A item's split name (``all``: every item).

    Raises:
        ValueError: ``split`` is not one of train, val, test, all.
    """
    if split not in SPLITS:
        raise ValueError(f"{where}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "all":
        return np.arange(len(split_of_a))
    return np.flatnonzero(np.asarray(split_of_a) == split)


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
    if name == "shapes":
        from fnlab.data.shapes import load_shapes

        ds = load_shapes(split, **options)
    elif name == "digits":
        from fnlab.data.digits import load_digits

        ds = load_digits(split, **options)
    elif name in _PRETRAINED:
        from fnlab.data.pretrained import load_pretrained

        ds = load_pretrained(name, split, **options)
    elif name in _LOADERS:
        if root is None:
            raise ValueError(f"dataset {name!r} needs root= (the folder holding its files)")
        if name == "precomp":
            from fnlab.data.precomp import load_precomp

            ds = load_precomp(root, split, **options)
        else:
            from fnlab.data.pairs import load_pairs

            ds = load_pairs(root, split, **options)
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
        name = str(path)
    ds.spec = dataset_spec(name, None if root is None else str(root), options)
    return ds
