"""Turns the session's streams into replay-buffer transitions: plain Python, fed by the recorder node.

Streams, as they arrive over ROS 2 (or directly in simulated experiments):
  * :meth:`TransitionRecorder.on_observation`: every camera frame with the proprioception at that time;
  * :meth:`TransitionRecorder.on_action`: the policy's action, stamped with the frame it came from;
  * :meth:`TransitionRecorder.on_episode_end`: the controller's verdict on the episode: ``success``
    or ``already_done`` (the classifier's confirmed success: reward 1, terminal) or ``timeout``
    (truncated, bootstrapped).

Transition t is (o_t, a_t, r_t, o_{t+1}): o_t is the frame the action was computed from and o_{t+1}
the frame of the next action (or, at the end of an episode, the frame the classifier judged a
success, else the first frame newer than the last action's, waited for if it has not come yet).
Rewards are 0 except on the success step, so the reward is the
classifier's, never the simulator's. An action whose frame is no longer known (dropped, too old) is
not recorded and is counted. While the controller holds the arm no actions come, so nothing is
recorded; an episode interrupted by a pause continues after it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from robofume.sim.tasks import task_name


class TransitionSink(Protocol):
    """What the recorder writes to (:class:`policy_server.replay_buffer.ReplayBuffer` is one)."""

    def begin_episode(
        self, frame: np.ndarray, proprio: np.ndarray, task: int | str, source: str = ...
    ) -> None:
        """Start an episode with its first observation."""

    def add_step(
        self,
        action: np.ndarray,
        reward: float,
        frame: np.ndarray,
        proprio: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one step and the next observation; close the episode when terminated or truncated."""


@dataclass(frozen=True)
class Observation:
    """A camera frame and the proprioception measured with it."""

    stamp: float
    frame: np.ndarray
    proprio: np.ndarray


@dataclass
class RecorderStats:
    """Counters for the status topic and the session report."""

    transitions: int = 0
    episodes: int = 0
    successes: int = 0
    already_done: int = 0
    timeouts: int = 0
    actions_without_frame: int = 0
    actions_out_of_episode: int = 0
    stale_actions: int = 0
    per_task: dict[str, int] = field(default_factory=dict)


class TransitionRecorder:
    """Pairs frames, actions and episode ends into transitions for a :class:`TransitionSink`."""

    def __init__(self, sink: TransitionSink, history: int = 64, stamp_tolerance_s: float = 1e-4) -> None:
        self.sink = sink
        self.stamp_tolerance_s = stamp_tolerance_s
        self.stats = RecorderStats()
        self._observations: deque[Observation] = deque(maxlen=history)
        self._task: str | None = None
        self._episode_task: str | None = None
        self._closing: bool | None = None  # success flag of an end waiting for a newer frame
        self._open = False
        self._pending: tuple[np.ndarray, Observation] | None = None

    # --- streams -------------------------------------------------------------------------------

    def on_observation(self, stamp: float, frame: np.ndarray, proprio: np.ndarray) -> None:
        """Remember a frame and its proprioception (only the last ``history`` are kept)."""
        if self._observations and stamp <= self._observations[-1].stamp:
            return  # out of order or repeated: the newest frame wins
        obs = Observation(float(stamp), frame, np.asarray(proprio, np.float32))
        self._observations.append(obs)
        if self._closing is not None:
            self._close(obs, success=self._closing)

    def on_episode_start(self, task: str) -> None:
        """The controller started an episode of ``task`` (an open one of another task is closed as cut)."""
        task = task_name(task)
        if self._open:  # an end that never got a newer frame: close it on the newest frame we have
            self._close(None, success=bool(self._closing), force=True)
        self._task = task

    def on_action(self, frame_stamp: float, action: np.ndarray, task: str | None = None) -> bool:
        """Record the policy's action computed from the frame ``frame_stamp``; True if it was used."""
        if self._task is None or (task is not None and task != self._task):
            self.stats.actions_out_of_episode += 1
            return False
        obs = self._find(frame_stamp)
        if obs is None:
            self.stats.actions_without_frame += 1
            return False
        action = np.asarray(action, np.float32)
        if not self._open:
            self.sink.begin_episode(obs.frame, obs.proprio, self._task, source="online")
            self._open, self._episode_task = True, self._task
        elif self._pending is not None:
            previous_action, previous_obs = self._pending
            if obs.stamp <= previous_obs.stamp + self.stamp_tolerance_s:
                self.stats.stale_actions += 1
                return False
            self._step(previous_action, 0.0, obs, terminated=False, truncated=False)
        self._pending = (action, obs)
        return True

    def on_episode_end(self, task: str, outcome: str, frame_stamp: float | None = None) -> None:
        """Close the episode: ``success`` and ``already_done`` end it terminal with reward 1 (the
        classifier confirmed a success state), anything else truncates it."""
        task = task_name(task)
        if task != self._task:
            return
        success = outcome in ("success", "already_done")
        final = self._find(frame_stamp) if (success and frame_stamp is not None) else None
        self._closing = success
        self._close(final, success)
        if outcome == "already_done":
            self.stats.already_done += 1
        elif success:
            self.stats.successes += 1
        else:
            self.stats.timeouts += 1
        self._task = None

    def close(self) -> None:
        """Shutdown: end an open episode as truncated on the newest frame (the buffer flushes it)."""
        if self._open:
            self._close(None, success=bool(self._closing), force=True)
        self._task = None

    # --- internals -----------------------------------------------------------------------------

    def _find(self, stamp: float | None) -> Observation | None:
        if stamp is None:
            return None
        for obs in reversed(self._observations):
            if abs(obs.stamp - stamp) <= self.stamp_tolerance_s:
                return obs
            if obs.stamp < stamp - self.stamp_tolerance_s:
                break
        return None

    def _step(
        self, action: np.ndarray, reward: float, obs: Observation, terminated: bool, truncated: bool
    ) -> None:
        self.sink.add_step(action, reward, obs.frame, obs.proprio, terminated, truncated)
        self.stats.transitions += 1
        task = self._episode_task or "?"
        self.stats.per_task[task] = self.stats.per_task.get(task, 0) + 1

    def _close(self, final: Observation | None, success: bool, force: bool = False) -> None:
        """Write the last step with ``final`` as o_{t+1}; without a newer frame, wait (unless ``force``)."""
        if not self._open or self._pending is None:
            self._open, self._pending, self._closing = False, None, None
            return
        action, last = self._pending
        if final is None or final.stamp <= last.stamp + self.stamp_tolerance_s:
            newer = [o for o in self._observations if o.stamp > last.stamp + self.stamp_tolerance_s]
            if newer:
                final = newer[0] if not success else newer[-1]
            elif force:
                final = last
            else:
                return  # the next frame closes it
        self._step(action, 1.0 if success else 0.0, final, terminated=success, truncated=not success)
        self.stats.episodes += 1
        self._open, self._pending, self._closing = False, None, None
