# The two commands a new user runs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8025

.PHONY: run test lint install install-dev migrate clean bench-deps browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || (apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV))
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/mailcast serve --host $(HOST) --port $(PORT)

migrate: install
	$(BIN)/mailcast migrate

test: install-dev bench-deps browser-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The linter, the formatter's check and the type checker (strict on src/): the tree stays clean.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Postfix's smtp-sink / smtp-source and wrk, for the benchmarks (their --quick runs are tests).
bench-deps:
	@{ [ -x /usr/sbin/smtp-sink ] || command -v smtp-sink; } >/dev/null && command -v wrk >/dev/null || ( \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix wrk >/dev/null ) || \
	  echo "could not install postfix and wrk (not root?): the benchmark tests will be skipped"

# Debian's Chromium, which the dashboard's browser tests drive (Playwright's own download does not work here).
browser-deps:
	@[ -x /usr/bin/chromium ] || ( \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ) || \
	  echo "could not install chromium (not root?): the browser tests will be skipped"

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
