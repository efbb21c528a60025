"""ROS 2 node that writes the session's transitions into the learner's durable replay buffer.

It is the only writer of ``<run>/buffer`` while a session runs; the learner reads the same folder
(``ReplayBuffer.refresh``) in its own process. Chunks are committed at least once per
``flush_interval_s`` (temp file, fsync, rename), so a ``kill -9`` loses at most that much.

Topics (relative names):
  sub ``camera/color/image_raw``  Image (sensor QoS)   o_t, with the proprioception of that moment
  sub ``arm/ee_pose``             PoseStamped          proprioception (position, yaw, velocity)
  sub ``arm/joint_states``        JointState           gripper closure
  sub ``policy/action``           JointState           a_t, stamped with the frame it came from
  sub ``reset_free/events``       String (JSON)        episode starts and ends (success = reward 1)
  pub ``/diagnostics``            DiagnosticArray      transitions, episodes, committed, dropped

Run: ``python -m reset_free.recorder_node --ros-args -p buffer_dir:=runs/mock/buffer``
"""

from __future__ import annotations

import json
import os

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from policy_server.policy_server_node import PoseSample, gripper_from, pose_sample, proprio_from
from policy_server.replay_buffer import ReplayBuffer
from reset_free.homing import HOMING_FRAME_ID
from reset_free.transition_recorder import TransitionRecorder
from robofume_robot.arm_messages import parse_action
from robofume_robot.node_main import run_node
from robofume_robot.ros_image import from_image_msg, stamp_to_sec


class RecorderNode(Node):
    """Feeds a :class:`TransitionRecorder` from topics and writes to a :class:`ReplayBuffer`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("recorder", **kwargs)
        self.declare_parameter("buffer_dir", "")
        self.declare_parameter("flush_interval_s", 1.0)
        self.declare_parameter("history", 64)
        self.declare_parameter("diagnostics_hz", 1.0)
        root = os.path.expanduser(str(self.get_parameter("buffer_dir").value))
        if not root:
            raise ValueError("recorder: parameter 'buffer_dir' is required (the run's replay buffer folder)")
        flush = float(self.get_parameter("flush_interval_s").value)
        if not 0 < flush <= 1.0:
            raise ValueError(f"recorder: flush_interval_s must be in (0, 1] s, got {flush}")
        try:
            self.buffer = ReplayBuffer.open(root, flush_interval_s=flush)
        except RuntimeError as exc:  # another writer holds the buffer
            raise ValueError(f"recorder: {exc}") from None
        self.recorder = TransitionRecorder(self.buffer, history=int(self.get_parameter("history").value))
        self._pose: PoseSample | None = None
        self._previous_pose: PoseSample | None = None
        self._gripper: float | None = None
        self.frames_rejected = 0
        self.frames_without_arm_state = 0
        self._closed = False
        self.create_subscription(Image, "camera/color/image_raw", self._on_frame, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "arm/ee_pose", self._on_pose, 10)
        self.create_subscription(JointState, "arm/joint_states", self._on_joints, 10)
        self.create_subscription(JointState, "policy/action", self._on_action, 50)
        self.create_subscription(String, "reset_free/events", self._on_event, 100)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / float(self.get_parameter("diagnostics_hz").value), self._publish_status)
        self.create_timer(flush, self._flush)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, msg: PoseStamped) -> None:
        self._previous_pose, self._pose = self._pose, pose_sample(msg, self._now())

    def _on_joints(self, msg: JointState) -> None:
        gripper = gripper_from(msg)
        if gripper is not None:
            self._gripper = gripper

    def _on_frame(self, msg: Image) -> None:
        if self._pose is None or self._gripper is None:
            self.frames_without_arm_state += 1
            return
        expected = self.buffer.spec.frame_shape
        try:
            image = from_image_msg(msg)
        except ValueError as exc:
            self.frames_rejected += 1
            self.get_logger().warning(f"frame rejected: {exc}", throttle_duration_sec=5)
            return
        if image.shape != expected:
            self.frames_rejected += 1
            self.get_logger().warning(
                f"frame is {image.shape}, the buffer stores {expected}; not recorded", throttle_duration_sec=5
            )
            return
        proprio = proprio_from(self._pose, self._gripper, self._previous_pose)
        self.recorder.on_observation(stamp_to_sec(msg.header.stamp), image, proprio)

    def _on_action(self, msg: JointState) -> None:
        if msg.header.frame_id == HOMING_FRAME_ID:
            return  # the controller's homing between attempts is not part of any episode
        values, stamp = parse_action(msg)
        if values is None:
            return
        action = np.asarray(values, np.float32)
        if action.shape != (self.buffer.spec.action_dim,) or not np.isfinite(action).all():
            return
        self.recorder.on_action(stamp, action)

    def _on_event(self, msg: String) -> None:
        try:
            event = json.loads(msg.data)
        except json.JSONDecodeError:
            self.get_logger().warning("reset_free/events: not JSON; ignored", throttle_duration_sec=5)
            return
        try:
            if event.get("kind") == "episode_start":
                self.recorder.on_episode_start(str(event["task"]))
            elif event.get("kind") == "episode_end":
                self.recorder.on_episode_end(
                    str(event["task"]), str(event["outcome"]), event.get("frame_stamp")
                )
        except (KeyError, ValueError) as exc:
            self.get_logger().warning(
                f"reset_free/events: bad event {event!r}: {exc}", throttle_duration_sec=5
            )

    def _flush(self) -> None:
        self.buffer.flush()

    def _publish_status(self) -> None:
        stats = self.recorder.stats
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        values = {
            "transitions": stats.transitions,
            "episodes": stats.episodes,
            "successes": stats.successes,
            "already_done": stats.already_done,
            "timeouts": stats.timeouts,
            "committed": self.buffer.committed,
            "actions_without_frame": stats.actions_without_frame,
            "actions_out_of_episode": stats.actions_out_of_episode,
            "frames_rejected": self.frames_rejected,
            "frames_without_arm_state": self.frames_without_arm_state,
        }
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK, name="recorder", message="recording", hardware_id=self.buffer.root
        )
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg.status.append(status)
        self.diag_pub.publish(msg)

    def destroy_node(self) -> None:
        """Close the open episode (truncated) and commit everything before the node goes."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self.recorder.close()
            self.buffer.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point: ``python -m reset_free.recorder_node``."""
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
