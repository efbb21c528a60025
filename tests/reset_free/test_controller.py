"""The reset-free controller's state machine: alternation, time-outs, stuck detection, health pauses."""

from __future__ import annotations

import math

import pytest

from reset_free.controller import (
    ControllerConfig,
    ControllerConfigError,
    ControllerEvent,
    Phase,
    ResetFreeController,
    Verdict,
)

DT = 0.1


class Harness:
    """Drives a controller with a live policy server and classifier unless told otherwise."""

    def __init__(self, **cfg: object) -> None:
        defaults = {"max_episode_steps": 20, "startup_grace_s": 0.5, "stuck_after": 2}
        defaults.update(cfg)
        self.ctrl = ResetFreeController(ControllerConfig(**defaults), start_time=0.0)  # type: ignore[arg-type]
        self.now = 0.0
        self.policy_alive = True
        self.classifier = "failure"  # what the classifier says about the newest frame
        self.confirmed = True
        self.events: list[ControllerEvent] = []

    def step(self, n: int = 1) -> list[ControllerEvent]:
        new: list[ControllerEvent] = []
        for _ in range(n):
            self.now += DT
            task = self.ctrl.task if self.ctrl.phase.active else None
            if self.policy_alive and self.ctrl.phase.active:
                self.ctrl.on_action(self.now)
            if self.classifier == "silent":
                pass
            elif task is None:
                self.ctrl.on_verdict(Verdict("unknown", None, False, self.now, reason="no_task"), self.now)
            else:
                status = self.classifier
                confirmed = self.confirmed and status == "success"
                self.ctrl.on_verdict(Verdict(status, task, confirmed, self.now - 0.05, 0.9), self.now)
            new.extend(self.ctrl.tick(self.now))
        self.events.extend(new)
        return new

    def ends(self) -> list[ControllerEvent]:
        return [e for e in self.events if e.kind == "episode_end"]


def test_waits_for_classifier_then_runs_forward() -> None:
    h = Harness()
    assert h.ctrl.phase is Phase.PAUSED
    h.classifier = "silent"
    h.step(3)
    assert h.ctrl.phase is Phase.PAUSED
    h.classifier = "failure"
    h.step(2)
    assert h.ctrl.phase is Phase.FORWARD
    assert any(e.kind == "episode_start" and e.task == "forward" for e in h.events)


def test_success_ends_episode_and_switches_task() -> None:
    h = Harness()
    h.step(5)
    assert h.ctrl.phase is Phase.FORWARD
    h.classifier = "success"
    h.step(1)
    ends = h.ends()
    assert (
        len(ends) == 1
        and ends[0].outcome == "success"
        and ends[0].reward == 1.0
        and ends[0].task == "forward"
    )
    assert ends[0].frame_stamp is not None
    h.classifier = "failure"
    h.step(2)
    assert h.ctrl.phase is Phase.BACKWARD and h.ctrl.task == "backward"


def test_unconfirmed_success_is_not_success() -> None:
    h = Harness()
    h.classifier, h.confirmed = "success", False
    h.step(15)
    assert not h.ends()


def test_timeout_is_truncation_and_alternates() -> None:
    h = Harness(max_episode_steps=10, stuck_after=100)
    h.step(60)
    ends = h.ends()
    assert len(ends) >= 4
    assert all(e.outcome == "timeout" and e.reward == 0.0 for e in ends)
    assert [e.task for e in ends[:4]] == ["forward", "backward", "forward", "backward"]
    assert all(e.step == 10 for e in ends)


def test_stuck_in_both_directions_requests_help_and_holds() -> None:
    h = Harness(max_episode_steps=5, stuck_after=2)
    h.step(40)
    assert h.ctrl.phase is Phase.HELP_NEEDED
    helps = [e for e in h.events if e.kind == "help"]
    assert len(helps) == 1 and "resume" in helps[0].reason
    assert len(h.ends()) == 4  # forward, backward, forward, backward: then it stops trying
    before = h.ctrl.stats.steps
    h.step(20)
    assert h.ctrl.stats.steps == before  # held: no steps while help is needed
    h.ctrl.resume()
    h.step(2)
    assert h.ctrl.phase.active


def test_failing_one_direction_only_is_not_stuck() -> None:
    h = Harness(max_episode_steps=5, stuck_after=2)
    for _ in range(6):  # forward always succeeds quickly, backward always times out
        while h.ctrl.task == "forward" or not h.ctrl.phase.active:
            h.classifier = "success" if h.ctrl.task == "forward" else "failure"
            h.step()
        h.classifier = "failure"
        while h.ctrl.task == "backward":
            h.step()
    assert h.ctrl.stats.failures_in_a_row["backward"] >= 2
    assert h.ctrl.phase is not Phase.HELP_NEEDED


