"""The mock arm node in-process: at the control rate every frame is rendered in the control tick,
after the physics step, so it shows the state the last command led to."""

from __future__ import annotations

import pytest
from ros_test_utils import ros_context, spin_until

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from robofume_robot.mock_arm_node import MockArmNode  # noqa: E402
from robofume_robot.ros_image import stamp_to_sec  # noqa: E402


def _run(camera_hz: float, seconds: float) -> tuple[MockArmNode, list[tuple[str, float]]]:
    events: list[tuple[str, float]] = []
    with ros_context() as context:
        arm = MockArmNode(
            context=context,
            parameter_overrides=[
                Parameter("image_size", value=48),
                Parameter("control_hz", value=10.0),
                Parameter("camera_hz", value=camera_hz),
            ],
        )
        watcher = rclpy.create_node("watcher", context=context)
        watcher.create_subscription(
            PoseStamped, "arm/ee_pose", lambda m: events.append(("pose", stamp_to_sec(m.header.stamp))), 50
        )
        watcher.create_subscription(
            Image,
            "camera/color/image_raw",
            lambda m: events.append(("image", stamp_to_sec(m.header.stamp))),
            qos_profile_sensor_data,
        )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(arm)
        executor.add_node(watcher)
        try:
            spin_until(executor, lambda: arm.steps >= seconds * 10, timeout=seconds + 30)
            spin_until(executor, lambda: False, timeout=0.3)  # deliver the last messages
        finally:
            executor.shutdown()
            arm.destroy_node()
            watcher.destroy_node()
    return arm, events


def test_frames_follow_the_step_of_their_tick() -> None:
    arm, events = _run(camera_hz=10.0, seconds=2.0)
    assert arm.camera_in_control_tick
    poses = [t for kind, t in events if kind == "pose"]
    images = [t for kind, t in events if kind == "image"]
    assert len(images) >= arm.steps - 2 >= 18
    for image_t in images:
        # the newest state published before the frame's capture is from the same tick: a few ms old
        before = [t for t in poses if t <= image_t]
        assert before and image_t - before[-1] < 0.05, (image_t, before[-1:])


def test_other_camera_rates_keep_their_own_timer() -> None:
    arm, events = _run(camera_hz=5.0, seconds=2.0)
    assert not arm.camera_in_control_tick
    images = [t for kind, t in events if kind == "image"]
    assert 0.3 * arm.steps <= len(images) <= 0.7 * arm.steps
