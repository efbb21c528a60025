"""RealSense camera path against recordings the tests make themselves (real ``rs.pipeline`` playback)."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyrealsense2")

from robofume_robot.realsense_camera import (
    CameraError,
    EndOfStream,
    RealSenseCamera,
    RealSenseConfig,
)
from robofume_robot.realsense_recording import record_synthetic, synthetic_frame

W, H, FPS, N = 64, 48, 30, 10


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-frame 64x48@30 rgb8 recording."""
    return record_synthetic(tmp_path_factory.mktemp("rs") / "synthetic.db3", N, W, H, FPS)


def read_all(config: RealSenseConfig) -> tuple[list, tuple[float, float, float, float]]:
    """All frames of a recording until EndOfStream, plus the intrinsics."""
    frames = []
    with RealSenseCamera(config) as cam:
        intr = cam.intrinsics()
        assert cam.size == (W, H)
        with pytest.raises(EndOfStream):
            for _ in range(10 * N):
                frames.append(cam.read())
    return frames, intr


@pytest.mark.parametrize("color_format", ["rgb8", "bgr8"])
def test_playback_frames(tmp_path: Path, recording: Path, color_format: str) -> None:
    """Frames come back in order, RGB, pixel-exact, with sane stamps and intrinsics; then EndOfStream."""
    path = (
        recording if color_format == "rgb8" else record_synthetic(tmp_path / "bgr.db3", N, W, H, FPS, "bgr8")
    )
    frames, (fx, fy, cx, cy) = read_all(RealSenseConfig(width=W, height=H, fps=FPS, playback_file=str(path)))
    assert len(frames) >= N - 2, f"only {len(frames)} of {N} frames played back"
    numbers = [f.frame_number for f in frames]
    assert numbers == sorted(set(numbers)) and set(numbers) <= set(range(N))
    for f in frames:
        assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8 and f.rgb.flags.c_contiguous
        np.testing.assert_array_equal(f.rgb, synthetic_frame(f.frame_number, W, H))
        assert abs(f.stamp - time.time()) < 60
        assert f.device_stamp == pytest.approx(f.frame_number / FPS, abs=1e-6)
    assert all(not np.array_equal(a.rgb, b.rgb) for a, b in itertools.pairwise(frames))
    assert fx == pytest.approx(fy) and 20 < fx < 200
    assert (cx, cy) == pytest.approx((W / 2, H / 2))


def test_any_mode_takes_recorded_size(recording: Path) -> None:
    """width=height=fps=0 accepts whatever the recording holds."""
    with RealSenseCamera(RealSenseConfig(width=0, height=0, fps=0, playback_file=str(recording))) as cam:
        assert cam.size == (W, H) and cam.fps == FPS
        assert cam.read().rgb.shape == (H, W, 3)


def test_missing_file(tmp_path: Path) -> None:
    """A missing recording is a CameraError naming the path."""
    missing = tmp_path / "nope.db3"
    with pytest.raises(CameraError, match=r"nope\.db3"):
        RealSenseCamera(RealSenseConfig(playback_file=str(missing))).start()


def test_corrupt_file_and_wrong_mode(tmp_path: Path, recording: Path) -> None:
    """An unreadable file and an unavailable stream mode fail with one clear line each."""
    bad = tmp_path / "bad.db3"
    bad.write_text("not a bag")
    with pytest.raises(CameraError, match="cannot open recording"):
        RealSenseCamera(RealSenseConfig(playback_file=str(bad))).start()
    with pytest.raises(CameraError, match=r"640x480@30fps; available: 64x48@30 rgb8"):
        RealSenseCamera(RealSenseConfig(playback_file=str(recording))).start()


@pytest.mark.parametrize(
    "kwargs",
    [{"width": -1}, {"width": 0}, {"height": 100_000}, {"fps": -5}, {"width": 64.0}, {"frame_timeout_ms": 0}],
)
def test_bad_config(kwargs: dict) -> None:
    """Bad sizes, rates and timeouts are a ValueError."""
    with pytest.raises(ValueError, match="RealSenseConfig"):
        RealSenseConfig(**kwargs)


def test_read_before_start() -> None:
    """Reading an unstarted camera is a CameraError, and stop() is idempotent."""
    cam = RealSenseCamera(RealSenseConfig())
    with pytest.raises(CameraError):
        cam.read()
    cam.stop()
    cam.stop()


def test_node_publishes_playback(tmp_path: Path) -> None:
    """The node publishes rgb8 Images and matching CameraInfo from a recording, then stops at its end."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from robofume_robot.realsense_camera_node import RealSenseCameraNode
    from robofume_robot.ros_image import from_image_msg

    w, h, n = 160, 120, 30
    path = record_synthetic(tmp_path / "node.db3", n, w, h, FPS)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    executor = SingleThreadedExecutor(context=ctx)
    images: list = []
    infos: list = []
    camera = sub = None
    try:
        sub = rclpy.create_node("camera_test_sub", context=ctx, namespace="/rs_test")
        sub.create_subscription(Image, "camera/color/image_raw", images.append, qos_profile_sensor_data)
        sub.create_subscription(CameraInfo, "camera/color/camera_info", infos.append, qos_profile_sensor_data)
        executor.add_node(sub)
        camera = RealSenseCameraNode(
            context=ctx,
            namespace="/rs_test",
            parameter_overrides=[
                Parameter("playback_file", value=str(path)),
                Parameter("width", value=w),
                Parameter("height", value=h),
                Parameter("frame_id", value="test_optical_frame"),
            ],
        )
        executor.add_node(camera)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (camera.finished.is_set() and len(images) >= 5):
            executor.spin_once(timeout_sec=0.05)
        for _ in range(20):  # drain what is still in flight
            executor.spin_once(timeout_sec=0.02)
        assert camera.finished.is_set(), "node did not reach the end of the recording"
        assert camera.frames_published >= n - 5
        assert len(images) >= 5, f"only {len(images)} images arrived ({camera.frames_published} published)"
        for msg in images:
            assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", w, h, 3 * w)
            assert msg.header.frame_id == "test_optical_frame"
        frame = from_image_msg(images[-1])
        assert any(np.array_equal(frame, synthetic_frame(i, w, h)) for i in range(n))
        assert infos and all((m.width, m.height) == (w, h) for m in infos)
        assert infos[0].k[2] == pytest.approx(w / 2) and infos[0].k[5] == pytest.approx(h / 2)
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]
        assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 60
    finally:
        executor.shutdown()
        for node in (camera, sub):
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_node_rejects_bad_parameters(tmp_path: Path) -> None:
    """Bad parameters and missing recordings fail construction with a clear error."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from robofume_robot.realsense_camera_node import RealSenseCameraNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        with pytest.raises(ValueError, match="width"):
            RealSenseCameraNode(context=ctx, parameter_overrides=[Parameter("width", value=-2)])
        with pytest.raises(CameraError, match=r"missing\.db3"):
            RealSenseCameraNode(
                context=ctx,
                parameter_overrides=[Parameter("playback_file", value=str(tmp_path / "missing.db3"))],
            )
    finally:
        rclpy.try_shutdown(context=ctx)
