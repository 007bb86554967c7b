# fnlab: two commands set everything up on a fresh machine.
#   make demo   installs what is missing and opens the app on the sample data (127.0.0.1)
#   make test   installs what is missing and runs the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PORT   ?= 8501
# CPU build of torch where no NVIDIA GPU is present (never pulls CUDA packages there).
TORCH_CPU_SPEC ?= torch==2.13.0
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_SPEC := $(if $(HAS_GPU),torch,$(TORCH_CPU_SPEC))

.PHONY: install demo test test-all test-fast bench sample-data browser-deps lint clean

$(VENV)/.stamp-install: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[dev,ray]"
	touch $@

install: $(VENV)/.stamp-install

# Debian chromium for the one real-browser smoke test (playwright drives it; no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "note: chromium not found; the browser test will be skipped"; fi; }

sample_data/shapes/dataset.json: | install
	$(PY) -m fnlab.cli data make-sample --out sample_data

sample-data: install
	$(PY) -m fnlab.cli data make-sample --out sample_data

# fnlab app passes every server setting itself (127.0.0.1 only; ADDRESS=0.0.0.0 serves the network, deliberately)
ADDRESS ?= 127.0.0.1
demo: install sample_data/shapes/dataset.json
	$(PY) -m fnlab.cli app --address $(ADDRESS) --port $(PORT)

test: install browser-deps
	$(PY) -m pytest -q -m "not slow"

# everything, with tests marked slow (none at present: the browser's first start, which trains the real demo
# run, takes about a minute and runs in make test)
test-all: install browser-deps
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not browser and not slow"

bench: install
	$(PY) bench/sampler_speed.py
	$(PY) bench/scan_speed.py --queries 20000 --candidates 20000
	$(PY) bench/reproduce.py

lint: install
	$(VENV)/bin/ruff check fnlab app tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
