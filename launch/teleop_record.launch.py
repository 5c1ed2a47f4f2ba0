"""Record demonstrations by VR teleoperation into rosbags.

ros2 launch class_bringup teleop_record.launch.py data_root:=/data/bags config:=/path/to/robot.yaml
ros2 launch class_bringup teleop_record.launch.py drivers:=false recorder:=node

Starts the camera, arm (teleop mode), gripper and Quest teleop nodes from config/robot.yaml and a
recorder of every dataset topic and /class/episode/event into one bag per session,
<data_root>/<date>/<prefix>_<time> (class_core.hardware.recording; storage from
recording.storage). The recorder is `ros2 bag record` where rosbag2 is installed, else
class_ros recorder_node (the pip ROS layer has no rosbag2), which writes the same bag with the
`rosbags` writer (recorder:=auto|ros2bag|node). Ctrl-C closes the bag. Import the bags with
class-import-bags, which cuts episodes at the recorded events.

drivers:=false starts only the recorder, for drivers running elsewhere (robot.launch.py, or
realsense2_camera with camera.driver=external).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")
# Ctrl-C: the recorder gets SIGINT and writes the rest of its backlog and metadata.yaml;
# ros2 launch escalates to SIGTERM, then SIGKILL, only after these
RECORDER_SIGTERM_TIMEOUT = "30"


def _nodes(context):
    from class_core.hardware.recording import bag_dir, choose_recorder, load_robot_config, record_command

    config = LaunchConfiguration("config").perform(context) or os.path.join(SHARE, "config", "robot.yaml")
    data_root = LaunchConfiguration("data_root").perform(context)
    with_drivers = LaunchConfiguration("drivers").perform(context) == "true"
    recorder = choose_recorder(LaunchConfiguration("recorder").perform(context))
    overrides = [f"recording.data_root={data_root}"] if data_root else []
    cfg = load_robot_config(config, overrides)  # fails early on a bad file
    out = bag_dir(cfg["recording"])
    out.parent.mkdir(parents=True, exist_ok=True)
    ov = overrides or [""]  # a ROS string-array parameter cannot be empty
    if recorder == "ros2bag":
        rec = ExecuteProcess(
            cmd=record_command(cfg["recording"], out),
            output="screen",
            sigterm_timeout=RECORDER_SIGTERM_TIMEOUT,
        )
    else:
        rec = Node(
            package="class_ros",
            executable="recorder_node",
            name="class_recorder",
            output="screen",
            parameters=[{"config": config, "overrides": ov, "output": str(out)}],
            sigterm_timeout=RECORDER_SIGTERM_TIMEOUT,
        )
    if not with_drivers:
        return [rec]

    # Node literals (not a helper), so tests/test_launch_files.py can check them
    drivers = [
        Node(
            package="class_ros",
            executable="camera_node",
            name="class_camera",
            output="screen",
            parameters=[{"config": config, "overrides": ov}],
        ),
        Node(
            package="class_ros",
            executable="arm_node",
            name="class_arm",
            output="screen",
            parameters=[{"config": config, "overrides": ov, "mode": "teleop"}],
        ),
    ]
    if cfg["gripper"].kind != "none":
        drivers.append(
            Node(
                package="class_ros",
                executable="gripper_node",
                name="class_gripper",
                output="screen",
                parameters=[{"config": config, "overrides": ov}],
            )
        )
    drivers.append(
        Node(
            package="class_ros",
            executable="teleop_node",
            name="class_teleop",
            output="screen",
            parameters=[{"config": config, "overrides": ov}],
        )
    )
    return [*drivers, rec]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "data_root", default_value="data/bags", description="folder the rosbags go to"
            ),
            DeclareLaunchArgument(
                "config", default_value="", description="robot.yaml (default: installed copy)"
            ),
            DeclareLaunchArgument(
                "drivers",
                default_value="true",
                choices=["true", "false"],
                description="start the camera/arm/gripper/teleop nodes (false: record only, "
                "the drivers run elsewhere)",
            ),
            DeclareLaunchArgument(
                "recorder",
                default_value="auto",
                choices=["auto", "ros2bag", "node"],
                description="auto: `ros2 bag record` where rosbag2 is installed, else class_ros "
                "recorder_node",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
