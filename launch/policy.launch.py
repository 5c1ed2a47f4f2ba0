"""Run a CLASS policy on the robot or against the simulation bridge.

  ros2 launch class_bringup policy.launch.py mode:=nonparametric model:=pusht_knn sim:=true task:=pusht
  ros2 launch class_bringup policy.launch.py mode:=diffusion model:=two_stack_dp use_fake_hardware:=true

Arguments are name:=value (ros2 launch rejects a bare mode=...).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    LogInfo,
    RegisterEventHandler,
    Shutdown,
)
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")


def _policy_gone(event, context):
    return [Shutdown(reason=f"the policy node exited ({event.returncode})")]


def generate_launch_description():
    sim = LaunchConfiguration("sim")
    # simulation time only where the bridge publishes /clock (sim:=true clock:=lockstep); with
    # clock:=realtime it publishes none, and a node on sim time would never see time pass
    sim_time = PythonExpression(
        ["'", sim, "' == 'true' and '", LaunchConfiguration("clock"), "' == 'lockstep'"]
    )
    policy = Node(
        package="class_ros",
        executable="policy_node",
        name="class_policy",
        output="screen",
        parameters=[
            LaunchConfiguration("policy_config"),
            {
                "mode": LaunchConfiguration("mode"),
                "model": LaunchConfiguration("model"),
                "models_dir": LaunchConfiguration("models_dir"),
                "device": LaunchConfiguration("device"),
                # control_hz:=20 is parsed as an integer: the node's parameter is a double
                "control_hz": ParameterValue(LaunchConfiguration("control_hz"), value_type=float),
                "use_sim_time": sim_time,
            },
        ],
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "mode",
                default_value="nonparametric",
                choices=["nonparametric", "mlp", "diffusion"],
                description="policy kind",
            ),
            DeclareLaunchArgument(
                "model", default_value="", description="artifact name under models_dir, or a path"
            ),
            DeclareLaunchArgument(
                "models_dir",
                default_value=os.environ.get("CLASS_MODELS_DIR", "models"),
                description="folder of exported policy artifacts",
            ),
            DeclareLaunchArgument("device", default_value="cpu", description="cpu | cuda"),
            DeclareLaunchArgument(
                "control_hz",
                default_value="10.0",
                description="the policy's control rate (chunk point spacing); sim:=true: the task's "
                "(Push-T 10, robosuite 20)",
            ),
            DeclareLaunchArgument(
                "sim",
                default_value="false",
                choices=["true", "false"],
                description="run against the simulation bridge instead of the robot",
            ),
            DeclareLaunchArgument(
                "clock",
                default_value="lockstep",
                choices=["lockstep", "realtime"],
                description="sim:=true only: lockstep (the bridge publishes /clock) or realtime",
            ),
            DeclareLaunchArgument(
                "use_fake_hardware",
                default_value="false",
                choices=["true", "false"],
                description="robot drivers without hardware (robot.launch.py)",
            ),
            DeclareLaunchArgument(
                "policy_config",
                default_value=os.path.join(SHARE, "config", "ros", "policy.yaml"),
                description="policy_node parameter file",
            ),
            policy,
            # a policy that dies (a bad artifact, a crash) leaves the robot or the bridge waiting
            # for chunks that never come: end the whole launch
            RegisterEventHandler(OnProcessExit(target_action=policy, on_exit=_policy_gone)),
            # sim:=true: the bridge as sim.launch.py starts it (its arguments task, variant, seed,
            # n_episodes, clock and sim_config pass through from this command line)
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "sim.launch.py"])),
                condition=IfCondition(sim),
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "robot.launch.py"])),
                launch_arguments={"use_fake_hardware": LaunchConfiguration("use_fake_hardware")}.items(),
                condition=UnlessCondition(sim),
            ),
            LogInfo(
                msg=[
                    "class policy: mode=",
                    LaunchConfiguration("mode"),
                    " model=",
                    LaunchConfiguration("model"),
                    " sim=",
                    sim,
                ]
            ),
        ]
    )
