"""ROS 2 node around :class:`policy_server.policy_core.PolicyServerCore`: one policy for several arms.

Per robot namespace ``ns`` in the ``robots`` parameter ("" = the node's own namespace):
  sub ``{ns}/camera/color/image_raw``  sensor_msgs/Image (rgb8/bgr8), sensor QoS: each frame is a request
  sub ``{ns}/arm/ee_pose``             geometry_msgs/PoseStamped: position, yaw, velocity
  sub ``{ns}/arm/joint_states``        sensor_msgs/JointState: the ``gripper`` closure 0..1
  sub ``{ns}/reset_free/phase``        std_msgs/String: "forward"/"backward"; others idle
  pub ``{ns}/policy/action``           sensor_msgs/JointState dx..gripper; stamp = frame's
  pub ``/diagnostics``                 diagnostic_msgs/DiagnosticArray: weight version, latency, counters

Frames from all robots that arrive within ``max_batch_wait_ms`` of the first one go through the
network in one batch (at once when every robot has a frame pending; a newer frame of the same robot
replaces its pending one). New weights are picked up by a watcher thread every ``watch_interval_s``;
each version's network is built from the config saved with it (``PolicyServerCore``), so the
architecture may change between versions.

Parameters: ``weights_dir`` (required), ``robots``, ``max_batch_wait_ms``, ``watch_interval_s``,
``image_size`` (frames of another size are rejected and counted; 0 accepts any), ``device``,
``allow_untrained``, ``diagnostics_hz``, ``explore_std_scale`` (0: mean actions; > 0: sampled
actions with the policy's spread times this, as online fine-tuning needs).

Run (two robots): ``python -m policy_server.policy_server_node --ros-args``
``-p weights_dir:=runs/x/weights -p robots:="['r1','r2']"``
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from policy_server.policy_core import ModelFactory, NoWeightsError, PolicyRequest, PolicyServerCore
from policy_server.weights import WeightStore
from robofume.sim.tasks import TASK_NAMES, task_id
from robofume_robot.arm_messages import action_msg
from robofume_robot.node_main import run_node
from robofume_robot.realtime import REALTIME_PARAM
from robofume_robot.ros_image import from_image_msg, stamp_to_sec
from robofume_robot.safety_gate_node import yaw_from_quaternion

PROPRIO_DIM = 9


@dataclass(frozen=True)
class PoseSample:
    """End-effector pose at time ``t`` (s): position (m) and yaw (rad)."""

    t: float
    xyz: tuple[float, float, float]
    yaw: float


def pose_sample(msg: PoseStamped, fallback_t: float) -> PoseSample:
    """A ``PoseSample`` of a PoseStamped (``fallback_t`` when the message is unstamped)."""
    p, q = msg.pose.position, msg.pose.orientation
    t = stamp_to_sec(msg.header.stamp) or fallback_t
    return PoseSample(t, (p.x, p.y, p.z), yaw_from_quaternion(q.w, q.x, q.y, q.z))


def proprio_from(pose: PoseSample, gripper_closure: float, previous: PoseSample | None) -> np.ndarray:
    """The 9-vector [x, y, z, sin(yaw), cos(yaw), gripper, vx, vy, vz] of the mock arm env
    (``robofume.sim.PROPRIO_NAMES``); velocity from ``previous`` (zero without one or if not older)."""
    vel = (0.0, 0.0, 0.0)
    if previous is not None and pose.t > previous.t:
        dt = pose.t - previous.t
        vel = tuple((a - b) / dt for a, b in zip(pose.xyz, previous.xyz, strict=True))
    return np.array(
        [*pose.xyz, math.sin(pose.yaw), math.cos(pose.yaw), gripper_closure, *vel], dtype=np.float32
    )


def gripper_from(msg: JointState) -> float | None:
    """The ``gripper`` joint's position in a JointState, or ``None`` when it has none."""
    if "gripper" in msg.name:
        i = list(msg.name).index("gripper")
        if i < len(msg.position):
            return float(msg.position[i])
    return None


def _topic(ns: str, name: str) -> str:
    ns = ns.rstrip("/")
    return f"{ns}/{name}" if ns else name


@dataclass
class _RobotState:
    pose: PoseSample | None = None
    previous_pose: PoseSample | None = None
    gripper: float | None = None
    task: int | None = None


