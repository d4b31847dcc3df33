# The README's two commands: `make demo` and `make test`. Each creates the virtual environment
# when it is missing (or older than pyproject.toml), installs bsweep into it, then runs.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Runs the claims_quick study on mnist1d, writes the report, prints the verdicts.
demo: $(STAMP)
	$(VENV)/bin/bsweep reproduce

test: $(STAMP)
	$(PY) -m pytest -q

# The suite without the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
