"""The controller as a ROS 2 node: phase topic, episode events, health pause and recovery, services."""

from __future__ import annotations

import json

import pytest
from ros_test_utils import ros_context, spin_until

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from reset_free.controller_node import PHASE_QOS, ResetFreeControllerNode, verdict_from_msg  # noqa: E402


def verdict_msg(
    node, status: str, task: str | None, confirmed: bool = False, reason: str = ""
) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    values = {"task": task or "", "probability": "0.9" if status == "success" else "0.1"}
    values.update({"confirmed": str(confirmed).lower(), "reason": reason})
    msg.status.append(
        DiagnosticStatus(
            name="reward", message=status, values=[KeyValue(key=k, value=v) for k, v in values.items()]
        )
    )
    return msg


def test_verdict_parsing() -> None:
    with ros_context() as context:
        node = rclpy.create_node("probe", context=context)
        v = verdict_from_msg(verdict_msg(node, "success", "forward", True))
        assert v is not None and v.status == "success" and v.confirmed and v.task == "forward"
        assert verdict_from_msg(DiagnosticArray()) is None
        weird = verdict_msg(node, "bogus", "forward")
        assert verdict_from_msg(weird).status == "unknown"
        node.destroy_node()


def test_controller_node_alternates_pauses_and_recovers() -> None:
    with ros_context() as context:
        ctrl = ResetFreeControllerNode(
            context=context,
            parameter_overrides=[
                Parameter("control_hz", value=20.0),
                Parameter("max_episode_steps", value=1000),
                Parameter("startup_grace_s", value=0.2),
                Parameter("action_timeout_s", value=0.4),
                Parameter("retry_after_s", value=0.3),
                Parameter("status_hz", value=10.0),
                Parameter("already_done_steps", value=0),
            ],
        )
        peer = rclpy.create_node("peer", context=context)
        phases: list[str] = []
        events: list[dict] = []
        status: list[DiagnosticArray] = []
        estops: list[bool] = []
        peer.create_subscription(String, "reset_free/phase", lambda m: phases.append(m.data), PHASE_QOS)
        peer.create_subscription(
            String, "reset_free/events", lambda m: events.append(json.loads(m.data)), 100
        )
        peer.create_subscription(DiagnosticArray, "reset_free/status", status.append, 10)
        peer.create_subscription(Bool, "safety/estop", lambda m: estops.append(m.data), 10)
        action_pub = peer.create_publisher(JointState, "policy/action", 10)
        verdict_pub = peer.create_publisher(DiagnosticArray, "reward/verdict", 10)
        clients = {n: peer.create_client(Trigger, f"reset_free/{n}") for n in ("pause", "resume", "estop")}
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(ctrl)
        executor.add_node(peer)
        feed = {"actions": True, "verdict": "failure", "confirmed": False}

        def pump() -> None:
            phase = phases[-1] if phases else "paused"
            task = phase if phase in ("forward", "backward") else None
            if feed["actions"] and task:
                action_pub.publish(JointState())
            if task is None:
                verdict_pub.publish(verdict_msg(peer, "unknown", None, reason="no_task"))
            else:
                verdict = feed["verdict"] if task == "forward" else "failure"
                verdict_pub.publish(verdict_msg(peer, verdict, task, feed["confirmed"] and task == "forward"))

        def run_until(cond, timeout: float = 5.0) -> bool:
            deadline_hits = [0]

            def check() -> None:
                deadline_hits[0] += 1
                if deadline_hits[0] % 2 == 0:
                    pump()

            return spin_until(executor, cond, timeout, check)

        def call(name: str) -> None:
            assert clients[name].wait_for_service(timeout_sec=5)
            future = clients[name].call_async(Trigger.Request())
            assert spin_until(executor, future.done, 5)
            assert future.result().success

        try:
            assert run_until(lambda: bool(phases) and phases[-1] == "forward")
            feed.update(verdict="success", confirmed=True)
            assert run_until(lambda: any(e.get("outcome") == "success" for e in events))
            feed.update(verdict="failure", confirmed=False)
            assert run_until(lambda: phases[-1] == "backward")
            end = next(e for e in events if e["kind"] == "episode_end")
            assert end["task"] == "forward" and end["reward"] == 1.0 and "frame_stamp" in end
            # Policy server goes silent: paused with a reason, no success recorded, then recovery.
            feed["actions"] = False
            assert run_until(lambda: phases[-1] == "paused")
            assert run_until(lambda: bool(status) and "policy server silent" in status[-1].status[0].message)
            successes = sum(e.get("outcome") == "success" for e in events)
            feed["actions"] = True
            assert run_until(lambda: phases[-1] == "backward")
            assert sum(e.get("outcome") == "success" for e in events) == successes
            call("pause")
            assert run_until(lambda: phases[-1] == "paused")
            call("resume")
            assert run_until(lambda: phases[-1] == "backward")
            call("estop")
            assert run_until(lambda: phases[-1] == "estop" and estops == [True])
            assert run_until(lambda: status[-1].status[0].message.startswith("estop"))
            assert status[-1].status[0].level == DiagnosticStatus.ERROR
        finally:
            ctrl.destroy_node()
            peer.destroy_node()


