"""Shared ``main`` for robofume's ROS 2 node modules: init, build, spin, clean shutdown."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """Spin the node made by ``factory`` until Ctrl-C. A configuration error is one line on stderr, exit 2."""
    # A process started in the background by a non-interactive shell inherits SIGINT ignored; the
    # launcher stops nodes with SIGINT, so make sure it is heard (rclpy chains its handler to this one).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=args)
    try:
        node = factory()
    except (ValueError, OSError) as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
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
