# Two entry points for a newcomer on a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what is missing first (Debian packages, then this package), so they work from
# a clean clone; CI (.ci/run) calls `make test`.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := slurm-wlm slurmdbd mariadb-server munge shellcheck tmux
# One binary per package, to tell whether the packages are there without asking apt.
APT_BINARIES := slurmctld slurmdbd mariadbd munged shellcheck tmux

.PHONY: deps demo test bench cluster-up cluster-down

deps:
	@missing=""; for b in $(APT_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat

cluster-up: deps
	$(PYTHON) -m ixhpc local-cluster up

cluster-down:
	$(PYTHON) -m ixhpc local-cluster down

demo: cluster-up
	$(PYTHON) -m ixhpc local-cluster status
	srun -p gb200 -N3 -J ixhpc-demo bash -c 'echo "$$SLURMD_NODENAME: CUDA_VISIBLE_DEVICES=$$CUDA_VISIBLE_DEVICES"'

test: deps
	$(PYTHON) -m pytest

bench: deps
	for b in benchmarks/*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done
