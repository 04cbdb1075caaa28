# salesml: the two README commands are `make demo` and `make test`; everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
DEMO_DATASET_FORECAST ?= walmart
DEMO_DATASET_CHURN ?= cdnow
DEMO_DATASET_LEADS ?= bank-marketing

.PHONY: venv sysdeps demo test test-fast lint lock notebook notebooks-strip clean

# The environment is built from requirements.lock (exact versions), then the project is installed editable.
$(BIN)/salesml: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(BIN)/salesml

venv: $(BIN)/salesml

# Debian packages some features need: Chromium (the page's browser tests, driven by Playwright), Pango (WeasyPrint's
# PDF of `salesml report`) and poppler (the report test reads the PDF back). Installed when missing (as root with
# apt-get); elsewhere the command says what to install, and the tests that need them skip and say why.
SYSTEM_PACKAGES := chromium poppler-utils libpango-1.0-0 libpangoft2-1.0-0
sysdeps:
	@missing="$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done | tr '\n' ' ')"; \
	if [ -n "$${missing// /}" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages: $$missing(sudo apt-get install $$missing)"; fi; \
	fi

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

demo: venv
	bash scripts/demo.sh

# Both lanes use both cores (pytest-xdist); a file's tests stay on one worker (module fixtures are built once),
# the longest files start first in the order tests/conftest.py gives them (--no-loadscope-reorder keeps it), and
# the trained model store is trained once per run (tests/conftest.py). PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# Everything: unit, data, model, service (the README's test command).
test: venv sysdeps
	$(BIN)/python -m pytest -q $(XDIST)

# The inner loop: unit tests that run in-process (no full training, no salesml subprocess).
test-fast: venv
	$(BIN)/python -m pytest -q $(XDIST) tests/unit -m "not slow and not cli"

lint: venv
	$(BIN)/ruff check features training serving tests
	$(BIN)/ruff format --check features training serving tests

clean:
	rm -rf $(VENV) .pytest_cache

notebook: venv
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser notebooks/

# Notebooks are committed without outputs; tests/model/test_notebooks.py fails on a committed output.
notebooks-strip: venv
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
