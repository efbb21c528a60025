"""The reset-free forward/backward controller: a plain-Python state machine, ticked at the control rate.

It runs the forward task until the success classifier confirms success or a time limit passes, then
the backward task that undoes it, and so on, so nobody has to reset the scene. It never asks the
simulator or anyone else to reset the scene.

Inputs (fed by the ROS node, or directly in simulated experiments):
  * :meth:`ResetFreeController.on_verdict`: the classifier's verdict on a frame (success / failure /
    unknown, confirmed or not);
  * :meth:`ResetFreeController.on_action`: the policy server produced an action (it is alive);
  * :meth:`ResetFreeController.pause` / :meth:`resume` / :meth:`estop` / :meth:`release`: operator.

Output: :meth:`ResetFreeController.tick` returns the :class:`ControllerEvent` list of that control
step (phase changes, episode starts and ends with the outcome and reward, help requests). The phase
tells the policy server which task to act on; any phase other than ``forward``/``backward`` means
"hold the arm": the policy server publishes no action and the safety gate's watchdog holds.

Rules (DESIGN.md §6, items 5-6):
  * success only from a confirmed ``success`` verdict on a frame of the current task, stamped after
    the episode started; ``unknown`` is never success;
  * the policy server or the classifier silent (no action / no verdict that is not ``unknown`` within
    its timeout) -> ``paused`` with the arm held; the episode clock stops; it resumes by itself when
    both are back, and the episode goes on (a pause is not a failure);
  * ``stuck_after`` failed attempts in a row in BOTH directions -> ``help_needed``: the arm is held
    until an operator calls :meth:`resume`. Also stuck: ``stuck_after`` failed attempts in a row in
    one direction while every attempt of the other since then was already done (the scene never
    changes: one task keeps failing, so the object stays where the other task wants it);
  * e-stop latches ``estop`` until :meth:`release`; an operator pause needs :meth:`resume`;
  * with a home pose (``ControllerConfig.homing``), before the first attempt and between attempts
    the phase is ``homing``: :attr:`ResetFreeController.homing_action` is the command of the tick
    (gripper open, lift, travel home; see :mod:`reset_free.homing`), which the node sends through the
    safety gate like a policy action, until :meth:`on_pose` reports the arm home or
    ``homing.max_steps`` pass; only the arm moves, never the scene;
  * a success confirmed within the first ``already_done_steps`` steps of an attempt ends it as
    ``already_done`` (the object was already where the task wants it, e.g. after the other task
    failed): reward 1 and terminal like a success, but neither a success nor a failure in the counters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from reset_free.homing import HomingConfig, HomingConfigError, at_home, homing_action
from robofume.sim.tasks import TASK_NAMES, other_task, task_name


class Phase(str, Enum):
    """What the arm is doing; the value is what ``reset_free/phase`` carries."""

    FORWARD = "forward"
    BACKWARD = "backward"
    HOMING = "homing"
    PAUSED = "paused"
    HELP_NEEDED = "help_needed"
    ESTOP = "estop"

    @property
    def active(self) -> bool:
        """True when a task runs (the policy acts)."""
        return self in (Phase.FORWARD, Phase.BACKWARD)


class ControllerConfigError(ValueError):
    """A controller setting is out of range."""


@dataclass
class ControllerConfig:
    """Settings of the reset-free controller."""

    control_hz: float = 10.0
    """Rate at which :meth:`ResetFreeController.tick` is called."""
    max_episode_steps: int = 100
    """Time limit of one attempt, in control steps (a time-out is truncation, not failure of the state)."""
    start_task: str = "forward"
    stuck_after: int = 3
    """Failed attempts in a row in both directions before the controller stops and asks for help."""
    action_timeout_s: float = 1.0
    """The policy server counts as silent when no action came for this long while a task runs."""
    verdict_timeout_s: float = 1.5
    """The classifier counts as silent when no success/failure verdict came for this long."""
    startup_grace_s: float = 5.0
    """Silence is tolerated this long after start (nodes still coming up)."""
    retry_after_s: float = 3.0
    """After a pause for a silent policy server, try the task again after this long (the arm only moves
    if the policy server is back)."""
    homing: HomingConfig | None = None
    """Home pose and homing motion between attempts; None: attempts start wherever the last one ended."""
    already_done_steps: int = 5
    """A success confirmed within this many steps of an attempt's start is ``already_done``, not a
    success (0: every confirmed success counts)."""

    def validate(self) -> ControllerConfig:
        """Raise :class:`ControllerConfigError` with one line for a bad value; return self."""
        if not (self.control_hz > 0 and math.isfinite(self.control_hz)):
            raise ControllerConfigError(f"control_hz must be > 0, got {self.control_hz}")
        if self.max_episode_steps < 1:
            raise ControllerConfigError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.stuck_after < 1:
            raise ControllerConfigError(f"stuck_after must be >= 1, got {self.stuck_after}")
        if self.already_done_steps < 0:
            raise ControllerConfigError(f"already_done_steps must be >= 0, got {self.already_done_steps}")
        if self.homing is not None:
            try:
                self.homing.validate()
            except HomingConfigError as exc:
                raise ControllerConfigError(str(exc)) from None
        for name in ("action_timeout_s", "verdict_timeout_s", "startup_grace_s", "retry_after_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ControllerConfigError(f"{name} must be >= 0, got {value}")
        try:
            task_name(self.start_task)
        except ValueError as exc:
            raise ControllerConfigError(f"start_task: {exc}") from None
        return self


@dataclass(frozen=True)
class Verdict:
    """The classifier's judgement of one frame, as the controller needs it."""

    status: str
    """``success``, ``failure`` or ``unknown``."""
    task: str | None
    confirmed: bool
    frame_stamp: float
    probability: float = math.nan
    reason: str = ""
    """Why the verdict is ``unknown``: ``no_task`` (frames fresh, nothing to judge) shows the
    classifier is alive while the arm is held; ``stale_frame``, ``no_frame``, ``classifier_error`` do not."""


