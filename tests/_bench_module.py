"""A script of ``bench/`` imported as a module by the tests that check its pure parts."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


@cache
def load_bench(name: str) -> ModuleType:
    """``bench/NAME.py`` as the module ``NAME_bench`` (loaded once; ``bench/`` on ``sys.path`` for the scripts
    that import each other, the module registered in ``sys.modules`` for its dataclasses)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
