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

# MathJax 3 is served from the book itself (npm's package, unpacked at build time, not committed),
# so formulas render offline; without npm the book falls back to MathJax's CDN, with a warning.
MATHJAX := _mathjax_static/mathjax/tex-chtml.js
MATHJAX_VERSION := 3.2.2

.PHONY: setup book test unit notebooks lab reproduce clean check-book

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

$(MATHJAX):
	@if command -v npm >/dev/null 2>&1; then \
	  rm -rf _mathjax_static .mathjax-pack && mkdir -p _mathjax_static/mathjax .mathjax-pack && \
	  (cd .mathjax-pack && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null) && \
	  tar xzf .mathjax-pack/mathjax-$(MATHJAX_VERSION).tgz -C .mathjax-pack && \
	  cp -r .mathjax-pack/package/es5/. _mathjax_static/mathjax/ && rm -rf .mathjax-pack; \
	else echo "npm not found: the book loads MathJax from its CDN (formulas need the internet)"; \
	  mkdir -p _mathjax_static/mathjax && printf '%s\n' \
	  "var s = document.createElement('script');" \
	  "s.src = 'https://cdn.jsdelivr.net/npm/mathjax@$(MATHJAX_VERSION)/es5/tex-chtml.js';" \
	  "document.head.appendChild(s);" > $(MATHJAX); fi

# A notebook whose execution fails leaves reports/*.err.log; the build must then fail, also on a
# rerun that finds the failed notebook in the cache.
book: $(STAMP) $(MATHJAX)
	rm -rf _build/html/reports
	env -u MPLBACKEND $(BIN)/jupyter-book build . -W --keep-going
	@if ls _build/html/reports/*.err.log >/dev/null 2>&1; then \
	  echo "notebook execution failed:"; ls _build/html/reports/*.err.log; exit 1; fi

# Load every page in headless Chromium (Debian's chromium) and check what a reader sees.
check-book: $(STAMP)
	$(BIN)/python .ci/check_book.py _build/html

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
	rm -rf _build book/figures _mathjax_static
