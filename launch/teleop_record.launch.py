"""Record demonstrations by VR teleoperation into rosbags (filled in by the hardware work).

ros2 launch class_bringup teleop_record.launch.py data_root:=/data/bags config:=/path/to/teleop.yaml
"""

from launch.actions import DeclareLaunchArgument

from launch import LaunchDescription


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "data_root", default_value="data/bags", description="folder the rosbags go to"
            ),
            DeclareLaunchArgument("config", default_value="", description="teleop/recording parameter file"),
            # robot drivers, VR teleop and recorder nodes: added by the hardware drivers' work
        ]
    )
