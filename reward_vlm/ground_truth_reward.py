"""Ground-truth success for the mock arm: the simulator's own checker in the classifier's place.

Simulation only. The mock arm node publishes its privileged scene state on ``sim/ground_truth``
(``MockArmEnv.ground_truth()`` as JSON, with ``"success": {"forward": bool, "backward": bool}``).
:class:`GroundTruthSuccess` keeps the newest such message and answers the
:class:`reward_vlm.reward_core.ClassifierLike` contract from it, so the reward node's judge keeps
every other rule it has (newest frame only, k-frame confirmation, "unknown" on stale input). A
session with ``--reward ground-truth`` uses it to tell classifier problems from RL problems: the
same session with a perfect reward.

Example::

    truth = GroundTruthSuccess(max_age_s=0.5)
    truth.update('{"success": {"forward": true, "backward": false}}')
    truth.predict_proba(frame, "forward")   # array([1.])
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable

import numpy as np

from robofume.sim.tasks import TASK_NAMES


class GroundTruthSuccess:
    """Success probability 1 or 0 from the newest ``sim/ground_truth`` message; NaN when none is fresh."""

    def __init__(
        self,
        max_age_s: float = 0.5,
        tasks: tuple[str, ...] = TASK_NAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``max_age_s``: a ground truth received longer ago than this gives NaN ("unknown")."""
        if not (math.isfinite(max_age_s) and max_age_s > 0):
            raise ValueError(f"max_age_s must be a positive number of seconds, got {max_age_s}")
        self.max_age_s = float(max_age_s)
        self._tasks = tuple(tasks)
        self._clock = clock
        self._lock = threading.Lock()
        self._success: dict[str, bool] = {}
        self._received: float | None = None
        self.messages = 0

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks it answers for."""
        return self._tasks

    def update(self, message: str) -> None:
        """Take one ``sim/ground_truth`` JSON message; ``ValueError`` (one line) without success flags."""
        try:
            state = json.loads(message)
        except json.JSONDecodeError as exc:
            raise ValueError(f"ground truth is not JSON: {exc}") from None
        flags = state.get("success") if isinstance(state, dict) else None
        if not isinstance(flags, dict) or not all(isinstance(flags.get(t), bool) for t in self._tasks):
            raise ValueError(f"ground truth lacks boolean success flags for {', '.join(self._tasks)}")
        with self._lock:
            self._success = {t: flags[t] for t in self._tasks}
            self._received = self._clock()
            self.messages += 1

    def predict_proba(self, frames: np.ndarray, task: str) -> np.ndarray:
        """``(N,)`` probabilities: 1.0 where the scene shows success of ``task`` now, 0.0 where not, NaN
        when no ground truth is fresh. The frames only give N: the answer is the scene's, not the image's."""
        if task not in self._tasks:
            raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(self._tasks)}")
        n = 1 if frames.ndim == 3 else int(frames.shape[0])
        with self._lock:
            fresh = self._received is not None and self._clock() - self._received <= self.max_age_s
            value = float(self._success[task]) if fresh else math.nan
        return np.full(n, value, dtype=np.float32)

    def threshold(self, task: str) -> float:
        """0.5 for every task (the probabilities are 0 or 1)."""
        if task not in self._tasks:
            raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(self._tasks)}")
        return 0.5
