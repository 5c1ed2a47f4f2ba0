# syntax=docker/dockerfile:1.7
# CLASS on ROS 2: the training library, the simulation tasks and the ROS 2 workspace.
#   docker build -t class-robot .                                   # Jazzy, CPU torch
#   docker build -t class-robot:humble --build-arg ROS_DISTRO=humble .
#   docker build -t class-robot:gpu --build-arg GPU=1 .             # CUDA torch wheels
# Run (see docs/ros2.md for the camera and real-time arm flags):
#   docker run --rm -it --network host class-robot ros2 launch class_bringup policy.launch.py sim:=true model:=...
ARG ROS_DISTRO=jazzy
FROM ros:${ROS_DISTRO}-ros-base

ARG ROS_DISTRO
ARG GPU=0
# torch wheel index: CPU by default, CUDA 12.x with GPU=1
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu126

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    MUJOCO_GL=egl \
    SDL_VIDEODRIVER=dummy \
    NUMBA_CACHE_DIR=/opt/class/.cache/numba \
    CLASS_MODELS_DIR=/opt/class/models \
    VIRTUAL_ENV=/opt/venv

# Message packages the nodes use, launch_pytest for the launch tests, EGL/OSMesa for MuJoCo,
# and a venv that sees the ROS Python packages (rclpy) next to the project's pinned ones.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-venv python3-pip python3-dev build-essential git \
        ros-${ROS_DISTRO}-launch-pytest ros-${ROS_DISTRO}-launch-ros ros-${ROS_DISTRO}-diagnostic-msgs \
        ros-${ROS_DISTRO}-trajectory-msgs ros-${ROS_DISTRO}-sensor-msgs ros-${ROS_DISTRO}-geometry-msgs \
        ros-${ROS_DISTRO}-rosgraph-msgs ros-${ROS_DISTRO}-rosbag2-storage-mcap \
        python3-colcon-common-extensions python3-pytest \
        libegl1 libgl1 libosmesa6 libglib2.0-0 ffmpeg \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv --system-site-packages ${VIRTUAL_ENV}
ENV PATH=${VIRTUAL_ENV}/bin:${PATH}

WORKDIR /opt/class
# Dependencies first (cached while only the code changes).
COPY pyproject.toml ./
COPY requirements ./requirements
RUN pip install --upgrade pip \
    && if [ "$GPU" = "1" ]; then idx=$TORCH_CUDA_INDEX; else idx=$TORCH_CPU_INDEX; fi \
    && pip install --index-url "$idx" "torch>=2.4" "torchvision>=0.19"

COPY . .
RUN pip install ".[sim,robot,dev]" \
    && if [ -f requirements/no-deps.txt ]; then pip install --no-deps -r requirements/no-deps.txt; fi
# the DTW engine's numba kernels, compiled once here instead of on the robot's first job (~85 s);
# numba recompiles by itself where the running CPU differs from the build machine's
ENV NUMBA_CACHE_DIR=/opt/class/.cache/numba
RUN python -m class_core.similarity.warmup

# The ROS 2 workspace: class_ros (nodes) and class_bringup (launch/ and config/ of this repo).
RUN . /opt/ros/${ROS_DISTRO}/setup.sh \
    && cd ros2_ws && colcon build --symlink-install --event-handlers console_direct+

COPY <<'ENTRY' /entrypoint.sh
#!/bin/bash
set -e
source /opt/ros/${ROS_DISTRO}/setup.bash
source /opt/class/ros2_ws/install/setup.bash
exec "$@"
ENTRY
RUN chmod +x /entrypoint.sh
ENV ROS_DISTRO=${ROS_DISTRO}
ENTRYPOINT ["/entrypoint.sh"]
# `docker stop` sends this: ros2 launch forwards SIGINT to every node (each stops its hardware and
# the recorder closes its bag); SIGTERM to launch alone would orphan them
STOPSIGNAL SIGINT
# Default: the workspace's launch tests, as CI runs them (scripts/colcon_test.sh: launch_pytest,
# policy.launch.py sim:=true for each mode; fails unless tests ran). DDS discovery stays on
# loopback; the container's network is its own (CLASS_ROS_TEST_NETWORK=own: run it with the
# default bridge network, not --network host).
ENV ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
CMD ["bash", "-c", "CLASS_ROS_TEST_NETWORK=own bash /opt/class/scripts/colcon_test.sh"]
