"""The reward judge without ROS: newest frame only, "unknown" for stale/missing/failed input, k-frame
confirmation reset by a task switch, heartbeats, rate cap, and the node's test-classifier hook."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from reward_vlm.reward_core import (
    CLASSIFIER_ERROR,
    FUTURE_FRAME,
    NO_FRAME,
    NO_FRESH_FRAME,
    NO_TASK,
    NON_FINITE,
    STALE_FRAME,
    UNKNOWN_TASK,
    RewardConfigError,
    RewardJudge,
    RewardNodeConfig,
    Verdict,
    load_classifier,
    load_test_classifier,
)
from reward_vlm.stand_in import ColorStandIn, color_frame

SUCCESS, FAILURE = color_frame(230), color_frame(20)


class Streak:
    """k consecutive successes confirm; a failure or an unknown breaks the streak."""

    def __init__(self, k: int) -> None:
        self.k, self.count = k, 0

    def update(self, success: bool | None) -> bool:
        self.count = self.count + 1 if success else 0
        return self.count >= self.k

    def reset(self) -> None:
        self.count = 0


def judge(classifier: ColorStandIn | None = None, **config: float) -> RewardJudge:
    cfg = RewardNodeConfig(**{"rate_hz": 0.0, "confirm_frames": 1, **config})
    return RewardJudge(classifier or ColorStandIn(), cfg, clock=time.monotonic, confirmation_factory=Streak)


def judged(j: RewardJudge, frame: np.ndarray, stamp: float, now: float | None = None) -> Verdict:
    assert j.submit(frame, stamp)
    verdict = j.step(stamp + 0.01 if now is None else now)
    assert verdict is not None
    return verdict


def test_success_and_failure_carry_the_frame_stamp() -> None:
    j = judge()
    j.set_task("forward", now=0.0)
    v = judged(j, SUCCESS, 1.0)
    assert (v.status, v.task, v.frame_stamp, v.reason) == ("success", "forward", 1.0, "")
    assert v.probability == pytest.approx(230 / 255) and v.threshold == 0.5
    assert v.latency_s >= 0 and v.frame_age_s == pytest.approx(0.01, abs=0.005)
    assert v.confirmed and v.event
    v = judged(j, FAILURE, 1.1)
    assert (v.status, v.frame_stamp, v.confirmed, v.event) == ("failure", 1.1, False, False)
    assert j.stats().verdicts == {"success": 1, "failure": 1, "unknown": 0}


def test_newest_frame_only_under_a_flood_while_the_classifier_is_slow() -> None:
    classifier = ColorStandIn(delay_s=0.05)
    j = RewardJudge(classifier, RewardNodeConfig(rate_hz=0.0, confirm_frames=1), confirmation_factory=Streak)
    j.set_task("forward")
    verdicts: list[Verdict] = []
    j.start(verdicts.append)
    try:
        stamps = []
        for i in range(100):
            stamps.append(time.time())
            j.submit(color_frame(100 + i), stamps[-1])
            time.sleep(0.001)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(v.frame_stamp == stamps[-1] for v in verdicts):
            time.sleep(0.01)
    finally:
        j.stop()
    judged_frames = [v for v in verdicts if v.frame_stamp is not None]
    stats = j.stats()
    assert judged_frames[-1].frame_stamp == stamps[-1], "the newest frame must be judged last"
    assert judged_frames[-1].probability == pytest.approx(199 / 255)
    assert classifier.calls == len(judged_frames) == stats.frames_judged <= 8
    assert stats.frames_received == 100
    assert stats.frames_replaced == 100 - len(judged_frames) == stats.dropped_frames
    assert len({v.frame_stamp for v in judged_frames}) == len(judged_frames), "a frame judged twice"


def test_stale_frame_is_unknown_before_and_after_classification() -> None:
    classifier = ColorStandIn()
    j = judge(classifier, max_frame_age_s=0.5)
    j.set_task("forward", now=0.0)
    v = judged(j, SUCCESS, 1.0, now=1.6)
    assert (v.status, v.reason, v.confirmed, v.event) == ("unknown", STALE_FRAME, False, False)
    assert math.isnan(v.probability) and v.frame_age_s == pytest.approx(0.6)
    assert classifier.calls == 0, "a stale frame is not worth classifying"
    v = judged(j, SUCCESS, 2.0, now=1.0)
    assert (v.status, v.reason) == ("unknown", FUTURE_FRAME)
    slow = ColorStandIn(delay_s=0.15)
    j = judge(slow, max_frame_age_s=0.1)
    j.set_task("forward", now=0.0)
    v = judged(j, SUCCESS, 1.0, now=1.0)
    assert (v.status, v.reason) == ("unknown", STALE_FRAME) and slow.calls == 1
    assert v.frame_age_s >= 0.15 and math.isnan(v.probability)


def test_no_task_or_unknown_task_is_unknown() -> None:
    classifier = ColorStandIn()
    j = judge(classifier)
    v = judged(j, SUCCESS, 1.0)
    assert (v.status, v.reason, v.task) == ("unknown", NO_TASK, None)
    j.set_task("stack_blocks", now=1.5)
    v = judged(j, SUCCESS, 2.0)
    assert (v.status, v.reason, v.task) == ("unknown", UNKNOWN_TASK, "stack_blocks")
    j.set_task(None, now=2.5)
    assert judged(j, SUCCESS, 3.0).reason == NO_TASK
    assert classifier.calls == 0


def test_classifier_error_or_non_finite_output_is_unknown() -> None:
    j = judge()
    j.set_task("forward", now=0.0)
    v = judged(j, color_frame(255, green=255), 1.0)
    assert (v.status, v.reason) == ("unknown", CLASSIFIER_ERROR) and math.isnan(v.probability)
    assert j.stats().classifier_errors == 1 and "StandInError" in j.stats().last_error
    v = judged(j, color_frame(255, blue=255), 1.1)
    assert (v.status, v.reason) == ("unknown", NON_FINITE)

    class BadThreshold(ColorStandIn):
        def threshold(self, task: str) -> float:
            return math.nan

    j = judge(BadThreshold())
    j.set_task("forward", now=0.0)
    assert judged(j, SUCCESS, 1.0).reason == NON_FINITE

    class TwoAnswers(ColorStandIn):
        def predict_proba(self, frames: np.ndarray, task: str) -> np.ndarray:
            return np.array([0.9, 0.9])

    j = judge(TwoAnswers())
    j.set_task("forward", now=0.0)
    assert judged(j, SUCCESS, 1.0).reason == CLASSIFIER_ERROR


def test_confirmation_needs_k_frames_and_resets_on_task_switch() -> None:
    j = judge(confirm_frames=3)
    j.set_task("forward", now=0.0)
    out = [judged(j, SUCCESS, 1.0 + 0.1 * i) for i in range(4)]
    assert [v.confirmed for v in out] == [False, False, True, True]
    assert [v.event for v in out] == [False, False, True, False], "one event per success streak"
    assert judged(j, FAILURE, 1.5).confirmed is False
    out = [judged(j, SUCCESS, 1.6 + 0.1 * i) for i in range(3)]
    assert [v.event for v in out] == [False, False, True]
    assert judged(j, SUCCESS, 2.0).status == "success"
    assert judged(j, SUCCESS, 2.1).status == "success"
    assert j.set_task("backward", now=2.15) and not j.set_task("backward", now=2.16)
    out = [judged(j, SUCCESS, 2.2 + 0.1 * i) for i in range(3)]
    assert [v.confirmed for v in out] == [False, False, True], "confirmation must restart after a switch"
    assert out[-1].task == "backward" and j.stats().success_events == 3


def test_unknown_breaks_the_streak() -> None:
    j = judge(confirm_frames=2, max_frame_age_s=0.5)
    j.set_task("forward", now=0.0)
    assert not judged(j, SUCCESS, 1.0).confirmed
    assert judged(j, SUCCESS, 1.1, now=2.0).status == "unknown"
    assert not judged(j, SUCCESS, 2.1).confirmed
    assert judged(j, SUCCESS, 2.2).event


def test_heartbeats_when_no_frame_arrives_never_success() -> None:
    j = judge(heartbeat_hz=2.0)
    j.set_task("forward", now=0.0)
    v = j.step(0.0)
    assert v is not None and (v.status, v.reason, v.frame_stamp) == ("unknown", NO_FRAME, None)
    assert j.step(0.3) is None
    assert j.step(0.5).reason == NO_FRAME
    v = judged(j, SUCCESS, 1.0)
    assert v.status == "success"
    assert j.step(1.2) is None, "a judged frame is never judged again"
    late = [j.step(t) for t in (1.52, 1.7, 2.02)]
    assert [x.reason if x else None for x in late] == [NO_FRESH_FRAME, None, NO_FRESH_FRAME]
    assert all(x is None or x.status == "unknown" for x in late)
    assert j.stats().heartbeats == 4 and j.stats().verdicts["success"] == 1


def test_out_of_order_and_duplicate_frames_are_dropped() -> None:
    classifier = ColorStandIn()
    j = judge(classifier)
    j.set_task("forward", now=0.0)
    judged(j, SUCCESS, 1.0)
    assert not j.submit(SUCCESS, 1.0) and not j.submit(SUCCESS, 0.9)
    assert j.submit(SUCCESS, 1.2) and not j.submit(SUCCESS, 1.1)
    assert j.step(1.25).frame_stamp == 1.2
    assert j.stats().frames_out_of_order == 3 and classifier.calls == 2


def test_task_switch_discards_pending_and_in_progress_verdicts() -> None:
    j = judge()
    j.set_task("forward", now=0.0)
    assert j.submit(SUCCESS, 1.0)
    j.set_task("backward", now=1.05)
    assert j.step(1.1).frame_stamp is None, "the frame stamped before the switch is discarded"
    assert not j.submit(SUCCESS, 1.04), "a frame stamped before the switch is discarded on arrival"
    assert j.stats().frames_discarded_task_switch == 2

    started, release = threading.Event(), threading.Event()

    class Blocking(ColorStandIn):
        def predict_proba(self, frames: np.ndarray, task: str) -> np.ndarray:
            started.set()
            release.wait(5)
            return super().predict_proba(frames, task)

    j = judge(Blocking(), max_frame_age_s=10.0)
    j.set_task("forward", now=0.0)
    j.submit(SUCCESS, 1.0)
    result: list[Verdict | None] = []
    worker = threading.Thread(target=lambda: result.append(j.step(1.01)))
    worker.start()
    assert started.wait(5)
    j.set_task("backward", now=1.02)
    release.set()
    worker.join(5)
    assert result == [None], "a verdict for the old task must not be issued"
    assert j.stats().frames_discarded_task_switch == 1 and j.stats().verdicts["success"] == 0


def test_rate_cap_keeps_the_newest_frame_waiting() -> None:
    j = judge(rate_hz=5.0)
    j.set_task("forward", now=0.0)
    assert judged(j, SUCCESS, 1.0, now=1.0).frame_stamp == 1.0
    j.submit(SUCCESS, 1.05)
    assert j.step(1.1) is None
    j.submit(FAILURE, 1.15)
    v = j.step(1.2)
    assert (v.frame_stamp, v.status) == (1.15, "failure")
    assert j.stats().frames_replaced == 1


def test_worker_publishes_heartbeats_and_survives_a_failing_callback() -> None:
    j = RewardJudge(ColorStandIn(), RewardNodeConfig(heartbeat_hz=20.0), confirmation_factory=Streak)
    seen: list[Verdict] = []

    def on_verdict(v: Verdict) -> None:
        seen.append(v)
        if len(seen) == 1:
            raise RuntimeError("publisher gone")

    j.start(on_verdict)
    time.sleep(0.3)
    j.stop()
    assert 3 <= len(seen) <= 10 and all(v.reason == NO_FRAME for v in seen)
    assert j.stats().callback_errors == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"max_frame_age_s": 0.0},
        {"max_frame_age_s": math.nan},
        {"confirm_frames": -1},
        {"rate_hz": -1.0},
        {"heartbeat_hz": 0.0},
        {"cpu_threads": 0},
        {"device": ""},
    ],
)
def test_bad_config_is_one_line_error(bad: dict) -> None:
    with pytest.raises(RewardConfigError) as info:
        RewardNodeConfig(**bad).validate()
    assert "\n" not in str(info.value) and next(iter(bad)) in str(info.value)


def test_test_classifier_hook_and_missing_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    c = load_test_classifier("reward_vlm.stand_in:make_stand_in", '{"delay_s": 0.01}')
    assert isinstance(c, ColorStandIn) and c.delay_s == 0.01
    for spec, kwargs in [("nocolon", ""), ("no_such_module_x:f", ""), ("reward_vlm.stand_in:nope", "")]:
        with pytest.raises(RewardConfigError):
            load_test_classifier(spec, kwargs)
    with pytest.raises(RewardConfigError, match="JSON"):
        load_test_classifier("reward_vlm.stand_in:make_stand_in", "{bad")
    with pytest.raises(RewardConfigError, match="failed"):
        load_test_classifier("reward_vlm.stand_in:make_stand_in", '{"delay_s": -1}')
    monkeypatch.delenv("ROBOFUME_REWARD_TEST_CLASSIFIER", raising=False)
    with pytest.raises(RewardConfigError, match="classifier_path"):
        load_classifier(RewardNodeConfig())
    with pytest.raises(RewardConfigError, match="not a folder"):
        load_classifier(RewardNodeConfig(classifier_path=str(tmp_path / "missing")))
    monkeypatch.setenv("ROBOFUME_REWARD_TEST_CLASSIFIER", "reward_vlm.stand_in:make_stand_in")
    assert isinstance(load_classifier(RewardNodeConfig()), ColorStandIn)


def test_confirm_frames_zero_takes_the_classifiers_own() -> None:
    classifier = ColorStandIn()
    assert judge(classifier, confirm_frames=0).confirm_frames == 1
    classifier.confirm_frames = 4  # what SuccessClassifier stores in its checkpoint
    assert judge(classifier, confirm_frames=0).confirm_frames == 4
    assert judge(classifier, confirm_frames=2).confirm_frames == 2


def test_default_confirmation_is_the_classifiers_success_confirmation() -> None:
    pytest.importorskip("reward_vlm.classifier")
    j = RewardJudge(ColorStandIn(), RewardNodeConfig(confirm_frames=2, rate_hz=0.0), clock=time.monotonic)
    j.set_task("forward", now=0.0)
    assert [judged(j, SUCCESS, 1.0 + 0.1 * i).confirmed for i in range(2)] == [False, True]
    assert judged(j, SUCCESS, 1.2, now=5.0).status == "unknown"
    assert not judged(j, SUCCESS, 5.0).confirmed, "an unknown verdict restarts the count"


def test_no_task_is_reported_only_for_fresh_frames() -> None:
    """The controller resumes a held arm on "no_task" verdicts, so a stale frame must say "stale_frame"."""
    j = judge(ColorStandIn(), max_frame_age_s=0.5)
    v = judged(j, SUCCESS, 1.0, now=1.1)
    assert (v.status, v.reason) == ("unknown", NO_TASK)
    v = judged(j, SUCCESS, 2.0, now=3.0)
    assert (v.status, v.reason) == ("unknown", STALE_FRAME)
