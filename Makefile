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

.PHONY: demo test docs lint format install clean bench-env

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

# The ultralytics peer of benchmarks/detection.py, in its own environment (PyTorch, no Keras).
# It reuses the project environment's PyTorch and NumPy through a .pth file (no second
# multi-GB torch download; BENCH_SHARE_PROJECT=0 installs its own), then installs ultralytics.
BENCH_VENV ?= .venv-ultralytics
BENCH_SHARE_PROJECT ?= 1

bench-env: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: constraints.txt | $(VENV)/.installed-dev
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
ifeq ($(BENCH_SHARE_PROJECT),1)
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > $(BENCH_VENV)/project-site.txt
	$(BENCH_VENV)/bin/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'zz_kerasseg_project.pth').write_text(pathlib.Path('$(BENCH_VENV)/project-site.txt').read_text())"
endif
	$(BENCH_VENV)/bin/python -m pip install -q -c constraints.txt "ultralytics>=8.3,<9"
	YOLO_OFFLINE=1 $(BENCH_VENV)/bin/python -c "import ultralytics, torch; print('ultralytics', ultralytics.__version__, 'torch', torch.__version__)"
	touch $@

clean:
	rm -rf $(VENV) $(BENCH_VENV) site build dist *.egg-info