@dataclass(frozen=True)
class ControllerEvent:
    """Something the controller decided during one tick."""

    kind: str
    """``phase``, ``episode_start``, ``episode_end``, ``help``, ``homed`` or ``step``."""
    time: float
    phase: str
    task: str | None = None
    episode: int | None = None
    step: int | None = None
    outcome: str | None = None
    """For ``episode_end``: ``success`` (terminal, reward 1), ``already_done`` (success confirmed
    right at the start: terminal, reward 1, not counted as a success) or ``timeout`` (truncated).
    For ``homed``: ``home`` or ``gave_up`` (``homing.max_steps`` passed)."""
    reward: float = 0.0
    frame_stamp: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``None`` fields dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


@dataclass
class ControllerStats:
    """Counters the status topic and the session report show."""

    episodes: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TASK_NAMES})
    successes: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TASK_NAMES})
    timeouts: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TASK_NAMES})
    already_done: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TASK_NAMES})
    failures_in_a_row: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TASK_NAMES})
    without_success: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TASK_NAMES})
    """Attempts in a row that timed out or were already done (a real success resets it)."""
    steps: int = 0
    paused_ticks: int = 0
    help_requests: int = 0
    pauses: int = 0
    homing_steps: int = 0
    homings: int = 0
    homing_gave_up: int = 0


