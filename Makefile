# Two entry points for a fresh machine: `make demo` and `make test`.
# torch is installed pinned *before* the extras so pip takes the CPU wheel and never
# resolves a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RECSET := $(VENV)/bin/recset
DEMO := .demo

.PHONY: demo test install install-dev lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core-installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	touch $(VENV)/.core-installed $@

install: $(VENV)/.core-installed

install-dev: $(VENV)/.dev-installed

demo: install
	$(RECSET) generate --items 5000 --users 1500 --events 150000 --seed 7 --out $(DEMO)/data --force
	$(RECSET) build --data $(DEMO)/data --store $(DEMO)/store
	$(RECSET) recommend --store $(DEMO)/store --examples 3 --k 5
	$(RECSET) backtest --data $(DEMO)/data --out $(DEMO)/backtest --bootstrap 200

test: install-dev
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'pytest collected no tests (exit 5): failing' >&2; exit 1; fi; exit $$rc

lint: install-dev
	$(VENV)/bin/ruff check recset tests bench
	$(VENV)/bin/lint-imports --config pyproject.toml

bench: install-dev
	$(PY) bench/generate.py

clean:
	rm -rf $(DEMO) .pytest_cache
