"""Tests of the plain-Python safety gate (no ROS needed)."""

from __future__ import annotations

import math
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from robofume_robot.safety_gate import (
    ArmTarget,
    GateState,
    SafetyConfigError,
    SafetyGate,
    SafetyLimits,
    load_limits,
)

MOCK_YAML = Path(__file__).resolve().parents[2] / "robot_ws/src/robofume_robot/config/safety_limits_mock.yaml"
TOL = 1e-9
CENTER = [0.5, 0.0, 0.2]

MOCK_VALUES: dict[str, Any] = {
    "workspace_low": [0.28, -0.32, 0.012],
    "workspace_high": [0.72, 0.32, 0.35],
    "max_step": 0.06,
    "pos_scale": 0.03,
    "yaw_scale": 0.25,
    "yaw_range": [-1.5708, 1.5708],
    "gripper_range": [0.0, 1.0],
    "watchdog_timeout": 0.5,
    "max_frame_age": 0.3,
}


@pytest.fixture
def limits() -> SafetyLimits:
    return load_limits(MOCK_YAML)


def write_yaml(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "limits.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def pos_of(target: ArmTarget) -> np.ndarray:
    return np.array(target.position)


def box_gap(limits: SafetyLimits, p: np.ndarray) -> float:
    """Distance from p to the workspace box (0 inside)."""
    return float(np.linalg.norm(p - np.clip(p, limits.workspace_low, limits.workspace_high)))


def check_target(limits: SafetyLimits, target: ArmTarget, ee: np.ndarray, yaw: float) -> None:
    """The geometric safety contract of every target the gate emits."""
    p = pos_of(target)
    assert np.linalg.norm(p - ee) <= limits.max_step + TOL
    gap = box_gap(limits, ee)
    if gap <= limits.max_step:
        assert limits.contains(p, tol=TOL), (p, ee)
    else:  # documented exception: one full step straight towards the box
        assert abs(box_gap(limits, p) - (gap - limits.max_step)) <= 1e-9, (p, ee)
    lo, hi = limits.yaw_range
    assert abs(target.yaw - yaw) <= limits.yaw_scale + TOL
    yaw_gap = max(lo - yaw, yaw - hi, 0.0)
    if yaw_gap <= limits.yaw_scale:
        assert lo - TOL <= target.yaw <= hi + TOL
    else:
        assert abs(max(lo - target.yaw, target.yaw - hi, 0.0) - (yaw_gap - limits.yaw_scale)) <= 1e-9
    assert limits.gripper_range[0] <= target.gripper <= limits.gripper_range[1]


# ----------------------------------------------------------------------------- load_limits


def test_mock_yaml_loads_with_expected_values(limits: SafetyLimits) -> None:
    for name, value in MOCK_VALUES.items():
        got = getattr(limits, name)
        assert (list(got) if isinstance(got, tuple) else got) == value, name
    assert load_limits(MOCK_VALUES) == limits


def test_missing_keys_listed_in_one_line(tmp_path: Path) -> None:
    data = {k: v for k, v in MOCK_VALUES.items() if k not in ("max_step", "watchdog_timeout")}
    path = write_yaml(tmp_path, data)
    with pytest.raises(SafetyConfigError) as err:
        load_limits(path)
    assert str(err.value) == f"safety limits in {path}: missing required key(s): max_step, watchdog_timeout"


def test_empty_mapping_lists_every_key() -> None:
    with pytest.raises(SafetyConfigError) as err:
        load_limits({})
    message = str(err.value)
    assert "\n" not in message
    for field in fields(SafetyLimits):
        assert field.name in message


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {**MOCK_VALUES, "max_stpe": 0.1})
    with pytest.raises(SafetyConfigError, match=r"unknown key\(s\): max_stpe"):
        load_limits(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workspace_low", "abc"),
        ("workspace_low", [0.28, -0.32]),
        ("workspace_high", [0.72, 0.32, [0.35]]),
        ("max_step", "0.06"),
        ("max_step", True),
        ("max_step", None),
        ("max_step", float("nan")),
        ("watchdog_timeout", float("inf")),
        ("yaw_range", [-1.0, "a"]),
        ("gripper_range", {"low": 0.0, "high": 1.0}),
    ],
)
def test_bad_types_fail_clearly(tmp_path: Path, key: str, value: object) -> None:
    path = write_yaml(tmp_path, {**MOCK_VALUES, key: value})
    with pytest.raises(SafetyConfigError) as err:
        load_limits(path)
    message = str(err.value)
    assert message.startswith(f"safety limits in {path}: {key} must be")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("workspace_low", [0.72, -0.32, 0.012], "workspace_low.x"),
        ("workspace_low", [0.28, 0.5, 0.012], "workspace_low.y"),
        ("workspace_high", [0.72, 0.32, 0.0], "workspace_low.z"),
        ("max_step", 0.0, "max_step must be > 0"),
        ("pos_scale", -0.03, "pos_scale must be > 0"),
        ("yaw_scale", 0, "yaw_scale must be > 0"),
        ("watchdog_timeout", -1, "watchdog_timeout must be > 0"),
        ("max_frame_age", 0, "max_frame_age must be > 0"),
        ("yaw_range", [1.0, -1.0], "yaw_range must be ordered"),
        ("gripper_range", [0.8, 0.2], "gripper_range"),
        ("gripper_range", [0.0, 1.5], "gripper_range"),
        ("gripper_range", [-0.1, 1.0], "gripper_range"),
    ],
)
def test_inconsistent_values_fail(key: str, value: object, match: str) -> None:
    with pytest.raises(SafetyConfigError, match=match):
        load_limits({**MOCK_VALUES, key: value})


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SafetyConfigError, match=str(path)):
        load_limits(path)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "", "workspace_low: [1, 2\n"])
