# dsp-runner. `make run` and `make test` set up everything they need on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Which flavour: v1 (kfp 1.8 + kfp-tekton, DSP 1.x) or v2 (kfp 2, DSP 2.x). Each has its own
# locked requirements and its own venv, because kfp 1.8 and kfp 2 cannot share one.
BACKEND ?= v1
# `make test` without a BACKEND runs both flavours' suites, each in its own venv.
BOTH_SUITES := $(if $(filter file,$(origin BACKEND)),yes,)
ifeq ($(BACKEND),v1)
VENV := .venv
REQUIREMENTS := requirements.txt requirements-dev.txt
TEST_TOOLS := tools
LOCALDSP_API := v1
else ifeq ($(BACKEND),v2)
VENV := .venv-v2
REQUIREMENTS := requirements-v2.txt
TEST_TOOLS :=
# The v2 suite: tests/v2 only, without tests/conftest.py (it imports kfp_tekton).
TEST_PATHS := --confcutdir=tests/v2 tests/v2
LOCALDSP_API := v2
else
$(error BACKEND must be v1 or v2, not "$(BACKEND)")
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCAL_DATA ?= .localdsp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv run compile test lint lock clean bench soak mutate corpus

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): $(REQUIREMENTS) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "dsp-runner needs Python 3.11 (kfp 1.8 pins); found $$($(PYTHON) --version)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes \
		$(addprefix -r ,$(REQUIREMENTS))
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)  ## Create .venv (BACKEND=v2: .venv-v2) from the pinned requirements

run: $(STAMP)  ## Deploy pipelines/ (BACKEND=v2: pipelines_v2/): to DSP_HOST if set, else to a local DSP stand-in
ifeq ($(strip $(DSP_HOST)),)
	DSP_POLL_INTERVAL=1 $(BIN)/python -m localdsp exec --api $(LOCALDSP_API) --data-dir $(LOCAL_DATA) -- \
		$(BIN)/python -m runner deploy --wait $(ARGS)
else
	$(BIN)/python -m runner deploy $(ARGS)
endif

compile: $(STAMP)  ## Compile pipelines/ offline into build/dsp-runner (pull-request check)
	$(BIN)/python -m runner compile $(ARGS)

test: $(STAMP) $(TEST_TOOLS)  ## Run both flavours' suites (BACKEND=v1 or BACKEND=v2: that one only)
	$(BIN)/python -m pytest $(strip $(TEST_PATHS) $(ARGS))
ifeq ($(BOTH_SUITES),yes)
	$(MAKE) --no-print-directory test BACKEND=v2
endif

# Mutation testing: not part of `make test`. Incremental (tests/mutation_run.py says how): a verdict
# is kept in mutants/ until its function's source changes, and every mutant not killed last time is
# re-tested (a new or sharper test may kill it). A killed verdict can be stale only if what killed
# it changed (a test weakened, localdsp made kinder): FRESH=1 starts from nothing, the check. The
# bound covers the whole run; a 2-core machine suits MUTATE_CHILDREN=2.
MUTATE_CHILDREN ?= 4
MUTATE_MINUTES ?= 60
MUTATE_MIN ?= 85
mutate: $(STAMP)  ## Mutation testing of the runner's decisions, incremental (FRESH=1: from scratch); prints the kill rate
	mkdir -p build
	$(BIN)/python tests/mutation_run.py $(if $(filter 1,$(FRESH)),--fresh) --children $(MUTATE_CHILDREN) \
		--minutes $(MUTATE_MINUTES) >build/mutate.log 2>&1 || \
		{ code=$$?; test $$code -eq 124 || { tail -30 build/mutate.log; exit $$code; }; \
		  echo "make mutate: stopped at $(MUTATE_MINUTES) minutes; the unfinished mutants count as not killed"; }
	$(BIN)/mutmut export-cicd-stats >/dev/null
	$(BIN)/mutmut results | sed 's/^ */  /' | grep -v ': killed$$' || true
	$(BIN)/python tests/mutation_score.py $(MUTATE_MIN)

