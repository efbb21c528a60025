"""What a session did, accumulated from its topics: plain Python, fed by the monitor node.

It keeps the episode list (task, outcome by the classifier, ground truth at the end when the
simulator provides it), the classifier's confirmed successes checked against ground truth, weight
versions and learner steps over time, control-loop periods and pauses, and writes TensorBoard
scalars under ``charts/``, ``reward/`` and ``system/`` as they come.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


class ScalarWriter(Protocol):
    """The part of ``torch.utils.tensorboard.SummaryWriter`` the log uses."""

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Record one scalar."""


@dataclass
class EpisodeRecord:
    """One attempt, as the controller ended it."""

    t: float
    """Seconds since the session started."""
    task: str
    outcome: str
    steps: int
    ground_truth: bool | None = None
    """The simulator's success of the task at the end (``None`` on a real robot)."""
    object_pos: list[float] | None = None
    """Where the simulator's object lay at the end (world frame, m; ``None`` on a real robot): the
    scene the next attempt starts from, e.g. the state a stuck stream could not leave."""


HOLD_PHASES: tuple[str, ...] = ("paused", "help_needed", "estop")
"""Controller phases in which the arm is held and no attempt runs."""


def _percentile_ms(values_s: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``values_s`` in milliseconds (None when empty)."""
    return float(np.percentile(np.asarray(values_s) * 1e3, q)) if values_s else None


@dataclass
class SessionLog:
    """Accumulates a session's events; :meth:`summary` gives the report's numbers."""

    t0: float
    writer: ScalarWriter | None = None
    episodes: list[EpisodeRecord] = field(default_factory=list)
    success_events: list[tuple[float, str, bool | None]] = field(default_factory=list)
    """(t, task, ground truth at that moment) for each confirmed success event of the classifier."""
    weight_versions: list[tuple[float, int, int]] = field(default_factory=list)
    """(t, served version, learner step) whenever the served version changed."""
    phases: list[tuple[float, str, str]] = field(default_factory=list)
    help_requests: int = 0
    homings: dict[str, int] = field(default_factory=lambda: {"home": 0, "gave_up": 0})
    """How the controller's homings between attempts ended (``homed`` events)."""
    homing_steps: list[int] = field(default_factory=list)
    action_periods_s: list[float] = field(default_factory=list)
    frame_periods_s: list[float] = field(default_factory=list)
    """Time between the camera stamps of successive policy actions: the camera's cadence."""
    action_latencies_s: list[float] = field(default_factory=list)
    """Camera stamp to the action's arrival: render, transport, inference, transport."""
    probabilities: list[tuple[float, str, float]] = field(default_factory=list)
    transitions: int = 0
    """Transitions recorded online in this session (the buffer's count minus what it held at start)."""
    end_t: float | None = None
    """Seconds from start to the end of the session (:meth:`on_end`); None while it runs."""
    _baseline: int | None = None
    truth: dict[str, Any] | None = None
    _last_action_t: float | None = None
    _last_frame_stamp: float | None = None
    _phase: str = "paused"
    _tb_step: int = 0

    def _scalar(self, tag: str, value: float, t: float) -> None:
        if self.writer is not None and math.isfinite(value):
            self.writer.add_scalar(tag, float(value), round((t - self.t0) * 10))

    # --- inputs --------------------------------------------------------------------------------

    def on_ground_truth(self, truth: dict[str, Any]) -> None:
        """The simulator's latest privileged state (``sim/ground_truth``)."""
        self.truth = truth

    def _truth_of(self, task: str) -> bool | None:
        if self.truth is None:
            return None
        value = self.truth.get("success", {}).get(task)
        return None if value is None else bool(value)

    def _object_pos(self) -> list[float] | None:
        pos = (self.truth or {}).get("object_pos")
        if not isinstance(pos, list) or len(pos) != 3:
            return None
        try:
            return [round(float(v), 4) for v in pos]
        except (TypeError, ValueError):
            return None

    def on_event(self, event: dict[str, Any], now: float) -> None:
        """A ``reset_free/events`` object."""
        kind = event.get("kind")
        if kind == "episode_end":
            record = EpisodeRecord(
                now - self.t0,
                str(event.get("task")),
                str(event.get("outcome")),
                int(event.get("step") or 0),
                self._truth_of(str(event.get("task"))),
                self._object_pos(),
            )
            self.episodes.append(record)
            task = record.task
            recent = [e for e in self.episodes if e.task == task and e.outcome != "already_done"][-20:]
            if recent:
                rate = float(np.mean([e.outcome == "success" for e in recent]))
                self._scalar(f"charts/{task}_success_rate", rate, now)
            truths = [e.ground_truth for e in recent if e.ground_truth is not None]
            if truths:
                self._scalar(f"charts/{task}_success_rate_ground_truth", float(np.mean(truths)), now)
            self._scalar("charts/episodes", len(self.episodes), now)
        elif kind == "phase":
            self.on_phase(str(event.get("phase")), str(event.get("reason", "")), now)
        elif kind == "homed":
            outcome = str(event.get("outcome"))
            self.homings[outcome] = self.homings.get(outcome, 0) + 1
            self.homing_steps.append(int(event.get("step") or 0))
            self._scalar("charts/homing_steps", float(self.homing_steps[-1]), now)
        elif kind == "help":
            self.help_requests += 1
            self._scalar("charts/help_requests", self.help_requests, now)

    def on_end(self, now: float) -> None:
        """The session ended (the nodes are being stopped)."""
        self.end_t = now - self.t0

    def held_s(self) -> dict[str, float]:
        """Seconds the controller spent in each holding phase (paused, help_needed, estop) up to the
        end (or the last event while the session runs)."""
        held: dict[str, float] = {}
        if not self.phases:
            return held
        end = self.end_t if self.end_t is not None else self.phases[-1][0]
        ends = [p[0] for p in self.phases[1:]] + [end]
        for (t, phase, _), t_next in zip(self.phases, ends, strict=True):
            if phase in HOLD_PHASES:
                held[phase] = held.get(phase, 0.0) + max(0.0, min(t_next, end) - t)
        return held

    def on_phase(self, phase: str, reason: str, now: float) -> None:
        """The controller's phase changed."""
        self._phase = phase
        self.phases.append((now - self.t0, phase, reason))
        self._last_action_t = None
        self._last_frame_stamp = None

    def on_success_event(self, task: str, now: float) -> None:
        """The reward node reported a confirmed success (``reward/success``)."""
        truth = self._truth_of(task)
        self.success_events.append((now - self.t0, task, truth))
        checked = [gt for _, _, gt in self.success_events if gt is not None]
        if checked:
            self._scalar("reward/precision_ground_truth", float(np.mean(checked)), now)

    def on_probability(self, task: str, probability: float, now: float) -> None:
        """A judged frame's success probability (``reward/verdict``)."""
        self.probabilities.append((now - self.t0, task, probability))
        self._scalar(f"reward/success_prob_{task}", probability, now)

    def on_action(self, now: float, frame_stamp: float | None = None) -> None:
        """An action reached the arm side: the control period is the time since the previous one.

        ``frame_stamp`` (the camera stamp the action carries, same clock as ``now``) splits the period's
        jitter into the camera's cadence and the frame-to-action latency."""
        acting = self._phase in ("forward", "backward")
        if acting and self._last_action_t is not None:
            period = now - self._last_action_t
            if period < 5.0:
                self.action_periods_s.append(period)
                self._scalar("system/control_period_ms", period * 1e3, now)
        if frame_stamp is not None and frame_stamp > 0:
            latency = now - frame_stamp
            if acting and 0.0 <= latency < 5.0:
                self.action_latencies_s.append(latency)
                self._scalar("system/action_latency_ms", latency * 1e3, now)
            previous, self._last_frame_stamp = self._last_frame_stamp, frame_stamp
            if acting and previous is not None and 0.0 < frame_stamp - previous < 5.0:
                self.frame_periods_s.append(frame_stamp - previous)
        self._last_action_t = now

    def on_weights(self, version: int, learner_step: int, now: float) -> None:
        """The policy server now serves ``version`` (made at learner step ``learner_step``)."""
        if not self.weight_versions or self.weight_versions[-1][1] != version:
            if self.weight_versions and learner_step > self.weight_versions[-1][2] >= 0:
                t_prev, _, step_prev = self.weight_versions[-1]
                dt = now - self.t0 - t_prev
                if dt > 0:
                    self._scalar("system/learner_updates_per_s", (learner_step - step_prev) / dt, now)
            self.weight_versions.append((now - self.t0, version, learner_step))
            self._scalar("system/weight_version", version, now)
            self._scalar("system/learner_step", learner_step, now)

    def on_latency(self, name: str, p50_ms: float, p99_ms: float, now: float) -> None:
        """A node's reported latency percentiles (``system/<name>_p50_ms``, ``_p99_ms``)."""
        self._scalar(f"system/{name}_p50_ms", p50_ms, now)
        self._scalar(f"system/{name}_p99_ms", p99_ms, now)

    def on_reward_latency(self, latency_ms: float, now: float) -> None:
        """The reward node's time to classify one frame (``system/reward_latency_ms``)."""
        self._scalar("system/reward_latency_ms", latency_ms, now)

    def on_transitions(self, committed: int, now: float) -> None:
        """The recorder's committed transition count (offline data included; the first count is the base)."""
        if self._baseline is None:
            self._baseline = committed
        online = committed - self._baseline
        if online != self.transitions:
            self.transitions = online
            self._scalar("system/transitions", online, now)

    # --- outputs -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The numbers of the report (JSON-friendly)."""
        per_task: dict[str, Any] = {}
        for task in ("forward", "backward"):
            every = [e for e in self.episodes if e.task == task]
            eps = [e for e in every if e.outcome != "already_done"]  # attempts; rates are over these
            truths = [e.ground_truth for e in eps if e.ground_truth is not None]
            half = eps[len(eps) // 2 :]
            half_truths = [e.ground_truth for e in half if e.ground_truth is not None]
            per_task[task] = {
                "episodes": len(eps),
                "already_done": len(every) - len(eps),
                "classifier_successes": sum(e.outcome == "success" for e in eps),
                "success_rate": float(np.mean([e.outcome == "success" for e in eps])) if eps else None,
                "ground_truth_success_rate": float(np.mean(truths)) if truths else None,
                "ground_truth_success_rate_last_half": float(np.mean(half_truths)) if half_truths else None,
            }
        checked = [gt for _, _, gt in self.success_events if gt is not None]
        ends_checked = [e for e in self.episodes if e.ground_truth is not None]
        # the classifier's confirmed successes, whether the controller called them success or already done
        said_success = [e for e in ends_checked if e.outcome in ("success", "already_done")]
        true_pos = sum(bool(e.ground_truth) for e in said_success)
        said = len(said_success)
        actual = sum(bool(e.ground_truth) for e in ends_checked)
        return {
            "duration_s": self.end_t
            if self.end_t is not None
            else max([e.t for e in self.episodes] + [p[0] for p in self.phases] + [0.0]),
            "held_s": self.held_s(),
            "tasks": per_task,
            "classifier": {
                "success_events": len(self.success_events),
                "event_precision_ground_truth": float(np.mean(checked)) if checked else None,
                "episode_precision_ground_truth": true_pos / said if said else None,
                "episode_recall_ground_truth": true_pos / actual if actual else None,
            },
            "homing": {
                **self.homings,
                "steps_median": float(np.median(self.homing_steps)) if self.homing_steps else None,
            },
            "weights": {
                "versions_served": len(self.weight_versions),
                "last_version": self.weight_versions[-1][1] if self.weight_versions else None,
                "last_learner_step": self.weight_versions[-1][2] if self.weight_versions else None,
            },
            "control": {
                "periods": len(self.action_periods_s),
                "p50_ms": _percentile_ms(self.action_periods_s, 50),
                "p99_ms": _percentile_ms(self.action_periods_s, 99),
                "camera_period_p50_ms": _percentile_ms(self.frame_periods_s, 50),
                "camera_period_p99_ms": _percentile_ms(self.frame_periods_s, 99),
                "latency_p50_ms": _percentile_ms(self.action_latencies_s, 50),
                "latency_p99_ms": _percentile_ms(self.action_latencies_s, 99),
            },
            "pauses": sum(1 for _, phase, _ in self.phases if phase == "paused"),
            "help_requests": self.help_requests,
            "transitions": self.transitions,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, for ``report.json``."""
        return {
            "summary": self.summary(),
            "episodes": [asdict(e) for e in self.episodes],
            "success_events": [
                {"t": t, "task": task, "ground_truth": gt} for t, task, gt in self.success_events
            ],
            "weight_versions": [
                {"t": t, "version": v, "learner_step": s} for t, v, s in self.weight_versions
            ],
            "phases": [{"t": t, "phase": p, "reason": r} for t, p, r in self.phases],
        }
