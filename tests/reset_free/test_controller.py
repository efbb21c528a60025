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
from reset_free.homing import HomingConfig

DT = 0.1


class Harness:
    """Drives a controller with a live policy server and classifier unless told otherwise."""

    def __init__(self, **cfg: object) -> None:
        defaults = {"max_episode_steps": 20, "startup_grace_s": 0.5, "stuck_after": 2}
        defaults["already_done_steps"] = 0  # its own test below
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


def _one_direction_fails_other_already_done(h: Harness, cycles: int) -> None:
    """Forward times out, then backward is confirmed at once (the object never left the start)."""
    for _ in range(cycles):
        h.classifier = "failure"
        while (h.ctrl.task == "forward" or not h.ctrl.phase.active) and h.ctrl.phase is not Phase.HELP_NEEDED:
            h.step()
        h.classifier = "success"
        while h.ctrl.task == "backward" and h.ctrl.phase is not Phase.HELP_NEEDED:
            h.step()


def test_failing_one_direction_while_the_other_is_already_done_is_stuck() -> None:
    h = Harness(max_episode_steps=5, stuck_after=3, already_done_steps=3)
    _one_direction_fails_other_already_done(h, 2)
    assert h.ctrl.phase is not Phase.HELP_NEEDED, "2 of 3 failed attempts: not yet"
    _one_direction_fails_other_already_done(h, 2)
    assert h.ctrl.phase is Phase.HELP_NEEDED
    assert h.ctrl.stats.already_done["backward"] == 3 and h.ctrl.stats.timeouts["forward"] == 3
    [help_event] = [e for e in h.events if e.kind == "help"]
    assert "forward 3" in help_event.reason and "backward 0 (+3 already done)" in help_event.reason
    h.ctrl.resume()
    assert h.ctrl.stats.without_success == {"forward": 0, "backward": 0}


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
        {"already_done_steps": -1},
        {"homing": HomingConfig(home_xyz=(0.4, 0.0, math.inf))},
        {"homing": HomingConfig(home_xyz=(0.4, 0.0, 0.3), max_steps=0)},
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


def test_success_confirmed_right_at_the_start_is_already_done_not_a_success() -> None:
    h = Harness(already_done_steps=3)
    h.step(2)  # the forward attempt starts (the classifier answered once while the arm was held)
    h.classifier = "success"  # the object is already at the target
    h.step(1)
    (end,) = h.ends()
    assert end.outcome == "already_done" and end.reward == 1.0 and end.step <= 3
    stats = h.ctrl.stats
    assert stats.already_done["forward"] == 1 and stats.successes["forward"] == 0
    assert stats.failures_in_a_row["forward"] == 0 and h.ctrl.task == "backward"
    h.classifier = "failure"
    h.step(5)
    h.classifier = "success"
    h.step(1)
    assert h.ends()[-1].outcome == "success" and h.ctrl.stats.successes["backward"] == 1


class Arm:
    """A point end effector that moves by the commanded action like the safety gate + arm do."""

    def __init__(self, pos: tuple[float, float, float], yaw: float, homing: HomingConfig) -> None:
        self.pos, self.yaw, self.homing = list(pos), yaw, homing
        self.commands: list[list[float]] = []

    def apply(self, action: list[float] | None) -> None:
        if action is None:
            return
        self.commands.append(list(action))
        self.pos = [p + a * self.homing.pos_scale for p, a in zip(self.pos, action[:3], strict=True)]
        self.yaw += action[3] * self.homing.yaw_scale


def test_homing_runs_before_every_attempt_and_ends_at_home() -> None:
    homing = HomingConfig(home_xyz=(0.46, 0.0, 0.35), home_yaw=0.0, max_steps=40)
    h = Harness(homing=homing, max_episode_steps=4, startup_grace_s=0.0)
    arm = Arm((0.6, 0.2, 0.05), 0.5, homing)
    phases: list[str] = []
    for _ in range(40):
        h.ctrl.on_pose(arm.pos, arm.yaw, h.now)
        h.step(1)
        phases.append(h.ctrl.phase.value)
        arm.apply(None if h.ctrl.homing_action is None else h.ctrl.homing_action.tolist())
        if h.ctrl.phase.active:
            arm.pos[2] -= 0.02  # the policy pushes the arm down during the attempt
    assert phases[0] == "homing" and "forward" in phases and "backward" in phases
    homed = [e for e in h.events if e.kind == "homed"]
    starts = [e for e in h.events if e.kind == "episode_start"]
    assert len(homed) >= len(starts) >= 2 and all(e.outcome == "home" for e in homed)
    # every attempt starts right after a homing ends, in the same control step
    for start in starts:
        assert any(e.time == start.time for e in homed)
    # the first commands lift (z up, no sideways travel) with the gripper open, then travel
    first = arm.commands[0]
    assert first[2] > 0 and first[0] == first[1] == 0.0 and first[4] == -1.0
    assert all(-1.0 <= v <= 1.0 for c in arm.commands for v in c)
    assert h.ctrl.stats.homings == len(homed) and h.ctrl.stats.homing_gave_up == 0


def test_homing_without_a_pose_gives_up_after_max_steps_and_pauses_obey_operator() -> None:
    homing = HomingConfig(home_xyz=(0.46, 0.0, 0.35), max_steps=5)
    h = Harness(homing=homing, startup_grace_s=0.0)
    h.step(1)
    assert h.ctrl.phase is Phase.HOMING and h.ctrl.homing_action is None  # no pose: no command
    h.ctrl.pause()
    h.step(3)
    assert h.ctrl.phase is Phase.PAUSED and h.ctrl.homing_action is None
    h.ctrl.resume()
    h.step(8)
    (homed,) = [e for e in h.events if e.kind == "homed"]
    assert homed.outcome == "gave_up" and h.ctrl.stats.homing_gave_up == 1
    assert h.ctrl.phase is Phase.FORWARD
    h.ctrl.estop()
    h.step(1)
    assert h.ctrl.phase is Phase.ESTOP and h.ctrl.homing_action is None
