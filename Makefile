# The README's two commands: `make book` (build the HTML book) and `make test` (all tests).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.amlib-installed
# Read the offline data mirror when it lies beside the repository (CI and this workplace).
ifneq ($(wildcard ../shared/data),)
export AMLIB_DATA_MIRROR ?= $(abspath ../shared/data)
endif
export PYTHONHASHSEED := 0
# Tests draw off-screen; the book's kernels must keep Jupyter's inline backend, or no figure
# reaches the HTML (an inherited MPLBACKEND would override it), hence `env -u` below.
TEST_ENV := MPLBACKEND=Agg

.PHONY: setup book test unit notebooks lab reproduce clean

setup: $(STAMP)

# torch first (the CPU build), then the pinned rest; rpy2 only where R is installed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[book,test]"
	if command -v R >/dev/null 2>&1; then $(BIN)/pip install --quiet -e ".[r]"; \
	else echo "R not found: the MICE modeler falls back to statsmodels (tests that need R skip)"; fi
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (amlib)" >/dev/null
	touch $(STAMP)

book: $(STAMP)
	env -u MPLBACKEND $(BIN)/jupyter-book build . -W --keep-going

test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -q

unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests -q

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

reproduce: $(STAMP)
	$(BIN)/amlib reproduce all --profile paper --force

clean:
	rm -rf _build book/figures