bench: $(STAMP)  ## Benchmark against the seed article's way; prints a table (minutes)
	$(BIN)/python bench/bench.py $(ARGS)

soak: $(STAMP)  ## Many deploys through injected faults and kills; prints duplicates and lost updates
	$(BIN)/python bench/soak.py $(ARGS)

# How much of a corpus of kfp-tekton pipelines localdsp runs: not part of `make test` (minutes, and
# the corpus is not in this repository: docs/localdsp.md says how to get it).
CORPUS ?= build/kfp-tekton-corpus
corpus: $(STAMP)  ## Run a corpus of kfp-tekton pipelines (CORPUS=folder) through localdsp; prints a table
	$(BIN)/python bench/localdsp_corpus.py $(CORPUS) $(ARGS)

lint: $(STAMP)  ## ruff over the project
	$(BIN)/ruff check .
	$(BIN)/ruff format --check runner localdsp

lock:  ## Re-pin requirements*.txt (with hashes) from requirements*.in (BACKEND=v2: requirements-v2)
	$(PYTHON) -m venv .tools/piptools && .tools/piptools/bin/pip install --quiet pip-tools
ifeq ($(BACKEND),v2)
	.tools/piptools/bin/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links -o requirements-v2.txt requirements-v2.in
else
	.tools/piptools/bin/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	.tools/piptools/bin/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in
endif

clean:  ## Remove the venv, build output and local server data
	rm -rf $(VENV) build $(LOCAL_DATA) .tools

# --- Shipping to OpenShift: manifest linters and the container image -----------------------------
.PHONY: tools image

TOOLS_STAMP := .tools/tekton-lint/.installed
CONTAINER_TOOL ?= $(shell command -v podman || command -v buildah)
IMAGE ?= dsp-runner
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' runner/__init__.py)

tools: $(TOOLS_STAMP)  ## Install @ibm/tekton-lint (npm, exact lockfile) into .tools/ for the tests

$(TOOLS_STAMP): tekton/lint/package.json tekton/lint/package-lock.json
	@command -v npm >/dev/null || { echo "make tools: npm not found; the manifest tests need node >= 20 and npm for @ibm/tekton-lint"; exit 2; }
	rm -rf .tools/tekton-lint && mkdir -p .tools/tekton-lint
	cp tekton/lint/package.json tekton/lint/package-lock.json .tools/tekton-lint/
	cd .tools/tekton-lint && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# The cluster runs linux/amd64 (the Task declares it): build for it on any host, an arm64 laptop too.
IMAGE_PLATFORM := linux/amd64

# The image's tag: the runner version, with -v2 for the v2 flavour (one repository, two flavours).
IMAGE_TAG := $(VERSION)$(if $(filter v2,$(BACKEND)),-v2)

image:  ## Build the image dsp-runner:<version> (BACKEND=v2: dsp-runner:<version>-v2), linux/amd64
	@test -n "$(CONTAINER_TOOL)" || { echo "make image: neither podman nor buildah is on PATH; install one (or run: make image CONTAINER_TOOL=docker)"; exit 2; }
	rm -rf build/image && mkdir -p build/image
	cp -R Containerfile requirements-build.txt requirements.txt requirements-v2.txt runner pipelines pipelines_v2 build/image/
	find build/image -name __pycache__ -prune -exec rm -rf {} +
	$(CONTAINER_TOOL) build --platform $(IMAGE_PLATFORM) -f build/image/Containerfile -t $(IMAGE):$(IMAGE_TAG) \
		--build-arg BACKEND=$(BACKEND) \
		--build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		build/image
	@echo "built $(IMAGE):$(IMAGE_TAG) (flavour $(BACKEND)); push it and set it in tekton/kustomization.yaml (images:)"
