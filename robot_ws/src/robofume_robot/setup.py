"""ament_python build of robofume_robot for a full ROS 2 install (``colcon build``)."""

from glob import glob

from setuptools import setup

PACKAGE = "robofume_robot"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", glob("config/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robofume developers",
    maintainer_email="robofume@example.org",
    description="robofume robot-side nodes: camera, arm and safety gate.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"{name} = {PACKAGE}.{name}:main"
            for name in (
                "mock_arm_node",
                "safety_gate_node",
                "realsense_camera_node",
                "arm_adapter_node",
                "scripted_policy_node",
            )
        ]
    },
)
