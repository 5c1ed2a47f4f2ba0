"""Installs the repository's launch/ and config/ (they live at the top level, not in this package)."""

import os
from glob import glob

from setuptools import setup

package_name = "class_bringup"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def rel(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob(os.path.join(REPO, pattern)))


setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", rel("launch/*.launch.py")),
        ("share/" + package_name + "/config", rel("config/*.yaml")),
        ("share/" + package_name + "/config/ros", rel("config/ros/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="class-robot",
    maintainer_email="class-robot@example.org",
    description="CLASS launch files and parameters",
    license="MIT",
    tests_require=["pytest"],
)
