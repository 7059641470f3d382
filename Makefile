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

.PHONY: setup browser test test-fast lint format protos demo serve clean

setup: $(STAMP)

# The client is a distribution of its own (client/pyproject.toml), which the project depends on:
# both go in one pip run, so pip takes rc-segmentation-client from ./client, not from an index.
$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e './client[onboard,plot,record]' -e '.[dev]'
	touch $@

# The full suite (what CI runs), and the fast lane for edit loops: everything that does not
# train, export or start servers (tests marked `slow`).
test: setup browser
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

# Debian's headless Chromium and Playwright's playwright-core (npm) for the results-page test.
# Best effort: where they cannot be installed (not root, no npm), that test skips saying why.
BROWSER_STAMP := tests/browser/node_modules/.installed
browser: $(BROWSER_STAMP)

$(BROWSER_STAMP): tests/browser/package-lock.json
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "browser: installing Debian's chromium"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
				>/dev/null) || echo "browser: could not install chromium: the page test will skip"; \
		else \
			echo "browser: no /usr/bin/chromium (apt-get install chromium): the page test will skip"; \
		fi; \
	fi
	@if command -v npm >/dev/null; then \
		(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed) \
			|| echo "browser: npm ci failed (offline?): the page test will skip"; \
	else \
		echo "browser: no npm: the page test will skip"; \
	fi

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The client's own copy of TF Serving's messages; commit the generated files with the .proto.
protos: setup
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. client/proto/serving_wire.proto

# The product end to end on this machine: synthetic VOC-format data (checked, previewed through
# the training pipeline), a short DeepLab v3 training run from scratch on the CPU (the `demo`
# preset: MobileNetV2 at 128x128, a few minutes), its evaluation on held-out images, its export
# into the model repository in models/, then `python -m serving demo`: the embedded server and
# the gateway started on it, a drive video of held-out scenes streamed through the edge client
# (latency table, overlay video, the drive as MCAP for Foxglove with ground costmaps and a
# picture of a few beside their frames), held-out images through the gateway, everything stopped.
# Export uses --resize stretch: training stretched the 4:3 scenes to the square input size, and
# the model does better when it sees frames that way (docs/export.md). --replace removes the
# versions this run exported before; other versions in models/ stay, and the demo serves
# exactly its own version either way.
DEMO_RUN := $(DEMO_DIR)/runs/demo
demo: setup
	$(PY) -m training data synth --out $(DEMO_DIR)/voc_synth --count 240 --seed 0 --size 480x360
	$(PY) -m training data check --root $(DEMO_DIR)/voc_synth
	$(PY) -m training data preview --root $(DEMO_DIR)/voc_synth --split train --augment --out $(DEMO_DIR)/preview_train.png
	$(PY) -m training train --preset demo --data $(DEMO_DIR)/voc_synth --out $(DEMO_RUN)
	$(PY) -m training evaluate --run $(DEMO_RUN) --split test
	$(PY) -m training export --run $(DEMO_RUN) --models-dir models --resize stretch --replace
	$(PY) -m serving demo --models models --run $(DEMO_RUN) --images $(DEMO_DIR)/voc_synth/JPEGImages \
		--list $(DEMO_RUN)/splits/test.txt --out $(DEMO_DIR)

# TF Serving on the GPU (Dockerfile.serve) when Docker with the NVIDIA runtime is here, else the
# embedded server; both on gRPC :8500 with models/ read in place. Stop it with Ctrl-C.
MODELS_DIR ?= models
serve: setup
	$(PY) -m serving launch --models-dir $(MODELS_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
