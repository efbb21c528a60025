"""Homing commands: gripper open, lift before travelling, bounded, zero at home."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reset_free.homing import HomingConfig, HomingConfigError, at_home, homing_action

HOME = HomingConfig(home_xyz=(0.46, 0.0, 0.35), home_yaw=0.0, pos_scale=0.03, yaw_scale=0.25)


def test_low_arm_lifts_straight_up_with_the_gripper_open() -> None:
    action = homing_action(HOME, [0.6, 0.2, 0.05], 0.4)
    assert action.dtype == np.float32 and action.shape == (5,)
    assert action[0] == action[1] == 0.0 and action[2] == 1.0  # lift only, saturated
    assert action[3] == pytest.approx(-1.0) and action[4] == -1.0


def test_lifted_arm_travels_home_and_stops_there() -> None:
    action = homing_action(HOME, [0.47, -0.006, 0.345], 0.05)
    np.testing.assert_allclose(action[:3], [-1 / 3, 0.2, 1 / 6], rtol=1e-5)
    assert action[3] == pytest.approx(-0.2)
    at = homing_action(HOME, list(HOME.home_xyz), HOME.home_yaw)
    np.testing.assert_allclose(at, [0, 0, 0, 0, -1])
    assert at_home(HOME, [0.465, 0.0, 0.35], 0.05) and not at_home(HOME, [0.5, 0.0, 0.35], 0.0)
    assert not at_home(HOME, list(HOME.home_xyz), 0.2)


def test_bad_pose_and_bad_config_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="finite"):
        homing_action(HOME, [0.4, math.nan, 0.3], 0.0)
    with pytest.raises(ValueError, match="finite"):
        homing_action(HOME, [0.4, 0.3], 0.0)
    for bad in ({"home_xyz": (0.4, 0.0)}, {"pos_scale": 0.0}, {"max_steps": 0}, {"home_yaw": math.nan}):
        with pytest.raises(HomingConfigError) as info:
            HomingConfig(**{"home_xyz": (0.4, 0.0, 0.3), **bad}).validate()  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
