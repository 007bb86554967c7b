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

# The suite runs on two workers, one test file each at a time (a file's module fixtures, e.g. a streamlit
# server, stay on one worker; the two browser files are one group), longest files first (tests/conftest.py,
# which also gives each worker one torch/OpenMP thread). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
XDIST = -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: install browser-deps
	$(PY) -m pytest -q $(XDIST) -m "not slow"

# everything, with tests marked slow (none at present: the browser's first start, which trains the real demo
# run, takes about a minute and runs in make test)
test-all: install browser-deps
	$(PY) -m pytest -q $(XDIST)

test-fast: install
	$(PY) -m pytest -q $(XDIST) -m "not browser and not slow"

# make bench regenerates the sources of the README's result tables, each with the arguments its file records
# (bench/README.md maps table -> command; bench/results/PROVENANCE.md has every file). Many hours on 2 cores.
# make bench-list prints the commands without running anything; make bench-TABLE runs one of them.
R := bench/results
BENCH_TMP ?= /tmp/fnlab-bench
BENCH_fn-detection = $(PY) bench/fn_detection.py --datasets shapes digits shapes-precomp digits-precomp --seeds 0
BENCH_real-text = $(PY) bench/real_text.py --max-docs 2500 --plant 0.05 --top-k 20 --seed 0
BENCH_reproduce = $(PY) bench/reproduce.py --datasets shapes-precomp digits-precomp --epochs 4 --seeds 0 1 2 3 4 --jobs 2
BENCH_density = $(PY) bench/reproduce.py --datasets shapes-precomp digits-precomp --samplers hardest oracle random semihard "fne calibrated" --epochs 4 --seeds 0 1 2 --jobs 2 -o genericness=0.0 --out $(R)/density/genericness-0.0 && $(PY) bench/reproduce.py --datasets shapes-precomp digits-precomp --samplers hardest oracle random semihard "fne calibrated" --epochs 4 --seeds 0 1 2 --jobs 2 -o genericness=0.1 --out $(R)/density/genericness-0.1 && $(PY) bench/reproduce.py --datasets shapes-precomp digits-precomp --epochs 4 --seeds 0 1 2 --jobs 2 --out $(BENCH_TMP)/3seeds && cp $(BENCH_TMP)/3seeds/reproduce.md $(R)/reproduce_3seeds.md && cp $(BENCH_TMP)/3seeds/reproduce.csv $(R)/reproduce_3seeds.csv
BENCH_own-data = { $(PY) bench/own_data.py && $(PY) bench/own_data.py --folders text-S planted-L text-L --heads linear --lrs 5e-3; } > $(R)/own_data.txt
BENCH_scan-speed = $(PY) bench/scan_speed.py --queries=100000 --candidates=100000 --dim=256 --top-k=50 --seed=0 --repeat=1
BENCH_sampler-speed = $(PY) bench/sampler_speed.py --repeats 15
BENCH_train-speed = $(PY) bench/train_speed.py --profile && $(PY) bench/train_speed.py --only cli --out $(R)/train_speed_pool_signals.txt
BENCH_scan-engines = $(PY) bench/scan_scale.py engines --nq 100000 --nc 100000 && $(PY) bench/scan_scale.py engines --nq 30000 --nc 30000 && $(PY) bench/scan_scale.py engines --nq 30000 --nc 30000 --tag _rerun
BENCH_scan-indexes = $(PY) bench/scan_scale.py indexes --nq 10000 --nc 1000000 --kinds flat,ivf --index ivf --index-param nlist=1000 --tag _flat_ivf && $(PY) bench/scan_scale.py indexes --nq 10000 --nc 1000000 --kinds hnsw --index hnsw --index-param M=16 --index-param efConstruction=40 --tag _hnsw && $(PY) bench/scan_scale.py million --index ivf
BENCH_TABLES := fn-detection real-text reproduce density own-data scan-speed sampler-speed train-speed scan-engines scan-indexes

.PHONY: bench-list $(addprefix bench-,$(BENCH_TABLES))
bench: $(addprefix bench-,$(BENCH_TABLES))

$(addprefix bench-,$(BENCH_TABLES)): bench-%: install
	$(BENCH_$*)

bench-list:
	@$(foreach t,$(BENCH_TABLES),printf '%s\n' 'bench-$(t): $(subst ','"'"',$(BENCH_$(t)))';)

lint: install
	$(VENV)/bin/ruff check fnlab app tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
