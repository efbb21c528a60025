"""MJCF scene for the mock arm: a Franka Panda with a Robotiq 2F-85 on a table.

The arm model is MuJoCo Menagerie's Panda + 2F-85 as shipped inside the ``gym-hil`` wheel.
This module edits it with :class:`mujoco.MjSpec` (joint motors become position servos with
gravity compensation) and adds a table, one graspable object, a target (bin or plate),
a visual start-region patch and a third-person camera.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mujoco
import numpy as np

from robofume.sim.mesh_lod import VISUAL_MESH_MAX_FACES, simplify_visual_meshes

PANDA_HOME_QPOS = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
"""Joint angles of the home pose (gripper above the table centre, pointing down)."""

TABLE_TOP_Z = 0.0
CAMERA_NAME = "front"
PINCH_SITE = "pinch"
OBJECT_BODY = "object"
TARGET_BODY = "target"
START_BODY = "start_region"

BIN_INNER_HALF = 0.07
BIN_WALL_HEIGHT = 0.035
BIN_WALL_THICK = 0.008
PLATE_RADIUS = 0.08
START_REGION_HALF = 0.06

TRAY_WALL_THICK = 0.01
TRAY_CLEARANCE = 0.018
"""The tray's inner faces lie this far (m) outside the workspace's x-y box: a 4 cm cube pressed
against a wall still has its centre inside the box, where the gripper's pinch point reaches."""

_JOINT_KP = (600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 50.0)
_JOINT_FORCE = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)


@dataclass(frozen=True)
class SceneVariant:
    """What the scene contains; the target task uses the defaults, prior data varies them."""

    object_shape: str = "cube"
    object_half_size: float = 0.02
    object_rgba: tuple[float, float, float, float] = (0.85, 0.15, 0.15, 1.0)
    target_kind: str = "bin"
    target_rgba: tuple[float, float, float, float] = (0.15, 0.35, 0.85, 1.0)

    def __post_init__(self) -> None:
        if self.object_shape not in ("cube", "cylinder"):
            raise ValueError(f"unknown object_shape {self.object_shape!r}; use 'cube' or 'cylinder'")
        if self.target_kind not in ("bin", "plate"):
            raise ValueError(f"unknown target_kind {self.target_kind!r}; use 'bin' or 'plate'")
        if not 0.012 <= self.object_half_size <= 0.03:
            raise ValueError(
                f"object_half_size {self.object_half_size} m is outside [0.012, 0.03] (gripper limits)"
            )


def panda_asset_path() -> str:
    """Path of the Panda + 2F-85 MJCF inside the installed ``gym_hil`` package."""
    try:
        import gym_hil
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the Panda arm model comes from the 'gym-hil' package; run ./run.sh setup"
        ) from exc
    path = os.path.join(os.path.dirname(gym_hil.__file__), "assets", "panda.xml")
    if not os.path.isfile(path):  # pragma: no cover - depends on the install
        raise RuntimeError(f"Panda model not found at {path}; reinstall gym-hil")
    return path


@dataclass(frozen=True)
class Tray:
    """A rim of low walls around the part of the table the gripper reaches, so that a pushed or
    dropped object stays where the arm can pick it up again (a reset-free workstation's tray)."""

    reach_low: tuple[float, float]
    """x-y corner of the workspace box the gripper's pinch point reaches (the lower one)."""
    reach_high: tuple[float, float]
    """The opposite corner."""
    height: float = 0.035
    """Wall height above the table (m)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.height <= 0.1:
            raise ValueError(f"tray height must be in (0, 0.1] m, got {self.height}")
        if not all(lo < hi for lo, hi in zip(self.reach_low, self.reach_high, strict=True)):
            raise ValueError(f"tray reach box is empty: {self.reach_low} .. {self.reach_high}")

    def inner_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The x-y box inside the walls (their inner faces)."""
        return (
            np.asarray(self.reach_low) - TRAY_CLEARANCE,
            np.asarray(self.reach_high) + TRAY_CLEARANCE,
        )


def _add_tray(world: mujoco.MjsBody, tray: Tray) -> None:
    """Four walls on the table whose inner faces bound :meth:`Tray.inner_bounds`."""
    low, high = tray.inner_bounds()
    half_h, t = tray.height / 2, TRAY_WALL_THICK
    centre = (low + high) / 2
    half = (high - low) / 2
    walls = [
        ((low[0] - t / 2, centre[1]), (t / 2, half[1] + t)),
        ((high[0] + t / 2, centre[1]), (t / 2, half[1] + t)),
        ((centre[0], low[1] - t / 2), (half[0], t / 2)),
        ((centre[0], high[1] + t / 2), (half[0], t / 2)),
    ]
    for k, ((px, py), (sx, sy)) in enumerate(walls):
        world.add_geom(
            name=f"tray_wall{k}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[sx, sy, half_h],
            pos=[px, py, TABLE_TOP_Z + half_h],
            rgba=[0.45, 0.38, 0.30, 1],
            friction=[1.0, 0.005, 0.0001],
        )


