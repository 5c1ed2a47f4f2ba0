#!/usr/bin/env bash
# Run the test suite (called by `make test`, which also lints and type-checks first).
# Extra arguments go to pytest, e.g. `bash scripts/run_tests.sh tests/test_data_store.py -x`.
set -uo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}" SDL_VIDEODRIVER="${SDL_VIDEODRIVER:-dummy}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.cache/numba}"
export PYTHONHASHSEED=0
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": the suite or the selection is empty, which is never a pass here.
  echo "run_tests.sh: no tests were collected (pytest exit 5) - treating as a failure" >&2
  exit 1
fi
exit "$rc"