def test_bad_parameter_is_one_line_error() -> None:
    with ros_context() as context, pytest.raises(ValueError, match="max_episode_steps") as info:
        ResetFreeControllerNode(
            context=context, parameter_overrides=[Parameter("max_episode_steps", value=0)]
        )
    assert "\n" not in str(info.value)


def test_controller_node_homes_the_arm_through_policy_action_before_the_attempt() -> None:
    home = [0.4635, 0.0, 0.35]
    with ros_context() as context:
        ctrl = ResetFreeControllerNode(
            context=context,
            parameter_overrides=[
                Parameter("control_hz", value=20.0),
                Parameter("startup_grace_s", value=0.2),
                Parameter("homing", value=True),
                Parameter("home_xyz", value=home),
                # 10 s of ticks: on a loaded CI machine the fake arm's pose lags (40 ticks gave up once)
                Parameter("homing_max_steps", value=200),
                Parameter("limits_file", value="safety_limits_mock.yaml"),
            ],
        )
        peer = rclpy.create_node("peer", context=context)
        phases: list[str] = []
        events: list[dict] = []
        seen: list[JointState] = []
        peer.create_subscription(String, "reset_free/phase", lambda m: phases.append(m.data), PHASE_QOS)
        peer.create_subscription(
            String, "reset_free/events", lambda m: events.append(json.loads(m.data)), 100
        )
        peer.create_subscription(JointState, "policy/action", seen.append, 50)
        pose_pub = peer.create_publisher(PoseStamped, "arm/ee_pose", 10)
        verdict_pub = peer.create_publisher(DiagnosticArray, "reward/verdict", 10)
        action_pub = peer.create_publisher(JointState, "policy/action", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(ctrl)
        executor.add_node(peer)
        arm = {"pos": [0.6, 0.1, 0.05], "applied": 0}

        def pump() -> None:
            phase = phases[-1] if phases else "paused"
            # the arm follows the new homing commands (3 cm per unit, like the gate)
            for msg in seen[arm["applied"] :]:
                if msg.header.frame_id == "homing":
                    arm["pos"] = [p + 0.03 * a for p, a in zip(arm["pos"], msg.position[:3], strict=True)]
            arm["applied"] = len(seen)
            pose = PoseStamped()
            pose.header.stamp = peer.get_clock().now().to_msg()
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = arm["pos"]
            pose.pose.orientation.w = 1.0
            pose_pub.publish(pose)
            task = phase if phase in ("forward", "backward") else None
            if task:
                action_pub.publish(JointState())
            verdict_pub.publish(
                verdict_msg(peer, "failure" if task else "unknown", task, reason="" if task else "no_task")
            )

        try:
            assert spin_until(executor, lambda: "homing" in phases, 5, pump)
            assert spin_until(executor, lambda: bool(phases) and phases[-1] == "forward", 20, pump)
            assert spin_until(executor, lambda: any(e["kind"] == "homed" for e in events), 15, pump)
            homed = [e for e in events if e["kind"] == "homed"]
            assert homed[0]["outcome"] == "home", homed
            homing = [m for m in seen if m.header.frame_id == "homing"]
            assert homing, "no homing command on policy/action"
            first = list(homing[0].position)
            assert first[2] > 0 and first[0] == first[1] == 0.0 and first[4] == -1.0  # lift, gripper open
            assert abs(arm["pos"][2] - home[2]) < 0.02
        finally:
            ctrl.destroy_node()
            peer.destroy_node()


def test_homing_outside_the_safety_box_is_refused() -> None:
    with ros_context() as context, pytest.raises(ValueError, match="outside the safety workspace box"):
        ResetFreeControllerNode(
            context=context,
            parameter_overrides=[
                Parameter("homing", value=True),
                Parameter("home_xyz", value=[0.0, 0.0, 1.0]),
            ],
        )
