"""Simulation-only action source: the scripted expert, driven over ROS 2 topics.

It reads the mock arm's ``sim/ground_truth`` (privileged state no real robot has), computes one
action per camera frame, stamps it with that frame's stamp and publishes it on ``policy/action``,
where the safety gate takes it like any policy's. It alternates forward and backward for
``cycles`` cycles, switching on ground-truth success (or a step limit), then stops sending.
Used to check the robot-side graph end to end before a learned policy exists.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from robofume.sim.mock_arm_env import MockArmConfig
from robofume.sim.scripted_expert import ScriptedExpert
from robofume.sim.tasks import other_task, task_name
from robofume_robot.arm_messages import action_msg
from robofume_robot.node_main import run_node


class GroundTruthView:
    """Presents the ground-truth message with the accessors :class:`ScriptedExpert` uses on an env."""

    def __init__(self, config: MockArmConfig) -> None:
        self.config = config
        self.task = "forward"
        self.truth: dict[str, Any] = {}

    def ee_pos(self) -> np.ndarray:
        """Gripper position."""
        return np.asarray(self.truth["ee_pos"])

    def ee_yaw(self) -> float:
        """Gripper yaw."""
        return float(self.truth["ee_yaw"])

    def object_pos(self) -> np.ndarray:
        """Object position."""
        return np.asarray(self.truth["object_pos"])

    def object_yaw(self) -> float:
        """Object yaw."""
        return float(self.truth["object_yaw"])

    def target_pos(self) -> np.ndarray:
        """Target (bin) position."""
        return np.asarray(self.truth["target_pos"])

    def start_pos(self) -> np.ndarray:
        """Start-region position."""
        return np.asarray(self.truth["start_pos"])

    def object_grasped(self) -> bool:
        """Whether the gripper touches the object."""
        return bool(self.truth["object_grasped"])


@dataclass
class EpisodeResult:
    """Outcome of one scripted episode."""

    task: str
    success: bool
    steps: int


class ScriptedPolicyNode(Node):
    """Publishes scripted-expert actions, one per camera frame, alternating tasks."""

    def __init__(self, **kwargs) -> None:
        super().__init__("scripted_policy", **kwargs)
        self.declare_parameter("cycles", 1)
        self.declare_parameter("max_steps", 150)
        self.declare_parameter("noise_std", 0.0)
        self.declare_parameter("seed", 0)
        self.declare_parameter("start_task", "forward")
        self.cycles = int(self.get_parameter("cycles").value)
        self.max_steps = int(self.get_parameter("max_steps").value)
        self.noise_std = float(self.get_parameter("noise_std").value)
        self.rng = np.random.default_rng(int(self.get_parameter("seed").value))
        self.view = GroundTruthView(MockArmConfig(image_size=0))
        self.view.task = task_name(str(self.get_parameter("start_task").value))
        self.expert: ScriptedExpert | None = None
        self.steps = 0
        self.results: list[EpisodeResult] = []
        self.action_pub = self.create_publisher(JointState, "policy/action", 10)
        # Same QoS as the reset-free controller's phase: late joiners (the reward node) get the phase.
        phase_qos = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.phase_pub = self.create_publisher(String, "reset_free/phase", phase_qos)
        self.create_subscription(String, "sim/ground_truth", self._on_truth, 10)
        self.create_subscription(Image, "camera/color/image_raw", self._on_frame, qos_profile_sensor_data)

    @property
    def done(self) -> bool:
        """True once all cycles are finished."""
        return len(self.results) >= 2 * self.cycles

    def _on_truth(self, msg: String) -> None:
        self.view.truth = json.loads(msg.data)

    def _on_frame(self, frame: Image) -> None:
        if self.done or not self.view.truth:
            return
        if self.expert is None:
            self.expert = ScriptedExpert(self.view, noise_std=self.noise_std, rng=self.rng)  # type: ignore[arg-type]
            self.steps = 0
        success = bool(self.view.truth["success"][self.view.task])
        if success or self.steps >= self.max_steps:
            self.results.append(EpisodeResult(self.view.task, success, self.steps))
            self.get_logger().info(f"{self.view.task}: success={success} after {self.steps} steps")
            self.view.task = other_task(self.view.task)
            self.expert = None
            self.phase_pub.publish(String(data="done" if self.done else self.view.task))
            return
        self.action_pub.publish(action_msg(self.expert.act(), frame.header.stamp))
        self.steps += 1


def main(args: list[str] | None = None) -> None:
    """Entry point: spin the node until interrupted."""
    sys.exit(run_node(ScriptedPolicyNode, args))


if __name__ == "__main__":
    main()
