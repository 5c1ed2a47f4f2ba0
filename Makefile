# Two commands on a fresh Debian machine with Python 3.11:
#   make demo   set everything up and run the main job
#   make test   set everything up and run lint, type checks and the tests
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

export MUJOCO_GL ?= egl
export SDL_VIDEODRIVER ?= dummy
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: setup demo test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first and pinned: these releases are the CPU-usable wheels on this machine's disk;
	# with an unpinned torch pip would fetch several GB of CUDA build from the index.
	$(PIP) install "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -e ".[sim,robot,dev]"
	$(PIP) install --no-deps -r requirements/no-deps.txt
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/class-demo

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint typecheck
	bash scripts/run_tests.sh

clean:
	rm -rf $(VENV) .cache build *.egg-info
