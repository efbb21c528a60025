"""Plain-Python core of the real-arm adapter: turn a gated absolute target into servo velocities.

MoveIt Servo (and similar Cartesian velocity interfaces) want a continuous stream of twists; the
safety gate emits absolute targets at the policy rate. :func:`twist_toward` closes that gap with a
proportional law, bounded speeds, and a stop when targets stop arriving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ServoSettings:
    """Gains and limits of the Cartesian servo law."""

    gain: float = 2.0
    """1/s: commanded velocity = gain * position error."""
    max_linear_speed: float = 0.2
    """m/s, norm of the linear velocity."""
    max_angular_speed: float = 1.0
    """rad/s about the vertical axis."""
    command_timeout: float = 0.3
    """s without a new target before the twist becomes zero (the arm stops)."""
    deadband: float = 0.002
    """m: position errors below this command zero velocity (no jitter at the goal)."""

    def __post_init__(self) -> None:
        for name in ("gain", "max_linear_speed", "max_angular_speed", "command_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.deadband < 0:
            raise ValueError(f"deadband must be >= 0, got {self.deadband}")


def wrap_angle(angle: float) -> float:
    """Wrap to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def twist_toward(
    target_pos: np.ndarray, target_yaw: float, ee_pos: np.ndarray, ee_yaw: float, settings: ServoSettings
) -> tuple[np.ndarray, float]:
    """(linear velocity xyz in m/s, yaw rate in rad/s) that drive the end effector toward the target."""
    error = np.asarray(target_pos, dtype=float) - np.asarray(ee_pos, dtype=float)
    if np.linalg.norm(error) < settings.deadband:
        linear = np.zeros(3)
    else:
        linear = settings.gain * error
        speed = np.linalg.norm(linear)
        if speed > settings.max_linear_speed:
            linear *= settings.max_linear_speed / speed
    yaw_rate = settings.gain * wrap_angle(target_yaw - ee_yaw)
    yaw_rate = float(np.clip(yaw_rate, -settings.max_angular_speed, settings.max_angular_speed))
    return linear, yaw_rate


def gripper_position(closure: float, open_position: float, closed_position: float) -> float:
    """Map a closure in [0, 1] (0 open) to the gripper controller's position units."""
    c = min(max(float(closure), 0.0), 1.0)
    return open_position + c * (closed_position - open_position)