def test_non_mapping_or_broken_yaml_fails_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SafetyConfigError) as err:
        load_limits(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_direct_construction_is_validated(limits: SafetyLimits) -> None:
    with pytest.raises(SafetyConfigError):
        replace(limits, workspace_high=(0.2, 0.32, 0.35))
    with pytest.raises(SafetyConfigError):
        replace(limits, max_step=-0.1)


# ----------------------------------------------------------------------------- target geometry


def test_small_action_accepted_exactly(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    res = gate.submit([0.5, -1.0, 0.2, -0.4, 1.0], 1.0, 1.05, CENTER, 0.1)
    assert res.status == "accepted"
    assert res.target is not None
    assert pos_of(res.target) == pytest.approx([0.515, -0.03, 0.206])
    assert res.target.yaw == pytest.approx(0.0)
    assert res.target.gripper == pytest.approx(1.0)
    assert gate.last_target == res.target
    assert gate.state is GateState.OK
    assert gate.counters.accepted == 1


def test_numpy_action_and_numpy_scalars_accepted(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    action = np.array([0.1, 0.2, -0.3, 0.0, -1.0], dtype=np.float32)
    res = gate.submit(action, np.float64(2.0), 2.0, np.array(CENTER), np.float32(0.0))
    assert res.status == "accepted"
    res = gate.submit([np.int64(1), 0, 0, 0, np.float32(0.5)], 2, 2.0, tuple(CENTER), 0)
    assert res.status == "accepted"
    assert res.target is not None
    assert res.target.gripper == pytest.approx(0.75)


def test_workspace_wall_clips(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    ee = [0.72, 0.0, 0.012]
    res = gate.submit([1.0, 0.0, -1.0, 0.0, 0.0], 0.0, 0.0, ee, 0.0)
    assert res.status == "clipped"
    assert res.target is not None
    assert pos_of(res.target) == pytest.approx(ee)


def test_step_cap_keeps_direction(limits: SafetyLimits) -> None:
    wide = replace(limits, pos_scale=0.05)  # |(1, 1, 1)| * 0.05 = 0.087 > max_step
    gate = SafetyGate(wide)
    res = gate.submit([1.0, 1.0, 1.0, 0.0, 0.0], 0.0, 0.0, CENTER, 0.0)
    assert res.status == "clipped"
    assert res.target is not None
    step = pos_of(res.target) - np.array(CENTER)
    assert np.linalg.norm(step) == pytest.approx(wide.max_step)
    assert step / np.linalg.norm(step) == pytest.approx(np.ones(3) / math.sqrt(3))


def test_ee_slightly_outside_box_gets_target_inside(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    ee = np.array([0.75, 0.0, 0.2])  # 3 cm outside in x, within max_step
    res = gate.submit([1.0, 1.0, 0.0, 0.0, 0.0], 0.0, 0.0, ee, 0.0)
    assert res.status == "clipped"
    assert res.target is not None
    assert limits.contains(pos_of(res.target))
    assert np.linalg.norm(pos_of(res.target) - ee) <= limits.max_step + TOL
    assert res.target.y > 0.0  # still follows the commanded direction where it can


def test_ee_far_outside_box_moves_one_step_towards_it(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    ee = np.array([1.0, 0.0, 0.2])  # 28 cm outside in x
    res = gate.submit([1.0, 1.0, 1.0, 0.0, 0.0], 0.0, 0.0, ee, 0.0)
    assert res.status == "clipped"
    assert res.target is not None
    assert pos_of(res.target) == pytest.approx([1.0 - limits.max_step, 0.0, 0.2])
    hold = SafetyGate(limits).tick(0.0, ee, 0.0)
    assert hold is not None
    assert pos_of(hold) == pytest.approx([1.0 - limits.max_step, 0.0, 0.2])


def test_yaw_and_gripper_limits() -> None:
    lim = load_limits({**MOCK_VALUES, "yaw_range": [-0.5, 0.5], "gripper_range": [0.1, 0.9]})
    gate = SafetyGate(lim)
    res = gate.submit([0.0, 0.0, 0.0, 1.0, 1.0], 0.0, 0.0, CENTER, 0.4)
    assert res.status == "clipped"
    assert res.target is not None
    assert res.target.yaw == pytest.approx(0.5)
    assert res.target.gripper == pytest.approx(0.9)
    res = gate.submit([0.0, 0.0, 0.0, 0.0, -1.0], 0.0, 0.0, CENTER, 2.0)  # yaw far outside range
    assert res.target is not None
    assert res.target.yaw == pytest.approx(2.0 - lim.yaw_scale)
    assert res.target.gripper == pytest.approx(0.1)


# ----------------------------------------------------------------------------- malformed input

MALFORMED_ACTIONS: list[object] = [
    None,
    "0,0,0,0,0",
    b"\x00" * 5,
    3.0,
    True,
    [0.0] * 4,
    [0.0] * 6,
    [],
    [0.0, 0.0, 0.0, 0.0, None],
    [0.0, 0.0, 0.0, 0.0, "1"],
    [0.0, 0.0, 0.0, 0.0, True],
    [0.0, 0.0, 0.0, 0.0, np.bool_(True)],
    [0.0, 0.0, 0.0, 0.0, [0.0]],
    [[0.0] * 5],
    [0.0, 0.0, 0.0, 0.0, 1j],
    [0.0, 0.0, 0.0, 0.0, float("nan")],
    [0.0, 0.0, float("inf"), 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 10**400],
    [0.0, 0.0, 0.0, 0.0, 1.001],
    [-1.5, 0.0, 0.0, 0.0, 0.0],
    [1e9, 0.0, 0.0, 0.0, 0.0],
    {"dx": 0.0},
    {0, 1, 2, 3, 4},
    np.zeros((1, 5)),
    np.zeros(5, dtype=bool),
    np.zeros(5, dtype=complex),
    np.array(["a"] * 5),
    range(5),
]


@pytest.mark.parametrize("action", MALFORMED_ACTIONS, ids=lambda a: type(a).__name__)
def test_malformed_action_rejected(limits: SafetyLimits, action: object) -> None:
    gate = SafetyGate(limits)
    res = gate.submit(action, 0.0, 0.0, CENTER, 0.0)
    assert res.status == "rejected_malformed"
    assert res.target is None
    assert gate.counters.rejected_malformed == 1
    assert gate.last_target is None
    assert "\n" not in res.reason


@pytest.mark.parametrize(
    ("stamp", "ee_pos", "ee_yaw"),
    [
        (None, CENTER, 0.0),
        ("0.0", CENTER, 0.0),
        (True, CENTER, 0.0),
        (float("nan"), CENTER, 0.0),
        (float("inf"), CENTER, 0.0),
        (0.0, CENTER[:2], 0.0),
        (0.0, [0.5, 0.0, float("nan")], 0.0),
        (0.0, None, 0.0),
        (0.0, "abc", 0.0),
        (0.0, CENTER, float("nan")),
        (0.0, CENTER, None),
    ],
)
def test_malformed_stamp_or_pose_rejected(
    limits: SafetyLimits, stamp: object, ee_pos: Any, ee_yaw: Any
) -> None:
    gate = SafetyGate(limits)
    res = gate.submit([0.0] * 5, stamp, 0.0, ee_pos, ee_yaw)
    assert res.status == "rejected_malformed"
    assert res.target is None


def test_action_tolerance_boundary(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    assert gate.submit([1.0 + 1e-7, 0, 0, 0, -1.0 - 1e-7], 0.0, 0.0, CENTER, 0.0).status == "accepted"
    assert gate.submit([1.0 + 1e-5, 0, 0, 0, 0], 0.0, 0.0, CENTER, 0.0).status == "rejected_malformed"


# ----------------------------------------------------------------------------- fuzz


def random_command(rng: np.random.Generator) -> tuple[object, bool]:
    """A random action and whether it is well-formed."""
    kind = rng.integers(10)
    if kind < 5:
        return [float(v) for v in rng.uniform(-1, 1, 5)], True
    if kind == 5:
        return rng.uniform(-1, 1, 5), True  # ndarray
    if kind == 6:
        return list(rng.uniform(-1e6, 1e6, 5)), False  # huge
    if kind == 7:
        action = list(rng.uniform(-1, 1, 5))
        action[int(rng.integers(5))] = [math.nan, math.inf, -math.inf][int(rng.integers(3))]
        return action, False
    if kind == 8:
        return list(rng.uniform(-1, 1, int(rng.choice([0, 1, 3, 4, 6, 10])))), False
    junk: list[object] = [
        "abc",
        None,
        True,
        False,
        [[0.1] * 5],
        [0.1, 0.2, "x", 0.0, 0.0],
        {"a": 1},
        [None] * 5,
    ]
    return junk[int(rng.integers(len(junk)))], False


def random_ee(rng: np.random.Generator, limits: SafetyLimits) -> np.ndarray:
    """Mostly inside the box, sometimes just outside, sometimes far outside."""
    low, high = np.array(limits.workspace_low), np.array(limits.workspace_high)
    kind = rng.integers(4)
    if kind < 2:
        return rng.uniform(low, high)
    margin = 0.05 if kind == 2 else 1.0
    return rng.uniform(low - margin, high + margin)


def test_fuzz_every_target_is_safe_and_counters_add_up(limits: SafetyLimits, tmp_path: Path) -> None:
    rng = np.random.default_rng(12345)
    gate = SafetyGate(limits, latch_path=tmp_path / "estop.latch")
    n = 10_000
    expected = {"accepted_or_clipped": 0, "rejected_malformed": 0, "dropped_stale": 0, "blocked_estop": 0}
    now = 100.0
    ticks = 0
    for i in range(n):
        now += float(rng.uniform(0.0, 0.2))
        if i % 1000 == 500:
            gate.engage_estop("fuzz")
        elif i % 1000 == 550:
            gate.release_estop("fuzzer")
        action, well_formed = random_command(rng)
        ee = random_ee(rng, limits)
        yaw = float(rng.uniform(-2.5, 2.5))
        age = float(rng.choice([rng.uniform(0, 0.29), rng.uniform(0.31, 5.0), -rng.uniform(0.31, 5.0)]))
        stale = abs(age) > limits.max_frame_age
        estopped = gate.state is GateState.ESTOP
        res = gate.submit(action, now - age, now, ee, yaw)
        if not well_formed:
            assert res.status == "rejected_malformed", action
            assert res.target is None
            expected["rejected_malformed"] += 1
        elif estopped:
            assert res.status == "blocked_estop"
            assert res.target is None
            expected["blocked_estop"] += 1
        elif stale:
            assert res.status == "dropped_stale"
            assert res.target is None
            expected["dropped_stale"] += 1
        else:
            assert res.status in ("accepted", "clipped")
            assert res.target is not None
            check_target(limits, res.target, ee, yaw)
            expected["accepted_or_clipped"] += 1
        if rng.random() < 0.5:
            tick_ee = random_ee(rng, limits)
            tick_yaw = float(rng.uniform(-2.5, 2.5))
            hold = gate.tick(now + float(rng.uniform(0.0, 1.0)), tick_ee, tick_yaw)
            if hold is not None:
                ticks += 1
                check_target(limits, hold, tick_ee, tick_yaw)
    c = gate.counters
    assert c.accepted + c.clipped + c.rejected_malformed + c.dropped_stale + c.blocked_estop == n
    assert c.accepted + c.clipped == expected["accepted_or_clipped"]
    assert c.rejected_malformed == expected["rejected_malformed"]
    assert c.dropped_stale == expected["dropped_stale"]
    assert c.blocked_estop == expected["blocked_estop"]
    assert min(expected.values()) > 100  # every category is exercised
    assert c.accepted > 100 and c.clipped > 100
    assert ticks > 100 and c.watchdog_holds > 10


# ----------------------------------------------------------------------------- watchdog and staleness


def test_watchdog_holds_when_commands_stop(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    hold = gate.tick(0.0, CENTER, 0.0)  # nothing commanded yet
    assert gate.state is GateState.HOLDING
    assert hold == ArmTarget(*CENTER, yaw=0.0, gripper=limits.gripper_range[0])

    for k in range(10):  # a healthy 10 Hz stream keeps the gate OK
        t = 1.0 + 0.1 * k
        assert gate.submit([0.0, 0.0, 0.0, 0.0, 1.0], t - 0.05, t, CENTER, 0.0).status == "accepted"
        assert gate.tick(t + 0.05, CENTER, 0.0) is None
        assert gate.state is GateState.OK
    last_valid = 1.9

    # The publisher pauses: only malformed and stale messages arrive; none refresh the watchdog.
    assert gate.submit([float("nan")] * 5, 2.1, 2.1, CENTER, 0.0).status == "rejected_malformed"
    assert gate.submit([0.0] * 5, 1.5, 2.3, CENTER, 0.0).status == "dropped_stale"
    assert gate.tick(last_valid + limits.watchdog_timeout - 0.01, CENTER, 0.0) is None
    assert gate.state is GateState.OK

    hold = gate.tick(last_valid + limits.watchdog_timeout + 0.01, [0.51, 0.01, 0.2], 0.3)
    assert gate.state is GateState.HOLDING
    assert hold == ArmTarget(0.51, 0.01, 0.2, yaw=0.3, gripper=1.0)  # keeps the last commanded gripper
    assert gate.counters.watchdog_holds == 1
    for k in range(5):  # still holding on every tick, counted once
        assert gate.tick(2.5 + 0.1 * k, CENTER, 0.0) is not None
    assert gate.counters.watchdog_holds == 1

    assert gate.submit([0.0] * 5, 3.0, 3.0, CENTER, 0.0).status == "accepted"
    assert gate.state is GateState.OK
    assert gate.tick(3.1, CENTER, 0.0) is None
    assert gate.tick(3.0 + limits.watchdog_timeout + 0.01, CENTER, 0.0) is not None
    assert gate.counters.watchdog_holds == 2


def test_hold_target_is_pulled_into_box(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    hold = gate.tick(0.0, [0.74, 0.0, 0.0], 0.0)  # just outside (x and z)
    assert hold is not None
    assert limits.contains(pos_of(hold))
    assert pos_of(hold) == pytest.approx([0.72, 0.0, 0.012])


def test_tick_with_non_finite_pose_sends_nothing_but_holds(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    gate.submit([0.0] * 5, 0.0, 0.0, CENTER, 0.0)
    assert gate.tick(1.0, [math.nan, 0.0, 0.0], 0.0) is None
    assert gate.state is GateState.HOLDING


def test_clock_jump_backwards_triggers_hold(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    gate.submit([0.0] * 5, 100.0, 100.0, CENTER, 0.0)
    assert gate.tick(1.0, CENTER, 0.0) is not None  # e.g. sim time restarted
    assert gate.state is GateState.HOLDING


def test_stale_and_future_frames_dropped_then_fresh_accepted(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    now = 50.0
    old = gate.submit([0.1] * 5, now - limits.max_frame_age - 0.01, now, CENTER, 0.0)
    future = gate.submit([0.1] * 5, now + limits.max_frame_age + 0.01, now, CENTER, 0.0)
    for res in (old, future):
        assert res.status == "dropped_stale"
        assert res.target is None
    assert gate.counters.dropped_stale == 2
    assert gate.last_target is None
    assert gate.state is GateState.HOLDING
    fresh = gate.submit([0.1] * 5, now - limits.max_frame_age + 0.01, now, CENTER, 0.0)
    assert fresh.status == "accepted"
    assert gate.counters.accepted == 1
    assert gate.state is GateState.OK


# ----------------------------------------------------------------------------- e-stop


def test_estop_latches_until_operator_release(limits: SafetyLimits, tmp_path: Path) -> None:
    latch = tmp_path / "state" / "estop.latch"
    gate = SafetyGate(limits, latch_path=latch)
    assert gate.submit([0.0, 0.0, 0.0, 0.0, 1.0], 0.0, 0.0, CENTER, 0.0).status == "accepted"
    gate.engage_estop("operator pressed stop")
    assert gate.state is GateState.ESTOP
    assert latch.exists()
    assert [p.name for p in latch.parent.iterdir()] == ["estop.latch"]  # no temp files left behind

    now = 0.0
    for stream in range(3):  # the command source restarts: a new stream each time
        for _ in range(20):
            now += 0.1
            res = gate.submit([0.2, 0.0, 0.0, 0.0, 0.0], now, now, CENTER, 0.0)
            assert res.status == "blocked_estop"
            assert res.target is None
            hold = gate.tick(now + 0.01, [0.5, 0.01 * stream, 0.2], 0.1)
            assert hold == ArmTarget(0.5, 0.01 * stream, 0.2, yaw=0.1, gripper=1.0)
    assert gate.state is GateState.ESTOP
    assert gate.counters.blocked_estop == 60
    assert gate.counters.watchdog_holds == 0
    assert gate.submit("junk", now, now, CENTER, 0.0).status == "rejected_malformed"

    restarted = SafetyGate(limits, latch_path=latch)  # the node restarts
    assert restarted.state is GateState.ESTOP
    assert "operator pressed stop" in restarted.diagnostics()["estop_reason"]
    assert restarted.submit([0.0] * 5, now, now, CENTER, 0.0).status == "blocked_estop"
    assert restarted.tick(now, CENTER, 0.0) is not None

    for bad in ("", "   "):
        with pytest.raises(ValueError):
            restarted.release_estop(bad)
    with pytest.raises(ValueError):
        restarted.release_estop(None)  # type: ignore[arg-type]
    assert restarted.state is GateState.ESTOP
    assert latch.exists()

    restarted.release_estop("alice")
    assert not latch.exists()
    assert restarted.state is GateState.HOLDING  # needs a fresh command before moving
    assert restarted.diagnostics()["estop_released_by"] == "alice"
    assert restarted.submit([0.0] * 5, now, now, CENTER, 0.0).status == "accepted"
    assert restarted.state is GateState.OK
    assert SafetyGate(limits, latch_path=latch).state is GateState.HOLDING


def test_estop_without_latch_file_and_engaged_twice(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    gate.engage_estop("first")
    gate.engage_estop("second")
    assert gate.diagnostics()["estop_reason"] == "first"
    gate.release_estop("bob")
    assert gate.state is GateState.HOLDING


def test_estop_engages_even_if_latch_cannot_be_written(limits: SafetyLimits, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    gate = SafetyGate(limits, latch_path=blocker / "estop.latch")  # parent is a file: write fails
    gate.engage_estop("boom")
    assert gate.state is GateState.ESTOP
    assert gate.diagnostics()["latch_error"] != ""


# ----------------------------------------------------------------------------- diagnostics


def test_diagnostics_report_state_counters_and_limits(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    gate.submit([0.0] * 5, 0.0, 0.0, CENTER, 0.0)
    gate.submit(None, 0.0, 0.0, CENTER, 0.0)
    gate.submit(None, 0.0, 0.0, CENTER, 0.0)
    gate.engage_estop("test")
    diag = gate.diagnostics()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in diag.items())
    assert diag["state"] == "estop"
    assert diag["estop_reason"] == "test"
    for name, value in asdict(gate.counters).items():
        assert diag[name] == str(value)
    assert diag["accepted"] == "1"
    assert diag["rejected_malformed"] == "2"
    for field in fields(SafetyLimits):
        assert f"limit.{field.name}" in diag
    assert diag["limit.max_step"] == "0.06"


def _replay_through_gate(delta_from: str, actions: np.ndarray, limits: SafetyLimits) -> np.ndarray:
    """End-effector positions of the mock arm driven by ``actions`` through a gate, as over ROS."""
    from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv

    env = MockArmEnv(MockArmConfig(image_size=0))
    env.reset(seed=3)
    gate = SafetyGate(limits, delta_from=delta_from)
    path = []
    for t, action in enumerate(actions):
        now = 0.1 * t
        result = gate.submit(list(map(float, action)), now, now, env.ee_pos().tolist(), env.ee_yaw())
        assert result.target is not None, result.reason
        env.apply_target(np.array(result.target.position), result.target.yaw, result.target.gripper)
        path.append(env.ee_pos())
    env.close()
    return np.array(path)


def test_target_deltas_reproduce_the_mock_arm_envs_own_actions(limits: SafetyLimits) -> None:
    """The data and the learning bench step the env, which moves the previous target; the gate's
    default does the same, so a policy acts over ROS as it was trained. Deltas of the measured pose
    fall behind whenever the arm lags its target (here: a fast descent, then a sweep)."""
    from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv

    rng = np.random.default_rng(0)
    actions = np.concatenate(
        [np.tile([0.2, -0.3, -1.0, 0.2, -1.0], (8, 1)), rng.uniform(-1, 1, (20, 5)) * [1, 1, 0.5, 0.3, 1]]
    )
    env = MockArmEnv(MockArmConfig(image_size=0))
    env.reset(seed=3)
    expected = np.array([env.step(a)[0]["proprio"][:3] for a in actions])
    env.close()
    assert np.abs(_replay_through_gate("target", actions, limits) - expected).max() < 5e-4  # float32 proprio
    lagging = np.abs(_replay_through_gate("measured", actions, limits) - expected).max()
    assert lagging > 0.01, f"measured-pose deltas should fall behind a lagging arm, differed by {lagging}"
    with pytest.raises(ValueError, match="delta_from"):
        SafetyGate(limits, delta_from="commanded")


def test_after_a_watchdog_hold_deltas_start_from_the_measured_pose(limits: SafetyLimits) -> None:
    gate = SafetyGate(limits)
    ee = [0.5, 0.0, 0.2]
    first = gate.submit([1.0, 0.0, 0.0, 0.0, 0.0], 0.0, 0.0, ee, 0.0).target
    assert first is not None and first.position[0] == pytest.approx(0.53)
    second = gate.submit([1.0, 0.0, 0.0, 0.0, 0.0], 0.1, 0.1, ee, 0.0).target  # arm has not moved yet
    assert second is not None and second.position[0] == pytest.approx(0.56), "from the previous target"
    gate.tick(5.0, ee, 0.0)  # silence: the watchdog holds
    assert gate.state is GateState.HOLDING
    third = gate.submit([1.0, 0.0, 0.0, 0.0, 0.0], 5.1, 5.1, ee, 0.0).target
    assert third is not None and third.position[0] == pytest.approx(0.53), "from the measured pose"
