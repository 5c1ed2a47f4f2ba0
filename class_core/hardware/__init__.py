"""ROS-free robot hardware: RealSense camera, Franka arm (franky), WSG-50 / Franka Hand gripper,
VR teleoperation and recording helpers. The ROS nodes in ``class_ros`` are thin shells over these.

Hardware SDKs (pyrealsense2, franky) are imported lazily, inside the classes that need them, so
the pure logic (cropping, clock mapping, safety limits, chunk scheduling, the WSG-50 protocol,
the teleop mapping) imports and tests anywhere.
"""
