"""The reward judge: the newest camera frame, the current task and a success classifier in, verdicts out.

Plain Python (no ROS): :mod:`reward_vlm.reward_node` wraps it in a ROS 2 node, tests and in-process
experiments use it directly. The rules it keeps (DESIGN.md §6 items 5-6):

- Only the newest frame is kept: a new frame replaces an unjudged one (counted as replaced), so a slow
  classifier never builds a backlog; frames stamped at or before the last judged or pending frame are
  dropped as out of order, so no frame is ever judged twice.
- A verdict is ``"success"``, ``"failure"`` or ``"unknown"``. It is ``"unknown"`` (probability NaN), never
  ``"success"``, when there is no task, the task is not one the classifier knows, the frame is older
  than ``max_frame_age_s`` (before or after classification), the classifier raises, or it returns a
  non-finite probability or threshold.
- When no frame arrives, an ``"unknown"`` verdict without a frame is issued every ``1 / heartbeat_hz``
  seconds, so a listener can tell a silent camera from a dead classifier.
- ``confirmed`` is k-consecutive-success confirmation; ``event`` marks the first confirmed verdict of a
  streak (publish one success event per streak). A task switch resets the confirmation, discards the
  pending frame and frames stamped before the switch, and drops a verdict still being computed for the
  old task.

Times are seconds on one clock shared by frame stamps and ``now`` (the ROS clock in the node).

Example::

    judge = RewardJudge(classifier, RewardNodeConfig(confirm_frames=3))
    judge.set_task("forward")
    judge.submit(frame, stamp=time.time())
    verdict = judge.step()          # or judge.start(on_verdict) to judge on a worker thread
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

STATUSES: tuple[str, ...] = ("success", "failure", "unknown")

# Reasons for an "unknown" verdict (``Verdict.reason``); "" for a judged frame.
NO_FRAME = "no_frame"
NO_FRESH_FRAME = "no_fresh_frame"
NO_TASK = "no_task"
UNKNOWN_TASK = "task_not_in_classifier"
STALE_FRAME = "stale_frame"
FUTURE_FRAME = "frame_from_future"
CLASSIFIER_ERROR = "classifier_error"
NON_FINITE = "non_finite_output"


REWARD_SOURCES: tuple[str, ...] = ("classifier", "ground_truth")
"""Where a reward node's verdicts come from: a success classifier, or (simulation only) the mock
arm's ground truth (:mod:`reward_vlm.ground_truth_reward`)."""


class RewardConfigError(ValueError):
    """A reward node setting is invalid (one line, names the setting and the accepted range)."""


