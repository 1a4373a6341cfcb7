# The two commands a newcomer needs: `make run` and `make test`. Both create .venv when missing
# and (re)install the project with its test extras whenever pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test install lint bench chaos demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The benchmark's extras (matplotlib for the plot, py-spy for PROFILE=1), installed on first use.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# `make bench` (full, at most 10 minutes), `make bench QUICK=1` (at most 2 minutes),
# PROFILE=1 also samples both workers with py-spy. Results: bench/results/latest.{json,png}.
bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,) $(if $(PROFILE),--profile,)

run: $(STAMP)
	$(BIN)/ndrflow up $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .ndrflow .pytest_cache