def build_spec(
    variant: SceneVariant,
    image_size: int,
    visual_max_faces: int = VISUAL_MESH_MAX_FACES,
    tray: Tray | None = None,
) -> mujoco.MjSpec:
    """Return the editable scene spec for ``variant`` with an offscreen buffer of ``image_size``.

    The arm's render-only meshes are simplified to ``visual_max_faces`` triangles each (0: the
    original meshes); collision meshes, and so the physics, are untouched (:mod:`mesh_lod`).
    ``tray``: walls around the reachable table area (None: the open table)."""
    asset = panda_asset_path()
    spec = mujoco.MjSpec.from_file(asset)
    spec.option.timestep = 0.002
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.global_.offwidth = max(image_size, 64)
    spec.visual.global_.offheight = max(image_size, 64)
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.headlight.ambient = [0.45, 0.45, 0.45]
    spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]

    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    for i, act in enumerate(spec.actuators[:7]):
        joint = spec.joint(f"joint{i + 1}")
        act.set_to_position(kp=_JOINT_KP[i], kv=2.0 * np.sqrt(_JOINT_KP[i]))
        act.ctrlrange = joint.range
        act.forcerange = [-_JOINT_FORCE[i], _JOINT_FORCE[i]]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE

    world = spec.worldbody
    world.add_light(pos=[0.5, 0.0, 1.5], dir=[0, 0, -1], diffuse=[0.6, 0.6, 0.6], castshadow=False)
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[2, 2, 0.1],  # 3rd: grid spacing for rendering; 0.01 drew 160k quads (10 ms a frame)
        pos=[0, 0, -0.75],
        rgba=[0.25, 0.25, 0.28, 1],
    )
    world.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.45, 0.5, 0.02],
        pos=[0.45, 0.0, TABLE_TOP_Z - 0.02],
        rgba=[0.62, 0.52, 0.40, 1],
        friction=[1.0, 0.005, 0.0001],
    )
    if tray is not None:
        _add_tray(world, tray)
    world.add_camera(
        name=CAMERA_NAME,
        pos=[1.05, 0.0, 0.55],
        xyaxes=[0, 1, 0, -0.6, 0, 0.8],
        fovy=45,
    )

    start = world.add_body(name=START_BODY, mocap=True, pos=[0.5, -0.15, TABLE_TOP_Z])
    start.add_geom(
        name="start_patch",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[START_REGION_HALF, START_REGION_HALF, 0.0008],
        pos=[0, 0, 0.0008],
        rgba=[0.2, 0.7, 0.25, 1],
        contype=0,
        conaffinity=0,
    )

    target = world.add_body(name=TARGET_BODY, mocap=True, pos=[0.5, 0.15, TABLE_TOP_Z])
    rgba = list(variant.target_rgba)
    if variant.target_kind == "bin":
        h, t, w = BIN_INNER_HALF, BIN_WALL_THICK, BIN_WALL_HEIGHT
        target.add_geom(
            name="target_floor",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[h + t, h + t, 0.004],
            pos=[0, 0, 0.004],
            rgba=rgba,
        )
        for k, (px, py, sx, sy) in enumerate(
            [
                (h + t / 2, 0, t / 2, h + t),
                (-h - t / 2, 0, t / 2, h + t),
                (0, h + t / 2, h, t / 2),
                (0, -h - t / 2, h, t / 2),
            ]
        ):
            target.add_geom(
                name=f"target_wall{k}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[sx, sy, w / 2],
                pos=[px, py, w / 2],
                rgba=rgba,
            )
    else:
        target.add_geom(
            name="target_floor",
            type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[PLATE_RADIUS, 0.004, 0],
            pos=[0, 0, 0.004],
            rgba=rgba,
        )

    s = variant.object_half_size
    obj = world.add_body(name=OBJECT_BODY, pos=[0.5, -0.15, TABLE_TOP_Z + s])
    obj.add_freejoint(name="object_joint")
    geom_type = (
        mujoco.mjtGeom.mjGEOM_BOX if variant.object_shape == "cube" else mujoco.mjtGeom.mjGEOM_CYLINDER
    )
    size = [s, s, s] if variant.object_shape == "cube" else [s, s, 0]
    obj.add_geom(
        name="object",
        type=geom_type,
        size=size,
        mass=0.05,
        rgba=list(variant.object_rgba),
        friction=[1.5, 0.01, 0.0002],
        condim=4,
    )
    simplify_visual_meshes(spec, visual_max_faces, cache_key=asset)
    return spec


def build_model(
    variant: SceneVariant,
    image_size: int,
    visual_max_faces: int = VISUAL_MESH_MAX_FACES,
    tray: Tray | None = None,
) -> mujoco.MjModel:
    """Compile the scene for ``variant`` (``tray``: see :func:`build_spec`)."""
    return build_spec(variant, image_size, visual_max_faces, tray).compile()
