# The two front-door commands: `make run` and `make test` (README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test venv bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e .

run: venv
	$(BIN)/qnode start

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m pytest -q

# The benchmark scripts print their figures (medians); see docs/benchmarks.md for the last run.
bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python benchmarks/bench_wal.py
	$(BIN)/python -m benchmarks.bench_engine
	$(BIN)/python benchmarks/bench_consumption.py
	$(BIN)/qnode bench

clean:
	rm -rf $(VENV) qnode-data
