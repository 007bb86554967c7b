"""Scanning past one process: sharded inputs for the Ray engine of ``fnlab scan``.

- :mod:`fnlab.analysis.scale.shards`: folders of Parquet / ``.npy`` shards (or in-memory arrays) as one
  checked, id-addressed set of embeddings, read lazily.

The Ray engine itself is :mod:`fnlab.analysis.scan.ray` (``fnlab scan --engine ray``,
``fnlab.analysis.scan.scan(..., engine="ray")``); it alone imports Ray, and only when it runs; without Ray
installed it says how to install it (:data:`RAY_INSTALL_HINT`).
"""

RAY_INSTALL_HINT = ("the Ray engine needs Ray Data: install it with  pip install 'fnlab[ray]'  "
                    "(or  pip install 'ray[data]')")
