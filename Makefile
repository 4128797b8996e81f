# `make test` and `make demo` work on a fresh machine: they create (or reuse) .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on local disk; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# pytest processes (pytest-xdist): each test runs on one thread (tests/conftest.py), CI has 2 cores.
JOBS ?= 2

.PHONY: setup test test-fast test-portable lint typecheck pytest demo bench docs docs-serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest -q -n $(JOBS) -m "not slow"

# While developing: everything but the end-to-end runs (tests/conftest.py lists them), which `make test` and CI run.
test-fast: setup
	$(BIN)/python -m pytest -q -n $(JOBS) -m "not slow and not e2e"

# Catches a test tuned to one CPU: torch's portable kernels (no AVX, as on CPUs unlike ours) on one thread.
test-portable: setup
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(JOBS) -m "not slow and not e2e" \
		tests/layers tests/models tests/examples

test: lint typecheck pytest test-portable

demo: setup
	$(BIN)/convlstm demo

bench: setup
	$(BIN)/python benchmarks/layers.py --device cpu

# The documentation site (mkdocs.yml, pages in docs/): a strict build fails on a broken link, a page missing from
# the nav or an API object that does not resolve. tests/docs/test_site.py runs the same build in `make test`.
docs: setup
	$(BIN)/mkdocs build --strict

docs-serve: setup
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
