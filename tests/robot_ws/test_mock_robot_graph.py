"""Integration: mock arm + camera + safety gate as ROS 2 node processes (started by robofume's own
launcher), driven over topics through a scripted forward-then-backward cycle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ros_test_utils import ros_context, spin_until

from robofume.sim.scene import START_REGION_HALF
from robofume_robot.launcher import Launcher

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from robofume_robot.scripted_policy_node import ScriptedPolicyNode  # noqa: E402


def test_forward_then_backward_cycle_over_topics(tmp_path) -> None:
    with (
        ros_context() as context,
        Launcher("mock", namespace="robot1", log_dir=tmp_path, overrides={"arm": {"seed": 7}}) as launcher,
    ):
        policy = ScriptedPolicyNode(
            context=context, namespace="robot1", parameter_overrides=[Parameter("cycles", value=1)]
        )
        watcher = rclpy.create_node("watcher", context=context, namespace="robot1")
        seen: dict[str, list] = {"command": [], "image": [], "info": [], "truth": [], "diag": []}
        watcher.create_subscription(JointState, "arm/command", seen["command"].append, 50)
        watcher.create_subscription(
            Image, "camera/color/image_raw", seen["image"].append, qos_profile_sensor_data
        )
        watcher.create_subscription(
            CameraInfo, "camera/color/camera_info", seen["info"].append, qos_profile_sensor_data
        )
        watcher.create_subscription(
            String, "sim/ground_truth", lambda m: seen["truth"].append(json.loads(m.data)), 10
        )
        watcher.create_subscription(DiagnosticArray, "/diagnostics", seen["diag"].append, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(policy)
        executor.add_node(watcher)
        try:
            finished = spin_until(executor, lambda: policy.done, timeout=120, check=launcher.check)
        finally:
            executor.shutdown()
            policy.destroy_node()
            watcher.destroy_node()
    assert finished, f"cycle did not finish; results so far {policy.results}; logs in {tmp_path}"
    assert [(r.task, r.success) for r in policy.results] == [("forward", True), ("backward", True)]
    # the scene ends with the object back in the start square, judged by its position: the success
    # flags also need the object at rest and untouched by the gripper, and once in CI under load
    # the last message had backward False right after the success the policy acted on
    last = seen["truth"][-1]
    offset = np.abs(np.subtract(last["object_pos"][:2], last["start_pos"][:2]))
    assert np.all(offset < START_REGION_HALF) and not last["success"]["forward"], last
    assert len(seen["command"]) >= 30 and list(seen["command"][0].name) == ["x", "y", "z", "yaw", "gripper"]
    image = seen["image"][-1]
    assert (image.encoding, image.width, image.height) == ("rgb8", 128, 128)
    assert seen["info"][-1].k[0] > 0
    gate = [s for d in seen["diag"] for s in d.status if s.name.endswith("safety_gate")]
    values = {kv.key: kv.value for kv in gate[-1].values}
    assert int(values["accepted"]) + int(values["clipped"]) >= 30 and int(values["rejected_malformed"]) == 0
