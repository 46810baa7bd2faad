# Two commands on a fresh machine with only Python 3.10+ (and make):
#   make demo   set up .venv, then train → attack → report on the embedded default (minutes: see README)
#   make test   set up .venv, then run the test suite (what CI runs, via .ci/run)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOME_DIR ?= robbench-results/demo

.PHONY: setup demo test test-slow bench clean

setup: $(VENV)/.robbench-setup

# torch 2.13.0 first (a CPU wheel; an unpinned torch would pull a multi-GB CUDA build), then the
# package, then auto-LiRPA 0.3 without its stale pins (it declares torch<1.13; robbench.lirpa_compat
# makes it work on torch 2.x).
$(VENV)/.robbench-setup: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps auto-LiRPA==0.3
	touch $@

demo: setup
	$(BIN)/robbench demo --home $(HOME_DIR)

# The default suite (what CI runs; under 10 minutes on 2 cores) and the tests marked `slow` (minutes
# each: whole-grid checks over every executor, kill -9 then resume, merge, the zoo re-evaluation).
# Both list their 15 slowest tests (--durations=15, pyproject.toml).
test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_foundation.py --json benchmarks/results/foundation.json

clean:
	rm -rf $(VENV) build dist *.egg-info
