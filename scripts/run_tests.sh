#!/usr/bin/env bash
# Run the test suite (called by `make test`, which lints first; without arguments this also runs
# mypy, in parallel with the tests).
# Extra arguments go to pytest, e.g. `bash scripts/run_tests.sh tests/test_data_store.py -x`.
#
# ROS 2 (docs/ros2.md): the workspace ros2_ws is built with colcon, and the whole run happens in a
# private network namespace with only loopback up (`unshare -n`), so no DDS packet can leave this
# machine; tests/conftest.py refuses to run a ROS test anywhere else. Without arguments, the
# class_bringup package's launch tests then run through `colcon test` as well.
set -uo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}" SDL_VIDEODRIVER="${SDL_VIDEODRIVER:-dummy}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.cache/numba}"
export PYTHONHASHSEED=0
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
mkdir -p .cache

# The whole gate (no arguments) also type-checks, and compiles the DTW engine's numba kernels into
# the cache (85-130 s on a cold cache, class_core/similarity/warmup.py): both run beside the
# colcon build and the first tests (the ROS tests, mostly waiting on processes) instead of in series.
background=()
if [ $# -eq 0 ]; then
  .venv/bin/mypy >.cache/mypy.log 2>&1 &
  background+=("$!")
  .venv/bin/python -m class_core.similarity.warmup >.cache/numba_warmup.log 2>&1 &
  background+=("$!")
fi

# shellcheck disable=SC1091
. scripts/ros_env.sh
if [ "$CLASS_ROS" != none ]; then
  if ! (cd ros2_ws && colcon build --symlink-install) >.cache/colcon_build.log 2>&1; then
    cat .cache/colcon_build.log >&2
    echo "run_tests.sh: colcon build of ros2_ws failed" >&2
    exit 1
  fi
  # shellcheck disable=SC1091
  . scripts/ros_env.sh
fi

# A namespace of our own where we may (root, or a user namespace that maps us to root).
isolate=()
for cmd in "unshare -n" "unshare -rn"; do
  if $cmd sh -c 'ip link set lo up' 2>/dev/null; then
    read -ra isolate <<<"$cmd"
    break
  fi
done
if [ ${#isolate[@]} -eq 0 ]; then
  echo "run_tests.sh: cannot create a private network namespace (unshare -n): ROS tests will skip" >&2
fi
in_netns() {
  if [ ${#isolate[@]} -gt 0 ]; then
    "${isolate[@]}" sh -c 'ip link set lo up && exec "$@"' sh "$@"
  else
    "$@"
  fi
}

# launch_testing's pytest plugins import every test module at collection: off for this run
# (launch_pytest's own plugin stays on).
# the whole suite lists its slowest tests (CI must stay well under 20 minutes)
slowest=()
[ $# -eq 0 ] && slowest=(--durations=25)
in_netns .venv/bin/python -m pytest -p no:launch_testing -p no:launch_ros "${slowest[@]}" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": the suite or the selection is empty, which is never a pass here.
  echo "run_tests.sh: no tests were collected (pytest exit 5) - treating as a failure" >&2
  exit 1
fi
if [ $# -eq 0 ]; then
  if ! wait "${background[0]}"; then
    echo "run_tests.sh: mypy found problems:" >&2
    rc=1
  fi
  cat .cache/mypy.log
  wait "${background[1]}" || { cat .cache/numba_warmup.log >&2; rc=1; }
  if [ "$CLASS_ROS" != none ]; then
    in_netns bash scripts/colcon_test.sh || rc=1
  fi
fi
exit "$rc"