def test_policy_server_silence_pauses_and_recovers_without_failing_episode() -> None:
    h = Harness(max_episode_steps=1000, action_timeout_s=0.5, retry_after_s=1.0)
    h.step(10)
    episode = h.ctrl.episode
    steps_before = h.ctrl.episode_step
    h.policy_alive = False
    h.step(8)
    assert h.ctrl.phase is Phase.PAUSED and h.ctrl.pause_reason == "policy server silent"
    frozen = h.ctrl.episode_step
    h.step(30)  # retries every retry_after_s, pauses again each time: never a success, episode clock ~frozen
    assert not h.ends()
    assert h.ctrl.episode_step < frozen + 30
    h.policy_alive = True
    h.step(20)
    assert h.ctrl.phase is Phase.FORWARD
    assert h.ctrl.episode == episode and h.ctrl.episode_step > steps_before  # same episode goes on


def test_classifier_silence_pauses_records_no_success_and_recovers() -> None:
    h = Harness(max_episode_steps=1000, verdict_timeout_s=0.5)
    h.step(5)
    h.classifier = "silent"
    h.step(10)
    assert h.ctrl.phase is Phase.PAUSED and "classifier" in h.ctrl.pause_reason
    h.step(20)
    assert h.ctrl.phase is Phase.PAUSED and not h.ends()
    h.classifier = "failure"
    h.step(3)
    assert h.ctrl.phase is Phase.FORWARD


def test_unknown_verdicts_pause_like_silence() -> None:
    h = Harness(max_episode_steps=1000, verdict_timeout_s=0.5)
    h.step(5)
    for _ in range(10):
        h.now += DT
        h.ctrl.on_action(h.now)
        h.ctrl.on_verdict(Verdict("unknown", "forward", False, h.now, reason="stale_frame"), h.now)
        h.ctrl.tick(h.now)
    assert h.ctrl.phase is Phase.PAUSED
    assert h.ctrl.stats.successes["forward"] == 0


def test_success_from_a_frame_before_the_episode_is_ignored() -> None:
    h = Harness()
    h.step(5)
    h.classifier = "success"
    h.step(1)
    assert len(h.ends()) == 1
    # A late success verdict about a frame from before the backward episode started is not success.
    old = Verdict("success", "backward", True, frame_stamp=0.0, probability=0.99)
    h.ctrl.on_verdict(old, h.now)
    h.classifier = "failure"
    h.step(3)
    assert len(h.ends()) == 1


def test_estop_latches_until_release_and_operator_pause() -> None:
    h = Harness()
    h.step(5)
    h.ctrl.estop()
    h.step(3)
    assert h.ctrl.phase is Phase.ESTOP
    h.ctrl.resume()
    h.step(3)
    assert h.ctrl.phase is Phase.ESTOP  # resume does not clear an e-stop
    h.ctrl.release()
    h.step(2)
    assert h.ctrl.phase is Phase.FORWARD
    h.ctrl.pause()
    h.step(5)
    assert h.ctrl.phase is Phase.PAUSED and h.ctrl.pause_reason == "operator pause"
    h.ctrl.resume()
    h.step(2)
    assert h.ctrl.phase is Phase.FORWARD


def test_status_is_json_friendly() -> None:
    import json

    h = Harness()
    h.step(5)
    status = h.ctrl.status()
    json.dumps(status)
    assert status["phase"] == "forward" and status["episodes"]["forward"] == 1
    assert math.isfinite(status["probability"])


@pytest.mark.parametrize(
    "bad",
    [
        {"control_hz": 0},
        {"max_episode_steps": 0},
        {"stuck_after": 0},
        {"start_task": "sideways"},
        {"action_timeout_s": -1.0},
        {"verdict_timeout_s": math.nan},
    ],
)
def test_bad_config_is_one_line_error(bad: dict) -> None:
    with pytest.raises(ControllerConfigError) as info:
        ResetFreeController(ControllerConfig(**bad))
    assert "\n" not in str(info.value)


def test_bad_verdict_status_rejected() -> None:
    ctrl = ResetFreeController()
    with pytest.raises(ValueError, match="verdict status"):
        ctrl.on_verdict(Verdict("maybe", "forward", False, 0.0), 0.0)
