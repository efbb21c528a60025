"""ROS 2 adapter that feeds a :class:`robofume.session.session_log.SessionLog` from the session's topics.

Subscribes (relative names): ``reset_free/events``, ``reset_free/phase``, ``reset_free/status``,
``reward/verdict``, ``reward/success``, ``policy/action``, ``sim/ground_truth`` (mock only) and
``/diagnostics`` (policy server weight version, recorder counters). Publishes nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Header, String

from reset_free.controller_node import PHASE_QOS, verdict_from_msg
from reset_free.homing import HOMING_FRAME_ID
from robofume.session.session_log import SessionLog
from robofume_robot.ros_image import stamp_to_sec


class SessionMonitorNode(Node):
    """Listens to everything a session report needs; keeps the latest status for the console."""

    def __init__(self, log: SessionLog, **kwargs: Any) -> None:
        super().__init__("session_monitor", **kwargs)
        self.log = log
        self.status: dict[str, str] = {}
        self.served_version: int | None = None
        self.policy_status = ""
        self.create_subscription(String, "reset_free/events", self._on_event, 100)
        self.create_subscription(String, "reset_free/phase", self._on_phase, PHASE_QOS)
        self.create_subscription(DiagnosticArray, "reset_free/status", self._on_status, 10)
        self.create_subscription(DiagnosticArray, "reward/verdict", self._on_verdict, 10)
        self.create_subscription(Header, "reward/success", self._on_success, 10)
        self.create_subscription(JointState, "policy/action", self._on_action, 50)
        self.create_subscription(String, "sim/ground_truth", self._on_truth, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._last_phase = ""

    def now(self) -> float:
        """Node clock in seconds."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_event(self, msg: String) -> None:
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            self.log.on_event(json.loads(msg.data), self.now())

    def _on_phase(self, msg: String) -> None:
        self._last_phase = msg.data  # the log takes phases (with their reasons) from reset_free/events

    def _on_status(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.status = {kv.key: kv.value for kv in status.values}

    def _on_verdict(self, msg: DiagnosticArray) -> None:
        verdict = verdict_from_msg(msg)
        if (
            verdict is not None
            and verdict.status != "unknown"
            and verdict.task
            and math.isfinite(verdict.probability)
        ):
            self.log.on_probability(verdict.task, verdict.probability, self.now())
            values = {kv.key: kv.value for status in msg.status for kv in status.values}
            with contextlib.suppress(KeyError, ValueError):
                self.log.on_reward_latency(float(values["latency_ms"]), self.now())

    def _on_success(self, msg: Header) -> None:
        self.log.on_success_event(msg.frame_id, self.now())

    def _on_action(self, msg: JointState) -> None:
        if msg.header.frame_id != HOMING_FRAME_ID:  # the control loop is the policy's, not homing
            self.log.on_action(self.now(), stamp_to_sec(msg.header.stamp))

    def _on_truth(self, msg: String) -> None:
        with contextlib.suppress(json.JSONDecodeError):
            self.log.on_ground_truth(json.loads(msg.data))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith("policy_server"):
                self.policy_status = status.message
                try:
                    self.served_version = int(values.get("weight_version", ""))
                except ValueError:
                    self.served_version = None
                with contextlib.suppress(KeyError, ValueError):
                    self.log.on_latency(
                        "policy", float(values["p50_ms"]), float(values["p99_ms"]), self.now()
                    )
            elif status.name.endswith("recorder") and "committed" in values:
                with contextlib.suppress(ValueError):
                    self.log.on_transitions(int(values["committed"]), self.now())
