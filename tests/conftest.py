"""Suite-wide settings, applied before any test module imports torch."""

import os

# OpenMP threads that spin while they wait take the cores from everything else the suite runs at the same time
# (streamlit servers, Ray workers, training subprocesses) on a 2-core machine; waiting passively changes no
# result. The fnlab command sets the same (fnlab/cli/__init__.py); here it holds whatever test file runs first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
