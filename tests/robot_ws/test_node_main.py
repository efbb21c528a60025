"""``run_node``: a callback that fails because a signal already shut the context down is a clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from robofume_robot.launcher import ros_environment

REPO = Path(__file__).resolve().parents[2]

NODE = textwrap.dedent(
    """
    import sys
    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import String
    from robofume_robot.node_main import run_node

    class Publishing(Node):
        def __init__(self):
            super().__init__("publishing_" + sys.argv[1])
            if sys.argv[1] == "interrupted_while_starting":
                raise KeyboardInterrupt  # the launcher's SIGINT while the node is still being built
            if sys.argv[1].startswith("realtime_"):
                self.declare_parameter("realtime_priority", int(sys.argv[1].split("_")[1]))
            self.pub = self.create_publisher(String, "chatter", 10)
            self.create_timer(0.05, self.tick)

        def tick(self):
            if sys.argv[1].startswith("realtime_"):
                import os
                print("policy", os.sched_getscheduler(0) == os.SCHED_FIFO, flush=True)
                rclpy.shutdown()
            elif sys.argv[1] == "shutdown_then_publish":
                rclpy.shutdown()  # what rclpy's SIGTERM handler does between two callbacks
            elif sys.argv[1] == "fail_while_running":
                raise RuntimeError("a real node error")
            self.pub.publish(String(data="x"))

    sys.exit(run_node(Publishing))
    """
)


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    paths = [str(REPO), str(REPO / "robot_ws" / "src" / "robofume_robot"), os.environ.get("PYTHONPATH", "")]
    env = ros_environment(dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1"))
    return subprocess.run(
        [sys.executable, "-c", NODE, mode], env=env, capture_output=True, text=True, timeout=60
    )


def test_publish_after_shutdown_exits_cleanly() -> None:
    proc = _run("shutdown_then_publish")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_node_stopped_while_starting_exits_cleanly_without_a_traceback() -> None:
    proc = _run("interrupted_while_starting")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_a_node_error_while_running_still_fails() -> None:
    proc = _run("fail_while_running")
    assert proc.returncode != 0 and "a real node error" in proc.stderr


def test_a_node_declaring_realtime_priority_gets_fifo_or_a_warning() -> None:
    proc = _run("realtime_10")
    assert proc.returncode == 0, proc.stderr[-2000:]
    if "SCHED_FIFO priority 10" in proc.stderr:
        assert "policy True" in proc.stdout
    else:
        assert "CAP_SYS_NICE" in proc.stderr and "policy False" in proc.stdout, proc.stderr


def test_a_bad_realtime_priority_is_a_one_line_config_error() -> None:
    proc = _run("realtime_120")
    assert proc.returncode == 2 and "realtime_priority must be an integer in 0..99" in proc.stderr
