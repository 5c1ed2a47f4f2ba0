#!/usr/bin/env bash
# `colcon test` of class_bringup (its launch_pytest tests), failing unless tests ran and passed.
# Called by scripts/run_tests.sh inside its private network namespace; needs scripts/ros_env.sh.
set -uo pipefail
cd "$(dirname "$0")/../ros2_ws"
# --python-testing pytest: colcon-core pins setuptools < 80, which ignores tests_require, and would
# otherwise fall back to `setup.py test` and report "Ran 0 tests".
colcon test --packages-select class_bringup --python-testing pytest \
  --pytest-args -p no:launch_testing -p no:launch_ros -ra \
  --event-handlers console_direct+
summary=$(colcon test-result --test-result-base build/class_bringup --all --verbose)
rc=$?
echo "$summary"
tests=$(echo "$summary" | sed -n 's/^Summary: \([0-9]*\) tests.*/\1/p')
skipped=$(echo "$summary" | sed -n 's/^Summary: .* \([0-9]*\) skipped.*/\1/p')
if [ "${tests:-0}" -eq 0 ]; then
  echo "colcon_test.sh: colcon test ran no test of class_bringup" >&2
  exit 1
fi
if [ "${skipped:-0}" -ne 0 ]; then
  # ROS 2 is set up wherever this script runs: a skipped launch test is a failure
  echo "colcon_test.sh: $skipped test(s) of class_bringup skipped" >&2
  exit 1
fi
exit "$rc"
