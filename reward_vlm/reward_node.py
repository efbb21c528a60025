"""ROS 2 node around :class:`reward_vlm.reward_core.RewardJudge`: the success classifier as the reward.

Topics (relative names):
  sub ``camera/color/image_raw``  sensor_msgs/Image rgb8/bgr8, sensor QoS; only the newest frame is kept
  sub ``reset_free/phase``        std_msgs/String "forward" | "backward"; anything else = no task.
                                  Reliable + transient local (a late joiner gets the current phase): the
                                  publisher must be transient local too (``phase_transient_local:=false``
                                  subscribes volatile, for volatile publishers)
  pub ``reward/success_prob``     std_msgs/Float32 success probability; NaN when unknown
  pub ``reward/verdict``          diagnostic_msgs/DiagnosticArray, one status "reward": header.stamp = the
                                  judged frame's stamp (zero for a frame-less verdict), level OK for
                                  success/failure and STALE for unknown, message = status; values task,
                                  probability, threshold, confirmed, frame_age_ms, latency_ms,
                                  dropped_frames, reason, ...
  pub ``reward/success``          std_msgs/Header once per confirmed success: stamp = judged frame's
                                  stamp, frame_id = task

Frames are judged on a worker thread, so classification never blocks frame reception; a new frame
replaces an unjudged one. Stale, missing or undecodable input, no task, or a failing classifier give
"unknown", never "success"; while no frames arrive an "unknown" verdict is published ``heartbeat_hz``
times a second.

Simulation only: with ``source:=ground_truth`` the node judges from the mock arm's ``sim/ground_truth``
(std_msgs/String JSON) instead of a classifier (:mod:`reward_vlm.ground_truth_reward`; every other rule
is the same), which separates classifier errors from RL problems on the mock.

Parameters: ``source`` ("classifier" or "ground_truth"), ``classifier_path`` (required with the
classifier: folder from ``robofume reward train``), ``max_frame_age_s``
(0.5), ``confirm_frames`` (3; 0 = the checkpoint's), ``rate_hz`` (15, most judgements a second, 0 = no
cap), ``heartbeat_hz`` (2), ``cpu_threads`` (1), ``device`` ("cpu"), ``phase_transient_local`` (true).

Tests and simulation only: with ``classifier_path`` empty, ``ROBOFUME_REWARD_TEST_CLASSIFIER=module:factory``
(+ JSON keyword arguments in ``ROBOFUME_REWARD_TEST_CLASSIFIER_KWARGS``) supplies the classifier, e.g.
``reward_vlm.stand_in:make_stand_in``.

Run: ``python -m reward_vlm.reward_node --ros-args -p classifier_path:=runs/classifier``
"""

from __future__ import annotations

import math
import sys
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String

from reward_vlm.ground_truth_reward import GroundTruthSuccess
from reward_vlm.reward_core import (
    REWARD_SOURCES,
    ClassifierLike,
    RewardConfigError,
    RewardJudge,
    RewardNodeConfig,
    Verdict,
    load_classifier,
)
from robofume.sim.tasks import TASK_NAMES
from robofume_robot.node_main import run_node
from robofume_robot.ros_image import from_image_msg, sec_to_stamp, stamp_to_sec

_DEFAULTS = RewardNodeConfig()
_PARAMS: dict[str, tuple[type, Any]] = {
    "source": (str, "classifier"),
    "classifier_path": (str, _DEFAULTS.classifier_path),
    "max_frame_age_s": (float, _DEFAULTS.max_frame_age_s),
    "confirm_frames": (int, _DEFAULTS.confirm_frames),
    "rate_hz": (float, _DEFAULTS.rate_hz),
    "heartbeat_hz": (float, _DEFAULTS.heartbeat_hz),
    "cpu_threads": (int, _DEFAULTS.cpu_threads),
    "device": (str, _DEFAULTS.device),
    "phase_transient_local": (bool, True),
}


