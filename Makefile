# xlstm-exp: `make install` then `make test`. `make help` lists every target.
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-fast train sweep bench lint format clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

install: ## Create .venv, install the project with its dev extras (CPU torch, sweeps, lm-eval) and, in .official/, the official xLSTM the tests compare with
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps --upgrade --target .official -r tests/requirements-official.txt

# Two worker processes: many tests wait on a subprocess's imports, which use one core. Each test
# file stays in one worker, so a module's fixtures are built once.
PYTEST := $(PY) -m pytest -n 2 --dist loadfile

test: ## Run the whole test suite
	$(PYTEST)

test-fast: ## Run the tests except the end-to-end runs of train.py
	$(PYTEST) -m "not slow"

train: ## Train once; pass Hydra overrides as ARGS="model=slstm block=post"
	$(PY) train.py $(ARGS)

sweep: ## Train LSTM, sLSTM, mLSTM and Transformer in one multirun; extra overrides in ARGS
	$(PY) train.py -m model=lstm,slstm,mlstm,transformer $(ARGS)

PEERS := .bench/peers

$(PEERS): bench/requirements-peers.txt
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(PEERS) -r bench/requirements-peers.txt
	touch $(PEERS)

bench: $(PEERS) ## Training throughput vs the official xLSTM, PyxLSTM and plain PyTorch (~17 min)
	$(PY) bench/throughput.py --out bench/results $(ARGS)

lint: ## Check style with ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: ## Format and fix with ruff
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean: ## Remove caches, run outputs (logs/, outputs/, multirun/) and the peers; keeps .venv
	rm -rf logs outputs multirun .pytest_cache .ruff_cache .bench
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
