"""Record demonstrations by VR teleoperation into rosbags, on the robot or in simulation.

ros2 launch class_bringup teleop_record.launch.py data_root:=/data/bags config:=/path/to/robot.yaml
ros2 launch class_bringup teleop_record.launch.py drivers:=false recorder:=node
ros2 launch class_bringup teleop_record.launch.py sim:=true task:=lift variant:=dyn-cam episodes:=50
ros2 launch class_bringup teleop_record.launch.py sim:=true task:=stack operator:=vr
ros2 launch class_bringup teleop_record.launch.py sim:=true task:=lift operator:=vr trace:=quest.log

Robot (sim:=false, default): starts the camera, arm (teleop mode), gripper and Quest teleop nodes
from config/robot.yaml and a recorder of every dataset topic and /class/episode/event into one bag
per session, <data_root>/<date>/<prefix>_<time> (class_core.hardware.recording; storage from
recording.storage). The recorder is `ros2 bag record` where rosbag2 is installed, else
class_ros recorder_node (the pip ROS layer has no rosbag2), which writes the same bag with the
`rosbags` writer (recorder:=auto|ros2bag|node). Ctrl-C closes the bag. Import the bags with
class-import-bags, which cuts episodes at the recorded events.

drivers:=false starts only the recorder, for drivers running elsewhere (robot.launch.py, or
realsense2_camera with camera.driver=external).

Simulation (sim:=true): no driver; the simulated arm sim_teleop_node (robosuite, task config
config/<task>.yaml: sections task, arm.limits, sim_teleop) publishes the robot's topics and
executes the operator's targets in real time; the operator is scripted_teleop_node
(operator:=scripted: the task's scripted demonstrator, reading the simulator's state on
/class/sim/state, section scripted_teleop) or teleop_node for a person on the Quest
(operator:=vr: the trigger drives the gripper; trace:=<file> replays a recorded oculus_reader
logcat trace instead of the headset, one frame per tick, looping); the recorder records with the
config's recording section. With the scripted operator the launch shuts itself down once the operator has its
episodes:=N kept episodes (0: until Ctrl-C; empty: scripted_teleop.n_episodes). Import with
  class-import-bags <data_root>/<date>/<prefix>_* --config config/<task>.yaml --out data/<task>.zarr

overrides:="key=value key=value" (whitespace-separated, shell quoting) apply to the config in every
node, e.g. overrides:="task.kwargs.image_size=32 scripted_teleop.discard_attempts=[0]".
"""

import os
import shlex

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = get_package_share_directory("class_bringup")
# Ctrl-C: the recorder gets SIGINT and writes the rest of its backlog and metadata.yaml;
# ros2 launch escalates to SIGTERM, then SIGKILL, only after these
RECORDER_SIGTERM_TIMEOUT = "30"
# The scripted operator exits once its last events are acknowledged by every subscriber; the
# recorder then still has to take them from its queue and write them before it is stopped
SHUTDOWN_DELAY_S = 1.0


def _overrides(context, sim: bool) -> list[str]:
    """key=value overrides of the config: the operator's gripper convention (vr), the overrides
    argument, then the named arguments (variant, episodes, data_root), which win."""
    out = []
    if sim and LaunchConfiguration("operator").perform(context) == "vr":
        out.append("sim_teleop.gripper.input=trigger")  # teleop_node sends the trigger, 0..1
    out += shlex.split(LaunchConfiguration("overrides").perform(context))
    if sim:
        variant = LaunchConfiguration("variant").perform(context)
        episodes = LaunchConfiguration("episodes").perform(context)
        if variant:
            out.append(f"task.variant={variant}")
        if episodes:
            if not episodes.isdigit():
                raise ValueError(f"episodes must be a number >= 0, got {episodes!r}")
            out.append(f"scripted_teleop.n_episodes={episodes}")
    data_root = LaunchConfiguration("data_root").perform(context)
    if data_root:
        out.append(f"recording.data_root={data_root}")
    return out


def _shut_down(reason: str):
    """An OnProcessExit callback: shut the launch down (unless it is already going down)."""

    def on_exit(event, context):
        if context.is_shutdown:
            return None
        return [
            LogInfo(msg=f"{event.process_name} exited ({event.returncode}): {reason}"),
            Shutdown(reason=reason),
        ]

    return on_exit


def _operator_done(event, context):
    """The scripted operator exits 0 after its last kept episode: shut down once the recorder has
    written the last events; any other exit shuts down at once."""
    if context.is_shutdown:
        return None
    if event.returncode != 0:
        return [Shutdown(reason=f"the scripted operator failed ({event.returncode})")]
    return [
        LogInfo(msg="the scripted operator is done: shutting down"),
        TimerAction(period=SHUTDOWN_DELAY_S, actions=[Shutdown(reason="all episodes recorded")]),
    ]