def _convert(name: str, kind: type, value: Any) -> Any:
    """``value`` as ``kind`` (ints accepted for floats); :class:`RewardConfigError` otherwise."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RewardConfigError(f"reward: parameter {name!r} must be a {kind.__name__}, got {value!r}")
    return value


def phase_qos(transient_local: bool) -> QoSProfile:
    """QoS of ``reset_free/phase``: reliable, depth 1, transient local (or volatile)."""
    durability = DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=durability)


class RewardNode(Node):
    """Publishes success probability, verdicts and confirmed success events for the current task."""

    def __init__(self, classifier: ClassifierLike | None = None, **kwargs: Any) -> None:
        """``classifier`` overrides loading one from ``classifier_path`` (in-process tests)."""
        super().__init__("reward", **kwargs)
        values = {}
        for name, (kind, default) in _PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True))
            values[name] = _convert(name, kind, self.get_parameter(name).value)
        transient_local = values.pop("phase_transient_local")
        source = values.pop("source")
        self.truth: GroundTruthSuccess | None = None
        try:
            if source not in REWARD_SOURCES:
                raise RewardConfigError(
                    f"parameter 'source' must be one of {', '.join(REWARD_SOURCES)}, got {source!r}"
                )
            self.config = RewardNodeConfig(**values).validate()
            if classifier is None and source == "ground_truth":
                classifier = self.truth = GroundTruthSuccess(max_age_s=self.config.max_frame_age_s)
            elif classifier is None:
                classifier = load_classifier(self.config)
            self.judge = RewardJudge(classifier, self.config, clock=self._now)
        except RewardConfigError as exc:
            raise RewardConfigError(f"reward: {exc}") from None
        self.frames_rejected = 0
        self.prob_pub = self.create_publisher(Float32, "reward/success_prob", 10)
        self.verdict_pub = self.create_publisher(DiagnosticArray, "reward/verdict", 10)
        self.success_pub = self.create_publisher(Header, "reward/success", 10)
        self.create_subscription(Image, "camera/color/image_raw", self._on_frame, qos_profile_sensor_data)
        self.create_subscription(String, "reset_free/phase", self._on_phase, phase_qos(transient_local))
        if self.truth is not None:
            self.create_subscription(String, "sim/ground_truth", self._on_truth, 10)
        self.judge.on_callback_error = lambda exc: self.get_logger().error(
            f"publishing a verdict failed: {exc}", throttle_duration_sec=5
        )
        self._last_reason = ""
        self.judge.start(self._publish)
        self.get_logger().info(
            f"judging tasks {', '.join(classifier.tasks)} from {source.replace('_', ' ')}; "
            f"k={self.judge.confirm_frames}, "
            f"max frame age {self.config.max_frame_age_s} s"
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_phase(self, msg: String) -> None:
        task = msg.data if msg.data in TASK_NAMES else None
        if self.judge.set_task(task):
            self.get_logger().info(f"phase {msg.data!r}: {'judging ' + task if task else 'no task'}")

    def _on_truth(self, msg: String) -> None:
        assert self.truth is not None
        try:
            self.truth.update(msg.data)
        except ValueError as exc:
            self.get_logger().warning(f"sim/ground_truth ignored: {exc}", throttle_duration_sec=5)

    def _on_frame(self, msg: Image) -> None:
        try:
            image = from_image_msg(msg)
        except ValueError as exc:
            self.frames_rejected += 1
            self.get_logger().warning(f"frame rejected: {exc}", throttle_duration_sec=5)
            return
        self.judge.submit(image, stamp_to_sec(msg.header.stamp))

    def _publish(self, verdict: Verdict) -> None:
        """Publish one verdict (called on the judge's worker thread)."""
        if verdict.reason != self._last_reason:
            if verdict.reason:
                self.get_logger().warning(f"reward unknown: {verdict.reason}")
            elif self._last_reason:
                self.get_logger().info("reward verdicts resumed")
            self._last_reason = verdict.reason
        stamp = sec_to_stamp(verdict.frame_stamp) if verdict.frame_stamp is not None else Time()
        self.prob_pub.publish(Float32(data=float(verdict.probability)))
        self.verdict_pub.publish(self._verdict_msg(verdict, stamp))
        if verdict.event and verdict.task is not None:
            self.success_pub.publish(Header(stamp=stamp, frame_id=verdict.task))

    def _verdict_msg(self, verdict: Verdict, stamp: Time) -> DiagnosticArray:
        stats = self.judge.stats()

        def num(v: float, scale: float = 1.0) -> str:
            return f"{v * scale:.3f}" if math.isfinite(v) else "nan"

        status = DiagnosticStatus()
        status.name = "reward"
        status.hardware_id = "robofume_reward"
        status.level = DiagnosticStatus.STALE if verdict.status == "unknown" else DiagnosticStatus.OK
        status.message = verdict.status
        values = {
            "task": verdict.task or "",
            "probability": num(verdict.probability, 1.0),
            "threshold": num(verdict.threshold),
            "confirmed": str(verdict.confirmed).lower(),
            "event": str(verdict.event).lower(),
            "frame_age_ms": num(verdict.frame_age_s, 1e3),
            "latency_ms": num(verdict.latency_s, 1e3),
            "dropped_frames": str(stats.dropped_frames),
            "reason": verdict.reason,
            "frame_stamp": f"{verdict.frame_stamp:.9f}" if verdict.frame_stamp is not None else "none",
            "frames_received": str(stats.frames_received),
            "frames_judged": str(stats.frames_judged),
            "frames_rejected": str(self.frames_rejected),
            "classifier_errors": str(stats.classifier_errors),
            "success_events": str(stats.success_events),
            "last_error": stats.last_error,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = stamp
        array.status = [status]
        return array

    def destroy_node(self) -> None:
        """Stop the judge's worker, then the node."""
        judge = getattr(self, "judge", None)  # absent when __init__ failed
        if judge is not None:
            judge.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point: spin the reward node until interrupted."""
    sys.exit(run_node(RewardNode, args))


if __name__ == "__main__":
    main()
