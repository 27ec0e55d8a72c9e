# ML Observability Workbook — thin wrappers; the work lives in lab_stack/, ml_service/, graders/.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
KERNEL    := $(VENV)/share/jupyter/kernels/workbook/kernel.json
APT_PKGS  := prometheus prometheus-alertmanager prometheus-pushgateway prometheus-node-exporter victoria-metrics \
             podman runc netavark aardvark-dns iptables debootstrap
EX        ?= 02
ASSIGNMENT ?= $(EX)
WORKERS   ?= 2
# Most of the suite waits on real processes (scrapes, flushes, notebook kernels), so several
# workers fit on two cores; each worker runs its own stacks on its own ports (conftest.py).
# --tb=native: a worker whose CPython 3.11.7 AST state was upset by a deep parse (gh-106905) would
# crash while pytest parses source to draw a failure; native tracebacks parse nothing.
PYTEST_ARGS ?= -n 4 --tb=native

.PHONY: bytecode apt-check engine help setup lab up down status doctor grade grade-class drill test lint notebooks bench clean

# `make drill uber-drift` as well as `make drill NAME=uber-drift`: the word after `drill` is the
# drill's name, and the drill names are no-op goals of their own.
DRILL_NAMES := uber-drift netflix-latency airbnb-pipeline doordash-gpu-leak
ifeq (drill,$(firstword $(MAKECMDGOALS)))
  NAME ?= $(word 2,$(MAKECMDGOALS))
endif
.PHONY: $(DRILL_NAMES)

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: apt-check $(STAMP) $(KERNEL) bytecode ## Install everything (Debian packages, venv, Jupyter kernel); idempotent

# An editable install leaves the project's own modules uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set (CI images, some hubs) every process compiles them again at import:
# ~0.1 s of each embedded server's start. compileall skips what is already up to date.
bytecode: $(STAMP)
	@$(PY) -m compileall -q lab_stack ml_service graders > /dev/null

# Debian/Ubuntu packages of the real backends (root or sudo); on macOS, say what to run.
apt-check:
	@if [ "$$(uname)" = Darwin ]; then \
	  echo "macOS: run  brew install prometheus alertmanager prometheus-pushgateway node_exporter victoriametrics"; \
	  echo "       (make setup cannot install Homebrew packages for you; the venv is set up next)"; \
	elif dpkg -s $(APT_PKGS) >/dev/null 2>&1; then :; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing the Python environment into $(VENV) (a few minutes the first time; log: $(VENV)/pip.log)"
	@$(PY) -m pip install -q --upgrade pip > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@$(PY) -m pip install -e '.[dev]' >> $(VENV)/pip.log 2>&1 || { tail -40 $(VENV)/pip.log; exit 1; }
	$(PY) -c 'import lab_stack, ml_service, graders' 
	@touch $(STAMP)

$(KERNEL): $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name workbook --display-name "Python (workbook)" >/dev/null

lab: setup ## Start the stack and open JupyterLab on notebooks/ (127.0.0.1, with its token)
	$(VENV)/bin/lab up
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --no-browser --notebook-dir=notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

up: setup ## Start the stack (idempotent)
	$(VENV)/bin/lab up

down: setup ## Stop the stack; no process is left behind
	$(VENV)/bin/lab down

status: setup ## Show each component and its URL
	$(VENV)/bin/lab status

doctor: setup ## Diagnose the stack
	$(VENV)/bin/lab doctor

grade: setup ## Grade an exercise against the stack (started if down): make grade EX=02 [NB=path.ipynb]
	$(PY) -m graders $(EX) $(if $(NB),--notebook $(NB))

grade-class: setup ## Grade a class: make grade-class ASSIGNMENT=02 [WORKERS=2] (submitted/ -> gradebook, feedback/, autograded/)
	$(PY) -m graders class $(ASSIGNMENT) --workers $(WORKERS)

drill: setup ## Incident drills on your capstone: make drill (list), make drill NAME=uber-drift [SEED=1] [FOLDER=dir]
	$(PY) -m graders drill $(NAME) $(if $(FOLDER),--folder $(FOLDER)) $(if $(SEED),--seed $(SEED))

$(DRILL_NAMES):
	@:

notebooks: setup ## Regenerate notebooks/ (student release) from solutions/ with nbgrader
	$(PY) -m graders.release

test: setup engine ## Run the project's tests (real processes; installs what it needs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

engine: setup ## Start podman's Docker API and build the local images (docker backend without Docker)
	@if command -v podman >/dev/null; then $(VENV)/bin/lab engine up && $(VENV)/bin/lab images build; \
	else echo "podman is not installed: the docker-backend tests will be skipped"; fi

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check lab_stack ml_service graders tests
	$(VENV)/bin/mypy

bench: setup ## Run the benchmarks (print tables)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## Remove the stack's state and data (.lab/)
	-$(VENV)/bin/lab down
	rm -rf .lab
