"""Gymnasium env of the mock arm: a MuJoCo Panda doing a forward task and the backward task that undoes it.

Example::

    from robofume.sim import MockArmConfig, MockArmEnv
    env = MockArmEnv(MockArmConfig(image_size=128))
    obs, info = env.reset(seed=0, options={"task": "forward"})
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    # reset-free: start the backward task from wherever the scene is now
    obs, info = env.reset(options={"task": "backward", "keep_scene": True})

The reward and ``info["success"]`` come from ground-truth checkers. They are for evaluation and
for auto-labelling scripted data only; the learner's reward in the main pipeline is the classifier.
"""

from __future__ import annotations

import atexit
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from robofume.sim.arm_controller import ARM_DOF, GRIPPER_CTRL_MAX, CartesianController, yaw_of
from robofume.sim.gl_preload import preload_before_gl
from robofume.sim.mesh_lod import VISUAL_MESH_MAX_FACES
from robofume.sim.scene import (
    BIN_INNER_HALF,
    BIN_WALL_THICK,
    CAMERA_NAME,
    OBJECT_BODY,
    PANDA_HOME_QPOS,
    PINCH_SITE,
    PLATE_RADIUS,
    START_BODY,
    START_REGION_HALF,
    TABLE_TOP_Z,
    TARGET_BODY,
    SceneVariant,
    Tray,
    build_model,
)
from robofume.sim.tasks import TASK_NAMES, task_id, task_name

PROPRIO_NAMES: tuple[str, ...] = (
    "ee_x",
    "ee_y",
    "ee_z",
    "ee_yaw_sin",
    "ee_yaw_cos",
    "gripper_closed",
    "ee_vx",
    "ee_vy",
    "ee_vz",
)
"""Order of the proprioception vector."""

ACTION_NAMES: tuple[str, ...] = ("dx", "dy", "dz", "dyaw", "gripper")
"""Order of the action vector; each in [-1, 1]. Gripper: -1 open, +1 closed."""

_SUBSTEPS_PER_IK = 10
_DRIVER_JOINT_MAX = 0.8


FRESH_START_SPREAD = 0.03
"""A fresh scene with the object at the start puts it within ± this (m, per axis) of the start
square's centre; a backward success accepts ±6 cm, so the reset-free stream can leave the cube
where no demo started (the held-out evaluation's "edge starts" measure those). Spreads of 5 cm
(start) and 4 cm (bin) were tried on 2026-11-30 and not kept: with 20 demos per task the
pre-trained policy fell from 100 % to 80 % forward and from 95 % to 70 % backward, and the stream
got stuck sooner (docs/benchmarks.md, "Full session")."""

FRESH_TARGET_SPREAD = 0.03
"""The same in the bin (success: ±7 cm)."""

MAX_TARGET_SPREAD = 0.04
"""Largest bin spread: a yawed 2 cm cube reaches about 2.8 cm from its centre, and the bin's inner
half-width is 7 cm."""

LEGACY_OBJECT_SPREAD = 0.03
"""Both spreads of datasets whose manifest does not record them (made before 2026-11-30)."""

TRAY_HEIGHT = 0.035
"""Default height (m) of the tray's walls around the reachable table area."""

LEGACY_TRAY_HEIGHT = 0.0
"""Tray height of datasets whose manifest does not record it (made before 2026-12-02: no tray)."""

EDGE_BAND: tuple[float, float] = (0.04, 0.055)
"""``object_band`` of the held-out "edge" starts: the object 4–5.5 cm from the start square's
centre: inside the square (a backward success), where the stream's backward attempts can leave it,
but outside every demo's start (±``FRESH_START_SPREAD``)."""


