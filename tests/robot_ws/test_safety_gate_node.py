"""The safety gate as a ROS 2 node: forwarding, watchdog hold with a paused publisher, stale frames,
and an e-stop that stays latched across restarts of the command source until released."""

from __future__ import annotations

import pytest
from ros_test_utils import ros_context, spin_until

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from robofume_robot.arm_messages import action_msg  # noqa: E402
from robofume_robot.ros_image import sec_to_stamp  # noqa: E402
from robofume_robot.safety_gate_node import SafetyGateNode  # noqa: E402


def _call(executor: SingleThreadedExecutor, client, timeout: float = 5.0) -> Trigger.Response:
    assert client.wait_for_service(timeout_sec=timeout)
    future = client.call_async(Trigger.Request())
    assert spin_until(executor, future.done, timeout)
    return future.result()


def test_gate_node_watchdog_stale_and_latched_estop(tmp_path) -> None:
    with ros_context() as context:
        gate = SafetyGateNode(
            context=context,
            parameter_overrides=[
                Parameter("limits_file", value="safety_limits_mock.yaml"),
                Parameter("latch_file", value=str(tmp_path / "estop.latch")),
                Parameter("diagnostics_hz", value=10.0),
            ],
        )
        arm = rclpy.create_node("fake_arm", context=context)
        commands: list[JointState] = []
        diags: list[DiagnosticArray] = []
        arm.create_subscription(JointState, "arm/command", commands.append, 100)
        arm.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        pose_pub = arm.create_publisher(PoseStamped, "arm/ee_pose", 10)
        estop = arm.create_client(Trigger, "safety/estop")
        release = arm.create_client(Trigger, "safety/release")
        executor = SingleThreadedExecutor(context=context)
        for node in (gate, arm):
            executor.add_node(node)
        pose = PoseStamped()
        pose.pose.position.x, pose.pose.position.z = 0.5, 0.2
        pose.pose.orientation.x = 1.0

        def state() -> str:
            return diags[-1].status[0].message if diags else ""

        def counter(name: str) -> str:
            return {kv.key: kv.value for kv in diags[-1].status[0].values}[name]

        def source() -> tuple:
            node = rclpy.create_node("policy", context=context)
            executor.add_node(node)
            return node, node.create_publisher(JointState, "policy/action", 10)

        def send(pub, dx: float, age: float = 0.0) -> None:
            now = arm.get_clock().now().nanoseconds * 1e-9
            pub.publish(action_msg([dx, 0.0, 0.0, 0.0, -1.0], sec_to_stamp(now - age)))

        try:
            policy, pub = source()
            assert spin_until(executor, lambda: pub.get_subscription_count() > 0 and bool(diags), 10)
            pose_pub.publish(pose)
            spin_until(executor, lambda: False, 0.2)
            commands.clear()
            for _ in range(5):
                send(pub, 1.0)
                spin_until(executor, lambda: False, 0.1)
            moved = [c for c in commands if c.position[0] > 0.5 + 1e-6]
            # Each delta moves the previous target (0.53, 0.56, ...), never more than max_step (0.06)
            # from the measured pose, which this fake arm never changes.
            assert moved and moved[0].position[0] == pytest.approx(0.53)
            assert max(c.position[0] for c in moved) == pytest.approx(0.56)
            assert spin_until(executor, lambda: state() == "ok", 2)

            # Paused publisher: stale actions do not feed the watchdog; the gate holds at the pose.
            commands.clear()
            for _ in range(8):
                send(pub, 1.0, age=1.0)
                spin_until(executor, lambda: False, 0.1)
            assert spin_until(executor, lambda: state() == "holding", 3)
            assert commands and all(c.position[0] == pytest.approx(0.5) for c in commands)
            assert spin_until(executor, lambda: int(counter("dropped_stale")) >= 8, 2)
            assert (
                int(counter("watchdog_holds")) >= 1
                and int(counter("accepted")) + int(counter("clipped")) == 5
            )

            # E-stop latches, survives a restart of the command source, and only release clears it.
            assert _call(executor, estop).success
            policy.destroy_node()
            policy, pub = source()
            assert spin_until(executor, lambda: pub.get_subscription_count() > 0, 10)
            commands.clear()
            for _ in range(5):
                send(pub, 1.0)
                spin_until(executor, lambda: False, 0.1)
            assert state() == "estop"
            assert all(c.position[0] == pytest.approx(0.5) for c in commands)
            assert (tmp_path / "estop.latch").exists()
            assert _call(executor, release).success
            commands.clear()
            for _ in range(3):
                send(pub, 1.0)
                spin_until(executor, lambda: False, 0.1)
            assert any(c.position[0] > 0.5 + 1e-6 for c in commands)
            assert not (tmp_path / "estop.latch").exists()
        finally:
            executor.shutdown()
            for node in (gate, arm, policy):
                node.destroy_node()


def test_gate_node_refuses_to_start_without_limits() -> None:
    with ros_context() as context, pytest.raises(ValueError, match="limits_file"):
        SafetyGateNode(context=context)
