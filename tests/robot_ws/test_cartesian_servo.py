"""The real-arm adapter's servo law: direction, speed limits, deadband, gripper mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robofume_robot.cartesian_servo import ServoSettings, gripper_position, twist_toward, wrap_angle


def test_twist_points_at_target_and_respects_speed_limit() -> None:
    s = ServoSettings(gain=2.0, max_linear_speed=0.2)
    linear, _ = twist_toward(np.array([1.0, 0.0, 0.0]), 0.0, np.zeros(3), 0.0, s)
    np.testing.assert_allclose(linear, [0.2, 0.0, 0.0])
    linear, _ = twist_toward(np.array([0.0, 0.01, 0.0]), 0.0, np.zeros(3), 0.0, s)
    np.testing.assert_allclose(linear, [0.0, 0.02, 0.0])


def test_deadband_and_yaw_wrap() -> None:
    s = ServoSettings(gain=2.0, max_angular_speed=0.5)
    linear, yaw_rate = twist_toward(np.array([0.001, 0, 0]), math.pi - 0.05, np.zeros(3), -math.pi + 0.05, s)
    assert np.all(linear == 0)
    assert yaw_rate == pytest.approx(-0.2)  # the short way round, through +-pi
    assert wrap_angle(3 * math.pi) == pytest.approx(-math.pi)


def test_gripper_mapping_clamps() -> None:
    assert gripper_position(0.0, 0.037, 0.015) == pytest.approx(0.037)
    assert gripper_position(1.0, 0.037, 0.015) == pytest.approx(0.015)
    assert gripper_position(7.0, 0.037, 0.015) == pytest.approx(0.015)


def test_bad_settings_rejected() -> None:
    with pytest.raises(ValueError, match="max_linear_speed"):
        ServoSettings(max_linear_speed=0)
