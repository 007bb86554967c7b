"""The embedding map's UMAP, computed in a background process the first time a run's split is shown.

A first UMAP fit in a fresh process spends most of its time compiling (numba); the app must not block on
that. :func:`start` spawns ``python -m app.mapjob`` (this file), which computes the map exactly as the page
asks for it (:func:`fnlab.analysis.projection.umap_2d`, disk cache under ``$FNLAB_CACHE/umap``) and exits; meanwhile
the page shows an instant PCA projection. A lock file (``<key>.lock`` with the pid) keeps one job per map;
a lock whose process died is stale and ignored. Nothing here imports streamlit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from app.jobs import REPO, pid_alive

N_NEIGHBORS = 15
RANDOM_STATE = 0


def _lock(root: Path, name: str, split: str) -> Path:
    from fnlab.analysis import projection

    key = hashlib.sha256(f"{Path(root).resolve()}/{name}/{split}".encode()).hexdigest()[:20]
    return projection.default_cache_dir() / f".job-{key}.lock"


def embeddings(root: str | os.PathLike, name: str, split: str):
    """Side A then side B of run ``name``'s split, as the map stacks them (``[n_a + n_b, d]`` float32), read as
    the app reads them (:class:`fnlab.storage.loader.LoadedRun`: a split the run did not save is encoded)."""
    import numpy as np

    from fnlab.storage.loader import LoadedRun

    a, b = LoadedRun.from_store(root, name).embeddings(split)
    return np.concatenate([a, b])


def running(root: str | os.PathLike, name: str, split: str) -> bool:
    info = _read(_lock(Path(root), name, split))
    return info is not None and pid_alive(int(info.get("pid", -1)))


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def start(root: str | os.PathLike, name: str, split: str) -> bool:
    """Start computing the map of run ``name``'s split unless a live job does already; ``True`` if started."""
    lock = _lock(Path(root), name, split)
    lock.parent.mkdir(parents=True, exist_ok=True)
    if running(root, name, split):
        return False
    lock.unlink(missing_ok=True)  # stale
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    proc = subprocess.Popen([sys.executable, "-m", "app.mapjob", "--root", str(root), "--name", name, "--split", split],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    from app import jobs

    jobs._CHILDREN[proc.pid] = proc
    tmp = lock.with_name(lock.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"pid": proc.pid, "started": time.time()}))
    os.replace(tmp, lock)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compute one run split's embedding map for the fnlab app.")
    ap.add_argument("--root", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--split", required=True)
    args = ap.parse_args(argv)
    try:
        from fnlab.analysis import projection

        projection.umap_2d(embeddings(args.root, args.name, args.split), n_neighbors=N_NEIGHBORS,
                           random_state=RANDOM_STATE)
        return 0
    finally:
        _lock(Path(args.root), args.name, args.split).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
