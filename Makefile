# The two commands a newcomer needs: `make run` and `make test`. Both create .venv when missing
# and (re)install the project with its test extras whenever pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Prism (an npm devDependency, never needed at run time) serves the Twilio and SendGrid OpenAPI
# mocks the contract tests (tests/channels/test_contract_prism.py) send to.
NODE_STAMP := node_modules/.installed
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
# `make bench SCALE=1` (at most 10 minutes) instead measures 1, 2 and 4 worker processes:
# bench/results/scaling.{json,png}.
bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench $(if $(SCALE),--scale,$(if $(QUICK),--quick,) $(if $(PROFILE),--profile,))

# `make chaos` (at most 10 minutes; SHIPMENTS=N to choose how many, default 1,000 scaled to fit):
# kills the worker and the Temporal dev server, breaks the carriers, redelivers webhooks, then
# audits exactly-once. Results: chaos/results/latest.json.
chaos: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m chaos $(if $(SHIPMENTS),--shipments $(SHIPMENTS),)

# Reinstalled when package.json or the lock changes. Without npm, or when the install fails,
# `make test` still runs and the contract tests say why they skipped.
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  if SCARF_ANALYTICS=false ADBLOCK=1 DISABLE_OPENCOLLECTIVE=1 \
	     npm ci --no-audit --no-fund --ignore-scripts --loglevel=error; then \
	    touch $@; \
	  else \
	    echo "make: npm ci failed; the Prism contract tests will skip"; \
	  fi; \
	else \
	  echo "make: npm not found; the Prism contract tests will skip (Debian: apt-get install npm)"; \
	fi

run: $(STAMP)
	$(BIN)/ndrflow up $(ARGS)

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest $(ARGS)

# The whole NDR story against a running `make run` (another terminal): ARGS="--api URL --home DIR".
demo: $(STAMP)
	$(BIN)/ndrflow demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .ndrflow .pytest_cache node_modules