class ResetFreeController:
    """Alternates forward and backward attempts; holds the arm when anything it depends on is missing."""

    def __init__(self, config: ControllerConfig | None = None, start_time: float = 0.0) -> None:
        self.config = (config or ControllerConfig()).validate()
        self.stats = ControllerStats()
        self.task: str = self.config.start_task
        self.phase: Phase = Phase.PAUSED
        self.pause_reason: str = "starting"
        self.episode: int = -1
        self.episode_step: int = 0
        self.episode_start_time: float = start_time
        self._operator_pause = False
        self._help = False
        self._estop = False
        self._episode_running = False
        self._start_time = start_time
        self._active_since = start_time
        self._paused_since = start_time
        self._last_action: float | None = None
        self._last_verdict: float | None = None
        self._last_alive: float | None = None
        self._success_verdict: Verdict | None = None
        self._last_probability: float = math.nan
        self._homing_pending = self.config.homing is not None
        self._homing_ticks = 0
        self._pose: tuple[np.ndarray, float, float] | None = None
        self.homing_action: np.ndarray | None = None
        """The homing command of the current tick (phase ``homing`` with a fresh pose), else None."""

    # --- inputs --------------------------------------------------------------------------------

    def on_action(self, now: float) -> None:
        """The policy server published an action for this robot at time ``now``."""
        self._last_action = now

    def on_pose(self, position: list[float] | np.ndarray, yaw: float, now: float) -> None:
        """The arm's measured end-effector pose (world frame) at ``now``; homing steers by it."""
        pos = np.asarray(position, np.float64)
        if pos.shape == (3,) and np.all(np.isfinite(pos)) and math.isfinite(yaw):
            self._pose = (pos, float(yaw), now)

    def _fresh_pose(self, now: float) -> tuple[np.ndarray, float] | None:
        if self._pose is None or now - self._pose[2] > self.config.verdict_timeout_s:
            return None
        return self._pose[0], self._pose[1]

    def on_verdict(self, verdict: Verdict, now: float) -> None:
        """Record a classifier verdict received at ``now``; ``unknown`` is never success and counts as
        silence, except that ``unknown``/``no_task`` shows the classifier alive while the arm is held."""
        if verdict.status not in ("success", "failure", "unknown"):
            raise ValueError(f"verdict status must be success, failure or unknown, got {verdict.status!r}")
        if verdict.status == "unknown":
            if verdict.reason == "no_task":
                self._last_alive = now
            return
        self._last_verdict = self._last_alive = now
        if verdict.task != self.task or not self.phase.active:
            return
        self._last_probability = verdict.probability
        if (
            verdict.status == "success"
            and verdict.confirmed
            and verdict.frame_stamp >= self.episode_start_time
            and self._success_verdict is None
        ):
            self._success_verdict = verdict

    def pause(self) -> None:
        """Operator pause: hold the arm until :meth:`resume`."""
        self._operator_pause = True

    def resume(self) -> None:
        """Operator resume: clears an operator pause and a help request (not an e-stop)."""
        self._operator_pause = False
        if self._help:
            self._help = False
            self.stats.failures_in_a_row = {t: 0 for t in TASK_NAMES}
            self.stats.without_success = {t: 0 for t in TASK_NAMES}

    def estop(self) -> None:
        """Latch the e-stop: nothing runs until :meth:`release`."""
        self._estop = True

    def release(self) -> None:
        """Operator release of the e-stop (the episode then continues after :meth:`resume` if paused)."""
        self._estop = False

    # --- the control step ----------------------------------------------------------------------

    def _active_problem(self, now: float) -> str:
        """Why a running task must stop (empty when all is well)."""
        if now - self._start_time < self.config.startup_grace_s:
            return ""
        since = self._active_since
        last_action = self._last_action if self._last_action is not None else -math.inf
        last_verdict = self._last_verdict if self._last_verdict is not None else -math.inf
        if now - max(last_action, since) > self.config.action_timeout_s:
            return "policy server silent"
        if now - max(last_verdict, since) > self.config.verdict_timeout_s:
            return "classifier silent or no fresh frames"
        return ""

    def _held_problem(self, now: float) -> str:
        """Why a held arm must stay held (empty when the task may run)."""
        if self._last_alive is None:
            return "waiting for the classifier"
        if now - self._last_alive > self.config.verdict_timeout_s:
            return "classifier silent or no fresh frames"
        if (
            self.pause_reason == "policy server silent"
            and now - self._paused_since < self.config.retry_after_s
        ):
            return self.pause_reason
        return ""

    def _desired_phase(self, now: float) -> tuple[Phase, str]:
        if self._estop:
            return Phase.ESTOP, "e-stop"
        if self._help:
            return Phase.HELP_NEEDED, "stuck: failed in both directions"
        if self._operator_pause:
            return Phase.PAUSED, "operator pause"
        if self._homing_pending:
            return Phase.HOMING, ""
        problem = self._active_problem(now) if self.phase.active else self._held_problem(now)
        if problem:
            return Phase.PAUSED, problem
        return Phase(self.task), ""

    def _start_episode(self, now: float, events: list[ControllerEvent]) -> None:
        self.episode += 1
        self.episode_step = 0
        self.episode_start_time = now
        self._success_verdict = None
        self._episode_running = True
        self.stats.episodes[self.task] += 1
        events.append(ControllerEvent("episode_start", now, self.phase.value, self.task, self.episode, 0))

    def _end_episode(self, now: float, outcome: str, events: list[ControllerEvent]) -> None:
        task = self.task
        verdict = self._success_verdict
        if outcome == "success":
            self.stats.successes[task] += 1
            self.stats.failures_in_a_row[task] = 0
            self.stats.without_success[task] = 0
        elif outcome == "already_done":
            self.stats.already_done[task] += 1
            self.stats.without_success[task] += 1
        else:
            self.stats.timeouts[task] += 1
            self.stats.failures_in_a_row[task] += 1
            self.stats.without_success[task] += 1
        events.append(
            ControllerEvent(
                "episode_end",
                now,
                self.phase.value,
                task,
                self.episode,
                self.episode_step,
                outcome=outcome,
                reward=0.0 if outcome == "timeout" else 1.0,
                frame_stamp=verdict.frame_stamp if verdict else None,
            )
        )
        if self._stuck():
            self._help = True
            self.stats.help_requests += 1
            events.append(
                ControllerEvent(
                    "help", now, Phase.HELP_NEEDED.value, task, self.episode, reason=self._stuck_reason()
                )
            )
        self.task = other_task(task)
        self._episode_running = False
        self.episode_start_time = now
        self._success_verdict = None
        self._homing_pending = self.config.homing is not None
        self._homing_ticks = 0

    def _homing_result(self, now: float) -> str:
        """``home`` or ``gave_up`` when homing is over, else empty."""
        homing = self.config.homing
        assert homing is not None
        pose = self._fresh_pose(now)
        if pose is not None and at_home(homing, *pose):
            return "home"
        return "gave_up" if self._homing_ticks >= homing.max_steps else ""

    def _stuck(self) -> bool:
        """Failed ``stuck_after`` times in a row in both directions, or in one while the other had
        ``stuck_after`` attempts without a success (failed or already done): no real success in
        either direction."""
        n, s = self.config.stuck_after, self.stats
        if all(k >= n for k in s.failures_in_a_row.values()):
            return True
        return any(k >= n for k in s.failures_in_a_row.values()) and all(
            k >= n for k in s.without_success.values()
        )

    def _stuck_reason(self) -> str:
        parts = []
        for task, failed in self.stats.failures_in_a_row.items():
            done = self.stats.without_success[task] - failed  # already-done attempts since a success
            parts.append(f"{task} {failed}" + (f" (+{done} already done)" if done else ""))
        counts = ", ".join(parts)
        return f"failed attempts in a row: {counts}; arm held, call reset_free/resume after fixing the scene"

    def tick(self, now: float) -> list[ControllerEvent]:
        """Advance one control step at time ``now``; return what happened (see :class:`ControllerEvent`)."""
        events: list[ControllerEvent] = []
        self.homing_action = None
        if self.phase.active:
            if self._success_verdict is not None:
                early = self.episode_step <= self.config.already_done_steps
                self._end_episode(now, "already_done" if early else "success", events)
            elif self.episode_step >= self.config.max_episode_steps:
                self._end_episode(now, "timeout", events)
        desired, reason = self._desired_phase(now)
        if desired != self.phase or reason != self.pause_reason:
            if desired.active and not self.phase.active:
                # (Re)starting: silence is measured from now; an interrupted episode goes on.
                self._active_since = now
            if not desired.active:
                self._paused_since = now
                self.stats.pauses += int(self.phase.active)
            self.phase, self.pause_reason = desired, reason
            events.append(ControllerEvent("phase", now, desired.value, self.task, reason=reason))
        if self.phase is Phase.HOMING:
            result = self._homing_result(now)
            if result:
                self._homing_pending = False
                self.stats.homings += 1
                self.stats.homing_gave_up += int(result == "gave_up")
                events.append(ControllerEvent("homed", now, self.phase.value, self.task, self.episode,
                                              self._homing_ticks, outcome=result))  # fmt: skip
                return events + self.tick(now)  # the same control step goes on: the attempt starts now
            self._homing_step(now)
            return events
        if not self.phase.active:
            self.stats.paused_ticks += 1
            return events
        if not self._episode_running:
            self._start_episode(now, events)
        self.episode_step += 1
        self.stats.steps += 1
        events.append(
            ControllerEvent("step", now, self.phase.value, self.task, self.episode, self.episode_step)
        )
        return events

    def _homing_step(self, now: float) -> None:
        homing = self.config.homing
        assert homing is not None
        pose = self._fresh_pose(now)
        if pose is not None:
            self.homing_action = homing_action(homing, *pose)
        if pose is not None or now - self._start_time >= self.config.startup_grace_s:
            self._homing_ticks += 1  # the arm's pose may still be coming up: that time does not count
        self.stats.homing_steps += 1

    def status(self) -> dict[str, Any]:
        """A JSON-friendly snapshot for the status topic and the console."""
        return {
            "phase": self.phase.value,
            "reason": self.pause_reason,
            "task": self.task,
            "episode": self.episode,
            "episode_step": self.episode_step,
            "probability": self._last_probability,
            **asdict(self.stats),
        }
