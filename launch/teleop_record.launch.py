"""Record demonstrations by VR teleoperation into rosbags.

ros2 launch class_bringup teleop_record.launch.py data_root:=/data/bags config:=/path/to/robot.yaml

Starts the camera, arm (teleop mode), gripper and Quest teleop nodes from config/robot.yaml and
`ros2 bag record` (sqlite3) of every dataset topic and /class/episode/event into
<data_root>/<date>/<prefix>_<time> (class_core.hardware.recording). Import the bags with
class-import-bags.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")


def _nodes(context):
    from class_core.hardware.recording import bag_dir, load_robot_config, record_command

    config = LaunchConfiguration("config").perform(context) or os.path.join(SHARE, "config", "robot.yaml")
    data_root = LaunchConfiguration("data_root").perform(context)
    overrides = [f"recording.data_root={data_root}"] if data_root else []
    cfg = load_robot_config(config, overrides)
    out = bag_dir(cfg["recording"])
    out.parent.mkdir(parents=True, exist_ok=True)
    params = [{"config": config, "overrides": overrides or [""]}]
    nodes = [
        Node(package="class_ros", executable="camera_node", name="class_camera", parameters=params),
        Node(
            package="class_ros",
            executable="arm_node",
            name="class_arm",
            parameters=[{"config": config, "overrides": overrides or [""], "mode": "teleop"}],
        ),
        Node(package="class_ros", executable="teleop_node", name="class_teleop", parameters=params),
        ExecuteProcess(cmd=record_command(cfg["recording"], out), output="screen"),
    ]
    if cfg["gripper"].kind != "none":
        nodes.insert(
            2, Node(package="class_ros", executable="gripper_node", name="class_gripper", parameters=params)
        )
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "data_root", default_value="data/bags", description="folder the rosbags go to"
            ),
            DeclareLaunchArgument(
                "config", default_value="", description="robot.yaml (default: installed copy)"
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
