"""Measure the MCAP recorder: disk bytes/s and CPU % for rgb8 camera streams.

Two parts:
- ``writer``: :class:`~reset_free.mcap_recorder.McapTopicWriter` alone, as fast as it goes, per frame size,
  compression and image content (noise-free render vs camera-like sensor noise): frames/s, MB/s, ratio.
- ``ros``: the recorder node in its own process, fed by a publisher in this process at a fixed rate
  (camera frames + 10 Hz joint states), over the launcher's ROS 2 transport; the node's CPU % is read
  from ``/proc/<pid>/stat`` over the publishing window, bytes/s from the finished files.

Run: ``python -m reset_free.mcap_bench --seconds 6 --out /tmp/mcap_bench.json``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reset_free.mcap_recorder import McapFileConfig, McapTopicWriter

SIZES = {"128x128": (128, 128), "640x480": (480, 640)}


def scene(height: int, width: int, noise: float, seed: int = 0) -> np.ndarray:
    """A table-top-like rgb8 frame: smooth background, a few flat objects, optional Gaussian sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([90 + 60 * y / height, 100 + 40 * x / width, 110 + 20 * (x + y) / (height + width)], -1)
    for _ in range(4):
        h, w = rng.integers(height // 10, height // 3), rng.integers(width // 10, width // 3)
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        frame[top : top + h, left : left + w] = rng.integers(0, 255, 3)
    if noise > 0:
        frame = frame + rng.normal(0.0, noise, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def distinct_frames(height: int, width: int) -> int:
    """Enough different frames that no chunk holds one twice (repeats would flatter the compression)."""
    return max(8, -(-3 * McapFileConfig().chunk_size // (height * width * 3)))


def _serialized_frames(height: int, width: int, noise: float) -> list[bytes]:
    from rclpy.serialization import serialize_message

    from robofume_robot.ros_image import sec_to_stamp, to_image_msg

    n = distinct_frames(height, width)
    return [
        serialize_message(to_image_msg(scene(height, width, noise, s), sec_to_stamp(s))) for s in range(n)
    ]


@dataclass
class WriterResult:
    """One ``writer`` measurement."""

    size: str
    noise: float
    compression: str
    frames_per_s: float
    mb_per_s_in: float
    compression_ratio: float
    cpu_ms_per_frame: float


def bench_writer(size: str, noise: float, compression: str, seconds: float, folder: Path) -> WriterResult:
    """Write pre-serialized frames back to back for ``seconds``."""
    frames = _serialized_frames(*SIZES[size], noise)
    path = folder / f"w_{size}_{noise}_{compression}.mcap"
    writer = McapTopicWriter(McapFileConfig(compression=compression, fsync=False))
    writer.open(path)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        writer.add("/camera/color/image_raw", "sensor_msgs/msg/Image", frames[n % len(frames)], n, n)
        n += 1
    writer.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    raw = n * len(frames[0])
    result = WriterResult(
        size, noise, compression, n / wall, raw / wall / 1e6, raw / path.stat().st_size, 1e3 * cpu / n
    )
    path.unlink()
    return result


@dataclass
class RosResult:
    """One ``ros`` measurement."""

    size: str
    hz: float
    compression: str
    published: int
    recorded: int
    seconds: float
    mb_per_s_on_disk: float
    mb_per_s_raw: float
    node_cpu_percent: float


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_ros(
    size: str, hz: float, compression: str, seconds: float, noise: float, folder: Path
) -> RosResult:
    """The node in a subprocess recording frames published from here at ``hz``."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    from robofume_robot.launcher import ros_environment
    from robofume_robot.ros_image import to_image_msg

    height, width = SIZES[size]
    session = f"r_{size}_{hz:g}_{compression}"
    topics = "['camera/color/image_raw:sensor_msgs/msg/Image','arm/joint_states:sensor_msgs/msg/JointState']"
    cmd = [sys.executable, "-m", "reset_free.mcap_recorder_node", "--ros-args", "-p", f"topics:={topics}"]
    cmd += ["-p", f"output:={folder}", "-p", f"session:={session}", "-p", f"compression:={compression}"]
    env = ros_environment(dict(os.environ, OMP_NUM_THREADS="1"))
    # This process publishes with the same transport settings (the 16 MB shared-memory segment profile).
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "RMW_", "FASTDDS_"))})
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rclpy.init()
    node = rclpy.create_node("mcap_bench_pub")
    image_pub = node.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
    joint_pub = node.create_publisher(JointState, "arm/joint_states", 10)
    frames = [scene(height, width, noise, s) for s in range(distinct_frames(height, width))]
    try:
        deadline = time.monotonic() + 30
        while image_pub.get_subscription_count() == 0 or joint_pub.get_subscription_count() == 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"recorder node did not subscribe: {proc.stderr.read().decode()[-1000:]}")
            time.sleep(0.05)
        time.sleep(0.5)
        published, next_joint = 0, 0.0
        cpu0, t0 = _proc_cpu_s(proc.pid), time.monotonic()
        while (now := time.monotonic()) - t0 < seconds:
            image_pub.publish(to_image_msg(frames[published % len(frames)], node.get_clock().now().to_msg()))
            published += 1
            if now >= next_joint:
                joint_pub.publish(JointState(name=["j1"], position=[0.1 * published]))
                next_joint = now + 0.1
            time.sleep(max(0.0, t0 + published / hz - time.monotonic()))
        time.sleep(0.5)  # let the last frames arrive
        elapsed = time.monotonic() - t0
        cpu = _proc_cpu_s(proc.pid) - cpu0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        node.destroy_node()
        rclpy.try_shutdown()
    from mcap.reader import make_reader

    files = sorted((folder / session).glob("*.mcap"))
    recorded = 0
    for path in files:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
        stats = summary.statistics if summary is not None else None
        if stats is not None:
            for channel_id, count in stats.channel_message_counts.items():
                if summary.channels[channel_id].topic.endswith("image_raw"):
                    recorded += count
    disk = sum(p.stat().st_size for p in files)
    return RosResult(
        size,
        hz,
        compression,
        published,
        recorded,
        round(elapsed, 2),
        disk / elapsed / 1e6,
        published * height * width * 3 / elapsed / 1e6,
        100 * cpu / elapsed,
    )


def main(argv: list[str] | None = None) -> int:
    """Run both parts and print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each ROS measurement")
    parser.add_argument(
        "--writer-seconds", type=float, default=2.0, help="duration of each writer measurement"
    )
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma of the ROS runs' frames")
    parser.add_argument("--compression", nargs="+", default=["zstd", "lz4", "none"])
    parser.add_argument("--skip-ros", action="store_true", help="skip the ROS part")
    parser.add_argument("--skip-writer", action="store_true", help="skip the writer part")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {"writer": [], "ros": []}
    with tempfile.TemporaryDirectory(prefix="mcap_bench_") as tmp:
        folder = Path(tmp)
        for size in SIZES if not args.skip_writer else ():
            for noise in (0.0, 2.0):
                for compression in args.compression:
                    r = bench_writer(size, noise, compression, args.writer_seconds, folder)
                    results["writer"].append(asdict(r))
                    print(json.dumps(asdict(r)), flush=True)
        if not args.skip_ros:
            for size in SIZES:
                for hz in (10.0, 30.0):
                    for compression in args.compression:
                        r = bench_ros(size, hz, compression, args.seconds, args.noise, folder)
                        results["ros"].append(asdict(r))
                        print(json.dumps(asdict(r)), flush=True)
    results["machine"] = [{"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}]
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
