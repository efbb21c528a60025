"""Intel RealSense color camera through ``pyrealsense2`` (``rs.pipeline``), without any ROS dependency.

Works with a live camera (optionally chosen by serial number) or a recording played back from a file
(``.db3`` ROS 2 bag from librealsense >= 2.57, ``.bag`` from older versions), so the same code path runs in
tests against :func:`robofume_robot.realsense_recording.record_synthetic` files.

End of a recording is signalled by raising :class:`EndOfStream` from :meth:`RealSenseCamera.read`; a live
camera that delivers nothing within ``frame_timeout_ms`` raises plain :class:`CameraError`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import pyrealsense2 as rs

_MAX_SIDE = 8192
_MAX_FPS = 1000
_PLAYBACK_POLL_MS = 50


class CameraError(RuntimeError):
    """The camera could not be opened or stopped delivering frames."""


class EndOfStream(CameraError):  # noqa: N818 (name from the public API brief)
    """A played-back recording has no more frames."""


@dataclass(frozen=True)
class RealSenseConfig:
    """Which camera (or recording) to open and the color stream mode to request.

    ``width``/``height``/``fps`` of 0 mean "any": take what the device or recording offers (both sizes must
    then be 0). With ``playback_file`` set, ``serial`` is ignored.
    """

    serial: str = ""
    width: int = 640
    height: int = 480
    fps: int = 30
    playback_file: str = ""
    frame_timeout_ms: int = 1000

    def __post_init__(self) -> None:
        """Reject sizes, rates and timeouts the pipeline cannot use."""
        for name in ("width", "height", "fps", "frame_timeout_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"RealSenseConfig.{name} must be an int, got {value!r}")
        if not (0 <= self.width <= _MAX_SIDE and 0 <= self.height <= _MAX_SIDE):
            raise ValueError(
                f"RealSenseConfig width/height must be in 0..{_MAX_SIDE}, got {self.width}x{self.height}"
            )
        if (self.width == 0) != (self.height == 0):
            raise ValueError(
                f"RealSenseConfig width/height must be both 0 (any) or both > 0: {self.width}x{self.height}"
            )
        if not 0 <= self.fps <= _MAX_FPS:
            raise ValueError(f"RealSenseConfig.fps must be in 0..{_MAX_FPS}, got {self.fps}")
        if self.frame_timeout_ms < 1:
            raise ValueError(f"RealSenseConfig.frame_timeout_ms must be >= 1, got {self.frame_timeout_ms}")

    def describe(self) -> str:
        """The requested mode as text, e.g. ``640x480@30``."""
        size = f"{self.width}x{self.height}" if self.width else "any size"
        return f"{size}@{self.fps if self.fps else 'any'}fps"


@dataclass(frozen=True)
class CameraFrame:
    """One color frame.

    ``stamp`` is host wall-clock time (``time.time()``, seconds since the epoch) taken when the frame was
    handed to the application; use it (or a ROS clock read at the same moment) for message stamps.
    ``device_stamp`` is the frame's own timestamp in seconds (``frame.get_timestamp()`` / 1000) in the
    clock domain ``timestamp_domain`` (hardware clock, global time or system time); for a recording it is
    the recorded value.
    """

    rgb: np.ndarray
    stamp: float
    frame_number: int
    device_stamp: float = 0.0
    timestamp_domain: str = ""


def connected_serials() -> list[str]:
    """Serial numbers of the RealSense devices currently connected (empty when none)."""
    return [dev.get_info(rs.camera_info.serial_number) for dev in rs.context().query_devices()]


class RealSenseCamera:
    """A started ``rs.pipeline`` delivering RGB frames; also a context manager (start on enter, stop on exit).

    :meth:`read` is meant for one reading thread; call :meth:`stop` only once that thread is done reading.
    """

    def __init__(self, config: RealSenseConfig | None = None) -> None:
        """Configure (does not open the device; see :meth:`start`)."""
        self.config = config if config is not None else RealSenseConfig()
        self._pipeline: rs.pipeline | None = None
        self._playback: rs.playback | None = None
        self._bgr = False
        self._intrinsics: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self._size: tuple[int, int] = (0, 0)
        self._fps = 0
        self._serial = ""

    @property
    def running(self) -> bool:
        """Whether the pipeline is started."""
        return self._pipeline is not None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the running color stream."""
        return self._size

    @property
    def fps(self) -> int:
        """Frame rate of the running color stream."""
        return self._fps

    @property
    def serial(self) -> str:
        """Serial number of the opened device (or of the device in the recording)."""
        return self._serial

    def _source(self) -> str:
        cfg = self.config
        if cfg.playback_file:
            return f"recording {cfg.playback_file}"
        return f"RealSense {cfg.serial}" if cfg.serial else "RealSense camera"

    def _check_source(self, rs_config: rs.config) -> None:
        """Point ``rs_config`` at the device or file; fail fast (``pipeline.start`` waits 15 s)."""
        cfg = self.config
        if cfg.playback_file:
            if not Path(cfg.playback_file).is_file():
                raise CameraError(f"RealSense recording not found: {cfg.playback_file}")
            rs_config.enable_device_from_file(cfg.playback_file, repeat_playback=False)
            return
        serials = connected_serials()
        if not serials:
            raise CameraError(
                "no RealSense device connected (check USB cable, udev rules and `rs-enumerate-devices`)"
            )
        if cfg.serial:
            if cfg.serial not in serials:
                raise CameraError(f"RealSense serial {cfg.serial} not found; connected: {', '.join(serials)}")
            rs_config.enable_device(cfg.serial)

    def _probe(self, pipeline: rs.pipeline) -> rs.device:
        """Resolve the device or recording with no stream filter; :class:`CameraError` if unreadable."""
        probe = rs.config()
        self._check_source(probe)
        try:
            return probe.resolve(rs.pipeline_wrapper(pipeline)).get_device()
        except RuntimeError as exc:
            msg = str(exc).replace("\n", " ")
            raise CameraError(f"cannot open {self._source()}: {msg}") from exc

    @staticmethod
    def _color_modes(device: rs.device) -> str:
        """Color modes a device or recording offers, for error messages."""
        modes = set()
        for sensor in device.query_sensors():
            for p in sensor.get_stream_profiles():
                if p.stream_type() == rs.stream.color and p.is_video_stream_profile():
                    v = p.as_video_stream_profile()
                    modes.add(f"{v.width()}x{v.height()}@{v.fps()} {p.format().name}")
        return ", ".join(sorted(modes)) or "none"

    def start(self) -> None:
        """Open the device or recording and start streaming color; raises :class:`CameraError`."""
        if self._pipeline is not None:
            return
        cfg = self.config
        pipeline = rs.pipeline()
        device = self._probe(pipeline)
        rs_config = None
        for fmt in (rs.format.rgb8, rs.format.bgr8):
            candidate = rs.config()
            self._check_source(candidate)
            candidate.enable_stream(rs.stream.color, cfg.width, cfg.height, fmt, cfg.fps)
            if candidate.can_resolve(rs.pipeline_wrapper(pipeline)):
                rs_config = candidate
                break
        if rs_config is None:
            raise CameraError(
                f"{self._source()} has no rgb8/bgr8 color stream {cfg.describe()}; "
                f"available: {self._color_modes(device)}"
            )
        del device
        try:
            profile = pipeline.start(rs_config)
        except RuntimeError as exc:
            raise CameraError(f"cannot start {self._source()}: {exc}") from exc
        stream = profile.get_stream(rs.stream.color).as_video_stream_profile()
        intr = stream.get_intrinsics()
        self._intrinsics = (float(intr.fx), float(intr.fy), float(intr.ppx), float(intr.ppy))
        self._size = (int(stream.width()), int(stream.height()))
        self._fps = int(stream.fps())
        self._bgr = stream.format() == rs.format.bgr8
        device = profile.get_device()
        self._serial = (
            device.get_info(rs.camera_info.serial_number)
            if device.supports(rs.camera_info.serial_number)
            else ""
        )
        self._playback = device.as_playback() if device.is_playback() else None
        self._pipeline = pipeline

    def _wait(self) -> rs.composite_frame:
        """Next frameset; :class:`EndOfStream` at the end of a recording, :class:`CameraError` on timeout."""
        assert self._pipeline is not None
        timeout_ms = self.config.frame_timeout_ms
        if self._playback is None:
            ok, frames = self._pipeline.try_wait_for_frames(timeout_ms)
            if not ok:
                raise CameraError(f"no frame from {self._source()} within {timeout_ms} ms")
            return frames
        # Playback: poll in short steps so the end of the file is noticed without waiting a full timeout.
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            ok, frames = self._pipeline.try_wait_for_frames(min(_PLAYBACK_POLL_MS, timeout_ms))
            if ok:
                return frames
            if self._playback.current_status() == rs.playback_status.stopped:
                ok, frames = self._pipeline.try_wait_for_frames(1)
                if ok:
                    return frames
                raise EndOfStream(f"end of {self._source()}")
            if time.monotonic() >= deadline:
                raise CameraError(f"no frame from {self._source()} within {timeout_ms} ms")

    def read(self) -> CameraFrame:
        """Block until the next color frame (at most ``frame_timeout_ms``) and return it as RGB."""
        if self._pipeline is None:
            raise CameraError("RealSenseCamera.read() before start()")
        while True:
            frames = self._wait()
            stamp = time.time()
            color = frames.get_color_frame()
            if color:
                break
        data = np.asanyarray(color.get_data())
        rgb = np.ascontiguousarray(data[..., ::-1]) if self._bgr else data.copy()
        return CameraFrame(
            rgb=rgb,
            stamp=stamp,
            frame_number=int(color.get_frame_number()),
            device_stamp=float(color.get_timestamp()) / 1000.0,
            timestamp_domain=color.get_frame_timestamp_domain().name,
        )

    def intrinsics(self) -> tuple[float, float, float, float]:
        """Pinhole intrinsics ``(fx, fy, cx, cy)`` in pixels of the running color stream."""
        if self._pipeline is None:
            raise CameraError("RealSenseCamera.intrinsics() before start()")
        return self._intrinsics

    def stop(self) -> None:
        """Stop streaming and release the device (idempotent)."""
        pipeline, self._pipeline, self._playback = self._pipeline, None, None
        if pipeline is not None:
            with contextlib.suppress(RuntimeError):  # already stopped by librealsense (e.g. unplugged)
                pipeline.stop()

    def __enter__(self) -> RealSenseCamera:
        """Start and return the camera."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the camera."""
        self.stop()
