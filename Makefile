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

run: $(STAMP)
	$(BIN)/ndrflow up $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# The whole NDR story against a running `make run` (another terminal): ARGS="--api URL --home DIR".
demo: $(STAMP)
	$(BIN)/ndrflow demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .ndrflow .pytest_cache
