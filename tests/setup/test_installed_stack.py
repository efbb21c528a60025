"""The setup command installed what the project needs: ROS 2 (rclpy + messages), torch, MuJoCo."""

from __future__ import annotations

import os

import pytest


def test_torch_and_torchvision_versions() -> None:
    import torch
    import torchvision

    assert torch.__version__.startswith("2.14.1")
    assert torchvision.__version__.startswith("0.29.1")


def test_rclpy_node_on_isolated_localhost_domain() -> None:
    rclpy = pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")
    from sensor_msgs.msg import Image

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        node = rclpy.create_node("robofume_setup_check", context=context)
        publisher = node.create_publisher(Image, "camera/color/image_raw", 1)
        assert publisher.topic_name == "/camera/color/image_raw"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_panda_model_ships_with_the_install() -> None:
    from robofume.sim.scene import panda_asset_path

    assert os.path.isfile(panda_asset_path())
