"""The simulation bridge alone: a sim_bridge task behind the robot's topics.

  ros2 launch class_bringup sim.launch.py task:=pusht variant:=rand-color seed:=100 n_episodes:=50

Other nodes must run with use_sim_time:=true while clock:=lockstep (the default). With
n_episodes:=N the launch shuts down once the bridge has run its N episodes (and exits 0 when the
bridge did); results:=FILE keeps every episode's outcome and the latency through ROS as JSON.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, LogInfo, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")


def _bridge_done(event, context):
    """The bridge ends itself after n_episodes: end the launch too (the policy node with it)."""
    if event.returncode != 0:
        return [Shutdown(reason=f"the sim bridge failed ({event.returncode})")]
    return [LogInfo(msg="the sim bridge is done: shutting down"), Shutdown(reason="all episodes done")]


def generate_launch_description():
    bridge = Node(
        package="class_ros",
        executable="sim_bridge_node",
        name="class_sim_bridge",
        output="screen",
        parameters=[
            LaunchConfiguration("sim_config"),
            {
                "task": LaunchConfiguration("task"),
                "variant": LaunchConfiguration("variant"),
                "seed": LaunchConfiguration("seed"),
                "n_episodes": LaunchConfiguration("n_episodes"),
                "max_steps": LaunchConfiguration("max_steps"),
                "clock": LaunchConfiguration("clock"),
                "results": LaunchConfiguration("results"),
                # a YAML mapping: kept a string (launch would otherwise parse it into a dict)
                "task_kwargs": ParameterValue(LaunchConfiguration("task_kwargs"), value_type=str),
            },
        ],
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("task", default_value="pusht", description="sim_bridge task name"),
            DeclareLaunchArgument("variant", default_value="", description="task variant, empty = default"),
            DeclareLaunchArgument("seed", default_value="0", description="seed of the first episode"),
            DeclareLaunchArgument("n_episodes", default_value="0", description="0 = forever"),
            DeclareLaunchArgument(
                "max_steps", default_value="0", description="episode step limit, 0 = the task's own"
            ),
            DeclareLaunchArgument(
                "clock",
                default_value="lockstep",
                choices=["lockstep", "realtime"],
                description="lockstep publishes /clock; realtime follows the wall clock",
            ),
            DeclareLaunchArgument(
                "sim_config",
                default_value=os.path.join(SHARE, "config", "ros", "sim_bridge.yaml"),
                description="sim_bridge_node parameter file",
            ),
            DeclareLaunchArgument(
                "task_kwargs",
                default_value="",
                description='task options as a YAML mapping, e.g. "{image_size: 84, max_steps: 200}"',
            ),
            DeclareLaunchArgument(
                "results",
                default_value="",
                description="JSON file of the episodes' outcomes and latency (empty = none)",
            ),
            bridge,
            RegisterEventHandler(OnProcessExit(target_action=bridge, on_exit=_bridge_done)),
        ]
    )
