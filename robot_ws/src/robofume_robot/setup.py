"""ament_python build of robofume_robot for a full ROS 2 install (``colcon build``)."""

import os
from glob import glob

from setuptools import setup

PACKAGE = "robofume_robot"
HERE = os.path.dirname(os.path.realpath(__file__))  # the source folder, also under --symlink-install

NODE_EXECUTABLES = {
    "mock_arm_node": "robofume_robot.mock_arm_node",
    "safety_gate_node": "robofume_robot.safety_gate_node",
    "realsense_camera_node": "robofume_robot.realsense_camera_node",
    "arm_adapter_node": "robofume_robot.arm_adapter_node",
    "scripted_policy_node": "robofume_robot.scripted_policy_node",
    # The fine-tuning session's nodes (launcher.SESSION_NODES; they need the robofume Python package).
    "policy_server_node": "policy_server.policy_server_node",
    "reward_node": "reward_vlm.reward_node",
    "controller_node": "reset_free.controller_node",
    "recorder_node": "reset_free.recorder_node",
    "mcap_recorder_node": "reset_free.mcap_recorder_node",
    "visualizer_node": "reset_free.visualizer_node",
}
"""Console script -> module with a ``main()``: what ``ros2 run robofume_robot <script>`` and the launch
files start. A node of ``launcher.ROBOTS`` named ``<pkg>.<module>`` runs as the script ``<module>``."""


def _launch_files() -> list[str]:
    """The ROS 2 launch files: they live in the repository's top-level ``launch/`` (beside robot_ws) and
    are installed into the package share; a ``launch/`` folder inside this package (e.g. in a copy of
    robot_ws alone) is used too. Paths are relative to the working folder, as setuptools requires;
    colcon runs this file from the source folder, or from the build folder with --symlink-install."""
    folders = (os.path.join(HERE, "..", "..", "..", "launch"), os.path.join(HERE, "launch"))
    files = [f for d in folders for f in sorted(glob(os.path.join(d, "*.launch.yaml")))]
    return [os.path.relpath(f) for f in files]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", glob("config/*")),
        (f"share/{PACKAGE}/launch", _launch_files()),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robofume developers",
    maintainer_email="robofume@example.org",
    description="robofume robot-side nodes: camera, arm and safety gate.",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{exe} = {module}:main" for exe, module in NODE_EXECUTABLES.items()]},
)
