"""The robot's drivers: camera, arm and gripper nodes (class_ros) from config/robot.yaml, and the
Quest teleop node where asked.

  ros2 launch class_bringup robot.launch.py config:=/path/to/robot.yaml
  ros2 launch class_bringup robot.launch.py use_fake_hardware:=true

Publishes the topic table's robot side (/camera/camera/color/image_raw and camera_info,
/class/obs/image, /joint_states, /class/robot/ee_pose, /class/gripper/state) and executes
/class/policy/action_chunk. policy.launch.py includes it when sim:=false.

use_fake_hardware:=true needs no hardware; every driver runs its usual code against a stand-in:
- camera: a pyrealsense2 software_device fed with synthetic frames at camera.width x height @ fps
  (camera_node fake_hardware:=true);
- arm: franky-sim, a simulated FR3 (MuJoCo) on 127.0.0.1, started here
  (`python -m class_ros.hw_common franky-sim`); the arm node connects once it is ready, with
  arm.realtime=ignore and a faster homing. Its UDP socket binds 0.0.0.0: run it on an isolated
  network (a private network namespace). On Ctrl-C the simulator waits for the arm node to stop
  the simulated arm and disconnect before it ends;
- gripper: a WSG-50 is the protocol-level loopback server (class_core.hardware.wsg50) inside the
  gripper node; a Franka Hand (gripper.kind=franka_hand) is franky-sim's;
- teleop (teleop:=auto starts it with fake hardware only): a replayed oculus_reader logcat trace,
  one frame per tick, looping: teleop_trace:=<file>, or a built-in one that engages and draws a
  3 cm circle without pressing a button, so it never sends an episode event to a policy.
"""

import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessIO
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")

# robot.yaml overrides that point the arm at franky-sim
FAKE_OVERRIDES = [
    "arm.host=127.0.0.1",
    "arm.realtime=ignore",
    "arm.home_dynamics_factor=0.5",
]
SIM_READY = "franky-sim ready"  # what the simulator prints once it accepts connections


def _nodes(context):
    from class_core.hardware.recording import load_robot_config

    config = LaunchConfiguration("config").perform(context) or os.path.join(SHARE, "config", "robot.yaml")
    fake = LaunchConfiguration("use_fake_hardware").perform(context) == "true"
    teleop = LaunchConfiguration("teleop").perform(context)
    trace = LaunchConfiguration("teleop_trace").perform(context)
    overrides = FAKE_OVERRIDES if fake else []
    cfg = load_robot_config(config, overrides)  # fails early on a bad file
    params = {"config": config, "overrides": overrides or [""]}
    hw = {**params, "fake_hardware": fake}

    camera = Node(
        package="class_ros", executable="camera_node", name="class_camera", output="screen", parameters=[hw]
    )
    arm = Node(
        package="class_ros", executable="arm_node", name="class_arm", output="screen", parameters=[params]
    )
    gripper = None
    if cfg["gripper"].kind != "none":
        gripper = Node(
            package="class_ros",
            executable="gripper_node",
            name="class_gripper",
            output="screen",
            parameters=[hw],
        )
    actions = [camera]
    if teleop == "true" or (teleop == "auto" and fake):
        teleop_params = {**hw, "trace": trace}
        actions.append(
            Node(
                package="class_ros",
                executable="teleop_node",
                name="class_teleop",
                output="screen",
                parameters=[teleop_params],
            )
        )
    if not fake:
        return [*actions, arm, *([gripper] if gripper else [])]
    # franky-sim first; the nodes that talk to it start when it says it is ready
    on_sim = [arm]
    if gripper is not None:
        (on_sim if cfg["gripper"].kind == "franka_hand" else actions).append(gripper)
    sim = ExecuteProcess(
        cmd=[sys.executable, "-u", "-m", "class_ros.hw_common", "franky-sim", "--hostname", "127.0.0.1"],
        name="franky_sim",
        output="screen",
    )
    started = []

    def when_ready(event):
        if SIM_READY in event.text.decode(errors="replace") and not started:
            started.append(True)
            return on_sim
        return None

    return [
        RegisterEventHandler(OnProcessIO(target_action=sim, on_stdout=when_ready)),
        sim,
        *actions,
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "use_fake_hardware",
                default_value="false",
                choices=["true", "false"],
                description="drivers without hardware: software_device camera, franky-sim arm, "
                "WSG-50 loopback gripper, replayed teleop trace",
            ),
            DeclareLaunchArgument(
                "config", default_value="", description="robot.yaml (default: installed copy)"
            ),
            DeclareLaunchArgument(
                "teleop",
                default_value="auto",
                choices=["auto", "true", "false"],
                description="start the Quest teleop node (auto: with use_fake_hardware only)",
            ),
            DeclareLaunchArgument(
                "teleop_trace",
                default_value="",
                description="logcat trace the teleop node replays instead of the headset "
                "(fake hardware without one: a built-in trace)",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
