# One entry point for people and CI: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run test test-fast quality format results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch first, pinned: GPU users set TORCH to their own build (or install it beforehand and keep it).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# The main job on the built-in default: compress the shipped verbose ledger policy (configs/default.yaml).
run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/deepspeed scripts/train_adv.py

quality: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: quality
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Rewrite the measured blocks of docs/results.md from what the runs left (mlruns/, outputs/, the base cards).
results: setup
	$(BIN)/python scripts/results.py

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
