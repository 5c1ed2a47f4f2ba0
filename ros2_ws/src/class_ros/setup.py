from setuptools import setup

package_name = "class_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="class-robot",
    maintainer_email="class-robot@example.org",
    description="CLASS policy and simulation bridge nodes",
    license="MIT",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "policy_node = class_ros.policy_node:main",
            "sim_bridge_node = class_ros.sim_bridge_node:main",
            "camera_node = class_ros.camera_node:main",
            "arm_node = class_ros.arm_node:main",
            "gripper_node = class_ros.gripper_node:main",
            "teleop_node = class_ros.teleop_node:main",
            "recorder_node = class_ros.recorder_node:main",
            "sim_teleop_node = class_ros.sim_teleop_node:main",
            "scripted_teleop_node = class_ros.scripted_teleop_node:main",
        ],
    },
)
