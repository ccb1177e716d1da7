# Two commands do all set-up on a fresh machine that has only Python:
#   make demo   - train the embedded quickstart preset (dashboard in a terminal, plain lines otherwise)
#   make test   - check the code (format, lint, import contracts), then run the whole test suite
# Also: make fast (the suite without the end-to-end tests), make check, make bench.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test fast check bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deeptui presets/quickstart.toml $(ARGS)

check: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Two test processes: the suite is mostly one busy core (a subprocess importing torch, a UI loop),
# so on 2 cores it takes about 0.65x the time of one process (450 s against 695 s here).
WORKERS ?= 2

test: check
	$(PY) -m pytest -q -n $(WORKERS) --dist worksteal $(PYTEST_ARGS)

fast: check
	$(PY) -m pytest -q -n $(WORKERS) --dist worksteal -m "not e2e" $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/deeptui bench --device cpu
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/loader.py

clean:
	rm -rf $(VENV) runs
