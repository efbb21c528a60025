"""Frame geometry shared by camera nodes: the policy's square input from any camera frame."""

from __future__ import annotations

import numpy as np
from PIL import Image as PilImage


def square_crop_box(width: int, height: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the centred square crop of a ``width`` x ``height`` frame."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def fit_square(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an HxWx3 uint8 frame to a square and resize it to ``size`` x ``size`` (area filter)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 frame, got {frame.dtype} {frame.shape}")
    if size < 1:
        raise ValueError(f"output size must be >= 1 px, got {size}")
    height, width = frame.shape[:2]
    x0, y0, side = square_crop_box(width, height)
    crop = frame[y0 : y0 + side, x0 : x0 + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return np.asarray(PilImage.fromarray(crop).resize((size, size), PilImage.Resampling.BOX))


def fit_square_intrinsics(
    width: int, height: int, fx: float, fy: float, cx: float, cy: float, size: int
) -> tuple[float, float, float, float]:
    """Pinhole intrinsics (fx, fy, cx, cy) of the frame :func:`fit_square` makes."""
    x0, y0, side = square_crop_box(width, height)
    scale = size / side
    return fx * scale, fy * scale, (cx - x0 + 0.5) * scale - 0.5, (cy - y0 + 0.5) * scale - 0.5
