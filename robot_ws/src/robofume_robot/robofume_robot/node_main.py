"""Shared ``main`` for robofume's ROS 2 node modules: init, build, spin, clean shutdown."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from robofume_robot.realtime import REALTIME_PARAM, RealtimeResult, request_fifo


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """Spin the node made by ``factory`` until Ctrl-C. A configuration error is one line on stderr, exit 2.

    A node that declares ``realtime_priority`` gets SCHED_FIFO for its threads once built
    (:mod:`robofume_robot.realtime`); without the privilege it logs a warning and runs normally."""
    # A process started in the background by a non-interactive shell inherits SIGINT ignored; the
    # launcher stops nodes with SIGINT, so make sure it is heard (rclpy chains its handler to this one).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=args)
    try:
        node = factory()
        apply_realtime_priority(node)
    except (ValueError, OSError) as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # stopped while still starting (the launcher stops all when one fails)
        rclpy.try_shutdown()
        return 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal shuts the context down from rclpy's handler; a callback already running then fails
        # (e.g. "publisher's context is invalid"). That is part of a clean stop, not a node error.
        if rclpy.ok(context=node.context):
            raise
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def apply_realtime_priority(node: Node) -> RealtimeResult | None:
    """If ``node`` declares ``realtime_priority`` (the control-path nodes do), move its threads to
    SCHED_FIFO and log the outcome (a warning when refused); None when it does not declare it.
    A priority outside 0..99 is a ``ValueError``."""
    if not node.has_parameter(REALTIME_PARAM):
        return None
    result = request_fifo(node.get_parameter(REALTIME_PARAM).value)
    (node.get_logger().info if result.applied else node.get_logger().warning)(result.message)
    return result
