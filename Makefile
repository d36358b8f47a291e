# The two commands of the README. Both install what is missing first and are safe to re-run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint typecheck deps stack-deps chromium clean

# A stamp per installer, so a changed requirements file or package.json re-installs, and nothing else does.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The console's browser tests (tests/browser) drive Debian's Chromium through its chromedriver: installed from
# Debian's packages when missing (as root: CI and these machines run as root); without root, say what to run.
chromium:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "make: the browser tests need /usr/bin/chromium and /usr/bin/chromedriver; install them as root:" \
	       "sudo apt-get install -y chromium chromium-driver" >&2; exit 1; fi; \
	echo "installing chromium and chromium-driver (Debian packages) for the browser tests ..."; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null

# What the stack needs to run; the tests need Chromium as well (make run must not ask for it).
stack-deps: $(VENV)/.installed node_modules/.installed

deps: stack-deps chromium

run: stack-deps
	$(PY) -m devstack.up

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# mypy enforces the ports between the sync core and the sides; what it checks is set in pyproject.toml.
typecheck: $(VENV)/.installed
	$(PY) -m mypy

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
test: deps lint typecheck
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .mypy_cache .devstack
