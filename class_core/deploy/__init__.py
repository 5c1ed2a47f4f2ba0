"""ROS-free logic of the ROS 2 nodes (policy node, simulation bridge node).

The nodes in ``ros2_ws/src/class_ros`` are thin rclpy shells: they turn parameters into these
classes' constructor arguments, pass every received message to ``on_message`` and publish what
the cores return. Everything here runs and is tested without ROS, with the message classes of
the ``rosbags`` package.
"""

from class_core.deploy.chunk_queue import ChunkQueue
from class_core.deploy.policy_core import PolicyCore, PolicyCoreConfig
from class_core.deploy.sim_bridge_core import SimBridgeConfig, SimBridgeCore
from class_core.topics import (
    DEFAULT_OBS_SOURCES,
    TOPICS,
    ObsSources,
    Source,
    parse_sources,
)

__all__ = [
    "DEFAULT_OBS_SOURCES",
    "TOPICS",
    "ChunkQueue",
    "ObsSources",
    "PolicyCore",
    "PolicyCoreConfig",
    "SimBridgeConfig",
    "SimBridgeCore",
    "Source",
    "parse_sources",
]
