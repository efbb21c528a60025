"""Helpers for the reward node tests: the node as a process, and a test rig that plays camera and
controller and records what the node publishes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")
sys.path.insert(0, str(Path(__file__).parents[1] / "robot_ws"))
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from ros_test_utils import spin_until  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Float32, Header, String  # noqa: E402

from reward_vlm.reward_core import TEST_CLASSIFIER_ENV, TEST_CLASSIFIER_KWARGS_ENV  # noqa: E402
from reward_vlm.reward_node import phase_qos  # noqa: E402
from robofume_robot.launcher import ros_environment  # noqa: E402
from robofume_robot.ros_image import sec_to_stamp, stamp_to_sec, to_image_msg  # noqa: E402

STAND_IN = "reward_vlm.stand_in:make_stand_in"


def node_command(params: dict[str, Any]) -> list[str]:
    """``python -m reward_vlm.reward_node`` with ``params`` as ``-p`` overrides."""
    cmd = [sys.executable, "-m", "reward_vlm.reward_node", "--ros-args"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={str(value).lower() if isinstance(value, bool) else value}"]
    return cmd


def node_env(classifier_kwargs: dict[str, Any] | None) -> dict[str, str]:
    """The launcher's ROS environment plus the stand-in classifier hook (None: no hook)."""
    env = ros_environment()
    env["OMP_NUM_THREADS"] = "1"
    env.pop(TEST_CLASSIFIER_ENV, None)
    if classifier_kwargs is not None:
        env[TEST_CLASSIFIER_ENV] = STAND_IN
        env[TEST_CLASSIFIER_KWARGS_ENV] = json.dumps(classifier_kwargs)
    return env


def status_of(msg: DiagnosticArray) -> tuple[DiagnosticStatus, dict[str, str]]:
    """The "reward" status of a verdict message and its values."""
    [status] = msg.status
    return status, {kv.key: kv.value for kv in status.values}


class RewardRig:
    """The test side: a camera and a controller (phase) publisher, and listeners of the reward topics."""

    def __init__(
        self,
        context: rclpy.Context,
        node_proc: subprocess.Popen[bytes] | None = None,
        log: Path | None = None,
        in_process: Node | None = None,
    ) -> None:
        """Watch the node process ``node_proc`` (output in ``log``), or spin ``in_process`` with the rig."""
        self.node = rclpy.create_node("reward_rig", context=context)
        self.proc, self.log = node_proc, log
        self.image_pub = self.node.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
        self.phase_pub = self.node.create_publisher(String, "reset_free/phase", phase_qos(True))
        self.verdicts: list[tuple[float, DiagnosticArray]] = []  # (receive time, message)
        self.probs: list[float] = []
        self.events: list[Header] = []
        self.node.create_subscription(
            DiagnosticArray, "reward/verdict", lambda m: self.verdicts.append((time.time(), m)), 50
        )
        self.node.create_subscription(Float32, "reward/success_prob", lambda m: self.probs.append(m.data), 50)
        self.node.create_subscription(Header, "reward/success", self.events.append, 50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        if in_process is not None:
            self.executor.add_node(in_process)

    def check(self) -> None:
        """Fail with the node's log if it has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            log = self.log.read_text()[-3000:] if self.log else ""
            raise AssertionError(f"reward node exited ({self.proc.returncode}): {log}")

    def spin(self, seconds: float) -> None:
        """Spin for ``seconds``."""
        spin_until(self.executor, lambda: False, seconds, check=self.check)

    def wait(self, condition: Callable[[], object], timeout: float) -> bool:
        """Spin until ``condition()`` or ``timeout`` s."""
        return spin_until(self.executor, condition, timeout, check=self.check)

    def wait_for_task(self, task: str, timeout: float = 30) -> bool:
        """Spin until a verdict (heartbeats too) shows the node judging ``task``."""
        return self.wait(lambda: any(status_of(m)[1]["task"] == task for _, m in self.verdicts[-3:]), timeout)

    def publish_frames(self, frames: list[np.ndarray], hz: float) -> list[float]:
        """Publish ``frames`` at ``hz``, stamped with the time of publishing; returns the stamps."""
        stamps = []
        for frame in frames:
            t = time.time()
            stamps.append(stamp_to_sec(sec_to_stamp(t)))
            self.image_pub.publish(to_image_msg(frame, sec_to_stamp(t)))
            self.spin(max(0.0, t + 1.0 / hz - time.time()))
        return stamps

    def judged(self, since: float = 0.0) -> list[tuple[float, DiagnosticStatus, dict[str, str], float]]:
        """(receive time, status, values, frame stamp) of verdicts received after ``since``."""
        out = []
        for t, msg in self.verdicts:
            if t >= since:
                status, values = status_of(msg)
                out.append((t, status, values, stamp_to_sec(msg.header.stamp)))
        return out

    def close(self) -> None:
        """Destroy the test node."""
        self.executor.shutdown()
        self.node.destroy_node()


def start_node(
    tmp_path: Path, params: dict[str, Any], classifier_kwargs: dict[str, Any] | None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the node process with its output in ``tmp_path/reward.log``; returns (process, log path)."""
    log = tmp_path / "reward.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            node_command(params), env=node_env(classifier_kwargs), stdout=out, stderr=subprocess.STDOUT
        )
    return proc, log


def stop_node(proc: subprocess.Popen[bytes]) -> int:
    """SIGINT, then kill after 10 s; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
