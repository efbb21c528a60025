"""Synthetic RealSense recordings: a ``software_device`` recorded through ``rs.recorder``.

Used by the tests and the transport benchmark to drive the real ``rs.pipeline`` playback path without a
camera. librealsense >= 2.57 writes ROS 2 bags (``.db3``, SQLite); older versions write ROS 1 ``.bag`` files.
The recorder stamps frames with host arrival time, so frames are injected in real time (``1/fps`` apart)
and the recording plays back at the recorded rate.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyrealsense2 as rs

SYNTHETIC_SERIAL = "000000000001"
"""Serial number the synthetic device reports (and the recording keeps)."""

_FORMATS = {"rgb8": rs.format.rgb8, "bgr8": rs.format.bgr8}


def synthetic_frame(index: int, width: int, height: int) -> np.ndarray:
    """The RGB (HxWx3 uint8) frame number ``index`` of a synthetic recording.

    A diagonal gradient that moves 4 px per frame (red/green), a frame-index ramp in blue, and the index
    written as 16 black/white bits in 4x4 blocks along the top-left row so that every frame differs.
    """
    ys, xs = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = ((xs + 4 * index) * 255 // max(width, 1)) % 256
    img[..., 1] = ((ys + 4 * index) * 255 // max(height, 1)) % 256
    img[..., 2] = (index * 16) % 256
    for bit in range(16):
        x0 = 4 * bit
        if x0 + 4 > width or height < 4:
            break
        img[0:4, x0 : x0 + 4] = 255 if (index >> bit) & 1 else 0
    return img


def record_synthetic(
    path: str | Path,
    n_frames: int,
    width: int = 160,
    height: int = 120,
    fps: int = 30,
    color_format: str = "rgb8",
    fx: float | None = None,
    fy: float | None = None,
) -> Path:
    """Record ``n_frames`` of :func:`synthetic_frame` as a color stream into ``path``; return the path.

    ``color_format`` is ``"rgb8"`` or ``"bgr8"`` (the pixel order stored in the file; the image content is
    the same). ``fx``/``fy`` default to a ~69 degree horizontal field of view like a D435 color camera; the
    principal point is the image centre. Takes about ``n_frames / fps`` seconds.
    """
    if n_frames < 1 or width < 1 or height < 1 or fps < 1:
        raise ValueError(f"need n_frames, width, height, fps >= 1, got {n_frames}, {width}, {height}, {fps}")
    if color_format not in _FORMATS:
        raise ValueError(f"color_format must be one of {sorted(_FORMATS)}, got {color_format!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    focal = width / (2 * np.tan(np.radians(69.0) / 2))

    device = rs.software_device()
    device.register_info(rs.camera_info.name, "robofume synthetic RealSense")
    device.register_info(rs.camera_info.serial_number, SYNTHETIC_SERIAL)
    sensor = device.add_sensor("RGB Camera")

    intr = rs.intrinsics()
    intr.width, intr.height = width, height
    intr.fx = float(fx if fx is not None else focal)
    intr.fy = float(fy if fy is not None else focal)
    intr.ppx, intr.ppy = width / 2.0, height / 2.0
    intr.model = rs.distortion.none
    intr.coeffs = [0.0] * 5

    stream = rs.video_stream()
    stream.type, stream.index, stream.uid = rs.stream.color, 0, 0
    stream.width, stream.height, stream.fps = width, height, fps
    stream.bpp, stream.fmt, stream.intrinsics = 3, _FORMATS[color_format], intr
    profile = sensor.add_video_stream(stream, True).as_video_stream_profile()

    try:
        recorder = rs.recorder(str(path), device)
    except RuntimeError as exc:
        raise ValueError(f"cannot record to {path}: {exc}") from exc
    # Streaming must go through the recorder's wrapper of the sensor, or nothing is written.
    rec_sensor = recorder.query_sensors()[0]
    rec_sensor.open(profile)
    rec_sensor.start(lambda frame: None)
    try:
        period = 1.0 / fps
        t0 = time.monotonic()
        for i in range(n_frames):
            img = synthetic_frame(i, width, height)
            if color_format == "bgr8":
                img = np.ascontiguousarray(img[..., ::-1])
            frame = rs.software_video_frame()
            frame.pixels = img
            frame.bpp, frame.stride = 3, width * 3
            frame.timestamp = i * 1000.0 * period
            frame.domain = rs.timestamp_domain.system_time
            frame.frame_number = i
            frame.profile = profile
            sensor.on_video_frame(frame)
            delay = t0 + (i + 1) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        rec_sensor.stop()
        rec_sensor.close()
        # The file is finalised when the recorder is destroyed.
        del rec_sensor, recorder
    return path
