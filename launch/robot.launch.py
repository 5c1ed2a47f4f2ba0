"""The robot's drivers: camera, arm, gripper (filled in by the hardware work, class_core/hardware).

  ros2 launch class_bringup robot.launch.py use_fake_hardware:=true

Publishes the topic table's robot side (/class/obs/image, /joint_states, /class/robot/ee_pose,
/class/gripper/state) and executes /class/policy/action_chunk. policy.launch.py includes it
when sim:=false.
"""

from launch.actions import DeclareLaunchArgument

from launch import LaunchDescription


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "use_fake_hardware",
                default_value="false",
                choices=["true", "false"],
                description="drivers without hardware (simulated arm, loopback gripper)",
            ),
            DeclareLaunchArgument(
                "config", default_value="", description="driver parameter file (config/ros/*.yaml)"
            ),
            # hardware nodes: added by the hardware drivers' work
        ]
    )
