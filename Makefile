# Two commands for a new user: `make demo` (the product end to end on the embedded default)
# and `make test`. Both create .venv and install the project into it themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
# Quiet TensorFlow's start-up banner (CUDA probing on a machine without a GPU).
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup test lint format demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# For now the demo runs the data part: synthetic VOC-format data, checked, prepared and
# previewed through the training pipeline. Later issues extend it to train, export and serve.
demo: setup
	$(PY) -m training data synth --out $(DEMO_DIR)/voc_synth --count 120 --seed 0 --size 480x360
	$(PY) -m training data check --root $(DEMO_DIR)/voc_synth
	$(PY) -m training data preview --root $(DEMO_DIR)/voc_synth --split train --augment --out $(DEMO_DIR)/preview_train.png
	@echo "demo: dataset in $(DEMO_DIR)/voc_synth, augmented pipeline preview in $(DEMO_DIR)/preview_train.png"

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
