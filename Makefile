# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
READERS := .venv-readers
WAREHOUSE ?= lakehouse

.PHONY: demo test bench sample clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Iceberg readers that share no code with stedi (DuckDB 1.5's extension, iceberg-rust, Daft), in their own
## environment; the tests that use them skip, saying why, when they cannot be installed.
$(READERS)/.installed: tests/readers/requirements.txt
	rm -rf $(READERS)
	$(PYTHON) -m venv $(READERS)
	{ $(READERS)/bin/python -m pip install --quiet --upgrade pip && \
	  $(READERS)/bin/python -m pip install --quiet -r tests/readers/requirements.txt && touch $@; } \
	  || echo "could not install the Iceberg readers of tests/readers/requirements.txt: their tests will skip" >&2

## Ingest the committed sample data into ./lakehouse, run every job, print every table's row count.
demo: $(STAMP)
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) ingest sample_data
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) run
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) tables

## Run the whole test suite.
test: $(STAMP) $(READERS)/.installed
	$(BIN)/python -m pytest

## Time ingest + run at 1x, 10x and 100x the starter volume; rewrites BENCHMARKS.md.
## BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--scales 1 10 --no-spark".
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Regenerate the committed sample data set.
sample: $(STAMP)
	rm -rf sample_data
	$(BIN)/stedi-etl generate --customers 120 --seed 7 --out sample_data

clean:
	rm -rf $(VENV) $(READERS) $(WAREHOUSE) .pytest_cache .hypothesis