class PolicyServerNode(Node):
    """Batches camera frames of several robots through one policy and publishes their actions.

    Without an injected ``model_factory``, each weight version's network is built by
    ``policy_server.networks.build_policy_from_config`` from the config saved with that version, so
    a version with another architecture is built fresh and hot-swapped like any other.
    """

    def __init__(self, model_factory: ModelFactory | None = None, **kwargs) -> None:
        """``model_factory`` overrides the per-version networks with one architecture (tests inject a
        tiny stand-in)."""
        super().__init__("policy_server", **kwargs)
        self.declare_parameter("weights_dir", "")
        self.declare_parameter("robots", [""])
        self.declare_parameter("max_batch_wait_ms", 2.0)
        self.declare_parameter("watch_interval_s", 1.0)
        self.declare_parameter("image_size", 128)
        self.declare_parameter("device", "auto")
        self.declare_parameter("allow_untrained", False)
        self.declare_parameter("diagnostics_hz", 1.0)
        self.declare_parameter("explore_std_scale", 0.0)
        self.declare_parameter(REALTIME_PARAM, 0)  # on the control path: SCHED_FIFO when > 0
        weights_dir = str(self.get_parameter("weights_dir").value)
        if not weights_dir:
            raise ValueError(
                "policy_server: parameter 'weights_dir' is required (the learner's weight folder)"
            )
        robots = [str(r) for r in self.get_parameter("robots").value]
        if len(set(robots)) != len(robots) or not robots:
            raise ValueError(f"policy_server: 'robots' must be distinct namespaces, got {robots}")
        self.max_batch_wait_s = float(self.get_parameter("max_batch_wait_ms").value) / 1e3
        if not 0 <= self.max_batch_wait_s <= 1:
            raise ValueError(
                f"policy_server: max_batch_wait_ms must be in [0, 1000], got {self.max_batch_wait_s * 1e3}"
            )
        self.image_size = int(self.get_parameter("image_size").value)
        store = WeightStore(weights_dir)
        self.core = PolicyServerCore(
            model_factory,
            store,
            device=str(self.get_parameter("device").value),
            allow_untrained=bool(self.get_parameter("allow_untrained").value),
            image_shape=(self.image_size, self.image_size, 3) if self.image_size else None,
            proprio_dim=PROPRIO_DIM,
            explore_std_scale=float(self.get_parameter("explore_std_scale").value),
        )
        self.robots = robots
        self._state = {r: _RobotState() for r in robots}
        self._pending: dict[str, tuple[PolicyRequest, Time]] = {}
        # One-shot batch deadline: reset when a batch opens, cancelled when it is flushed.
        self._batch_timer = self.create_timer(max(self.max_batch_wait_s, 1e-4), self._flush)
        self._batch_timer.cancel()
        self.frames_rejected = 0
        self.frames_idle = 0
        self.frames_without_arm_state = 0
        self.frames_superseded = 0
        self.no_weights = 0
        self.inference_errors = 0
        self.actions_published = 0
        self.action_pubs = {
            r: self.create_publisher(JointState, _topic(r, "policy/action"), 10) for r in robots
        }
        for r in robots:
            frames = _topic(r, "camera/color/image_raw")
            self.create_subscription(
                Image, frames, lambda m, r=r: self._on_frame(r, m), qos_profile_sensor_data
            )
            self.create_subscription(
                PoseStamped, _topic(r, "arm/ee_pose"), lambda m, r=r: self._on_pose(r, m), 10
            )
            self.create_subscription(
                JointState, _topic(r, "arm/joint_states"), lambda m, r=r: self._on_joints(r, m), 10
            )
            self.create_subscription(
                String, _topic(r, "reset_free/phase"), lambda m, r=r: self._on_phase(r, m), 10
            )
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / float(self.get_parameter("diagnostics_hz").value), self._publish_diagnostics)
        self.core.start_watcher(float(self.get_parameter("watch_interval_s").value))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- robot state ---------------------------------------------------------------------------

    def _on_pose(self, robot: str, msg: PoseStamped) -> None:
        state = self._state[robot]
        state.previous_pose, state.pose = state.pose, pose_sample(msg, self._now())

    def _on_joints(self, robot: str, msg: JointState) -> None:
        gripper = gripper_from(msg)
        if gripper is not None:
            self._state[robot].gripper = gripper

    def _on_phase(self, robot: str, msg: String) -> None:
        self._state[robot].task = task_id(msg.data) if msg.data in TASK_NAMES else None

    # --- frames and batches --------------------------------------------------------------------

    def _on_frame(self, robot: str, msg: Image) -> None:
        state = self._state[robot]
        if state.task is None:
            self.frames_idle += 1
            return
        if state.pose is None or state.gripper is None:
            self.frames_without_arm_state += 1
            self.get_logger().warning(
                f"{robot or '/'}: no arm/ee_pose or gripper joint state yet; frame skipped",
                throttle_duration_sec=5,
            )
            return
        try:
            image = from_image_msg(msg)
        except ValueError as exc:
            self._reject(robot, str(exc))
            return
        if self.image_size and image.shape[:2] != (self.image_size, self.image_size):
            self._reject(robot, f"frame is {image.shape[1]}x{image.shape[0]}, expected {self.image_size}")
            return
        request = PolicyRequest(
            robot=robot,
            image=image,
            proprio=proprio_from(state.pose, state.gripper, state.previous_pose),
            task=state.task,
            frame_stamp=stamp_to_sec(msg.header.stamp),
        )
        if robot in self._pending:
            self.frames_superseded += 1
        self._pending[robot] = (request, msg.header.stamp)
        if len(self._pending) == len(self.robots) or self.max_batch_wait_s <= 0:
            self._flush()
        elif len(self._pending) == 1:
            self._batch_timer.reset()

    def _reject(self, robot: str, reason: str) -> None:
        self.frames_rejected += 1
        self.get_logger().warning(f"{robot or '/'}: frame rejected: {reason}", throttle_duration_sec=5)

    def _flush(self) -> None:
        self._batch_timer.cancel()
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            responses = self.core.infer([req for req, _ in pending.values()])
        except NoWeightsError as exc:
            self.no_weights += len(pending)
            self.get_logger().warning(f"{exc}; not acting", throttle_duration_sec=10)
            return
        except Exception as exc:  # a model failure must not kill the node: log, count, skip the batch
            self.inference_errors += 1
            self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5)
            return
        for resp in responses:
            if resp.action is None:
                self._reject(resp.robot, resp.error or "invalid request")
                continue
            self.action_pubs[resp.robot].publish(action_msg(resp.action.tolist(), pending[resp.robot][1]))
            self.actions_published += 1

    # --- diagnostics ---------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        stats = self.core.stats()
        status = DiagnosticStatus()
        status.name = "policy_server"
        status.hardware_id = "robofume_policy_server"
        if not stats["serving"]:
            status.level, status.message = DiagnosticStatus.WARN, "no policy weights yet"
        elif stats["weight_version"] is None:
            status.level, status.message = DiagnosticStatus.WARN, "serving untrained weights"
        elif stats["bad_versions"]:
            status.level = DiagnosticStatus.WARN
            status.message = (
                f"serving v{stats['weight_version']}; skipped bad versions {stats['bad_versions']}"
            )
        else:
            status.level, status.message = DiagnosticStatus.OK, f"serving v{stats['weight_version']}"

        def ms(v: object) -> str:
            return f"{v:.2f}" if isinstance(v, float) else "n/a"

        values = {
            "weight_version": str(stats["weight_version"]),
            "p50_ms": ms(stats["p50_ms"]),
            "p99_ms": ms(stats["p99_ms"]),
            "requests_served": str(stats["requests_served"]),
            "rejected": str(self.frames_rejected),
            "frames_idle": str(self.frames_idle),
            "frames_without_arm_state": str(self.frames_without_arm_state),
            "frames_superseded": str(self.frames_superseded),
            "frames_without_weights": str(self.no_weights),
            "inference_errors": str(self.inference_errors),
            "batches": str(stats["batches"]),
            "config_changes": str(stats["config_changes"]),
            "bad_versions": ",".join(map(str, stats["bad_versions"])),
            "device": str(stats["device"]),
            "robots": ",".join(r or "/" for r in self.robots),
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.diag_pub.publish(array)

    def destroy_node(self) -> None:
        """Stop the weight watcher, then the node."""
        core = getattr(self, "core", None)  # absent when __init__ failed (the context still cleans up)
        if core is not None:
            core.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point: spin the node until interrupted."""
    sys.exit(run_node(PolicyServerNode, args))


if __name__ == "__main__":
    main()
