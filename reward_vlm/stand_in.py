"""A stand-in success classifier for tests and benchmarks of the reward node (never for a real robot).

:class:`ColorStandIn` reads the answer from the frame's colour, so a test publishing frames over ROS
decides each verdict: success probability = mean red / 255; a frame whose mean green is above 250
makes it raise (a broken classifier); mean blue above 250 makes it return NaN. ``delay_s`` makes each
call slow: it sleeps, or with ``busy`` keeps one CPU core busy with torch matrix products for that long
(like a model's forward pass, which also releases the GIL). It has the
:class:`reward_vlm.reward_core.ClassifierLike` contract, and :func:`make_stand_in` is the factory the
reward node's test hook loads, e.g.::

    ROBOFUME_REWARD_TEST_CLASSIFIER=reward_vlm.stand_in:make_stand_in \\
    ROBOFUME_REWARD_TEST_CLASSIFIER_KWARGS='{"delay_s": 0.06}' python -m reward_vlm.reward_node
"""

from __future__ import annotations

import threading
import time

import numpy as np

from robofume.sim.tasks import TASK_NAMES


class StandInError(RuntimeError):
    """Raised by :class:`ColorStandIn` for a frame marked as "break the classifier" (mean green > 250)."""


class ColorStandIn:
    """Success probability from the frame's mean colour; optional per-call delay; counts its calls."""

    def __init__(
        self,
        delay_s: float = 0.0,
        threshold: float = 0.5,
        tasks: tuple[str, ...] = TASK_NAMES,
        busy: bool = False,
    ) -> None:
        """``delay_s``: time per call (sleeping, or computing if ``busy``); ``threshold``: for all tasks."""
        if not 0 <= delay_s <= 10:
            raise ValueError(f"delay_s must be in [0, 10], got {delay_s}")
        self.delay_s = float(delay_s)
        self.busy = bool(busy)
        self._threshold = float(threshold)
        self._tasks = tuple(tasks)
        self._lock = threading.Lock()
        self.calls = 0
        self.frames_seen: list[float] = []  # mean red of every frame judged, in order

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks it answers for."""
        return self._tasks

    def predict_proba(self, frames: np.ndarray, task: str) -> np.ndarray:
        """``(N,)`` probabilities = mean red / 255 of each frame (after sleeping ``delay_s``)."""
        if task not in self._tasks:
            raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(self._tasks)}")
        batch = frames[None] if frames.ndim == 3 else frames
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            got = f"{frames.dtype} {frames.shape}"
            raise ValueError(f"expected uint8 frames (H, W, 3) or (N, H, W, 3), got {got}")
        if self.delay_s and self.busy:
            _compute_for(self.delay_s)
        elif self.delay_s:
            time.sleep(self.delay_s)
        means = batch.reshape(batch.shape[0], -1, 3).mean(axis=1)
        with self._lock:
            self.calls += 1
            self.frames_seen.extend(float(m) for m in means[:, 0])
        if (means[:, 1] > 250).any():
            raise StandInError("stand-in classifier told to fail (green frame)")
        probs = means[:, 0] / 255.0
        probs[means[:, 2] > 250] = np.nan
        return probs

    def threshold(self, task: str) -> float:
        """The same threshold for every task."""
        if task not in self._tasks:
            raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(self._tasks)}")
        return self._threshold


def _compute_for(seconds: float) -> None:
    """Keep one core busy with 256x256 torch matrix products for ``seconds`` (torch imported on first use)."""
    import torch

    a = torch.rand(256, 256)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = torch.tanh(a @ a)


def make_stand_in(delay_s: float = 0.0, threshold: float = 0.5, busy: bool = False) -> ColorStandIn:
    """Factory for the reward node's test hook (``module:factory`` + JSON keyword arguments)."""
    return ColorStandIn(delay_s=delay_s, threshold=threshold, busy=busy)


def color_frame(red: int, green: int = 0, blue: int = 0, size: int = 32) -> np.ndarray:
    """A ``size`` x ``size`` frame of one colour (red 255 = certain success for :class:`ColorStandIn`)."""
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[...] = (red, green, blue)
    return frame