@dataclass
class MockArmConfig:
    """Settings of the mock arm env. Distances in metres, angles in radians."""

    image_size: int = 128
    """Side of the square RGB camera image; 0 turns the camera off (state-only runs)."""
    control_hz: float = 10.0
    """Policy control rate; physics and the IK controller step inside each control step."""
    max_episode_steps: int = 100
    """Steps before an episode is truncated (a time limit, not a failure)."""
    terminate_on_success: bool = True
    """End the episode when the ground-truth checker reports success."""
    pos_step: float = 0.03
    """End-effector displacement per step for an action of 1."""
    yaw_step: float = 0.25
    """Yaw change per step for an action of 1."""
    workspace_low: tuple[float, float, float] = (0.28, -0.32, 0.012)
    workspace_high: tuple[float, float, float] = (0.72, 0.32, 0.35)
    target_xy_low: tuple[float, float] = (0.42, 0.08)
    target_xy_high: tuple[float, float] = (0.58, 0.2)
    start_xy_low: tuple[float, float] = (0.42, -0.2)
    start_xy_high: tuple[float, float] = (0.58, -0.08)
    object_yaw_range: float = 0.5
    variant: SceneVariant = field(default_factory=SceneVariant)
    visual_max_faces: int = VISUAL_MESH_MAX_FACES
    """Triangle budget per visual mesh of the arm for the camera (0: the original meshes; the
    physics never change). 2,000 renders about 2.4x faster at a mean difference under 1 grey level."""
    start_spread: float = FRESH_START_SPREAD
    """A fresh scene's object offset from the start square's centre, ± m per axis."""
    target_spread: float = FRESH_TARGET_SPREAD
    """A fresh scene's object offset from the target's centre, ± m per axis."""
    tray_height: float = TRAY_HEIGHT
    """Walls of this height (m) stand on the table just outside the workspace's x-y box (see
    :class:`~robofume.sim.scene.Tray`), so that a failed grasp cannot push the object out of the
    arm's reach, where a reset-free run could never get it back; 0: the open table (before
    2026-12-02)."""

    def __post_init__(self) -> None:
        if not (self.image_size == 0 or 32 <= self.image_size <= 1024):
            raise ValueError(
                f"image_size must be 0 (no camera) or between 32 and 1024, got {self.image_size}"
            )
        if not 1.0 <= self.control_hz <= 50.0:
            raise ValueError(f"control_hz must be between 1 and 50, got {self.control_hz}")
        if self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.visual_max_faces != 0 and self.visual_max_faces < 50:
            raise ValueError(f"visual_max_faces must be 0 (off) or >= 50, got {self.visual_max_faces}")
        if not 0.0 <= self.start_spread <= START_REGION_HALF - 0.005:
            raise ValueError(
                f"start_spread must be in [0, {START_REGION_HALF - 0.005}] m, got {self.start_spread}"
            )
        if not 0.0 <= self.target_spread <= MAX_TARGET_SPREAD:
            raise ValueError(
                f"target_spread must be in [0, {MAX_TARGET_SPREAD}] m (the bin's walls), "
                f"got {self.target_spread}"
            )
        if not (self.tray_height == 0.0 or 0.01 <= self.tray_height <= 0.1):
            raise ValueError(f"tray_height must be 0 (no tray) or in [0.01, 0.1] m, got {self.tray_height}")


OBJECT_PLACES: tuple[str, ...] = ("start", "target", "between", "table")
"""Where a fresh scene can put the object (the ``object_in`` reset option)."""

BETWEEN_ALONG: tuple[float, float] = (-0.15, 1.15)
"""``object_in="between"``: the object's position along the line from the start square's centre (0)
to the bin's (1): from a little behind the square to a little beyond the bin."""

BETWEEN_ACROSS = 0.1
"""``object_in="between"``: at most this far (m) to either side of that line."""

BETWEEN_CLEARANCE = 0.01
"""``object_in="between"``: the object's centre stays this far (m) outside the start square and
outside the bin's walls, so that neither task is already done and it never lands on a wall."""


TABLE_REACH_MARGIN = 0.03
"""``object_in="table"``: the object's centre lies at least this far (m) inside the workspace's x-y
box, so that the gripper, whose pinch point the workspace bounds, can close around it."""


