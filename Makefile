# Two commands do all set-up on a fresh machine that has only Python:
#   make demo   - train the embedded quickstart preset (dashboard in a terminal, plain lines otherwise)
#   make test   - run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deeptui presets/quickstart.toml $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/deeptui bench --device cpu
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/loader.py

clean:
	rm -rf $(VENV) runs
