"""colcon (ament_python) package of the radseg-edge ROS 2 node. The node itself lives in the radseg-edge
Python package (radseg_edge.ros2.node), installed with pip beside ROS 2; see docs/ros2.md."""

from glob import glob

from setuptools import setup

PACKAGE = "radseg_edge_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="radseg-edge maintainers",
    description="ROS 2 node for RADSeg open-vocabulary segmentation (radseg-edge)",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"radseg_node = {PACKAGE}.radseg_node:main"]},
)
