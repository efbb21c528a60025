"""Safety gate between the policy and the arm driver (plain Python + numpy, no ROS).

Every policy command passes through :class:`SafetyGate`. A command is a normalized action
``[dx, dy, dz, dyaw, gripper]`` in [-1, 1] stamped with the time of the camera frame it was computed
from. The gate rejects malformed and stale commands, turns valid ones into an absolute end-effector
target that lies inside the workspace box and at most ``max_step`` from the current end effector,
holds the arm when commands stop arriving (watchdog), and latches an e-stop that only an operator
can release (optionally persisted on disk so that a restarted gate comes back latched).

Geometry rule (documented exception): when the current end effector is *outside* the workspace box
by more than ``max_step``, no point is both inside the box and within ``max_step`` of it. The target
is then the point ``max_step`` along the straight line towards the nearest point of the box (the
same rule applies to hold targets and, in one dimension, to yaw against ``yaw_range``).
Yaw is treated as a plain number (no wrap-around at +-pi).

Action convention (``delta_from``): a delta moves the *previous target* (``"target"``, the default,
while commands keep coming; the measured pose after a hold or at start), as the mock arm env and the
recorded data define actions; or the *measured* end-effector pose (``"measured"``). Either way the
target stays within ``max_step`` of the measured pose, so a blocked arm never winds up a far target.
The two differ whenever the arm lags its target: the mock's pre-trained policy succeeded in 10 of 10
held-out scenes with target deltas and in 0 of 10 with measured-pose deltas (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robofume.atomic_io import atomic_writer, fsync_dir

_LOG = logging.getLogger(__name__)

ACTION_DIM = 5
# An action element may exceed [-1, 1] by this much (float noise) before the command is malformed.
ACTION_TOLERANCE = 1e-6
CLIP_TOLERANCE = 1e-9  # a change larger than this marks a command "clipped"

ACCEPTED = "accepted"
CLIPPED = "clipped"
REJECTED_MALFORMED = "rejected_malformed"
DROPPED_STALE = "dropped_stale"
BLOCKED_ESTOP = "blocked_estop"


class SafetyConfigError(ValueError):
    """Invalid or incomplete safety limits."""


def _is_real(value: object) -> bool:
    """True for real numbers (Python or numpy), False for bools, complex, strings and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _finite_float(value: object) -> float | None:
    """``value`` as a finite float, or None if it is not a finite real number."""
    if not _is_real(value):
        return None
    try:
        result = float(value)  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _finite_vector(value: object, length: int) -> np.ndarray | None:
    """``value`` as a float vector of ``length`` finite numbers, or None if it is anything else."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.shape[0] != length or value.dtype.kind not in "iuf":
            return None
        items: Sequence[object] = value.tolist()
    elif isinstance(value, (list, tuple)):
        if len(value) != length:
            return None
        items = value
    else:
        return None
    floats = [_finite_float(item) for item in items]
    if any(f is None for f in floats):
        return None
    return np.array(floats, dtype=float)


def _config_vector(name: str, value: object, length: int) -> tuple[float, ...]:
    """A limits field as a tuple of ``length`` finite floats; SafetyConfigError otherwise."""
    vector = _finite_vector(value, length)
    if vector is None:
        raise SafetyConfigError(f"{name} must be a list of {length} finite numbers, got {value!r}")
    return tuple(float(v) for v in vector)


def _config_scalar(name: str, value: object) -> float:
    """A limits field as a finite float; SafetyConfigError otherwise."""
    result = _finite_float(value)
    if result is None:
        raise SafetyConfigError(f"{name} must be a finite number, got {value!r}")
    return result


@dataclass(frozen=True)
class SafetyLimits:
    """Hard limits of one arm. Validated (and normalized to float tuples) on construction."""

    workspace_low: tuple[float, float, float]  # m, end-effector target box, world frame
    workspace_high: tuple[float, float, float]
    max_step: float  # m, cap on the Euclidean norm of (target - current EE)
    pos_scale: float  # m per unit action
    yaw_scale: float  # rad per unit action; also the cap on the yaw change per command
    yaw_range: tuple[float, float]  # rad, allowed absolute yaw
    gripper_range: tuple[float, float]  # allowed gripper closure command, subset of [0, 1]
    watchdog_timeout: float  # s without a valid command -> hold
    max_frame_age: float  # s, commands computed from older (or future) frames are dropped

    def __post_init__(self) -> None:
        """Check every field; raise SafetyConfigError with one clear line on the first problem."""
        vectors = {"workspace_low": 3, "workspace_high": 3, "yaw_range": 2, "gripper_range": 2}
        for name, length in vectors.items():
            object.__setattr__(self, name, _config_vector(name, getattr(self, name), length))
        for name in ("max_step", "pos_scale", "yaw_scale", "watchdog_timeout", "max_frame_age"):
            value = _config_scalar(name, getattr(self, name))
            if value <= 0:
                raise SafetyConfigError(f"{name} must be > 0, got {value}")
            object.__setattr__(self, name, value)
        for axis, low, high in zip("xyz", self.workspace_low, self.workspace_high, strict=True):
            if low >= high:
                raise SafetyConfigError(
                    f"workspace_low.{axis} ({low}) must be < workspace_high.{axis} ({high})"
                )
        if self.yaw_range[0] > self.yaw_range[1]:
            raise SafetyConfigError(f"yaw_range must be ordered [low, high], got {list(self.yaw_range)}")
        low, high = self.gripper_range
        if not 0.0 <= low <= high <= 1.0:
            raise SafetyConfigError(f"gripper_range must satisfy 0 <= low <= high <= 1, got {[low, high]}")

    def contains(self, position: Sequence[float], tol: float = 0.0) -> bool:
        """True if ``position`` lies inside the workspace box (grown by ``tol``)."""
        p = np.asarray(position, dtype=float)
        return bool(
            np.all(p >= np.subtract(self.workspace_low, tol))
            and np.all(p <= np.add(self.workspace_high, tol))
        )


_LIMIT_FIELDS = tuple(field.name for field in dataclasses.fields(SafetyLimits))


def load_limits(source: str | os.PathLike[str] | Mapping[str, Any]) -> SafetyLimits:
    """Load SafetyLimits from a YAML file or a mapping; every field is required, unknown keys are errors."""
    if isinstance(source, Mapping):
        where, data = "<mapping>", source
    else:
        where = os.fspath(source)
        try:
            with open(where, encoding="utf-8") as stream:
                data = yaml.safe_load(stream)
        except OSError as exc:
            raise SafetyConfigError(f"safety limits in {where}: cannot read file ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise SafetyConfigError(f"safety limits in {where}: invalid YAML: {detail}") from exc
    if not isinstance(data, Mapping):
        raise SafetyConfigError(
            f"safety limits in {where}: expected a mapping of limits, got {type(data).__name__}"
        )
    missing = [name for name in _LIMIT_FIELDS if name not in data]
    if missing:
        raise SafetyConfigError(f"safety limits in {where}: missing required key(s): {', '.join(missing)}")
    unknown = sorted(str(key) for key in data if key not in _LIMIT_FIELDS)
    if unknown:
        raise SafetyConfigError(f"safety limits in {where}: unknown key(s): {', '.join(unknown)}")
    try:
        return SafetyLimits(**{name: data[name] for name in _LIMIT_FIELDS})
    except SafetyConfigError as exc:
        raise SafetyConfigError(f"safety limits in {where}: {exc}") from exc


@dataclass(frozen=True)
class ArmTarget:
    """Absolute end-effector target for the arm driver; gripper is a closure in [0, 1]."""

    x: float
    y: float
    z: float
    yaw: float
    gripper: float

    @property
    def position(self) -> tuple[float, float, float]:
        """The (x, y, z) target in metres."""
        return (self.x, self.y, self.z)


@dataclass
class GateCounters:
    """Running counts of submit outcomes and watchdog hold transitions."""

    accepted: int = 0
    clipped: int = 0
    rejected_malformed: int = 0
    dropped_stale: int = 0
    blocked_estop: int = 0
    watchdog_holds: int = 0


class GateState(str, Enum):
    """OK: following commands; HOLDING: no fresh valid command; ESTOP: latched until an operator release."""

    OK = "ok"
    HOLDING = "holding"
    ESTOP = "estop"


@dataclass(frozen=True)
class GateResult:
    """Outcome of one submit: the target to send now (None = send nothing), a status and a one-line reason."""

    target: ArmTarget | None
    status: str
    reason: str


def step_toward(
    current: np.ndarray, desired: np.ndarray, low: np.ndarray, high: np.ndarray, max_step: float
) -> np.ndarray:
    """A safe point towards ``desired``: inside [low, high] and within ``max_step`` of ``current``.

    ``desired`` is clamped into the box first. If ``current`` is inside the box (or within max_step
    of it) the result is inside the box and within ``max_step`` of ``current``. Otherwise it is the
    point ``max_step`` towards the nearest point of the box (documented exception).
    """
    nearest = np.clip(current, low, high)
    to_box = nearest - current
    gap = float(np.linalg.norm(to_box))
    if gap > max_step:
        return current + to_box * (max_step / gap)
    goal = np.clip(desired, low, high)
    if float(np.linalg.norm(goal - current)) <= max_step:
        return goal
    # Largest t in [0, 1] with |nearest + t (goal - nearest) - current| <= max_step; both ends are in the box.
    u, v = to_box, goal - nearest
    a, b, c = float(v @ v), float(u @ v), float(u @ u) - max_step**2
    t = (-b + math.sqrt(max(b * b - a * c, 0.0))) / a if a > 0 else 0.0
    return np.clip(nearest + min(max(t, 0.0), 1.0) * v, low, high)


DELTA_FROM: tuple[str, ...] = ("target", "measured")


class SafetyGate:
    """Turns normalized policy actions into safe absolute arm targets; watchdog and latched e-stop."""

    def __init__(
        self,
        limits: SafetyLimits,
        latch_path: str | os.PathLike[str] | None = None,
        delta_from: str = "target",
    ) -> None:
        """Create a gate; if ``latch_path`` exists the gate starts in ESTOP (a restart never un-latches).
        ``delta_from``: ``"target"`` or ``"measured"`` (see the module docstring)."""
        if delta_from not in DELTA_FROM:
            raise ValueError(f"delta_from must be one of {', '.join(DELTA_FROM)}, got {delta_from!r}")
        self.delta_from = delta_from
        self._limits = limits
        self._low = np.array(limits.workspace_low)
        self._high = np.array(limits.workspace_high)
        self._latch_path = Path(latch_path) if latch_path is not None else None
        self._counters = GateCounters()
        self._state = GateState.HOLDING  # nothing commanded yet
        self._last_valid_time: float | None = None
        self._last_target: ArmTarget | None = None
        self._last_result = "none"
        self._estop_reason = ""
        self._released_by = ""
        self._latch_error = ""
        if self._latch_path is not None and self._latch_path.exists():
            self._state = GateState.ESTOP
            self._estop_reason = f"latched before restart: {self._read_latch()}"

    @property
    def state(self) -> GateState:
        """Current gate state."""
        return self._state

    @property
    def counters(self) -> GateCounters:
        """Live counters (a copy would hide later updates; do not modify)."""
        return self._counters

    @property
    def last_target(self) -> ArmTarget | None:
        """The last target produced by an accepted or clipped command."""
        return self._last_target

    @property
    def limits(self) -> SafetyLimits:
        """The limits this gate enforces."""
        return self._limits

    def submit(
        self, action: object, frame_stamp: object, now: float, ee_pos: Sequence[float], ee_yaw: float
    ) -> GateResult:
        """Check one policy command against the current arm pose and return what to send to the arm."""
        problem, act, stamp, pos, yaw = self._parse(action, frame_stamp, now, ee_pos, ee_yaw)
        if problem:
            return self._finish(None, REJECTED_MALFORMED, problem)
        if self._state is GateState.ESTOP:
            return self._finish(None, BLOCKED_ESTOP, f"e-stop engaged: {self._estop_reason}")
        age = float(now) - stamp
        if abs(age) > self._limits.max_frame_age:
            kind = "old" if age > 0 else "in the future"
            return self._finish(
                None, DROPPED_STALE, f"frame is {abs(age):.3f} s {kind} (> {self._limits.max_frame_age} s)"
            )
        target, clipped = self._compute(act, pos, yaw)
        self._last_valid_time = float(now)
        self._last_target = target
        self._state = GateState.OK
        if clipped:
            return self._finish(target, CLIPPED, "target limited by workspace, step, yaw or gripper limits")
        return self._finish(target, ACCEPTED, "within limits")

    def tick(self, now: float, ee_pos: Sequence[float], ee_yaw: float) -> ArmTarget | None:
        """Control-rate check: a hold target while e-stopped or after the watchdog fires, else None.

        If ``now``, ``ee_pos`` or ``ee_yaw`` is not finite, no safe hold target can be computed:
        the state still moves to HOLDING (unless e-stopped) and None is returned.
        """
        t = _finite_float(now)
        if self._state is not GateState.ESTOP:
            fresh = (
                t is not None
                and self._last_valid_time is not None
                and abs(t - self._last_valid_time) <= self._limits.watchdog_timeout
            )
            if not fresh and self._state is GateState.OK:
                self._state = GateState.HOLDING
                self._counters.watchdog_holds += 1
            if self._state is GateState.OK:
                return None
        pos, yaw = _finite_vector(ee_pos, 3), _finite_float(ee_yaw)
        if pos is None or yaw is None:
            return None
        return self._hold_target(pos, yaw)

    def engage_estop(self, reason: str) -> None:
        """Latch the e-stop (kept in memory even if persisting the latch file fails)."""
        if self._state is not GateState.ESTOP:
            self._estop_reason = str(reason).strip() or "unspecified"
        self._state = GateState.ESTOP
        if self._latch_path is not None:
            try:
                _write_latch(self._latch_path, self._estop_reason + "\n")
                self._latch_error = ""
            except OSError as exc:
                self._latch_error = f"cannot write latch {self._latch_path}: {exc}"
                _LOG.error("e-stop engaged but %s", self._latch_error)

    def release_estop(self, operator: str) -> None:
        """Release the e-stop (the only way out of ESTOP); the gate then holds until a fresh valid command."""
        if not isinstance(operator, str) or not operator.strip():
            raise ValueError("release_estop needs a non-empty operator name")
        if self._latch_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._latch_path.unlink()  # OSError other than "missing" propagates: stay latched
            fsync_dir(self._latch_path.parent)
        if self._state is GateState.ESTOP:
            self._state = GateState.HOLDING
            self._last_valid_time = None
        self._released_by = operator.strip()
        self._estop_reason = ""
        self._latch_error = ""

    def diagnostics(self) -> dict[str, str]:
        """Flat key -> string map (state, counters, limits, e-stop) for a DiagnosticStatus."""
        diag = {
            "state": self._state.value,
            "estop_reason": self._estop_reason,
            "estop_released_by": self._released_by,
            "latch_path": str(self._latch_path) if self._latch_path is not None else "",
            "latch_error": self._latch_error,
            "last_result": self._last_result,
        }
        diag.update({name: str(value) for name, value in dataclasses.asdict(self._counters).items()})
        diag.update({f"limit.{name}": str(getattr(self._limits, name)) for name in _LIMIT_FIELDS})
        return diag

    def _parse(
        self, action: object, frame_stamp: object, now: object, ee_pos: object, ee_yaw: object
    ) -> tuple[str, np.ndarray, float, np.ndarray, float]:
        """Validate submit's inputs: (problem, action, stamp, ee_pos, ee_yaw); problem is '' if valid."""
        empty = np.zeros(0)
        act = _finite_vector(action, ACTION_DIM)
        if act is None:
            return (
                f"action must be {ACTION_DIM} finite real numbers, got {_short(action)}",
                empty,
                0.0,
                empty,
                0.0,
            )
        if np.any(np.abs(act) > 1.0 + ACTION_TOLERANCE):
            return f"action outside [-1, 1]: {_short(action)}", empty, 0.0, empty, 0.0
        stamp = _finite_float(frame_stamp)
        if stamp is None:
            return f"frame_stamp must be a finite number, got {_short(frame_stamp)}", empty, 0.0, empty, 0.0
        if _finite_float(now) is None:
            return f"now must be a finite number, got {_short(now)}", empty, 0.0, empty, 0.0
        pos = _finite_vector(ee_pos, 3)
        if pos is None:
            return f"ee_pos must be 3 finite numbers, got {_short(ee_pos)}", empty, 0.0, empty, 0.0
        yaw = _finite_float(ee_yaw)
        if yaw is None:
            return f"ee_yaw must be a finite number, got {_short(ee_yaw)}", empty, 0.0, empty, 0.0
        return "", np.clip(act, -1.0, 1.0), stamp, pos, yaw

    def _compute(self, act: np.ndarray, pos: np.ndarray, yaw: float) -> tuple[ArmTarget, bool]:
        """Safe target for a valid action, and whether any limit changed it."""
        lim = self._limits
        base_pos, base_yaw = pos, yaw
        last = self._last_target
        if self.delta_from == "target" and last is not None and self._state is GateState.OK:
            base_pos, base_yaw = np.array(last.position), last.yaw  # commands kept coming: no hold since
        raw_pos = base_pos + act[:3] * lim.pos_scale
        raw_yaw = base_yaw + float(act[3]) * lim.yaw_scale
        raw_grip = (float(act[4]) + 1.0) / 2.0
        target_pos = step_toward(pos, raw_pos, self._low, self._high, lim.max_step)
        target_yaw = float(
            step_toward(np.array([yaw]), np.array([raw_yaw]), *self._yaw_bounds(), lim.yaw_scale)[0]
        )
        grip = min(max(raw_grip, lim.gripper_range[0]), lim.gripper_range[1])
        target = ArmTarget(*(float(v) for v in target_pos), yaw=target_yaw, gripper=grip)
        raw = np.array([*raw_pos, raw_yaw, raw_grip])
        final = np.array([*target_pos, target_yaw, grip])
        return target, bool(np.any(np.abs(final - raw) > CLIP_TOLERANCE))

    def _hold_target(self, pos: np.ndarray, yaw: float) -> ArmTarget:
        """Hold at the current pose, pulled into the box / yaw range by at most one step."""
        lim = self._limits
        hold_pos = step_toward(pos, pos, self._low, self._high, lim.max_step)
        hold_yaw = float(step_toward(np.array([yaw]), np.array([yaw]), *self._yaw_bounds(), lim.yaw_scale)[0])
        grip = self._last_target.gripper if self._last_target is not None else lim.gripper_range[0]
        return ArmTarget(*(float(v) for v in hold_pos), yaw=hold_yaw, gripper=grip)

    def _yaw_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """yaw_range as two 1-element arrays."""
        return np.array([self._limits.yaw_range[0]]), np.array([self._limits.yaw_range[1]])

    def _finish(self, target: ArmTarget | None, status: str, reason: str) -> GateResult:
        """Count the outcome and wrap it in a GateResult."""
        setattr(self._counters, status, getattr(self._counters, status) + 1)
        self._last_result = f"{status}: {reason}"
        return GateResult(target=target, status=status, reason=reason)

    def _read_latch(self) -> str:
        """The reason stored in the latch file (best effort)."""
        assert self._latch_path is not None
        try:
            return self._latch_path.read_text(encoding="utf-8").strip() or "unspecified"
        except (OSError, UnicodeDecodeError) as exc:
            return f"unreadable latch file ({exc})"


def _short(value: object, limit: int = 80) -> str:
    """A one-line, length-limited repr for reasons."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write_latch(path: Path, text: str) -> None:
    """Write the latch file atomically (temp file, fsync, rename, fsync folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        f.write(text.encode("utf-8"))
