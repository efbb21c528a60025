"""ROS 2 node around :class:`reset_free.controller.ResetFreeController`.

Topics (relative names, so one namespace per robot):
  sub ``reward/verdict``     DiagnosticArray  the reward node's verdicts (status "reward")
  sub ``policy/action``      JointState       the policy server is alive while actions come
  sub ``safety/estop``       Bool             ``true`` latches the controller's e-stop too
  sub ``arm/ee_pose``        PoseStamped      the arm's pose, for homing
  pub ``policy/action``      JointState       homing commands (``header.frame_id`` "homing", stamped
                                              with the pose they were computed from): they pass the
                                              safety gate like the policy's actions
  pub ``reset_free/phase``   String           forward | backward | homing | paused | help_needed | estop
                                              (reliable, transient local: late joiners get it)
  pub ``reset_free/events``  String           one JSON object per event: episode_start,
                                              episode_end (outcome, reward, frame_stamp), phase, help,
                                              homed (outcome home | gave_up)
  pub ``reset_free/status``  DiagnosticArray  phase, reason, counters (also on ``/diagnostics``)
  pub ``safety/estop``       Bool             ``true`` when the controller's e-stop service is called
Services (std_srvs/Trigger): ``reset_free/pause``, ``reset_free/resume`` (also answers a help request),
``reset_free/estop``, ``reset_free/release`` (the controller's latch only; the safety gate is released with
its own ``safety/release``). The controller never calls the scene-reset service.

Run: ``python -m reset_free.controller_node --ros-args -p max_episode_steps:=100``
"""

from __future__ import annotations

import json
import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from reset_free.controller import ControllerConfig, ControllerEvent, Phase, ResetFreeController, Verdict
from reset_free.homing import HOMING_FRAME_ID, HomingConfig
from robofume_robot.arm_messages import action_msg
from robofume_robot.config_paths import resolve_config_path
from robofume_robot.node_main import run_node
from robofume_robot.safety_gate import load_limits
from robofume_robot.safety_gate_node import yaw_from_quaternion

PHASE_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
"""``reset_free/phase`` QoS: a node that starts late still learns the current phase."""

_LEVELS = {
    Phase.FORWARD: DiagnosticStatus.OK,
    Phase.BACKWARD: DiagnosticStatus.OK,
    Phase.HOMING: DiagnosticStatus.OK,
    Phase.PAUSED: DiagnosticStatus.WARN,
    Phase.HELP_NEEDED: DiagnosticStatus.ERROR,
    Phase.ESTOP: DiagnosticStatus.ERROR,
}


def _stamp_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def verdict_from_msg(msg: DiagnosticArray) -> Verdict | None:
    """Parse the reward node's ``reward/verdict`` message; ``None`` if it holds no ``reward`` status."""
    for status in msg.status:
        if status.name != "reward":
            continue
        values = {kv.key: kv.value for kv in status.values}
        verdict = status.message if status.message in ("success", "failure", "unknown") else "unknown"
        try:
            probability = float(values.get("probability", "nan"))
        except ValueError:
            probability = math.nan
        task = values.get("task") or None
        return Verdict(
            status=verdict,
            task=task,
            confirmed=values.get("confirmed", "false").lower() == "true",
            frame_stamp=_stamp_sec(msg.header.stamp),
            probability=probability,
            reason=values.get("reason", ""),
        )
    return None


