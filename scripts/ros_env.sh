# Source this file (POSIX sh) to put ROS 2 and the built ros2_ws on the environment:
#   . scripts/ros_env.sh        # from the repository root; sets CLASS_ROS=opt|pip|none
# A ROS 2 install under /opt/ros/<distro> wins over the pip layer in .venv (scripts/setup_ros.sh).
# the setup scripts of ROS and colcon read unset variables: no `set -u` while they run
case $- in *u*) _nounset=1; set +u ;; *) _nounset= ;; esac
CLASS_ROS=none
for _setup in /opt/ros/*/setup.sh; do
  if [ -f "$_setup" ]; then
    # shellcheck disable=SC1090
    . "$_setup"
    CLASS_ROS=opt
    break
  fi
done
if [ "$CLASS_ROS" = none ] && [ -x .venv/bin/ros2 ]; then
  # ament_index_python raises when AMENT_PREFIX_PATH is unset; the venv holds the ament index of the
  # PyPI packages
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$PWD/.venv:"*) ;;
    *) AMENT_PREFIX_PATH="$PWD/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
  esac
  case ":$PATH:" in *":$PWD/.venv/bin:"*) ;; *) PATH="$PWD/.venv/bin:$PATH" ;; esac
  export AMENT_PREFIX_PATH PATH
  CLASS_ROS=pip
fi
if [ "$CLASS_ROS" != none ] && [ -f ros2_ws/install/setup.sh ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$PWD/ros2_ws/install" . ros2_ws/install/setup.sh
fi
export CLASS_ROS
[ -n "$_nounset" ] && set -u
unset _setup _nounset
