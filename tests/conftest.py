"""Suite-wide settings, applied before any test module imports torch."""

import os

import pytest

# OpenMP threads that spin while they wait take the cores from everything else the suite runs at the same time
# (streamlit servers, Ray workers, training subprocesses) on a 2-core machine; waiting passively changes no
# result. The fnlab command sets the same (fnlab/cli/__init__.py); here it holds whatever test file runs first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Under pytest-xdist (make test runs two workers) each worker, and every process it starts, gets one thread:
# two workers with a thread per core each would oversubscribe the machine. A serial pytest keeps the defaults.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

# The browser tests' module-scoped fixtures (server, own_server, browser and the timings file), shared by
# tests/test_browser.py and tests/test_browser_own.py; they import playwright only when a test asks for them.
from _browser import browser, own_server, server, timings_file  # noqa: E402, F401

#: the test files that run longest, first: `make test` hands out whole files in this order
#: (`--dist loadfile --no-loadscope-reorder`), so they overlap with the rest of the suite instead of running
#: alone at its end
FIRST_FILES = ("test_browser_own.py", "test_browser.py", "test_scan_ray.py", "test_train.py", "test_crash.py")

#: run as one unit, one after the other on one worker: side by side each took 150 s instead of 90-100 s
#: (two streamlit servers and two Chromiums on two cores)
BROWSER_FILES = ("test_browser_own.py", "test_browser.py")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: without it (-p no:xdist) pytest must not reject it
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's file scheduling with :data:`BROWSER_FILES` as one unit (its ``loadgroup`` marks do not
    reach the scheduler under pytest 9)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class BrowserFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "browser" if path.rsplit("/", 1)[-1] in BROWSER_FILES else path

    return BrowserFilesTogether(config, log)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture scope
def pytest_collection_modifyitems(config, items):
    """Move :data:`FIRST_FILES` to the front, in that order; the rest keep their collection order."""
    def rank(item):
        name = item.path.name
        return FIRST_FILES.index(name) if name in FIRST_FILES else len(FIRST_FILES)
    items.sort(key=rank)  # stable: tests within a file keep their order
