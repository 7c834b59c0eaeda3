# One command for the main job, one for the tests. Each creates or refreshes the virtual environment first
# (tools/setup_venv.py: only when it is missing, broken, or pyproject.toml / TORCH_SPEC changed since the
# install; otherwise it costs a fraction of a second).
#
#   make demo [ARGS="--quick --out runs/quick"]   vjepa demo, in the venv
#   make test [ARGS="tests/test_masks.py -x"]     the test suite (python -m pytest -q), in the venv
#   make lint                                     ruff check + ruff format --check (CI runs it too)
#   make venv                                     only create / refresh the venv
#   make clean                                    remove the venv and the tool caches (runs/ is kept)
#
# Variables, on the command line (make test PYTHON=python3.12): PYTHON (the python3 that creates the venv),
# VENV (its folder, default .venv), ARGS, TORCH_SPEC (pip arguments for torch, default torch==2.13.0, e.g.
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"). Of the environment only
# TORCH_SPEC and VJEPA_VENV (the venv folder; CI sets it) are read: PYTHON, VENV and ARGS are too generic.

PYTHON = python3
VENV = $(or $(VJEPA_VENV),.venv)
TORCH_SPEC ?= torch==2.13.0
ARGS =

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint clean

help:
	@sed -n 's/^#   //p' Makefile

# the version check is here, not in the script, so that an old python never parses the script
venv:
	@command -v $(PYTHON) >/dev/null || { \
	  echo "vjepa setup: error: $(PYTHON) not found: install Python >= 3.10, or pass its path: PYTHON=/path/to/python3" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "vjepa setup: error: Python >= 3.10 is needed; $(PYTHON) is $$($(PYTHON) --version 2>&1 | head -n 1)." \
	    "Install a newer one and pass it, e.g. make $(or $(MAKECMDGOALS),venv) PYTHON=python3.12" >&2; exit 1; }
	@$(PYTHON) tools/setup_venv.py --venv '$(VENV)' --torch-spec '$(TORCH_SPEC)'

demo: venv
	$(VENV)/bin/vjepa demo $(ARGS)

test: venv
	$(VENV)/bin/python -m pytest -q $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# the venv folder is removed only if it is a venv, whatever VENV says
clean:
	if [ -f '$(VENV)/pyvenv.cfg' ]; then rm -rf '$(VENV)'; fi
	rm -rf .pytest_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
