"""Scripted pick-and-place expert for the mock arm, with noise and deliberate failure modes.

It reads privileged simulator state (object, target and start-region poses), so it exists only
in simulation: it makes demos, failures and prior data, never acts on a real arm.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from robofume.sim.mock_arm_env import MockArmEnv
from robofume.sim.scene import BIN_WALL_HEIGHT, TABLE_TOP_Z

FailureMode = Literal["miss_grasp", "drop_early", "wrong_place", "random"]
FAILURE_MODES: tuple[str, ...] = ("miss_grasp", "drop_early", "wrong_place", "random")

_HOVER_Z = 0.13
_TOL = 0.012
_MAX_RETRIES = 2


def _wrap_quarter_turn(angle: float) -> float:
    """Wrap an angle to [-pi/4, pi/4] (a cube looks the same every quarter turn)."""
    return float((angle + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class ScriptedExpert:
    """A waypoint state machine: approach, descend, grasp, lift, carry, lower, release, retreat."""

    def __init__(
        self,
        env: MockArmEnv,
        noise_std: float = 0.0,
        failure_mode: FailureMode | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if failure_mode is not None and failure_mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure_mode {failure_mode!r}; expected one of {FAILURE_MODES}")
        self.env = env
        self.noise_std = noise_std
        self.failure_mode = failure_mode
        self.rng = rng or np.random.default_rng()
        self.reset()

    def reset(self, place_xy: np.ndarray | None = None) -> None:
        """Plan a new episode for the env's current task; ``place_xy`` overrides where to put the object."""
        env = self.env
        if place_xy is None:
            centre = env.target_pos() if env.task == "forward" else env.start_pos()
            place_xy = centre[:2] + self.rng.uniform(-0.015, 0.015, 2)
        if self.failure_mode == "wrong_place":
            place_xy = self._wrong_place()
        self.place_xy = np.asarray(place_xy, dtype=float)
        self.phase = "approach"
        self.timer = 0
        self.retries = 0
        self.grasp_offset = np.zeros(2)
        if self.failure_mode == "miss_grasp":
            angle = self.rng.uniform(0, 2 * np.pi)
            self.grasp_offset = self.rng.uniform(0.035, 0.06) * np.array([np.cos(angle), np.sin(angle)])
        self.drop_after = int(self.rng.integers(1, 6))
        self._walk = np.zeros(5)

    def act(self) -> np.ndarray:
        """Next action in [-1, 1]^5 for the env's current state."""
        if self.failure_mode == "random":
            self._walk = np.clip(0.8 * self._walk + self.rng.normal(0, 0.5, 5), -1, 1)
            return self._walk.astype(np.float32)
        env = self.env
        ee, obj = env.ee_pos(), env.object_pos()
        half = env.config.variant.object_half_size
        grip = -1.0
        yaw_goal = env.ee_yaw()
        if env.config.variant.object_shape == "cube":
            yaw_goal = _wrap_quarter_turn(env.object_yaw())
        target = ee
        self.timer += 1
        above_obj = np.r_[obj[:2] + self.grasp_offset, _HOVER_Z]
        if self.phase == "approach":
            target = above_obj
            if np.linalg.norm(ee - target) < 2 * _TOL and abs(env.ee_yaw() - yaw_goal) < 0.1:
                self._go("descend")
        elif self.phase == "descend":
            target = np.r_[obj[:2] + self.grasp_offset, max(obj[2] - 0.005, TABLE_TOP_Z + 0.012)]
            if abs(ee[2] - target[2]) < 0.008 or self.timer > 15:
                self._go("grasp")
        elif self.phase == "grasp":
            target, grip = np.r_[ee[:2], ee[2]], 1.0
            if self.timer >= 4:
                self._go("lift")
        elif self.phase == "lift":
            target, grip = np.r_[ee[:2], _HOVER_Z], 1.0
            if ee[2] > _HOVER_Z - 0.02:
                if env.object_grasped() or self.failure_mode == "miss_grasp":
                    self._go("carry")
                elif self.retries < _MAX_RETRIES:
                    self.retries += 1
                    self._go("approach")
                else:
                    self._go("retreat")
        elif self.phase == "carry":
            target, grip = np.r_[self.place_xy, _HOVER_Z], 1.0
            if self.failure_mode == "drop_early" and self.timer >= self.drop_after:
                self._go("release")
            elif np.linalg.norm(ee[:2] - self.place_xy) < _TOL:
                self._go("lower")
        elif self.phase == "lower":
            floor = TABLE_TOP_Z + (0.008 if env.task == "forward" else 0.0)
            target, grip = np.r_[self.place_xy, floor + half + 0.02], 1.0
            if abs(ee[2] - target[2]) < 0.01 or self.timer > 12:
                self._go("release")
        elif self.phase == "release":
            target, grip = ee, -1.0
            if self.timer >= 3:
                self._go("retreat")
        elif self.phase == "retreat":
            target = np.r_[ee[:2], max(_HOVER_Z, BIN_WALL_HEIGHT + 0.1)]
        action = np.zeros(5)
        action[:3] = np.clip((target - ee) / env.config.pos_step, -1, 1)
        action[3] = (
            np.clip((yaw_goal - env.ee_yaw()) / env.config.yaw_step, -1, 1)
            if self.phase in ("approach", "descend")
            else 0.0
        )
        if self.noise_std > 0:
            action[:4] += self.rng.normal(0, self.noise_std, 4)
        action[4] = grip
        return np.clip(action, -1, 1).astype(np.float32)

    def _go(self, phase: str) -> None:
        self.phase = phase
        self.timer = 0

    def _wrong_place(self) -> np.ndarray:
        env = self.env
        goal = env.target_pos() if env.task == "forward" else env.start_pos()
        for _ in range(100):
            xy = self.rng.uniform(
                np.asarray(env.config.workspace_low[:2]) + 0.08,
                np.asarray(env.config.workspace_high[:2]) - 0.08,
            )
            if np.linalg.norm(xy - goal[:2]) > 0.14 and np.linalg.norm(xy - env.object_pos()[:2]) > 0.08:
                return xy
        return goal[:2] + np.array([0.0, 0.15])
