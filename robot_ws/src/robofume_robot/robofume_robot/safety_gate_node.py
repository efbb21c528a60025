"""ROS 2 node around :class:`robofume_robot.safety_gate.SafetyGate`: the only path from any action
source to the arm.

Topics (relative names):
  sub ``policy/action``   sensor_msgs/JointState   normalized dx, dy, dz, dyaw, gripper; stamp = source frame
  sub ``arm/ee_pose``     geometry_msgs/PoseStamped  current end effector (from the arm)
  sub ``safety/estop``    std_msgs/Bool            ``true`` engages the e-stop (``false`` never releases it)
  pub ``arm/command``     sensor_msgs/JointState   gated absolute target x, y, z, yaw, gripper
  pub ``/diagnostics``    diagnostic_msgs/DiagnosticArray  state, counters, limits
Services: ``safety/estop`` (std_srvs/Trigger) engages; ``safety/release`` (std_srvs/Trigger) is the
operator release, the only way out of the e-stop.

Parameters: ``limits_file`` (required YAML, see config/safety_limits_mock.yaml), ``latch_file``
(keeps the e-stop latched across gate restarts), ``control_hz`` (watchdog tick rate).

Run: ``python -m robofume_robot.safety_gate_node --ros-args -p limits_file:=config/safety_limits_mock.yaml``
"""

from __future__ import annotations

import math
import os
import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from robofume_robot.arm_messages import parse_action, target_msg
from robofume_robot.config_paths import resolve_config_path
from robofume_robot.node_main import run_node
from robofume_robot.realtime import REALTIME_PARAM
from robofume_robot.safety_gate import DELTA_FROM, GateState, SafetyGate, load_limits


def yaw_from_quaternion(w: float, x: float, y: float, z: float) -> float:
    """Yaw about world z of a downward-pointing gripper (matches the mock arm's ``ee_yaw``)."""
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + w * z)
    return math.atan2(r10, r00)


class SafetyGateNode(Node):
    """Validates, clips and forwards commands; holds on silence; latches the e-stop."""

    def __init__(self, **kwargs) -> None:
        super().__init__("safety_gate", **kwargs)
        self.declare_parameter("limits_file", "")
        self.declare_parameter("latch_file", "")
        self.declare_parameter("control_hz", 10.0)
        self.declare_parameter("diagnostics_hz", 2.0)
        self.declare_parameter("delta_from", "target")
        self.declare_parameter(REALTIME_PARAM, 0)  # on the control path: SCHED_FIFO when > 0
        limits_file = str(self.get_parameter("limits_file").value)
        if not limits_file:
            raise ValueError(
                "safety_gate: parameter 'limits_file' is required (a YAML file of safety limits)"
            )
        latch = os.path.expanduser(str(self.get_parameter("latch_file").value)) or None
        delta_from = str(self.get_parameter("delta_from").value)
        if delta_from not in DELTA_FROM:
            raise ValueError(
                f"safety_gate: parameter 'delta_from' must be one of {' or '.join(DELTA_FROM)}, "
                f"got {delta_from!r}"
            )
        self.gate = SafetyGate(
            load_limits(resolve_config_path(limits_file)), latch_path=latch, delta_from=delta_from
        )
        self._ee: tuple[list[float], float] | None = None
        self.commands_without_arm_state = 0
        self.command_pub = self.create_publisher(JointState, "arm/command", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, "policy/action", self._on_action, 10)
        self.create_subscription(PoseStamped, "arm/ee_pose", self._on_pose, 10)
        self.create_subscription(Bool, "safety/estop", self._on_estop_topic, 10)
        self.create_service(Trigger, "safety/estop", self._on_estop_service)
        self.create_service(Trigger, "safety/release", self._on_release_service)
        self.create_timer(1.0 / float(self.get_parameter("control_hz").value), self._on_tick)
        self.create_timer(1.0 / float(self.get_parameter("diagnostics_hz").value), self._publish_diagnostics)
        if self.gate.state is GateState.ESTOP:
            self.get_logger().error("e-stop is latched from a previous run; call safety/release to clear it")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self._ee = ([p.x, p.y, p.z], yaw_from_quaternion(q.w, q.x, q.y, q.z))

    def _on_action(self, msg: JointState) -> None:
        if self._ee is None:
            self.commands_without_arm_state += 1
            self.get_logger().warning("no arm/ee_pose yet: command not forwarded", throttle_duration_sec=5)
            return
        values, frame_stamp = parse_action(msg)
        result = self.gate.submit(values, frame_stamp, self._now(), *self._ee)
        if result.target is not None:
            self.command_pub.publish(target_msg(result.target, self.get_clock().now().to_msg()))
        elif result.status != "blocked_estop":
            self.get_logger().warning(f"{result.status}: {result.reason}", throttle_duration_sec=2)

    def _on_tick(self) -> None:
        if self._ee is None:
            return
        hold = self.gate.tick(self._now(), *self._ee)
        if hold is not None:
            self.command_pub.publish(target_msg(hold, self.get_clock().now().to_msg()))

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self.gate.engage_estop("safety/estop topic")
            self.get_logger().error("E-STOP engaged (topic); release with the safety/release service")

    def _on_estop_service(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        self.gate.engage_estop("safety/estop service")
        self.get_logger().error("E-STOP engaged (service); release with the safety/release service")
        resp.success, resp.message = True, "e-stop engaged and latched"
        return resp

    def _on_release_service(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        was = self.gate.state
        self.gate.release_estop("operator via safety/release")
        resp.success = True
        resp.message = "e-stop released" if was is GateState.ESTOP else "e-stop was not engaged"
        self.get_logger().warning(resp.message)
        return resp

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus()
        status.name = f"{self.get_namespace().rstrip('/')}/safety_gate"
        status.hardware_id = "robofume_safety_gate"
        state = self.gate.state
        status.level = {GateState.OK: DiagnosticStatus.OK, GateState.HOLDING: DiagnosticStatus.WARN}.get(
            state, DiagnosticStatus.ERROR
        )
        status.message = state.value
        values = {
            **self.gate.diagnostics(),
            "commands_without_arm_state": str(self.commands_without_arm_state),
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.diag_pub.publish(array)


def main(args: list[str] | None = None) -> None:
    """Entry point: spin the node until interrupted."""
    sys.exit(run_node(SafetyGateNode, args))


if __name__ == "__main__":
    main()
