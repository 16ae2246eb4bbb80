# The two commands of the README:
#   make train   set up everything, then train and evaluate on the real dataset
#   make test    set up everything, then run the type check, the layers contract, the test
#                suite (which builds the docs and runs their examples)
# Both create the virtual environment and fetch the dataset themselves.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Extra options for `make train`, e.g. make train TRAIN_ARGS="--epochs 10 --device cuda"
TRAIN_ARGS ?=

.PHONY: train test data servers install install-dev docs bench clean

train: install data
	$(BIN)/fashionmlp train --download $(TRAIN_ARGS)

# pytest builds the HTML docs (tests/test_docs.py, warnings are errors) and runs the
# examples of the guides and docstrings with the doctest builder over the same doctrees:
# the sources are read once. Any of them failing fails the target.
# The tests run in two processes (pytest-xdist; one file stays in one process, so a
# module's fixtures are built once), each test process and the processes it starts with
# one thread: many tests wait on the processes they start, and a second test fills that
# idle core, while two 2-thread OpenMP pools on two cores spin against each other. On the
# 2-core EPYC, pytest took 5 min 42 s in one process, 6 min 43 s in two 2-thread processes
# and 3 min 40 s in two 1-thread ones. The type check (one core, under a minute) runs
# beside them.
.PHONY: typecheck unit
test: install-dev data servers
	$(MAKE) --no-print-directory -j2 typecheck unit

typecheck:
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

unit:
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile

data:
	sh scripts/get-data.sh

# The servers the tests start throwaway instances of: PostgreSQL, for studies shared
# through a database, and MLflow's tracking server (the full mlflow package; the library
# itself needs only mlflow-skinny).
servers: $(VENV)/.installed-servers
$(VENV)/.installed-servers: constraints.txt $(VENV)/.installed-dev
	sh scripts/get-postgresql.sh
	$(PIP) install -q -c constraints.txt 'mlflow>=3.7'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exact versions for this machine come from constraints.txt; the package declares ranges.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt -e '.[cli]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.installed

docs: install-dev
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf docs/_build build dist src/*.egg-info .pytest_cache .mypy_cache

# The benchmark of benchmarks/README.md: seed pipeline vs tensor backend vs pure compute.
BENCH_ARGS ?=
bench: install data
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)
