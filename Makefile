# The two commands of the README: `make demo` and `make test`.
# Each creates (or reuses) the virtual environment .venv and installs what it needs into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
ARGS ?=
PYTEST_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
export NO_MKDOCS_2_WARNING ?= 1

.PHONY: demo test docs lint format install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Runtime dependencies only: what a user gets from `pip install kerasseg`.
$(VENV)/.installed-runtime: setup.cfg constraints.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt -e .
	touch $@

# Everything the tests and the docs need, including the reference implementations
# (PyTorch, segmentation_models_pytorch, pycocotools) that the parity tests compare against.
$(VENV)/.installed-dev: setup.cfg constraints.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt -e ".[dev,docs,parity]"
	touch $@ $(VENV)/.installed-runtime

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed-runtime
	$(BIN)/kerasseg demo $(ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Format and lint checks (ruff, configured in pyproject.toml); `make format` rewrites in place.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build dist *.egg-info
