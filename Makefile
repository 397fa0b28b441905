# Two entry points: `make demo` (the main job) and `make test`. Both create .venv with
# Python 3.11 when it is missing or stale, install the pinned dependencies and the project,
# and skip all of that in seconds when nothing changed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
INSTALL_INPUTS := requirements.txt setup.py setup.cfg package.xml

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stale venv (other Python, deleted interpreter) is rebuilt.
$(STAMP): $(INSTALL_INPUTS) | $(PY)
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { rm -rf $(VENV); $(MAKE) $(PY); }
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/ttvos-demo --out out/demo

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q test

clean:
	rm -rf $(VENV) build out *.egg-info