def _nodes(context):
    from class_core.hardware.recording import bag_dir, choose_recorder, load_robot_config, record_command

    sim = LaunchConfiguration("sim").perform(context) == "true"
    task = LaunchConfiguration("task").perform(context)
    default_config = f"{task}.yaml" if sim else "robot.yaml"
    config = LaunchConfiguration("config").perform(context) or os.path.join(SHARE, "config", default_config)
    with_drivers = LaunchConfiguration("drivers").perform(context) == "true"
    recorder = choose_recorder(LaunchConfiguration("recorder").perform(context))
    overrides = _overrides(context, sim)
    cfg = load_robot_config(config, overrides)  # fails early on a bad file
    if sim:
        from class_core.deploy.sim_teleop_core import load_sim_teleop_setup

        load_sim_teleop_setup(config, overrides)  # the sim sections too
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
    if sim:
        return _sim_nodes(context, config, ov, rec)
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


def _sim_nodes(context, config, ov, rec):
    """sim:=true: the simulated arm, the operator and the recorder; the launch ends with the
    scripted operator's last episode, or when the simulator or the recorder is gone."""
    bridge = Node(
        package="class_ros",
        executable="sim_teleop_node",
        name="class_sim_teleop",
        output="screen",
        parameters=[{"config": config, "overrides": ov}],
    )
    actions = [
        RegisterEventHandler(
            OnProcessExit(target_action=bridge, on_exit=_shut_down("the simulator is gone"))
        ),
        RegisterEventHandler(OnProcessExit(target_action=rec, on_exit=_shut_down("the recorder is gone"))),
    ]
    trace = LaunchConfiguration("trace").perform(context)
    if trace:
        if LaunchConfiguration("operator").perform(context) != "vr":
            raise ValueError(f"trace:={trace} is a Quest trace for operator:=vr, not the scripted operator")
        if not os.path.isfile(trace):
            raise FileNotFoundError(f"trace:={trace}: no such file")
        trace = os.path.abspath(trace)
    if LaunchConfiguration("operator").perform(context) == "vr":
        operator = Node(
            package="class_ros",
            executable="teleop_node",
            name="class_teleop",
            output="screen",
            # trace: a recorded Quest trace replayed instead of the headset (empty: the headset)
            parameters=[{"config": config, "overrides": ov, "trace": trace}],
        )
    else:
        operator = Node(
            package="class_ros",
            executable="scripted_teleop_node",
            name="class_scripted_teleop",
            output="screen",
            # the first 'start' waits until the bridge and the recorder listen
            parameters=[{"config": config, "overrides": ov, "min_subscribers": 2}],
        )
        actions.append(RegisterEventHandler(OnProcessExit(target_action=operator, on_exit=_operator_done)))
    return [*actions, rec, bridge, operator]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "data_root",
                default_value="",
                description="folder the rosbags go to (empty: the config's recording.data_root)",
            ),
            DeclareLaunchArgument(
                "config",
                default_value="",
                description="robot.yaml, or with sim:=true a task config (default: the installed "
                "robot.yaml, or config/<task>.yaml)",
            ),
            DeclareLaunchArgument(
                "overrides",
                default_value="",
                description="key=value overrides of the config, whitespace-separated",
            ),
            DeclareLaunchArgument(
                "drivers",
                default_value="true",
                choices=["true", "false"],
                description="start the camera/arm/gripper/teleop nodes (false: record only, "
                "the drivers run elsewhere; sim:=false only)",
            ),
            DeclareLaunchArgument(
                "recorder",
                default_value="auto",
                choices=["auto", "ros2bag", "node"],
                description="auto: `ros2 bag record` where rosbag2 is installed, else class_ros "
                "recorder_node",
            ),
            DeclareLaunchArgument(
                "sim",
                default_value="false",
                choices=["true", "false"],
                description="teleoperate a simulated arm (sim_teleop_node) instead of the robot",
            ),
            DeclareLaunchArgument(
                "task", default_value="lift", description="sim:=true: the task, config/<task>.yaml"
            ),
            DeclareLaunchArgument(
                "variant",
                default_value="",
                description="sim:=true: task variant (fixed-cam, dyn-cam, rand-cam; empty: the config's)",
            ),
            DeclareLaunchArgument(
                "operator",
                default_value="scripted",
                choices=["scripted", "vr"],
                description="sim:=true: scripted (scripted_teleop_node) or vr (teleop_node, a person)",
            ),
            DeclareLaunchArgument(
                "trace",
                default_value="",
                description="sim:=true, operator:=vr: an oculus_reader logcat trace that teleop_node "
                "replays instead of the headset (empty: the headset)",
            ),
            DeclareLaunchArgument(
                "episodes",
                default_value="",
                description="sim:=true, operator:=scripted: kept episodes to record, then shut down "
                "(0: until Ctrl-C; empty: the config's scripted_teleop.n_episodes)",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
