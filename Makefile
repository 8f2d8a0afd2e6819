# make run   — set up (venv + data) and run the main flow on the embedded default data
# make test  — set up, lint (ruff, import-linter layers, dvc.yaml current) and run the test suite (.ci/run)
# make test-fast — the developer loop: lint and every test not marked slow (no stage, server, Ray or subprocess)
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
QUIET_PIP := { grep -v "^WARNING: Location" || true; }
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := /usr/bin/chromium
WORDNET := /usr/share/wordnet/data.noun
export PATH := $(BIN):$(PATH)
# tests run in this many processes (pytest-xdist); the suite's stage subprocesses and servers fill the rest
TEST_WORKERS ?= 2
export RAY_USAGE_STATS_ENABLED := 0
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK := true

.PHONY: setup run test test-fast bench lock clean text-data

# every family's default data: Fashion-MNIST (image) and WordNet (text); the others ship in wheels or are made
setup: $(VENV)/.installed $(FMNIST) $(WORDNET)

$(VENV)/.installed: requirements.lock requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -r requirements.lock 2>&1 | $(QUIET_PIP)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile --no-deps -r requirements-nodeps.txt 2>&1 \
	  | $(QUIET_PIP)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e . 2>&1 | $(QUIET_PIP)
	@# pip compiles bytecode on one core (~140 CPU-s here); compileall on every core does the same files. A few
	@# files in the wheels are not Python 3.11 (pip skips them too), hence the ignored exit status.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $@

# The default data set is a Debian package (Fashion-MNIST, MIT). Root installs it; others are told how.
$(FMNIST):
	@if [ "$$(id -u)" = "0" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "The default data is missing. Install it with:"; \
	  echo "  sudo apt-get install -y dataset-fashion-mnist"; \
	  exit 1; \
	fi

# The end-to-end UI test loads the Prefect UI in Debian's headless Chromium.
$(CHROMIUM):
	@if [ "$$(id -u)" = "0" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
	  echo "The UI test needs Chromium (it is skipped without it):  sudo apt-get install -y chromium"; \
	fi

# The text family's definition-generation data is WordNet 3.0's plain-text database (Debian wordnet-base,
# WordNet license); root installs it, others are told how. The family's tests write their own tiny
# WordNet-format files and do not need it; its flow and benchmarks/ami.py read it.
$(WORDNET):
	@if [ "$$(id -u)" = "0" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wordnet-base; \
	else \
	  echo "The text family's data (WordNet) is missing. Install it with:"; \
	  echo "  sudo apt-get install -y --no-install-recommends wordnet-base"; \
	  exit 1; \
	fi

text-data: $(WORDNET)

run: setup
	repflow run

test: setup $(CHROMIUM)
	ruff check .
	lint-imports
	repflow dvc-yaml
	pytest -n $(TEST_WORKERS)

test-fast: setup
	ruff check .
	lint-imports
	pytest -m "not slow" -q -n $(TEST_WORKERS)

bench: setup
	python -m benchmarks.loading
	python -m benchmarks.flow_overhead
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps torchattacks==3.5.1 2>&1 | $(QUIET_PIP)
	python -m benchmarks.svd_transfer
	python -m benchmarks.attack_speed
	python -m benchmarks.rcs
	python -m benchmarks.glad
	python -m benchmarks.genrep
	python -m benchmarks.acl_attack_mode
	$(BIN)/pip install --quiet --disable-pip-version-check librosa==0.11.0 numba==0.68.1 llvmlite==0.50.0 soxr==1.1.0 \
	  audioread==3.1.0 decorator==5.3.1 lazy-loader==0.6 pooch==1.9.0 2>&1 | $(QUIET_PIP)
	python -m benchmarks.audio_loading
	python -m benchmarks.audio_espeak
	python -m benchmarks.audio_advneg
	python -m benchmarks.sr_bicubic
	python -m benchmarks.shsr
	python -m benchmarks.marn
	python -m benchmarks.itov
	python -m benchmarks.ami
	python -m benchmarks.mdvae

# Re-resolve requirements.in and pin the result (then commit requirements.lock); the --no-deps data wheels of
# requirements-nodeps.txt stay out of the lock (their declared dependencies conflict with it).
lock:
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.in
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' | grep -v -x -F -f requirements-nodeps.txt > requirements.lock

clean:
	rm -rf data/prep artifacts/train reports/evaluate reports/register mlflow.db mlruns
