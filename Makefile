# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
## Installs go through uv (from PyPI, put into the virtualenv first): the same packages as pip, several times faster;
## compiled to bytecode as pip does (uv does not by default), or every process compiles its libraries again
## where Python may not write bytecode (PYTHONDONTWRITEBYTECODE): measured, the libraries' imports took 4.1 s
## a process uncompiled, 1.6 s compiled.
UV      := $(BIN)/uv
INSTALL := $(UV) pip install --quiet --compile-bytecode --python $(BIN)/python
## What is installed: the product alone (demo), or with the test tools (test); each redone when pyproject.toml changes.
PRODUCT := $(VENV)/.installed-product
DEV     := $(VENV)/.installed-dev
READERS := .venv-readers
WAREHOUSE ?= lakehouse
REPORT  ?= report

.PHONY: demo test test-thorough test-quick bench sample clean

$(UV):
	@echo "==> creating the virtualenv $(VENV) with $$($(PYTHON) --version), and uv in it to install packages"
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(BIN)/python install --quiet --disable-pip-version-check uv \
	  || { $(BIN)/python -m ensurepip --upgrade >/dev/null && $(BIN)/python -m pip install --quiet uv; }

## The product only: stedi and what it needs to run (no PySpark, no moto, no pytest).
$(PRODUCT): pyproject.toml | $(UV)
	@echo "==> installing stedi and what it needs to run (uv pip install -e .)"
	$(INSTALL) -e .
	@touch $@

## The product and the test tools (the dev extras: pytest, hypothesis, PySpark, moto, nbclient, playwright).
$(DEV): pyproject.toml | $(UV)
	@echo "==> installing stedi with its test tools (uv pip install -e '.[dev]')"
	$(INSTALL) -e '.[dev]'
	@touch $@ $(PRODUCT)

## Iceberg readers that share no code with stedi (DuckDB 1.5's extension, iceberg-rust, Daft), in their own
## environment; the tests that use them skip, saying why, when they cannot be installed.
$(READERS)/.installed: tests/readers/requirements.txt
	@echo "==> installing the independent Iceberg readers into $(READERS)"
	rm -rf $(READERS)
	$(PYTHON) -m venv $(READERS)
	{ $(READERS)/bin/python -m pip install --quiet --upgrade pip && \
	  $(READERS)/bin/python -m pip install --quiet -r tests/readers/requirements.txt && touch $@; } \
	  || echo "could not install the Iceberg readers of tests/readers/requirements.txt: their tests will skip" >&2

## Ingest the committed sample data into ./lakehouse, run every job, print every table's row count,
## write the report into ./report.
demo: $(PRODUCT)
	@echo "==> ingesting sample_data/ into ./$(WAREHOUSE)"
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) ingest sample_data
	@echo "==> running every job, then the privacy audit"
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) run
	@echo "==> every table's row count"
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) tables
	@echo "==> writing the report"
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) report --out $(REPORT)
	@echo "==> done: open $(REPORT)/index.html, or query with $(BIN)/stedi-etl --warehouse $(WAREHOUSE) sql \"SELECT ...\""

## Run the whole test suite.
test: $(DEV) $(READERS)/.installed
	$(BIN)/python -m pytest

## Every test, with four times the examples of every property (a nightly job, or before a release).
test-thorough: $(DEV) $(READERS)/.installed
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest

## A developer's loop: everything but the slow tests (many processes, Spark, clusters).
test-quick: $(DEV)
	$(BIN)/python -m pytest -m 'not slow and not spark' -x -q

## Time ingest + run at 1x, 10x and 100x the starter volume; rewrites BENCHMARKS.md.
## BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--scales 1 10 --no-spark"; 300x and 1000x are
## opt-in: make bench BENCH_ARGS="--scales 1 10 100 300 1000 --no-spark --repeat 1" (14 GB of JSON, cached).
bench: $(DEV)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Regenerate the committed sample data set.
sample: $(PRODUCT)
	rm -rf sample_data
	$(BIN)/stedi-etl generate --customers 120 --seed 7 --out sample_data

clean:
	rm -rf $(VENV) $(READERS) $(WAREHOUSE) $(REPORT) .pytest_cache .hypothesis
