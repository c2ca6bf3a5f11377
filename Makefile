# Vigil: `make demo` runs the stack with a simulated fleet; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA_VERSION ?= 4.1.1

.PHONY: install demo up test test-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: install
	$(VENV)/bin/vigil demo

up: install
	$(VENV)/bin/vigil up

# Debian packages (promtool, chromium, JDK, Maven) and the Apache Kafka jars the tests run on.
test-deps: install
	bash scripts/install-test-deps.sh
	$(PY) -m shared.runtime fetch-kafka --version $(KAFKA_VERSION)

test: test-deps
	$(PY) -m pytest -q --durations=25

# Benchmarks, each with its ceiling or its peers measured in the same run; results in
# bench/results/. Evidently and NannyML (the peers) live in .venv-bench only, never in Vigil's.
BENCH_STAMP := .venv-bench/.installed

$(BENCH_STAMP):
	@test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q evidently nannyml 'pandas<3'
	@touch $(BENCH_STAMP)

bench: test-deps $(BENCH_STAMP)
	$(PY) -m bench.ingest
	$(PY) -m bench.drift
	$(PY) -m bench.scaling
	$(PY) -m bench.labels
	$(PY) -m bench.stats
	$(PY) -m bench.compare
	$(PY) -m bench.concept
	$(PY) -m bench.oversight
	$(PY) -m bench.alerts
	$(PY) -m bench.summary

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
