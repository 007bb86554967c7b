"""Suite-wide settings, applied before any test module imports torch."""

import os

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
