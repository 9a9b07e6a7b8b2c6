# dsp-runner. `make run` and `make test` set up everything they need on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCAL_DATA ?= .localdsp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv run compile test lint lock clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "dsp-runner needs Python 3.11 (kfp 1.8 pins); found $$($(PYTHON) --version)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)  ## Create .venv from the pinned requirements

run: $(STAMP)  ## Deploy pipelines/: to DSP_HOST if set, else to a local DSP stand-in
ifeq ($(strip $(DSP_HOST)),)
	$(BIN)/python -m localdsp exec --data-dir $(LOCAL_DATA) -- $(BIN)/python -m runner deploy $(ARGS)
else
	$(BIN)/python -m runner deploy $(ARGS)
endif

compile: $(STAMP)  ## Compile pipelines/ offline into build/dsp-runner (pull-request check)
	$(BIN)/python -m runner compile $(ARGS)

test: $(STAMP)  ## Run the whole test suite
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)  ## ruff over the project
	$(BIN)/ruff check .
	$(BIN)/ruff format --check runner localdsp

lock:  ## Re-pin requirements*.txt (with hashes) from requirements*.in
	$(PYTHON) -m venv .tools/piptools && .tools/piptools/bin/pip install --quiet pip-tools
	.tools/piptools/bin/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras -o requirements.txt requirements.in
	.tools/piptools/bin/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras -o requirements-dev.txt requirements-dev.in

clean:  ## Remove the venv, build output and local server data
	rm -rf $(VENV) build $(LOCAL_DATA) .tools
