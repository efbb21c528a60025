"""Cartesian controller for the mock arm: damped-least-squares IK onto joint position servos."""

from __future__ import annotations

import mujoco
import numpy as np

from robofume.sim.scene import PANDA_HOME_QPOS, PINCH_SITE

ARM_DOF = 7
GRIPPER_CTRL_MAX = 255.0


def yaw_of(xmat: np.ndarray) -> float:
    """Yaw about world z of a downward-pointing gripper frame (0 at the home pose)."""
    r = xmat.reshape(3, 3)
    return float(np.arctan2(r[1, 0], r[0, 0]))


def downward_rotation(yaw: float) -> np.ndarray:
    """Rotation matrix of the gripper pointing down, rotated by ``yaw`` about world z."""
    c, s = np.cos(yaw), np.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return rz @ np.diag([1.0, -1.0, -1.0])


class CartesianController:
    """Moves the pinch site toward a target position and yaw by solving IK every few substeps."""

    def __init__(self, model: mujoco.MjModel, damping: float = 0.05, nullspace_gain: float = 0.5) -> None:
        self.model = model
        self.site_id = model.site(PINCH_SITE).id
        self.damping = damping
        self.nullspace_gain = nullspace_gain
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._qlow = model.jnt_range[:ARM_DOF, 0].copy()
        self._qhigh = model.jnt_range[:ARM_DOF, 1].copy()

    def joint_targets(self, data: mujoco.MjData, pos: np.ndarray, yaw: float) -> np.ndarray:
        """One IK step: joint position targets that move the pinch site toward ``pos``/``yaw``."""
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site_id)
        jac = np.vstack([self._jacp[:, :ARM_DOF], self._jacr[:, :ARM_DOF]])
        cur = data.site_xmat[self.site_id].reshape(3, 3)
        goal = downward_rotation(yaw)
        rot_err = 0.5 * sum(np.cross(cur[:, k], goal[:, k]) for k in range(3))
        err = np.concatenate([pos - data.site_xpos[self.site_id], rot_err])
        jjt = jac @ jac.T + (self.damping**2) * np.eye(6)
        dq = jac.T @ np.linalg.solve(jjt, err)
        q = data.qpos[:ARM_DOF]
        pinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
        dq += (np.eye(ARM_DOF) - pinv @ jac) @ (self.nullspace_gain * (PANDA_HOME_QPOS - q))
        return np.clip(q + dq, self._qlow, self._qhigh)
