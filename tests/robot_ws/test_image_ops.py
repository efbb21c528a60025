"""Square frames for the policy from any camera frame, with matching intrinsics."""

from __future__ import annotations

import numpy as np
import pytest

from robofume_robot.image_ops import fit_square, fit_square_intrinsics


def test_fit_square_crops_the_centre_and_resizes() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = 200  # the centred 480x480 square
    out = fit_square(frame, 128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert (out == 200).all()
    same = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fit_square(same, 64), same)


def test_intrinsics_follow_the_crop_and_scale() -> None:
    fx, fy, cx, cy = fit_square_intrinsics(640, 480, 600.0, 600.0, 319.5, 239.5, 240)
    assert (fx, fy) == (300.0, 300.0)
    assert cx == pytest.approx(119.5) and cy == pytest.approx(119.5)  # the principal point stays centred


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)])
def test_bad_frames_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        fit_square(bad, 8)