def _line_frame(start_xy: np.ndarray, target_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The line from the start square's centre to the bin's, and the unit vector across it."""
    line = target_xy - start_xy
    return line, np.array([-line[1], line[0]]) / max(float(np.linalg.norm(line)), 1e-9)


def _between_xy(rng: np.random.Generator, start_xy: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
    """A table position between the start square and the bin, outside both (rejection sampling)."""
    line, across = _line_frame(start_xy, target_xy)
    square_half = START_REGION_HALF + BETWEEN_CLEARANCE
    bin_half = BIN_INNER_HALF + BIN_WALL_THICK + BETWEEN_CLEARANCE
    for _ in range(1000):
        along = rng.uniform(*BETWEEN_ALONG)
        xy = start_xy + along * line + rng.uniform(-BETWEEN_ACROSS, BETWEEN_ACROSS) * across
        if np.abs(xy - start_xy).max() > square_half and np.abs(xy - target_xy).max() > bin_half:
            return xy
    raise RuntimeError("no table position between the start square and the bin: they overlap")


def _table_xy(
    rng: np.random.Generator,
    start_xy: np.ndarray,
    target_xy: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> np.ndarray:
    """A table position anywhere the gripper reaches (the workspace's x-y box less
    ``TABLE_REACH_MARGIN``), outside the start square and the bin (rejection sampling)."""
    square_half = START_REGION_HALF + BETWEEN_CLEARANCE
    bin_half = BIN_INNER_HALF + BIN_WALL_THICK + BETWEEN_CLEARANCE
    for _ in range(1000):
        xy = rng.uniform(low + TABLE_REACH_MARGIN, high - TABLE_REACH_MARGIN)
        if np.abs(xy - start_xy).max() > square_half and np.abs(xy - target_xy).max() > bin_half:
            return xy
    raise RuntimeError("no table position within reach outside the start square and the bin")


OBJECT_PLACE_NAMES: tuple[str, ...] = ("held", "square", "bin", "between", "beyond", "out_of_reach")
"""What :meth:`MockArmEnv.object_place` reports."""


def _band_offset(rng: np.random.Generator, band: tuple[float, float]) -> np.ndarray:
    """An offset whose larger coordinate lies in ``band`` (either axis, either sign)."""
    near, far = band
    along = rng.uniform(near, far) * rng.choice([-1.0, 1.0])
    across = rng.uniform(-far, far)
    return np.array([along, across]) if rng.random() < 0.5 else np.array([across, along])


_RENDERING_ENVS: weakref.WeakSet[MockArmEnv] = weakref.WeakSet()
_exit_hook_registered = False


def _close_rendering_envs() -> None:
    for env in list(_RENDERING_ENVS):
        env.close()


def _close_at_exit(env: MockArmEnv) -> None:
    """Close ``env``'s renderer at interpreter exit, before MuJoCo's EGL exit hook terminates the
    display: a renderer freed afterwards by the final garbage collection prints EGL tracebacks. The
    hook is registered once, after the first GL context exists, so it runs before EGL's (LIFO)."""
    global _exit_hook_registered
    _RENDERING_ENVS.add(env)
    if not _exit_hook_registered:
        atexit.register(_close_rendering_envs)
        _exit_hook_registered = True


class MockArmEnv(gym.Env):
    """Franka Panda + 2F-85 gripper, one object, a target; forward and backward tasks, reset-free capable."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: MockArmConfig | None = None, render_mode: str | None = None) -> None:
        self.config = config or MockArmConfig()
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": int(self.config.control_hz)}
        cfg = self.config
        tray = (
            Tray(cfg.workspace_low[:2], cfg.workspace_high[:2], cfg.tray_height) if cfg.tray_height else None
        )
        self.model = build_model(cfg.variant, max(cfg.image_size, 512), cfg.visual_max_faces, tray)
        self.data = mujoco.MjData(self.model)
        self.controller = CartesianController(self.model)
        self.n_substeps = max(
            _SUBSTEPS_PER_IK, round(1.0 / (self.config.control_hz * self.model.opt.timestep))
        )
        self._renderer: mujoco.Renderer | None = None
        self._site = self.model.site(PINCH_SITE).id
        self._obj_body = self.model.body(OBJECT_BODY).id
        self._obj_geom = self.model.geom("object").id
        self._obj_qadr = self.model.jnt_qposadr[self.model.joint("object_joint").id]
        self._obj_dadr = self.model.jnt_dofadr[self.model.joint("object_joint").id]
        self._target_mocap = self.model.body_mocapid[self.model.body(TARGET_BODY).id]
        self._start_mocap = self.model.body_mocapid[self.model.body(START_BODY).id]
        self._gripper_geoms = self._subtree_geoms("base_mount")
        self._driver_qadr = self.model.jnt_qposadr[self.model.joint("right_driver_joint").id]
        self._ws_low = np.asarray(self.config.workspace_low)
        self._ws_high = np.asarray(self.config.workspace_high)

        obs_spaces: dict[str, spaces.Space] = {
            "proprio": spaces.Box(-10.0, 10.0, (len(PROPRIO_NAMES),), np.float32),
            "task": spaces.Discrete(len(TASK_NAMES)),
        }
        if self.config.image_size:
            size = self.config.image_size
            obs_spaces["image"] = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (len(ACTION_NAMES),), np.float32)

        self.task = TASK_NAMES[0]
        self._steps = 0
        self._target_pos = np.zeros(3)
        self._target_yaw = 0.0
        self._gripper_cmd = -1.0
        self._scene_ready = False

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Start an episode. Options: ``task`` (name), ``keep_scene`` (reset-free: keep the physical state),
        ``home_arm`` (with ``keep_scene``: first drive the arm home, see :meth:`move_home`),
        ``object_in`` ("start" or "target": where a fresh scene puts the object, default per task; or
        "between": on the table between the start square and the bin, outside both, where a
        reset-free stream drops or pushes it, see ``BETWEEN_*``; or "table": anywhere on the table the
        gripper reaches, outside both, see ``TABLE_REACH_MARGIN``),
        ``layout_seed`` (a fresh scene's fixtures, the target and start-region positions, come from this
        seed instead of ``seed``: scenes with the same ``layout_seed`` share one workstation layout and
        differ in the object's pose), ``object_band`` ((near, far) in m: a fresh scene puts the object
        this far from its region's centre along one axis, instead of within ``start_spread`` /
        ``target_spread``; for evaluating the starts a reset-free stream leaves, e.g. ``EDGE_BAND``)."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"task", "keep_scene", "home_arm", "object_in", "layout_seed", "object_band"}
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; "
                "use task, keep_scene, home_arm, object_in, layout_seed, object_band"
            )
        band = options.get("object_band")
        if band is not None:
            try:
                near, far = (float(v) for v in band)
            except (TypeError, ValueError):
                near, far = -1.0, -1.0  # reported below
            if not 0.0 <= near <= far <= START_REGION_HALF:
                raise ValueError(
                    f"object_band must be (near, far) with 0 <= near <= far <= {START_REGION_HALF} m, "
                    f"got {band!r}"
                )
            band = (near, far)
        layout_seed = options.get("layout_seed")
        is_int = isinstance(layout_seed, (int, np.integer)) and not isinstance(layout_seed, bool)
        if layout_seed is not None and (not is_int or layout_seed < 0):
            raise ValueError(f"layout_seed must be a non-negative int, got {layout_seed!r}")
        self.task = task_name(options.get("task", self.task))
        keep_scene = bool(options.get("keep_scene", False)) and self._scene_ready
        if not keep_scene:
            default_in = "start" if self.task == "forward" else "target"
            self._randomize_scene(options.get("object_in", default_in), layout_seed, band)
        elif options.get("home_arm", False):
            self.move_home()
        self._steps = 0
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        """Apply one end-effector delta + gripper action and advance physics by one control period."""
        if not self._scene_ready:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (len(ACTION_NAMES),):
            raise ValueError(
                f"action must have {len(ACTION_NAMES)} values {ACTION_NAMES}, got shape {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError("action contains NaN or Inf")
        a = np.clip(a, -1.0, 1.0)
        goal = np.clip(self._target_pos + a[:3] * self.config.pos_step, self._ws_low, self._ws_high)
        goal_yaw = float(np.clip(self._target_yaw + a[3] * self.config.yaw_step, -np.pi / 2, np.pi / 2))
        self.apply_target(goal, goal_yaw, (a[4] + 1.0) / 2.0)
        self._steps += 1
        success = self.is_success(self.task)
        terminated = bool(success and self.config.terminate_on_success)
        truncated = bool(not terminated and self._steps >= self.config.max_episode_steps)
        return self._observation(), float(success), terminated, truncated, self._info(success)

    def apply_target(self, pos: np.ndarray, yaw: float, gripper: float) -> None:
        """Drive the gripper toward an absolute target for one control period.

        ``pos`` is clipped to the workspace box and to two step sizes from the current pose (a blocked
        arm never winds up a far-away target); ``gripper`` is the closure in [0, 1]. This is the
        entry point of the ROS mock arm node, which receives absolute targets from the safety gate.
        """
        if not self._scene_ready:
            raise RuntimeError("call reset() before apply_target()")
        pos = np.asarray(pos, dtype=np.float64)
        finite = np.all(np.isfinite(pos)) and np.isfinite(yaw) and np.isfinite(gripper)
        if pos.shape != (3,) or not finite:
            raise ValueError("target must be a finite 3-vector, a finite yaw and a finite gripper closure")
        ee = self.data.site_xpos[self._site].copy()
        cap = 2 * self.config.pos_step
        goal = np.clip(
            ee + np.clip(np.clip(pos, self._ws_low, self._ws_high) - ee, -cap, cap),
            self._ws_low,
            self._ws_high,
        )
        goal_yaw = float(np.clip(yaw, -np.pi / 2, np.pi / 2))
        start_pos, start_yaw = self._target_pos.copy(), self._target_yaw
        self._gripper_cmd = float(np.clip(gripper, 0.0, 1.0)) * 2.0 - 1.0
        self.data.ctrl[ARM_DOF] = float(np.clip(gripper, 0.0, 1.0)) * GRIPPER_CTRL_MAX
        chunks = max(1, self.n_substeps // _SUBSTEPS_PER_IK)
        for k in range(chunks):
            frac = (k + 1) / chunks
            target = start_pos + frac * (goal - start_pos)
            target_yaw = start_yaw + frac * (goal_yaw - start_yaw)
            self.data.ctrl[:ARM_DOF] = self.controller.joint_targets(self.data, target, target_yaw)
            mujoco.mj_step(self.model, self.data, nstep=self.n_substeps // chunks)
        self._target_pos, self._target_yaw = goal, goal_yaw

    def move_home(self, max_periods: int = 30, tolerance: float = 0.01) -> int:
        """Drive the arm back to its home pose the way a reset-free controller does between
        episodes: through :meth:`apply_target`, one control period at a time, gripper open (it lets
        go of the object first), lifting to the home height before travelling. Only the arm moves;
        the object stays wherever physics leaves it. Returns the control periods used."""
        if not self._scene_ready:
            raise RuntimeError("call reset() before move_home()")
        periods = 0
        while periods < max_periods:
            ee = self.ee_pos()
            if (
                np.linalg.norm(ee - self._home_pos) <= tolerance
                and abs(self.ee_yaw() - self._home_yaw) < 0.05
            ):
                break
            lifted = ee[2] >= self._home_pos[2] - tolerance
            target = self._home_pos if lifted else np.array([ee[0], ee[1], self._home_pos[2]])
            self.apply_target(target, self._home_yaw, 0.0)
            periods += 1
        return periods

    def commanded_target(self) -> tuple[np.ndarray, float, float]:
        """The last commanded (position, yaw, gripper closure); applying it again holds the arm."""
        return self._target_pos.copy(), self._target_yaw, (self._gripper_cmd + 1.0) / 2.0

    def render(self) -> np.ndarray | None:
        """Camera frame (rgb_array mode) at the configured image size."""
        if self.render_mode != "rgb_array":
            return None
        return self.camera_frame()

    def camera_frame(self, size: int | None = None) -> np.ndarray:
        """Render the third-person camera now, at ``size`` pixels (default: the observation size)."""
        size = size or self.config.image_size or 128
        if not 32 <= size <= 1024:
            raise ValueError(f"frame size must be between 32 and 1024, got {size}")
        return self._render(size)

    def close(self) -> None:
        """Free the offscreen renderer."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------ ground truth
    def is_success(self, task: str | int) -> bool:
        """Ground-truth success of ``task`` in the current scene (evaluation/auto-labelling only)."""
        name = task_name(task)
        if self.object_grasped() or np.linalg.norm(self.data.qvel[self._obj_dadr : self._obj_dadr + 3]) > 0.1:
            return False
        obj = self.object_pos()
        half = self.config.variant.object_half_size
        if name == "forward":
            rel = obj[:2] - self.target_pos()[:2]
            if self.config.variant.target_kind == "bin":
                inside = bool(np.all(np.abs(rel) < BIN_INNER_HALF))
            else:
                inside = bool(np.linalg.norm(rel) < PLATE_RADIUS - 0.01)
            return bool(inside and obj[2] < TABLE_TOP_Z + 0.008 + half + 0.015)
        rel = obj[:2] - self.start_pos()[:2]
        return bool(np.all(np.abs(rel) < START_REGION_HALF) and obj[2] < TABLE_TOP_Z + half + 0.01)

    def object_line_coords(self) -> tuple[float, float]:
        """The object's position in the frame of the line from the start square's centre to the bin's:
        how far along it (0: the square's centre, 1: the bin's) and how far to its side (m, signed)."""
        xy = self.object_pos()[:2]
        start, target = self.start_pos()[:2], self.target_pos()[:2]
        line, across = _line_frame(start, target)
        along = float(np.dot(xy - start, line) / max(float(np.dot(line, line)), 1e-12))
        return along, float(np.dot(xy - start, across))

    def object_place(self) -> str:
        """Where the object is (``OBJECT_PLACE_NAMES``): ``held`` (touched by the gripper), in the start
        ``square``, in the ``bin`` (over its floor), on the table ``between`` them (the region of
        ``object_in="between"``), ``beyond`` it but within the gripper's reach, or ``out_of_reach``
        (its centre outside the workspace's x-y box); for diagnosing where a reset-free stream leaves it."""
        if self.object_grasped():
            return "held"
        xy = self.object_pos()[:2]
        start, target = self.start_pos()[:2], self.target_pos()[:2]
        if np.abs(xy - start).max() < START_REGION_HALF:
            return "square"
        if np.abs(xy - target).max() < BIN_INNER_HALF:
            return "bin"
        if np.any(xy < self._ws_low[:2]) or np.any(xy > self._ws_high[:2]):
            return "out_of_reach"
        along, across = self.object_line_coords()
        inside = BETWEEN_ALONG[0] <= along <= BETWEEN_ALONG[1]
        return "between" if inside and abs(across) <= BETWEEN_ACROSS else "beyond"

    def object_grasped(self) -> bool:
        """True while any gripper geom touches the object."""
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            pair = {int(c.geom1), int(c.geom2)}
            if self._obj_geom in pair and pair & self._gripper_geoms:
                return True
        return False

    def object_pos(self) -> np.ndarray:
        """World position of the object centre."""
        return self.data.xpos[self._obj_body].copy()

    def object_yaw(self) -> float:
        """Yaw of the object about world z."""
        return yaw_of(self.data.xmat[self._obj_body])

    def target_pos(self) -> np.ndarray:
        """World position of the target (bin or plate) base."""
        return self.data.mocap_pos[self._target_mocap].copy()

    def start_pos(self) -> np.ndarray:
        """World position of the start-region patch centre."""
        return self.data.mocap_pos[self._start_mocap].copy()

    def ee_pos(self) -> np.ndarray:
        """World position of the gripper pinch point."""
        return self.data.site_xpos[self._site].copy()

    def ee_quat(self) -> np.ndarray:
        """Gripper orientation as a (w, x, y, z) quaternion in the world frame."""
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._site])
        return quat

    def camera_intrinsics(self, size: int) -> tuple[float, float, float, float]:
        """Pinhole (fx, fy, cx, cy) of the third-person camera for a square ``size`` image."""
        fovy = np.deg2rad(self.model.cam_fovy[self.model.camera(CAMERA_NAME).id])
        f = (size / 2.0) / np.tan(fovy / 2.0)
        return float(f), float(f), size / 2.0, size / 2.0

    def ground_truth(self) -> dict[str, Any]:
        """Privileged scene state for evaluation and scripted policies (simulation only)."""
        return {
            "task": self.task,
            "success": {name: self.is_success(name) for name in TASK_NAMES},
            "object_pos": self.object_pos().tolist(),
            "object_yaw": self.object_yaw(),
            "object_grasped": self.object_grasped(),
            "target_pos": self.target_pos().tolist(),
            "start_pos": self.start_pos().tolist(),
            "ee_pos": self.ee_pos().tolist(),
            "ee_yaw": self.ee_yaw(),
        }

    def ee_yaw(self) -> float:
        """Gripper yaw about world z."""
        return yaw_of(self.data.site_xmat[self._site])

    def gripper_closed(self) -> float:
        """Gripper closure in [0, 1] (0 open)."""
        return float(np.clip(self.data.qpos[self._driver_qadr] / _DRIVER_JOINT_MAX, 0.0, 1.0))

    def joint_positions(self) -> np.ndarray:
        """The seven arm joint angles."""
        return self.data.qpos[:ARM_DOF].copy()

    # ---------------------------------------------------------------- helpers
    def _subtree_geoms(self, root: str) -> set[int]:
        root_id = self.model.body(root).id
        bodies = {root_id}
        for b in range(self.model.nbody):
            parent = b
            while parent != 0:
                if parent == root_id:
                    bodies.add(b)
                    break
                parent = self.model.body_parentid[parent]
        return {g for g in range(self.model.ngeom) if self.model.geom_bodyid[g] in bodies}

    def _randomize_scene(
        self, object_in: str, layout_seed: int | None = None, band: tuple[float, float] | None = None
    ) -> None:
        if object_in not in OBJECT_PLACES:
            raise ValueError(f"object_in must be one of {', '.join(OBJECT_PLACES)}, got {object_in!r}")
        if object_in in ("between", "table") and band is not None:
            raise ValueError(f"object_band applies to object_in 'start' or 'target', not {object_in!r}")
        rng = self.np_random
        layout_rng = rng if layout_seed is None else np.random.default_rng(int(layout_seed))
        cfg = self.config
        mujoco.mj_resetData(self.model, self.data)
        target_xy = layout_rng.uniform(cfg.target_xy_low, cfg.target_xy_high)
        start_xy = layout_rng.uniform(cfg.start_xy_low, cfg.start_xy_high)
        self.data.mocap_pos[self._target_mocap] = [*target_xy, TABLE_TOP_Z]
        self.data.mocap_pos[self._start_mocap] = [*start_xy, TABLE_TOP_Z]
        half = cfg.variant.object_half_size
        spread = cfg.start_spread if object_in == "start" else cfg.target_spread
        offset = rng.uniform(-spread, spread, 2) if band is None else _band_offset(rng, band)
        if object_in == "between":
            xy = _between_xy(rng, start_xy, target_xy)
            z = TABLE_TOP_Z + half
        elif object_in == "table":
            xy = _table_xy(rng, start_xy, target_xy, self._ws_low[:2], self._ws_high[:2])
            z = TABLE_TOP_Z + half
        elif object_in == "start":
            xy = start_xy + offset
            z = TABLE_TOP_Z + half
        else:
            xy = target_xy + offset
            z = TABLE_TOP_Z + 0.008 + half
        yaw = rng.uniform(-cfg.object_yaw_range, cfg.object_yaw_range)
        q = self._obj_qadr
        self.data.qpos[q : q + 3] = [*xy, z + 0.002]
        self.data.qpos[q + 3 : q + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qpos[:ARM_DOF] = PANDA_HOME_QPOS
        self.data.ctrl[:ARM_DOF] = PANDA_HOME_QPOS
        self.data.ctrl[ARM_DOF] = 0.0
        mujoco.mj_forward(self.model, self.data)
        self._target_pos = self.ee_pos()
        self._target_yaw = self.ee_yaw()
        self._home_pos = np.clip(self._target_pos, self._ws_low, self._ws_high)
        self._home_yaw = self._target_yaw
        self._gripper_cmd = -1.0
        mujoco.mj_step(self.model, self.data, nstep=100)  # let the object settle
        self._scene_ready = True

    def _render(self, size: int) -> np.ndarray:
        if self._renderer is None or self._renderer.width != size:
            if self._renderer is not None:
                self._renderer.close()
            preload_before_gl()
            self._renderer = mujoco.Renderer(self.model, size, size)
            _close_at_exit(self)
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        self._renderer.update_scene(self.data, camera=CAMERA_NAME)
        return self._renderer.render()

    def _proprio(self) -> np.ndarray:
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self._site, vel, 0)
        yaw = self.ee_yaw()
        return np.array(
            [*self.ee_pos(), np.sin(yaw), np.cos(yaw), self.gripper_closed(), *vel[3:]], dtype=np.float32
        )

    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {"proprio": self._proprio(), "task": task_id(self.task)}
        if self.config.image_size:
            obs["image"] = self._render(self.config.image_size)
        return obs

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        if success is None:
            success = self.is_success(self.task)
        return {"task": self.task, "success": bool(success), "steps": self._steps}
