"""The simulation bridge alone: a sim_bridge task behind the robot's topics.

  ros2 launch class_bringup sim.launch.py task:=pusht variant:=rand-color seed:=100 n_episodes:=50

Other nodes must run with use_sim_time:=true while clock:=lockstep (the default).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")


def generate_launch_description():
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
            Node(
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
                    },
                ],
            ),
        ]
    )
