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

bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m pytest benchmarks -q --benchmark-only

clean:
	rm -rf $(VENV) qnode-data
