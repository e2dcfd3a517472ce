# cachecluster developer commands. `make demo` and `make test` set everything up themselves.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench protos clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# s3fs (a bench peer) pins botocore through aiobotocore: install it first and the boto3
	@# of that botocore, or pip's resolver backtracks through every boto3 release.
	$(BIN)/pip install -q 's3fs>=2026.9'
	$(BIN)/pip install -q "boto3==$$($(BIN)/python -c 'import botocore; print(botocore.__version__)')"
	$(BIN)/pip install -q -e '.[dev]'
	@if pkg-config --exists fuse3 2>/dev/null; then $(BIN)/pip install -q -e '.[fuse]'; fi
	touch $(STAMP)

setup: $(STAMP)

## The main job on the embedded default.
demo: $(STAMP)
	$(BIN)/cachecluster demo

## The whole test suite: lint, types, tests.
test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

## cachecluster against its peers (bench/results/); BENCH_ARGS="--runs 5" passes flags.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

protos: $(STAMP)
	$(BIN)/python -m cachecluster.protos.generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
