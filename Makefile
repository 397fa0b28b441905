# Two entry points: `make demo` (the main job) and `make test`. Both create .venv with
# Python 3.11 when it is missing or stale, install the pinned dependencies and the project,
# and skip all of that in seconds when nothing changed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
INTERFACES_STAMP := $(VENV)/.installed-interfaces
INTERFACE_SOURCES := $(wildcard ttvos_interfaces/msg/*.msg ttvos_interfaces/srv/*.srv) \
	ttvos_interfaces/CMakeLists.txt ttvos_interfaces/package.xml
INSTALL_INPUTS := requirements.txt setup.py setup.cfg package.xml

.PHONY: demo test lint setup clean

setup: $(STAMP) $(INTERFACES_STAMP)

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

# The interfaces package (messages and services) is built with CMake straight into .venv.
$(INTERFACES_STAMP): $(INTERFACE_SOURCES) $(STAMP)
	rm -rf build/ttvos_interfaces
	AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) cmake -S ttvos_interfaces -B build/ttvos_interfaces \
		-DCMAKE_INSTALL_PREFIX=$(CURDIR)/$(VENV) -DCMAKE_PREFIX_PATH=$(CURDIR)/$(VENV) \
		-DPython3_EXECUTABLE=$(CURDIR)/$(PY) -DBUILD_TESTING=OFF --log-level=WARNING > /dev/null
	cmake --build build/ttvos_interfaces -j2 > /dev/null
	cmake --install build/ttvos_interfaces > /dev/null
	@touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

demo: setup
	$(VENV)/bin/ttvos-demo --out out/demo

lint: $(DEV_STAMP) $(INTERFACES_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q test

clean:
	rm -rf $(VENV) build out *.egg-info
