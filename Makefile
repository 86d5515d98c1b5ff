# Two entry points for a newcomer on a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what is missing first (Debian packages, then this package into the project's
# own virtual environment .venv), so they work from a clean clone; CI (.ci/run) calls `make test`.
# A venv because Debian 12's system Python refuses `pip install` outside one (PEP 668); jobs
# run the same interpreter (the job script's IXHPC_PYTHON is the one that rendered it).
BOOTSTRAP_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := slurm-wlm slurmdbd mariadb-server munge shellcheck tmux nginx python3-venv
# One binary per package, to tell whether the packages are there without asking apt.
APT_BINARIES := slurmctld slurmdbd mariadbd munged shellcheck tmux nginx

.PHONY: deps demo lint test bench cluster-up cluster-down

deps:
	@missing=""; for b in $(APT_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	$(BOOTSTRAP_PYTHON) -c "import ensurepip" 2>/dev/null || missing="$$missing venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@$(PYTHON) -m pip --version >/dev/null 2>&1 || $(BOOTSTRAP_PYTHON) -m venv --clear $(VENV)
	$(PYTHON) -m pip install -qq --disable-pip-version-check -e '.[test,eval]' --config-settings editable_mode=compat

cluster-up: deps
	$(PYTHON) -m ixhpc local-cluster up

cluster-down:
	$(PYTHON) -m ixhpc local-cluster down

# The main job on the embedded default (the local cluster, simulated engine): a disaggregated
# point over 3 GB200-like nodes and a single-node sweep on an MI355X-like node, then one
# merged table and a report.
DEMO := results/demo
demo: cluster-up
	$(PYTHON) -m ixhpc submit recipes/examples/sim-disagg.yaml --results $(DEMO) --wait
	$(PYTHON) -m ixhpc submit recipes/examples/sim-single-node.yaml --results $(DEMO) --wait
	$(PYTHON) -m ixhpc merge $(DEMO) -o $(DEMO)-merged.h5
	$(PYTHON) -m ixhpc report $(DEMO)-merged.h5 -o $(DEMO)-report
	@echo "demo done: table and plots in $(DEMO)-report/"

# Lint and types first (seconds), then the tests (minutes).
lint: deps
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

test: lint
	$(PYTHON) -m pytest

bench: deps
	for b in benchmarks/*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done
