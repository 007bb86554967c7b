"""fnlab: a false-negative lab for contrastive and retrieval training.

Reference: Li et al., "Your Negative May not Be True Negative: Boosting Image-Text
Matching with False Negative Elimination", ACM MM 2023 (FNE).

The entry points a notebook needs::

    import fnlab
    ds = fnlab.load_dataset("shapes-precomp", split="val")
    sampler = fnlab.samplers.build("fne")
    loss = fnlab.losses.build("triplet")
    post = fnlab.posterior.fit("pu", fnlab.posterior.PairContext(queries, docs, labelled_pairs))
    result = fnlab.scan.scan(queries, docs, labelled_pairs)
    run = fnlab.train.train(fnlab.train.TrainConfig(dataset="shapes"), store=fnlab.RunStore("runs"))
    metrics = fnlab.evaluate.evaluate_embeddings(emb_a, emb_b, ds, posterior=post)

Submodules load on first use, so ``import fnlab`` stays cheap. ``fnlab.scan``, ``fnlab.train`` and
``fnlab.evaluate`` are the modules :mod:`fnlab.analysis.scan`, :mod:`fnlab.training.train` and
:mod:`fnlab.analysis.evaluate`; the folders follow the layers of ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["RunStore", "evaluate", "load_dataset", "losses", "posterior", "samplers", "scan", "train",
           "__version__"]

_SUBMODULES = {"evaluate": "fnlab.analysis.evaluate", "losses": "fnlab.losses", "posterior": "fnlab.posterior",
               "samplers": "fnlab.samplers", "scan": "fnlab.analysis.scan", "train": "fnlab.training.train"}


def load_dataset(name_or_path: str, *, split: str = "train", root: str | None = None, **options: Any):
    """One split of a dataset (:func:`fnlab.data.load`): a built-in name, a loader with ``root``, or a folder."""
    from fnlab import data

    return data.load(name_or_path, split=split, root=root, **options)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name == "RunStore":
        from fnlab.storage.runs import RunStore

        return RunStore
    raise AttributeError(f"module 'fnlab' has no attribute {name!r}")
