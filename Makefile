# The README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench update-golden render lint-runbooks demo clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed; installing Debian's python3-venv"; \
	  scripts/install-debs.sh <(echo python3-venv) && $(PYTHON) -m venv $(VENV); }

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

## Serve this host's metrics on http://127.0.0.1:9877/metrics from the embedded default config.
run: $(STAMP)
	$(BIN)/botwatch-exporter --log.format=logfmt

## Install what the tests need (Python and Debian packages), lint, then run the whole suite.
test: $(STAMP)
	scripts/install-debs.sh scripts/test-deps.txt
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check exporter tests bench
	$(BIN)/ruff format --check exporter tests bench
	$(BIN)/mypy

bench: $(STAMP)
	scripts/install-debs.sh bench/deps.txt
	scripts/install-debs.sh scripts/test-deps.txt
	$(BIN)/python bench/scrape_latency.py
	$(BIN)/python bench/log_throughput.py
	$(BIN)/python bench/docker_events.py
	$(BIN)/python bench/snmp_walk.py
	$(BIN)/python bench/alert_latency.py
	$(BIN)/python bench/soak.py

## botwatch, Prometheus and Alertmanager on 127.0.0.1, simulated bots breaking on a loop (root; Ctrl-C stops).
demo: $(STAMP)
	scripts/install-debs.sh scripts/test-deps.txt
	$(BIN)/python -m tests.e2e.demo

## Write alerts/*.rules.yml and grafana/dashboards/*.json from the runbook catalog (placeholder links).
render: $(STAMP)
	$(BIN)/botwatch-exporter render

## Check every alert's runbook link against the runbooks.
lint-runbooks: $(STAMP)
	$(BIN)/botwatch-exporter lint-runbooks --runbook trader-bot=tests/fixtures/runbooks/trader-bot.md \
	  --runbook alphaengine=tests/fixtures/runbooks/alphaengine.md --runbook botwatch=docs/botwatch-runbook.md

update-golden: $(STAMP)
	BOTWATCH_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/unit/test_host_golden.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
