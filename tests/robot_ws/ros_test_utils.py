"""Helpers for tests that run ROS 2 nodes: an isolated context, spinning until a condition holds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from robofume_robot.launcher import ros_environment  # noqa: E402


@contextmanager
def ros_context() -> Iterator[rclpy.Context]:
    """A fresh rclpy context on this run's ROS_DOMAIN_ID with the launcher's transport settings."""
    os.environ.update(
        {k: v for k, v in ros_environment().items() if k.startswith(("ROS_", "RMW_", "FASTDDS_"))}
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def spin_until(
    executor: SingleThreadedExecutor,
    condition: Callable[[], bool],
    timeout: float,
    check: Callable[[], None] | None = None,
) -> bool:
    """Spin ``executor`` until ``condition()`` or ``timeout`` s; ``check()`` runs each turn (may raise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if check is not None:
            check()
        if condition():
            return True
    return False
