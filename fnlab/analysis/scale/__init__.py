"""Scanning past one process: sharded inputs and the Ray engine of ``fnlab scan``.

- :mod:`fnlab.analysis.scale.shards`: folders of Parquet / ``.npy`` shards (or in-memory arrays) as one
  checked, id-addressed set of embeddings, read lazily.
- :mod:`fnlab.analysis.scale.ray_scan`: ``fnlab scan --engine ray`` (``fnlab.analysis.scan.scan(..., engine="ray")``).

Only :mod:`fnlab.analysis.scale.ray_scan` imports Ray, and only when it runs; without Ray installed it says
how to install it (``pip install 'fnlab[ray]'``).
"""

RAY_INSTALL_HINT = ("the Ray engine needs Ray Data: install it with  pip install 'fnlab[ray]'  "
                    "(or  pip install 'ray[data]')")
