"""``robofume bench reward-node``: does the reward node keep up with the camera, as deployed?

The reward node runs as its own process (``python -m reward_vlm.reward_node``); this process is the
camera (rgb8 frames at ``camera_hz``, stamped just before publishing, sensor QoS) and the controller
(phase "forward"), and listens to ``reward/verdict``. After a warm-up it reports the verdict rate, the
share of camera frames judged, the classifier time per frame (``latency_ms``), the age of the judged frame
when its verdict was ready (``frame_age_ms``) and camera-stamp-to-verdict-received time, p50/p99.

The classifier is a checkpoint folder (``--classifier PATH``) or the stand-in (``--classifier stand-in``,
:class:`reward_vlm.stand_in.ColorStandIn` keeping a core busy for ``delay_ms`` per frame, like a model of
that cost; ``--sleep`` makes it sleep instead).
"Keeps up" = at least 95 % of frames judged (when the camera is not faster than the node's ``rate_hz``),
no unknown verdict, and p99 frame age under ``max_frame_age_s``.

Run: ``python -m reward_vlm.node_bench --classifier stand-in --delay-ms 60 --camera-hz 10 --seconds 20``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reward_vlm.reward_core import TEST_CLASSIFIER_ENV, TEST_CLASSIFIER_KWARGS_ENV, RewardConfigError

STAND_IN = "stand-in"


class RewardBenchError(RuntimeError):
    """The benchmark could not run (node failed to start, no verdicts); the message names the log."""


@dataclass(frozen=True)
class RewardNodeBenchConfig:
    """What to measure.

    Args:
        classifier: a classifier checkpoint folder, or ``"stand-in"``.
        delay_ms: the stand-in's time per frame.
        busy: the stand-in computes (one core busy, like a model) instead of sleeping.
        camera_hz: camera frame rate.
        seconds: measured duration (after ``warmup_s``).
        warmup_s: frames published before measuring (first calls, discovery).
        image_size: square frame side in pixels.
        rate_hz: the node's judgement cap (its ``rate_hz`` parameter).
        max_frame_age_s: the node's ``max_frame_age_s``.
        cpu_threads: the node's torch CPU threads.
    """

    classifier: str = STAND_IN
    delay_ms: float = 60.0
    busy: bool = True
    camera_hz: float = 10.0
    seconds: float = 20.0
    warmup_s: float = 3.0
    image_size: int = 128
    rate_hz: float = 15.0
    max_frame_age_s: float = 0.5
    cpu_threads: int = 1

    def validate(self) -> RewardNodeBenchConfig:
        """Return ``self``; raise :class:`RewardConfigError` with one line on a bad value."""
        if self.classifier != STAND_IN and not os.path.isdir(self.classifier):
            raise RewardConfigError(
                f"--classifier must be 'stand-in' or a checkpoint folder, got {self.classifier!r}"
            )
        checks = {
            "delay_ms": 0 <= self.delay_ms <= 10_000,
            "camera_hz": 0.5 <= self.camera_hz <= 100,
            "seconds": 1 <= self.seconds <= 3600,
            "warmup_s": 0 <= self.warmup_s <= 600,
            "image_size": 8 <= self.image_size <= 2048,
        }
        for name, ok in checks.items():
            if not ok:
                raise RewardConfigError(f"{name} out of range: {getattr(self, name)}")
        return self


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p99/max of ``values`` (None when empty), rounded to 0.1."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p99": round(float(np.percentile(arr, 99)), 1),
        "max": round(float(arr.max()), 1),
    }


def _node_process(cfg: RewardNodeBenchConfig, log: Path) -> subprocess.Popen[bytes]:
    from robofume_robot.launcher import ros_environment

    env = ros_environment()
    env.setdefault("OMP_NUM_THREADS", str(cfg.cpu_threads))
    params = {
        "confirm_frames": 3,
        "rate_hz": cfg.rate_hz,
        "max_frame_age_s": cfg.max_frame_age_s,
        "cpu_threads": cfg.cpu_threads,
    }
    if cfg.classifier == STAND_IN:
        env[TEST_CLASSIFIER_ENV] = "reward_vlm.stand_in:make_stand_in"
        env[TEST_CLASSIFIER_KWARGS_ENV] = json.dumps({"delay_s": cfg.delay_ms / 1e3, "busy": cfg.busy})
    else:
        env.pop(TEST_CLASSIFIER_ENV, None)
        params["classifier_path"] = os.path.abspath(cfg.classifier)
    cmd = [sys.executable, "-m", "reward_vlm.reward_node", "--ros-args"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def run_reward_node_bench(cfg: RewardNodeBenchConfig, log_dir: str | None = None) -> dict[str, Any]:
    """Run the node process, feed it frames, return the figures (a JSON-serialisable dict)."""
    cfg.validate()
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from reward_vlm.reward_node import phase_qos
    from robofume.bench.machine import machine_info
    from robofume_robot.launcher import ros_environment
    from robofume_robot.ros_image import sec_to_stamp, stamp_to_sec, to_image_msg

    os.environ.update(
        {k: v for k, v in ros_environment().items() if k.startswith(("ROS_", "RMW_", "FASTDDS_"))}
    )
    logs = Path(log_dir or tempfile.mkdtemp(prefix="reward_bench_"))
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "reward_node.log"
    proc = _node_process(cfg, log)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("reward_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received: list[tuple[float, dict[str, str], str, float]] = []  # (t, values, status, frame stamp)

    def on_verdict(msg: DiagnosticArray) -> None:
        now = time.time()
        for status in msg.status:
            if status.name == "reward":
                values = {kv.key: kv.value for kv in status.values}
                received.append((now, values, status.message, stamp_to_sec(msg.header.stamp)))

    node.create_subscription(DiagnosticArray, "reward/verdict", on_verdict, 100)
    image_pub = node.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
    phase_pub = node.create_publisher(String, "reset_free/phase", phase_qos(True))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8) for _ in range(8)]
    published: list[float] = []

    def spin_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=max(0.0, min(0.01, end - time.monotonic())))
            if proc.poll() is not None:
                raise RewardBenchError(f"reward node exited ({proc.returncode}); see {log}")

    try:
        phase_pub.publish(String(data="forward"))
        deadline = time.monotonic() + 120
        while not (received and image_pub.get_subscription_count() > 0):
            spin_for(0.05)
            if time.monotonic() > deadline:
                raise RewardBenchError(f"reward node did not come up within 120 s; see {log}")
        period = 1.0 / cfg.camera_hz
        start = time.monotonic()
        measure_from = time.time() + cfg.warmup_s
        n = 0
        while time.monotonic() < start + cfg.warmup_s + cfg.seconds:
            t = time.time()
            image_pub.publish(to_image_msg(frames[n % len(frames)], sec_to_stamp(t)))
            if t >= measure_from:
                published.append(stamp_to_sec(sec_to_stamp(t)))
            n += 1
            spin_for(max(0.0, start + n * period - time.monotonic()))
        spin_for(max(1.0, 2 * cfg.max_frame_age_s))
    finally:
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)

    first = published[0] if published else math.inf
    measured = [r for r in received if r[3] >= first]
    judged = [r for r in measured if r[2] in ("success", "failure")]
    unknown = [r for r in measured if r[2] == "unknown"]
    last = published[-1] if published else -math.inf
    late_beats = [r for r in received if first <= r[0] <= last and r[1].get("frame_stamp") == "none"]
    frame_age = [float(r[1]["frame_age_ms"]) for r in judged]
    latency = [float(r[1]["latency_ms"]) for r in judged]
    end_to_end = [(r[0] - r[3]) * 1e3 for r in judged]
    judged_share = len(judged) / max(1, len(published))
    expected_share = min(1.0, cfg.rate_hz / cfg.camera_hz) if cfg.rate_hz > 0 else 1.0
    p99_age = percentiles(frame_age)["p99"]
    result: dict[str, Any] = {
        "benchmark": "reward_node",
        "config": asdict(cfg),
        "classifier": (
            f"stand-in ({'compute' if cfg.busy else 'sleep'} {cfg.delay_ms:g} ms)"
            if cfg.classifier == STAND_IN
            else os.path.abspath(cfg.classifier)
        ),
        "frames_published": len(published),
        "verdicts_judged": len(judged),
        "verdicts_unknown": len(unknown),
        "heartbeats_during_run": len(late_beats),
        "verdict_rate_hz": round(len(judged) / cfg.seconds, 2),
        "judged_share": round(judged_share, 3),
        "classifier_latency_ms": percentiles(latency),
        "frame_age_ms": percentiles(frame_age),
        "stamp_to_verdict_received_ms": percentiles(end_to_end),
        "dropped_frames": int(received[-1][1]["dropped_frames"]) if received else None,
        "keeps_up": bool(
            judged_share >= 0.95 * expected_share
            and not unknown
            and p99_age is not None
            and p99_age < cfg.max_frame_age_s * 1e3
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": machine_info(),
        "node_log": str(log),
    }
    if not judged:
        raise RewardBenchError(f"no verdicts during the run; see {log}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", default=STAND_IN, help="checkpoint folder or 'stand-in' (default)")
    parser.add_argument("--delay-ms", type=float, default=60.0, help="stand-in time per frame (default: 60)")
    parser.add_argument(
        "--sleep", action="store_true", help="stand-in sleeps instead of computing (no CPU contention)"
    )
    parser.add_argument("--camera-hz", type=float, default=10.0, help="camera rate (default: 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds (default: 20)")
    parser.add_argument("--image-size", type=int, default=128, help="frame side in px (default: 128)")
    parser.add_argument("--rate-hz", type=float, default=15.0, help="node's judgement cap (default: 15)")
    parser.add_argument("--log-dir", default=None, help="folder for the node's log (default: a temp folder)")
    args = parser.parse_args(argv)
    try:
        cfg = RewardNodeBenchConfig(
            classifier=args.classifier,
            delay_ms=args.delay_ms,
            busy=not args.sleep,
            camera_hz=args.camera_hz,
            seconds=args.seconds,
            image_size=args.image_size,
            rate_hz=args.rate_hz,
        )
        result = run_reward_node_bench(cfg, args.log_dir)
    except (RewardConfigError, RewardBenchError) as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