class ResetFreeControllerNode(Node):
    """Ticks the controller at the control rate and publishes its phase, events and status."""

    def __init__(self, **kwargs) -> None:
        super().__init__("reset_free_controller", **kwargs)
        defaults = ControllerConfig()
        for name in (
            "control_hz",
            "max_episode_steps",
            "start_task",
            "stuck_after",
            "action_timeout_s",
            "verdict_timeout_s",
            "startup_grace_s",
            "retry_after_s",
            "already_done_steps",
        ):
            self.declare_parameter(name, getattr(defaults, name))
        self.declare_parameter("status_hz", 2.0)
        self.declare_parameter("homing", False)
        self.declare_parameter("home_xyz", [0.0, 0.0, 0.0])
        self.declare_parameter("home_yaw", 0.0)
        self.declare_parameter("homing_max_steps", 40)
        self.declare_parameter("limits_file", "safety_limits_mock.yaml")
        config = ControllerConfig(
            control_hz=float(self.get_parameter("control_hz").value),
            max_episode_steps=int(self.get_parameter("max_episode_steps").value),
            start_task=str(self.get_parameter("start_task").value),
            stuck_after=int(self.get_parameter("stuck_after").value),
            action_timeout_s=float(self.get_parameter("action_timeout_s").value),
            verdict_timeout_s=float(self.get_parameter("verdict_timeout_s").value),
            startup_grace_s=float(self.get_parameter("startup_grace_s").value),
            retry_after_s=float(self.get_parameter("retry_after_s").value),
            already_done_steps=int(self.get_parameter("already_done_steps").value),
            homing=self._homing_config(),
        )
        status_hz = float(self.get_parameter("status_hz").value)
        if not status_hz > 0:
            raise ValueError(f"reset_free_controller: status_hz must be > 0, got {status_hz}")
        self.controller = ResetFreeController(config, start_time=self._now())
        self.phase_pub = self.create_publisher(String, "reset_free/phase", PHASE_QOS)
        self.events_pub = self.create_publisher(String, "reset_free/events", 100)
        self.status_pub = self.create_publisher(DiagnosticArray, "reset_free/status", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.estop_pub = self.create_publisher(Bool, "safety/estop", 10)
        self.create_subscription(DiagnosticArray, "reward/verdict", self._on_verdict, 10)
        self.create_subscription(JointState, "policy/action", self._on_action, 10)
        self.create_subscription(Bool, "safety/estop", self._on_estop_topic, 10)
        self.create_subscription(PoseStamped, "arm/ee_pose", self._on_pose, 10)
        self.action_pub = self.create_publisher(JointState, "policy/action", 10)
        self._pose_stamp = None
        self.create_service(Trigger, "reset_free/pause", self._srv(self.controller.pause, "paused"))
        self.create_service(Trigger, "reset_free/resume", self._srv(self.controller.resume, "resumed"))
        self.create_service(Trigger, "reset_free/estop", self._srv(self._engage_estop, "e-stop engaged"))
        self.create_service(Trigger, "reset_free/release", self._srv(self.controller.release, "released"))
        self._publish_phase()
        self.create_timer(1.0 / config.control_hz, self._tick)
        self.create_timer(1.0 / status_hz, self._publish_status)

    def _homing_config(self) -> HomingConfig | None:
        """Homing settings from the parameters (None with ``homing`` false); scales from the limits file."""
        if not bool(self.get_parameter("homing").value):
            return None
        limits_file = str(self.get_parameter("limits_file").value)
        if not limits_file:
            raise ValueError(
                "reset_free_controller: homing needs 'limits_file' (the safety gate's limits YAML)"
            )
        limits = load_limits(resolve_config_path(limits_file))
        home = [float(v) for v in self.get_parameter("home_xyz").value]
        if len(home) != 3:
            raise ValueError(f"reset_free_controller: home_xyz must be [x, y, z], got {home}")
        if not limits.contains(home):
            raise ValueError(f"reset_free_controller: home_xyz {home} is outside the safety workspace box")
        return HomingConfig(
            home_xyz=(home[0], home[1], home[2]),
            home_yaw=float(self.get_parameter("home_yaw").value),
            pos_scale=limits.pos_scale,
            yaw_scale=limits.yaw_scale,
            max_steps=int(self.get_parameter("homing_max_steps").value),
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _srv(self, action, message: str):
        def handler(_request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            action()
            response.success, response.message = True, message
            self.get_logger().info(f"operator: {message}")
            return response

        return handler

    def _engage_estop(self) -> None:
        self.controller.estop()
        self.estop_pub.publish(Bool(data=True))

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self.controller.estop()

    def _on_action(self, msg: JointState) -> None:
        if msg.header.frame_id != HOMING_FRAME_ID:  # our own homing commands do not show the policy alive
            self.controller.on_action(self._now())

    def _on_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self._pose_stamp = msg.header.stamp
        self.controller.on_pose([p.x, p.y, p.z], yaw_from_quaternion(q.w, q.x, q.y, q.z), self._now())

    def _on_verdict(self, msg: DiagnosticArray) -> None:
        verdict = verdict_from_msg(msg)
        if verdict is not None:
            self.controller.on_verdict(verdict, self._now())

    def _tick(self) -> None:
        before = self.controller.phase
        events = self.controller.tick(self._now())
        action = self.controller.homing_action
        if action is not None and self._pose_stamp is not None:
            self.action_pub.publish(action_msg(action.tolist(), self._pose_stamp, frame_id=HOMING_FRAME_ID))
        for event in events:
            if event.kind != "step":
                self._publish_event(event)
        if self.controller.phase != before:
            self._publish_phase()
            reason = self.controller.pause_reason
            text = f"phase {self.controller.phase.value}" + (f": {reason}" if reason else "")
            if self.controller.phase.active:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)

    def _publish_phase(self) -> None:
        self.phase_pub.publish(String(data=self.controller.phase.value))

    def _publish_event(self, event: ControllerEvent) -> None:
        self.events_pub.publish(String(data=json.dumps(event.to_dict(), sort_keys=True)))
        if event.kind == "help":
            self.get_logger().error(f"help needed: {event.reason}")

    def _publish_status(self) -> None:
        status = self.controller.status()
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        entry = DiagnosticStatus(
            level=_LEVELS[self.controller.phase],
            name=f"{self.get_namespace().rstrip('/')}/reset_free".lstrip("/") or "reset_free",
            message=status["phase"] + (f": {status['reason']}" if status["reason"] else ""),
            hardware_id="reset_free_controller",
        )
        for key, value in status.items():
            text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
            entry.values.append(KeyValue(key=key, value=text))
        msg.status.append(entry)
        self.status_pub.publish(msg)
        self.diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point: ``python -m reset_free.controller_node``."""
    return run_node(ResetFreeControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
