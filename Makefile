# Two entry points: `make demo` (the main job) and `make test`. Both create .venv with
# Python 3.11 when it is missing or stale, install the pinned dependencies and the project,
# and skip all of that in seconds when nothing changed.
# ROS 2 distributions: Kilted (default, .venv) and Jazzy (ROS_DISTRO=jazzy, .venv-jazzy). `make
# test` runs the whole suite on Kilted, then the node and bag tests on Jazzy.
PYTHON ?= python3.11
ROS_DISTRO ?= kilted
ifeq ($(ROS_DISTRO),kilted)
VENV := .venv
REQUIREMENTS := requirements.txt
else
VENV := .venv-$(ROS_DISTRO)
REQUIREMENTS := requirements-$(ROS_DISTRO).txt
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
INTERFACES_STAMP := $(VENV)/.installed-interfaces
INTERFACES_BUILD := build/ttvos_interfaces-$(ROS_DISTRO)
INTERFACE_SOURCES := $(wildcard ttvos_interfaces/msg/*.msg ttvos_interfaces/srv/*.srv) \
	ttvos_interfaces/CMakeLists.txt ttvos_interfaces/package.xml
INSTALL_INPUTS := $(REQUIREMENTS) requirements-base.txt setup.py setup.cfg package.xml

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
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

# The interfaces package (messages and services) is built with CMake straight into .venv.
$(INTERFACES_STAMP): $(INTERFACE_SOURCES) $(STAMP)
	rm -rf $(INTERFACES_BUILD)
	AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) cmake -S ttvos_interfaces -B $(INTERFACES_BUILD) \
		-DCMAKE_INSTALL_PREFIX=$(CURDIR)/$(VENV) -DCMAKE_PREFIX_PATH=$(CURDIR)/$(VENV) \
		-DPython3_EXECUTABLE=$(CURDIR)/$(PY) -DBUILD_TESTING=OFF --log-level=WARNING > /dev/null
	cmake --build $(INTERFACES_BUILD) -j2 > /dev/null
	cmake --install $(INTERFACES_BUILD) > /dev/null
	@touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

demo: setup
	$(VENV)/bin/ttvos-demo --out out/demo

lint: $(DEV_STAMP) $(INTERFACES_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

ifeq ($(ROS_DISTRO),kilted)
test: lint
	$(PY) -m pytest -q test
	$(MAKE) test ROS_DISTRO=jazzy
else
test: $(DEV_STAMP) $(INTERFACES_STAMP)
	$(PY) -m pytest -q test/test_node.py test/test_bag.py
endif

clean:
	rm -rf .venv .venv-* build out *.egg-info
