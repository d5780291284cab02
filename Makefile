# hjax — two commands on a fresh machine: `make verify` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-all verify verify-quick lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Default test run (CI): lint, the quick verify run, then the tests not marked slow
## (gpu tests skip without an accelerator), in parallel.
test: lint
	$(PY) -m hjax verify --quick --out results/verify-quick
	$(PY) -m pytest -n auto

## Everything, slow tests included (gpu tests skip without an accelerator).
test-all: lint
	$(PY) -m pytest -n auto -m ''

## The main job: measure every claim, write results/verify/, exit non-zero on failure.
verify: $(STAMP)
	$(PY) -m hjax verify

verify-quick: $(STAMP)
	$(PY) -m hjax verify --quick --out results/verify-quick

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
