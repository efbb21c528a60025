"""Homing between episodes: the normalized actions that bring the arm back to its home pose.

A reset-free controller never resets the scene, but it does move the arm: between two attempts it
lets go of the object and drives the end effector back to a home pose, so every attempt starts from
the poses the policy was trained from. The actions are ordinary ``policy/action`` commands
(``dx, dy, dz, dyaw, gripper`` in [-1, 1]): they pass the safety gate like the policy's own, so the
workspace box, the step cap and the e-stop apply to homing too.

The motion opens the gripper, lifts straight up to the home height when below it (so the gripper
does not drag the object), then travels to the home position and yaw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HOMING_FRAME_ID = "homing"
"""``header.frame_id`` of the controller's homing commands on ``policy/action``: the policy server
is not alive because of them and the recorder does not store them."""


class HomingConfigError(ValueError):
    """A homing setting is out of range."""


@dataclass(frozen=True)
class HomingConfig:
    """Where home is and how the controller gets there."""

    home_xyz: tuple[float, float, float]
    """End-effector home position in the world frame, metres (inside the safety gate's box)."""
    home_yaw: float = 0.0
    """End-effector home yaw, radians."""
    pos_scale: float = 0.03
    """Metres per unit action: the safety gate's ``pos_scale`` (one command moves at most this far)."""
    yaw_scale: float = 0.25
    """Radians per unit action: the safety gate's ``yaw_scale`` (defaults: the mock's limits)."""
    position_tolerance: float = 0.015
    """Home is reached within this distance (m)..."""
    yaw_tolerance: float = 0.08
    """...and this yaw error (rad)."""
    max_steps: int = 40
    """Control steps after which homing gives up and the next attempt starts where the arm is."""

    def validate(self) -> HomingConfig:
        """Raise :class:`HomingConfigError` with one line for a bad value; return self."""
        if len(self.home_xyz) != 3 or not all(math.isfinite(float(v)) for v in self.home_xyz):
            raise HomingConfigError(f"home_xyz must be 3 finite numbers (m), got {self.home_xyz}")
        for name in ("pos_scale", "yaw_scale", "position_tolerance", "yaw_tolerance"):
            value = float(getattr(self, name))
            if not (value > 0 and math.isfinite(value)):
                raise HomingConfigError(f"homing {name} must be > 0, got {value}")
        if not math.isfinite(self.home_yaw):
            raise HomingConfigError(f"home_yaw must be finite, got {self.home_yaw}")
        if self.max_steps < 1:
            raise HomingConfigError(f"homing max_steps must be >= 1, got {self.max_steps}")
        return self


def at_home(config: HomingConfig, ee_pos: Sequence[float], ee_yaw: float) -> bool:
    """True when the end effector is within the tolerances of home."""
    error = np.asarray(ee_pos, np.float64) - np.asarray(config.home_xyz, np.float64)
    close = np.linalg.norm(error) <= config.position_tolerance
    return bool(close and abs(ee_yaw - config.home_yaw) <= config.yaw_tolerance)


def homing_action(config: HomingConfig, ee_pos: Sequence[float], ee_yaw: float) -> np.ndarray:
    """The next homing command from the measured pose: gripper open, lift first, then travel home.

    Returns a float32 action ``[dx, dy, dz, dyaw, gripper]`` in [-1, 1]; all-zero motion at home."""
    pos = np.asarray(ee_pos, np.float64)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)) or not math.isfinite(ee_yaw):
        raise ValueError(f"end-effector pose must be 3 finite numbers and a finite yaw: {ee_pos}, {ee_yaw}")
    home = np.asarray(config.home_xyz, np.float64)
    goal = home if pos[2] >= home[2] - config.position_tolerance else np.array([pos[0], pos[1], home[2]])
    delta = np.clip((goal - pos) / config.pos_scale, -1.0, 1.0)
    dyaw = float(np.clip((config.home_yaw - ee_yaw) / config.yaw_scale, -1.0, 1.0))
    return np.array([*delta, dyaw, -1.0], dtype=np.float32)
