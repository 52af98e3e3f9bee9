# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WAREHOUSE ?= lakehouse

.PHONY: demo test bench sample clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Ingest the committed sample data into ./lakehouse, run every job, print every table's row count.
demo: $(STAMP)
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) ingest sample_data
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) run
	$(BIN)/stedi-etl --warehouse $(WAREHOUSE) tables

## Run the whole test suite.
test: $(STAMP)
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
	rm -rf $(VENV) $(WAREHOUSE) .pytest_cache .hypothesis
