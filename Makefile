# `make demo` and `make test` each create .venv and install what they need (torch==2.13.0 is the local CPU wheel).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGE_DIRS := csrv2_vdb adapters training integrations benchmarks

.PHONY: demo test test-es lint bench-encoder bench-retrieval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/csrv2-vdb demo $(DEMO_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check $(PACKAGE_DIRS) tests examples
	$(BIN)/ruff format --check $(PACKAGE_DIRS) tests examples
	$(BIN)/mypy $(PACKAGE_DIRS)

test: lint
	$(BIN)/python -m pytest -q

# The Elasticsearch tests against a real cluster: CSRV2_ES_URL=http://host:9200 make test-es
test-es: $(VENV)/.test-installed
	@test -n "$$CSRV2_ES_URL" || (echo "set CSRV2_ES_URL=http://host:9200 to run against a real cluster" && exit 2)
	$(BIN)/python -m pytest -q tests/test_conformance.py -k "elasticsearch and not fake"

# Encoder texts/s with and without the head (a few minutes), and the 1M retrieval benchmark (under 60 min
# on 2 cores); both write under docs/benchmarks/.
bench-encoder: $(VENV)/.test-installed
	$(BIN)/csrv2-vdb bench encoder

bench-retrieval: $(VENV)/.test-installed
	$(BIN)/csrv2-vdb bench retrieval --n 1000000

clean:
	rm -rf $(VENV) build *.egg-info demo-output .cache