@runtime_checkable
class ClassifierLike(Protocol):
    """What the judge needs of a success classifier (``reward_vlm.classifier.SuccessClassifier`` has it)."""

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names this classifier can judge."""
        ...

    def predict_proba(self, frames: np.ndarray, task: str) -> np.ndarray:
        """Success probabilities ``(N,)`` of uint8 frames ``(H, W, 3)`` or ``(N, H, W, 3)`` for ``task``."""
        ...

    def threshold(self, task: str) -> float:
        """Probability at or above which a frame counts as a success of ``task``."""
        ...


class ConfirmationLike(Protocol):
    """k-consecutive-success confirmation (``reward_vlm.classifier.SuccessConfirmation`` has it)."""

    def update(self, success: bool | None) -> bool:
        """Feed one verdict (``None`` = unknown); True when the success is confirmed."""
        ...

    def reset(self) -> None:
        """Forget the current streak."""
        ...


@dataclass(frozen=True)
class RewardNodeConfig:
    """Settings of the reward judge and its ROS node.

    Args:
        classifier_path: checkpoint folder of a trained classifier (``SuccessClassifier.load``).
        max_frame_age_s: a frame older than this when judged (or when its verdict is ready) is "unknown".
        confirm_frames: k consecutive successes needed for a confirmed success (1 = every success;
            0 = the classifier checkpoint's own ``confirm_frames``, 1 if it has none).
        rate_hz: most judgements per second; frames in between are replaced by newer ones (0 = no cap).
            Keep it above the camera rate (a cap equal to it delays frames by the camera's jitter):
            it is for cameras faster than the reward needs, to leave CPU to other nodes.
        heartbeat_hz: rate of frame-less "unknown" verdicts while no new frame arrives.
        cpu_threads: torch CPU threads for the classifier (the robot PC also runs other nodes).
        device: torch device of the classifier ("cpu", "cuda", ...).
    """

    classifier_path: str = ""
    max_frame_age_s: float = 0.5
    confirm_frames: int = 3
    rate_hz: float = 15.0
    heartbeat_hz: float = 2.0
    cpu_threads: int = 1
    device: str = "cpu"

    def validate(self) -> RewardNodeConfig:
        """Return ``self``; raise :class:`RewardConfigError` with one line on a bad value."""
        if not (math.isfinite(self.max_frame_age_s) and 0 < self.max_frame_age_s <= 60):
            raise RewardConfigError(f"max_frame_age_s must be in (0, 60] s, got {self.max_frame_age_s}")
        if isinstance(self.confirm_frames, bool) or not 0 <= self.confirm_frames <= 1000:
            raise RewardConfigError(
                f"confirm_frames must be an integer in [0, 1000] (0 = the classifier's own), "
                f"got {self.confirm_frames}"
            )
        if not (math.isfinite(self.rate_hz) and 0 <= self.rate_hz <= 1000):
            raise RewardConfigError(f"rate_hz must be in [0, 1000] (0 = no cap), got {self.rate_hz}")
        if not (math.isfinite(self.heartbeat_hz) and 0.1 <= self.heartbeat_hz <= 100):
            raise RewardConfigError(f"heartbeat_hz must be in [0.1, 100], got {self.heartbeat_hz}")
        if isinstance(self.cpu_threads, bool) or not 1 <= self.cpu_threads <= 256:
            raise RewardConfigError(f"cpu_threads must be an integer in [1, 256], got {self.cpu_threads}")
        if not self.device:
            raise RewardConfigError("device must be a torch device name such as 'cpu' or 'cuda'")
        return self


@dataclass(frozen=True)
class Verdict:
    """One judgement of one frame (or, with ``frame_stamp`` None, of the absence of a fresh frame).

    Attributes:
        status: "success", "failure" or "unknown".
        probability: classifier success probability; NaN when unknown.
        task: the task judged (None without one).
        frame_stamp: stamp of the judged frame; None for a frame-less heartbeat verdict.
        confirmed: ``confirm_frames`` consecutive successes up to and including this one.
        event: the first confirmed verdict of a success streak (publish one success event).
        threshold: the classifier's threshold for ``task``; NaN when not known.
        latency_s: classification time; NaN when the classifier was not called.
        frame_age_s: age of the frame when the verdict was ready; NaN without a frame.
        reason: why the verdict is unknown ("" otherwise), e.g. ``"stale_frame"``.
        issued_at: time the verdict was made.
    """

    status: str
    probability: float
    task: str | None
    frame_stamp: float | None
    confirmed: bool = False
    event: bool = False
    threshold: float = math.nan
    latency_s: float = math.nan
    frame_age_s: float = math.nan
    reason: str = ""
    issued_at: float = math.nan


@dataclass
class _Frame:
    image: np.ndarray
    stamp: float


@dataclass
class RewardStats:
    """Counters of a :class:`RewardJudge` (all since construction)."""

    frames_received: int = 0
    frames_judged: int = 0
    frames_replaced: int = 0
    frames_out_of_order: int = 0
    frames_discarded_task_switch: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    heartbeats: int = 0
    classifier_errors: int = 0
    success_events: int = 0
    callback_errors: int = 0
    last_error: str = ""

    @property
    def dropped_frames(self) -> int:
        """Frames never judged: replaced by a newer one, out of order, or stamped before a task switch."""
        return self.frames_replaced + self.frames_out_of_order + self.frames_discarded_task_switch


def default_confirmation_factory(k: int) -> ConfirmationLike:
    """``reward_vlm.classifier.SuccessConfirmation(k)`` (imported on first use: it pulls in torch)."""
    from reward_vlm.classifier import SuccessConfirmation

    return SuccessConfirmation(k)


class RewardJudge:
    """Judges the newest frame for the current task; thread-safe (frames and tasks from any thread)."""

    def __init__(
        self,
        classifier: ClassifierLike,
        config: RewardNodeConfig | None = None,
        clock: Callable[[], float] = time.time,
        confirmation_factory: Callable[[int], ConfirmationLike] = default_confirmation_factory,
    ) -> None:
        """``clock`` gives "now" on the clock of the frame stamps (wall time by default)."""
        self.config = (config or RewardNodeConfig()).validate()
        self.classifier = classifier
        self.clock = clock
        own = getattr(classifier, "confirm_frames", 1)
        own = own if isinstance(own, int) and not isinstance(own, bool) and own >= 1 else 1
        self.confirm_frames = self.config.confirm_frames or own
        """k in use: ``config.confirm_frames``, or the classifier's own when that is 0."""
        self._confirmation = confirmation_factory(self.confirm_frames)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._judging = threading.Lock()  # one judgement at a time (worker and step() callers)
        self._pending: _Frame | None = None
        self._task: str | None = None
        self._generation = 0
        self._switch_time = -math.inf
        self._last_stamp = -math.inf  # newest stamp accepted (pending or judged)
        self._ever_had_frame = False
        self._streak_confirmed = False
        self._next_judge_at = -math.inf
        self._last_verdict_at: float | None = None
        self._stats = RewardStats()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            self._known_tasks = frozenset(classifier.tasks)
        except Exception as exc:
            raise RewardConfigError(f"classifier has no readable task list: {exc}") from None
        self.on_callback_error: Callable[[BaseException], None] | None = None

    # --- inputs --------------------------------------------------------------------------------

    @property
    def task(self) -> str | None:
        """The current task (None: no judgement)."""
        return self._task

    def set_task(self, task: str | None, now: float | None = None) -> bool:
        """Switch to ``task`` (None = pause); True when it changed. Resets confirmation and discards
        the pending frame and any verdict in progress."""
        now = self.clock() if now is None else now
        with self._wake:
            if task == self._task:
                return False
            self._task = task
            self._generation += 1
            self._switch_time = now
            self._confirmation.reset()
            self._streak_confirmed = False
            if self._pending is not None and self._pending.stamp < now:
                self._pending = None
                self._stats.frames_discarded_task_switch += 1
            self._wake.notify_all()
            return True

    def submit(self, image: np.ndarray, stamp: float) -> bool:
        """Offer a frame stamped ``stamp``; it replaces an unjudged older one. False when dropped
        (out of order, a duplicate, or stamped before the last task switch)."""
        with self._wake:
            self._stats.frames_received += 1
            self._ever_had_frame = True
            if not stamp > self._last_stamp:
                self._stats.frames_out_of_order += 1
                return False
            if stamp < self._switch_time:
                self._stats.frames_discarded_task_switch += 1
                return False
            if self._pending is not None:
                self._stats.frames_replaced += 1
            self._pending = _Frame(image, float(stamp))
            self._last_stamp = float(stamp)
            self._wake.notify_all()
            return True

    # --- judging -------------------------------------------------------------------------------

    def _heartbeat_period(self) -> float:
        return 1.0 / self.config.heartbeat_hz

    def _due(self, now: float) -> tuple[_Frame | None, bool]:
        """(frame to judge now, heartbeat due now); takes the frame out of ``_pending``. Lock held."""
        if self._pending is not None:
            if now >= self._next_judge_at:
                frame, self._pending = self._pending, None
                if self.config.rate_hz > 0:
                    self._next_judge_at = now + 1.0 / self.config.rate_hz
                return frame, False
            return None, False
        last = self._last_verdict_at
        return None, last is None or now - last >= self._heartbeat_period()

    def step(self, now: float | None = None) -> Verdict | None:
        """Judge the pending frame, or issue a heartbeat "unknown" when one is due; None when nothing
        is due (no frame and the last verdict is recent, the rate cap, or a task switch mid-way)."""
        with self._judging:
            now = self.clock() if now is None else now
            with self._wake:
                frame, heartbeat = self._due(now)
                if frame is None and not heartbeat:
                    return None
                task, generation = self._task, self._generation
                if frame is None:
                    reason = NO_FRESH_FRAME if self._ever_had_frame else NO_FRAME
                    self._stats.heartbeats += 1
                    beat = Verdict("unknown", math.nan, task, None, reason=reason, issued_at=now)
                    return self._finish(beat)
            verdict = self._judge(frame, task, now)
            with self._wake:
                if generation != self._generation:
                    self._stats.frames_discarded_task_switch += 1
                    return None
                return self._finish(verdict)

    def _judge(self, frame: _Frame, task: str | None, now: float) -> Verdict:
        """Classify ``frame`` for ``task`` (no lock held); every failure becomes an "unknown" verdict."""
        age = now - frame.stamp

        def unknown(reason: str, **extra: float) -> Verdict:
            return Verdict("unknown", math.nan, task, frame.stamp, reason=reason, issued_at=now, **extra)

        # Frame freshness first: the controller reads "no_task" as "the camera and this node are fine,
        # there is just nothing to judge", which lets it resume a held arm.
        if age > self.config.max_frame_age_s:
            return unknown(STALE_FRAME, frame_age_s=age)
        if age < -self.config.max_frame_age_s:
            return unknown(FUTURE_FRAME, frame_age_s=age)
        if task is None:
            return unknown(NO_TASK, frame_age_s=age)
        if task not in self._known_tasks:
            return unknown(UNKNOWN_TASK, frame_age_s=age)
        start = time.perf_counter()
        try:
            probs = np.asarray(self.classifier.predict_proba(frame.image, task), dtype=np.float64).reshape(-1)
            if probs.size != 1:
                raise ValueError(f"classifier returned {probs.size} probabilities for one frame")
            prob, threshold = float(probs[0]), float(self.classifier.threshold(task))
        except Exception as exc:  # any classifier failure is an "unknown", never a success
            latency = time.perf_counter() - start
            with self._lock:
                self._stats.classifier_errors += 1
                self._stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
            return unknown(CLASSIFIER_ERROR, latency_s=latency, frame_age_s=age + latency)
        latency = time.perf_counter() - start
        age_ready = age + latency
        with self._lock:
            self._stats.frames_judged += 1
        if not (math.isfinite(prob) and math.isfinite(threshold) and 0.0 <= prob <= 1.0):
            return unknown(NON_FINITE, latency_s=latency, frame_age_s=age_ready, threshold=threshold)
        if age_ready > self.config.max_frame_age_s:
            return unknown(STALE_FRAME, latency_s=latency, frame_age_s=age_ready, threshold=threshold)
        status = "success" if prob >= threshold else "failure"
        return Verdict(
            status,
            prob,
            task,
            frame.stamp,
            threshold=threshold,
            latency_s=latency,
            frame_age_s=age_ready,
            issued_at=now,
        )

    def _finish(self, verdict: Verdict) -> Verdict:
        """Update confirmation and counters (lock held)."""
        success = {"success": True, "failure": False}.get(verdict.status)
        confirmed = bool(self._confirmation.update(success)) and verdict.status == "success"
        event = confirmed and not self._streak_confirmed
        self._streak_confirmed = confirmed
        self._last_verdict_at = verdict.issued_at
        self._stats.verdicts[verdict.status] += 1
        self._stats.success_events += int(event)
        return Verdict(
            verdict.status,
            verdict.probability,
            verdict.task,
            verdict.frame_stamp,
            confirmed=confirmed,
            event=event,
            threshold=verdict.threshold,
            latency_s=verdict.latency_s,
            frame_age_s=verdict.frame_age_s,
            reason=verdict.reason,
            issued_at=verdict.issued_at,
        )

    # --- worker thread -------------------------------------------------------------------------

    def start(self, on_verdict: Callable[[Verdict], None]) -> None:
        """Judge on a daemon worker thread, calling ``on_verdict`` for every verdict, until :meth:`stop`."""
        if self._worker is not None:
            raise RuntimeError("the reward judge's worker is already running")
        self._stop.clear()
        self._worker = threading.Thread(
            target=self._run, args=(on_verdict,), name="reward-judge", daemon=True
        )
        self._worker.start()

    def _run(self, on_verdict: Callable[[Verdict], None]) -> None:
        while not self._stop.is_set():
            verdict = self.step()
            if verdict is not None:
                try:
                    on_verdict(verdict)
                except Exception as exc:  # a publishing failure must not stop judging
                    with self._lock:
                        self._stats.callback_errors += 1
                        self._stats.last_error = f"on_verdict: {type(exc).__name__}: {exc}"[:300]
                    if self.on_callback_error is not None:
                        with contextlib.suppress(Exception):  # e.g. logging after ROS shutdown
                            self.on_callback_error(exc)
                continue
            with self._wake:
                if self._stop.is_set():
                    break
                now = self.clock()
                if self._pending is not None:
                    wait = self._next_judge_at - now
                else:
                    last = self._last_verdict_at
                    wait = 0.0 if last is None else last + self._heartbeat_period() - now
                if wait > 0:
                    self._wake.wait(timeout=min(wait, 0.5))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker thread (waits up to ``timeout`` s for a judgement in progress)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    # --- reporting -----------------------------------------------------------------------------

    def stats(self) -> RewardStats:
        """A snapshot of the counters."""
        with self._lock:
            s = self._stats
            return RewardStats(
                frames_received=s.frames_received,
                frames_judged=s.frames_judged,
                frames_replaced=s.frames_replaced,
                frames_out_of_order=s.frames_out_of_order,
                frames_discarded_task_switch=s.frames_discarded_task_switch,
                verdicts=dict(s.verdicts),
                heartbeats=s.heartbeats,
                classifier_errors=s.classifier_errors,
                success_events=s.success_events,
                callback_errors=s.callback_errors,
                last_error=s.last_error,
            )


TEST_CLASSIFIER_ENV = "ROBOFUME_REWARD_TEST_CLASSIFIER"
TEST_CLASSIFIER_KWARGS_ENV = "ROBOFUME_REWARD_TEST_CLASSIFIER_KWARGS"


def load_test_classifier(spec: str, kwargs_json: str = "") -> ClassifierLike:
    """The classifier made by factory ``"module:function"`` called with the JSON object ``kwargs_json``.

    For tests and simulation only (e.g. :func:`reward_vlm.stand_in.make_stand_in`): the reward node uses
    it when ``classifier_path`` is empty and the environment variable ``ROBOFUME_REWARD_TEST_CLASSIFIER``
    names a factory (keyword arguments in ``ROBOFUME_REWARD_TEST_CLASSIFIER_KWARGS``).
    """
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise RewardConfigError(f"{TEST_CLASSIFIER_ENV} must look like 'module:function', got {spec!r}")
    try:
        kwargs = json.loads(kwargs_json) if kwargs_json.strip() else {}
    except json.JSONDecodeError as exc:
        raise RewardConfigError(f"{TEST_CLASSIFIER_KWARGS_ENV} is not valid JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise RewardConfigError(f"{TEST_CLASSIFIER_KWARGS_ENV} must be a JSON object, got {kwargs_json!r}")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise RewardConfigError(f"cannot import test classifier factory {spec!r}: {exc}") from None
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RewardConfigError(f"test classifier factory {spec!r} failed: {exc}") from None


def load_classifier(config: RewardNodeConfig) -> ClassifierLike:
    """Load ``config.classifier_path`` with ``SuccessClassifier.load`` on ``config.device``, torch limited
    to ``config.cpu_threads`` threads. With no path, the test hook (:func:`load_test_classifier`) when
    ``ROBOFUME_REWARD_TEST_CLASSIFIER`` is set. Raises :class:`RewardConfigError` with one line."""
    if not config.classifier_path:
        spec = os.environ.get(TEST_CLASSIFIER_ENV, "")
        if spec:
            return load_test_classifier(spec, os.environ.get(TEST_CLASSIFIER_KWARGS_ENV, ""))
        raise RewardConfigError(
            "parameter 'classifier_path' is required (a classifier folder written by 'robofume reward train')"
        )
    path = os.path.expanduser(config.classifier_path)
    if not os.path.isdir(path):
        raise RewardConfigError(
            f"classifier_path {path!r} is not a folder (expected a classifier checkpoint)"
        )
    import torch

    torch.set_num_threads(config.cpu_threads)
    try:
        from reward_vlm.classifier import SuccessClassifier
    except ImportError as exc:
        raise RewardConfigError(f"the success classifier cannot be imported: {exc}") from None

    try:
        return SuccessClassifier.load(path, device=config.device)
    except (ValueError, OSError, RuntimeError) as exc:
        raise RewardConfigError(f"cannot load the classifier in {path}: {exc}") from None
