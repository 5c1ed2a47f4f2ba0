"""The robot's drivers: camera, arm and gripper nodes (class_ros) from config/robot.yaml.

  ros2 launch class_bringup robot.launch.py config:=/path/to/robot.yaml
  ros2 launch class_bringup robot.launch.py use_fake_hardware:=true

Publishes the topic table's robot side (/class/obs/image, /joint_states, /class/robot/ee_pose,
/class/gripper/state) and executes /class/policy/action_chunk. policy.launch.py includes it
when sim:=false.

use_fake_hardware:=true needs no hardware: it starts franky-sim (simulated FR3 and Franka Hand on
127.0.0.1; its UDP socket binds 0.0.0.0, so run it on an isolated network) and points the arm and
gripper nodes at it; no camera node (there is no simulated RealSense), so the arm's observation
watchdog is off.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, TimerAction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")

# robot.yaml overrides that point the drivers at franky-sim
FAKE_OVERRIDES = [
    "arm.host=127.0.0.1",
    "arm.realtime=ignore",
    "arm.limits.observation_timeout_s=0",
    "gripper.kind=franka_hand",
    "gripper.host=127.0.0.1",
]
FAKE_SIM_STARTUP_S = 5.0  # the drivers connect once franky-sim listens


def _nodes(context):
    from class_core.hardware.recording import load_robot_config

    config = LaunchConfiguration("config").perform(context) or os.path.join(SHARE, "config", "robot.yaml")
    fake = LaunchConfiguration("use_fake_hardware").perform(context) == "true"
    overrides = FAKE_OVERRIDES if fake else []
    cfg = load_robot_config(config, overrides)  # fails early on a bad file
    params = {"config": config, "overrides": overrides or [""]}
    drivers = [
        Node(
            package="class_ros", executable="arm_node", name="class_arm", output="screen", parameters=[params]
        )
    ]
    if cfg["gripper"].kind != "none":
        drivers.append(
            Node(
                package="class_ros",
                executable="gripper_node",
                name="class_gripper",
                output="screen",
                parameters=[params],
            )
        )
    if not fake:
        camera = Node(
            package="class_ros",
            executable="camera_node",
            name="class_camera",
            output="screen",
            parameters=[params],
        )
        return [camera, *drivers]
    sim = ExecuteProcess(cmd=["franky-sim", "-s", "mujoco", "--hostname", "127.0.0.1"], output="screen")
    return [sim, TimerAction(period=FAKE_SIM_STARTUP_S, actions=drivers)]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "use_fake_hardware",
                default_value="false",
                choices=["true", "false"],
                description="drivers without hardware: franky-sim arm and hand, no camera",
            ),
            DeclareLaunchArgument(
                "config", default_value="", description="robot.yaml (default: installed copy)"
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
