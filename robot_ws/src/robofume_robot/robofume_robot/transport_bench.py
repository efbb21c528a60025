"""``robofume bench transport``: ROS 2 transport across processes on loopback, as deployed.

Measures (every ROS participant is a child process; this process only orchestrates):

* camera frames, publisher process -> subscriber process, sensor QoS (best effort): 640x480 rgb8 at
  30 Hz and the policy's 128x128 rgb8 at 10 Hz with robofume's Fast DDS profile, and 640x480 once more
  with plain default Fast DDS (no profile file) for comparison. Latency = subscriber receive wall time
  minus ``header.stamp`` (set just before ``publish``); ``header.frame_id`` carries a sequence number.
* command latency through the real safety gate node: ``policy/action`` publish -> ``arm/command``
  receive, matched by the target x (each action's dx is one of a cycle of distinct values).

Children talk to the orchestrator over pipes: lines ``@bench <json>`` on stdout, commands on stdin.

Run: ``robofume bench transport --json`` or ``python -m robofume_robot.transport_bench [--seconds S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from robofume_robot.config_paths import config_dir
from robofume_robot.launcher import ros_environment

MARK = "@bench "
"""Prefix of the children's protocol lines on stdout (anything else there is DDS/ROS chatter)."""

IMAGE_TOPIC = "transport_bench/image"
NAMESPACE = "transport_bench"
DISCOVERY_TIMEOUT = 20.0
"""Seconds a child may take to start and to match its peer(s)."""

TARGETS: dict[str, float] = {"p50_ms": 5.0, "p99_ms": 15.0, "drop_rate": 0.001}
"""Pass/fail targets for 640x480 rgb8 at 30 Hz with robofume's profile."""

GATE_EE = (0.5, 0.0, 0.2)
"""Fixed end-effector position the bench reports to the gate (gripper pointing down, yaw 0)."""
GATE_DX_CYCLE = 9
"""Actions cycle through dx = 0.1, ..., 0.9 so each command can be matched to its action by x."""


class TransportBenchError(RuntimeError):
    """The benchmark could not run (a child failed, or discovery or a result timed out)."""


@dataclass(frozen=True)
class ImageCase:
    """One camera-stream case."""

    name: str
    width: int
    height: int
    hz: float
    profile: bool  # robofume's Fast DDS profile (else plain default Fast DDS)


CASES: tuple[ImageCase, ...] = (
    ImageCase("640x480@30 shm_profile", 640, 480, 30.0, True),
    ImageCase("128x128@10 shm_profile", 128, 128, 10.0, True),
    ImageCase("640x480@30 default_fastdds", 640, 480, 30.0, False),
)


# ----------------------------------------------------------------------------------------------------
# statistics


def latency_stats(latencies_s: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max of latencies given in seconds, in ms (``None`` when there are none)."""
    if not latencies_s:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(latencies_s, dtype=float) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def evaluate_targets(case: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail of a 640x480@30 case against :data:`TARGETS`."""
    p50, p99, drops = case.get("p50_ms"), case.get("p99_ms"), case.get("drop_rate")
    checks = {
        "p50_ok": p50 is not None and p50 <= TARGETS["p50_ms"],
        "p99_ok": p99 is not None and p99 <= TARGETS["p99_ms"],
        "drops_ok": drops is not None and drops <= TARGETS["drop_rate"],
    }
    return {
        "case": case["name"],
        "p50_ms_max": TARGETS["p50_ms"],
        "p99_ms_max": TARGETS["p99_ms"],
        "drop_rate_max": TARGETS["drop_rate"],
        **checks,
        "pass": all(checks.values()),
    }


# ----------------------------------------------------------------------------------------------------
# child roles (run as ``python -m robofume_robot.transport_bench --role ...``)


def _emit(**payload: Any) -> None:
    sys.stdout.write(MARK + json.dumps(payload) + "\n")
    sys.stdout.flush()


def _stdin_watcher() -> tuple[queue.Queue[str], threading.Thread]:
    """Lines from stdin in a queue; ``"eof"`` when the orchestrator closes the pipe or dies."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            lines.put(line.strip())
        lines.put("eof")

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, thread


def _wait_for(condition: Callable[[], bool], timeout: float, spin: Callable[[], None] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if spin is not None:
            spin()
        else:
            time.sleep(0.02)
    return condition()


def _role_image_pub(args: argparse.Namespace) -> int:
    """Publish frames at ``--hz`` for ``--seconds`` after ``go``; report how many were sent."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from robofume_robot.ros_image import sec_to_stamp, to_image_msg

    commands, _ = _stdin_watcher()
    rclpy.init()
    node = rclpy.create_node("transport_bench_image_pub", namespace=NAMESPACE)
    try:
        pub = node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        if not _wait_for(lambda: pub.get_subscription_count() >= 1, DISCOVERY_TIMEOUT):
            _emit(error=f"image publisher: no subscriber matched within {DISCOVERY_TIMEOUT:.0f} s")
            return 1
        _emit(event="matched")
        if commands.get() != "go":
            return 1
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(4)]
        period = 1.0 / args.hz
        n_frames = max(1, round(args.seconds * args.hz))
        publish_s: list[float] = []
        start = time.monotonic()
        for seq in range(n_frames):
            delay = start + seq * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg = to_image_msg(frames[seq % len(frames)], sec_to_stamp(0.0), frame_id=str(seq))
            t0 = time.time()
            msg.header.stamp = sec_to_stamp(t0)
            pub.publish(msg)
            publish_s.append(time.time() - t0)
        elapsed = time.monotonic() - start
        _emit(
            event="done",
            sent=n_frames,
            elapsed_s=round(elapsed, 3),
            publish_call_ms_p50=round(float(np.median(publish_s)) * 1e3, 3),
        )
        # Keep the participant alive until the subscriber has drained (the orchestrator says when).
        commands.get()
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _role_image_sub(args: argparse.Namespace) -> int:
    """Receive frames until ``stop``; report sequence numbers' statistics and latencies."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from robofume_robot.ros_image import stamp_to_sec

    commands, _ = _stdin_watcher()
    rclpy.init()
    node = rclpy.create_node("transport_bench_image_sub", namespace=NAMESPACE)
    seqs: list[int] = []
    latencies: list[float] = []
    bad_size = 0

    def on_image(msg: Image) -> None:
        nonlocal bad_size
        now = time.time()
        latencies.append(now - stamp_to_sec(msg.header.stamp))
        seqs.append(int(msg.header.frame_id))
        if len(msg.data) != msg.height * msg.step or msg.width != args.width:
            bad_size += 1

    executor = SingleThreadedExecutor()
    try:
        sub = node.create_subscription(Image, IMAGE_TOPIC, on_image, qos_profile_sensor_data)
        executor.add_node(node)
        spin = lambda: executor.spin_once(timeout_sec=0.02)  # noqa: E731
        if not _wait_for(lambda: sub.get_publisher_count() >= 1, DISCOVERY_TIMEOUT, spin):
            _emit(error=f"image subscriber: no publisher matched within {DISCOVERY_TIMEOUT:.0f} s")
            return 1
        _emit(event="matched")
        while commands.empty():
            executor.spin_once(timeout_sec=0.01)
        unique = sorted(set(seqs))
        out_of_order = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        _emit(
            event="done",
            received=len(unique),
            duplicates=len(seqs) - len(unique),
            out_of_order=out_of_order,
            bad_size=bad_size,
            latencies_s=[round(x, 6) for x in latencies],
        )
        return 0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _role_gate_client(args: argparse.Namespace) -> int:
    """Play arm (fixed ``arm/ee_pose``) and policy (``policy/action`` at ``--hz``) against the gate;
    time each action to the ``arm/command`` that carries its target."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState

    from robofume_robot.arm_messages import action_msg, parse_target
    from robofume_robot.ros_image import sec_to_stamp

    from_gate = _load_limits_pos_scale()
    commands, _ = _stdin_watcher()
    rclpy.init()
    node = rclpy.create_node("transport_bench_gate_client", namespace=NAMESPACE)
    pending: dict[int, float] = {}  # dx index -> action publish wall time
    latencies: list[float] = []
    counts = {"holds": 0, "unmatched": 0, "commands": 0}

    def on_command(msg: JointState) -> None:
        now = time.time()
        target = parse_target(msg)
        if target is None:
            counts["unmatched"] += 1
            return
        counts["commands"] += 1
        k = round((target.x - GATE_EE[0]) / (0.1 * from_gate))
        if k == 0:
            counts["holds"] += 1
        elif k in pending:
            latencies.append(now - pending.pop(k))
        else:
            counts["unmatched"] += 1

    def pose() -> PoseStamped:
        msg = PoseStamped()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = "world"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = GATE_EE
        msg.pose.orientation.w, msg.pose.orientation.x = 0.0, 1.0
        return msg

    executor = SingleThreadedExecutor()
    try:
        pose_pub = node.create_publisher(PoseStamped, "arm/ee_pose", 10)
        action_pub = node.create_publisher(JointState, "policy/action", 10)
        command_sub = node.create_subscription(JointState, "arm/command", on_command, 50)
        executor.add_node(node)
        spin = lambda: executor.spin_once(timeout_sec=0.02)  # noqa: E731
        matched = _wait_for(
            lambda: (
                pose_pub.get_subscription_count() >= 1
                and action_pub.get_subscription_count() >= 1
                and command_sub.get_publisher_count() >= 1
            ),
            DISCOVERY_TIMEOUT,
            spin,
        )
        if not matched:
            _emit(error=f"gate client: safety gate not matched within {DISCOVERY_TIMEOUT:.0f} s")
            return 1
        # The gate holds (publishes hold targets) once it knows the arm pose: then it is ready.
        deadline = time.monotonic() + DISCOVERY_TIMEOUT
        while counts["holds"] == 0 and time.monotonic() < deadline:
            pose_pub.publish(pose())
            _wait_for(lambda: counts["holds"] > 0, 0.1, spin)
        if counts["holds"] == 0:
            _emit(error="gate client: the safety gate published no hold command for the arm pose")
            return 1
        _emit(event="matched")
        period = 1.0 / args.hz
        n_actions = max(1, round(args.seconds * args.hz))
        start = time.monotonic()
        for i in range(n_actions):
            tick = start + i * period
            while (delay := tick - time.monotonic()) > 0:
                executor.spin_once(timeout_sec=delay)
            pose_pub.publish(pose())
            k = 1 + i % GATE_DX_CYCLE
            t0 = time.time()
            msg = action_msg([0.1 * k, 0.0, 0.0, 0.0, -1.0], sec_to_stamp(t0))
            pending[k] = t0
            action_pub.publish(msg)
        _wait_for(lambda: not pending, 1.0, spin)
        _emit(
            event="done",
            actions=n_actions,
            latencies_s=[round(x, 6) for x in latencies],
            holds=counts["holds"],
            unmatched=counts["unmatched"],
            commands=counts["commands"],
        )
        commands.get()
        return 0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _load_limits_pos_scale() -> float:
    from robofume_robot.safety_gate import load_limits

    return float(load_limits(config_dir() / "safety_limits_mock.yaml").pos_scale)


# ----------------------------------------------------------------------------------------------------
# orchestration


class _Child:
    """A child process whose ``@bench`` lines arrive in a queue; stderr (and chatter) go to a log."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], log: IO[bytes], interrupt: bool = False
    ) -> None:
        self.name = name
        self.interrupt = interrupt
        self.log = log
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
        )
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.messages.put(json.loads(line[len(MARK) :]))
        self.messages.put(None)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next message, which must be ``event``; raises :class:`TransportBenchError` otherwise."""
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise TransportBenchError(f"{self.name}: no '{event}' within {timeout:.0f} s") from None
        if msg is None:
            raise TransportBenchError(f"{self.name} exited with code {self.proc.wait()} before '{event}'")
        if "error" in msg:
            raise TransportBenchError(str(msg["error"]))
        if msg.get("event") != event:
            raise TransportBenchError(f"{self.name}: expected '{event}', got {msg}")
        return msg

    def send(self, line: str) -> None:
        """Write one command line to the child's stdin (ignored if it has gone)."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Close stdin (role children exit on EOF), interrupt (ROS nodes exit on SIGINT), wait, then kill.

        A clean exit matters: a killed Fast DDS participant leaves its shared-memory files in /dev/shm.
        """
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        if self.interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _role_cmd(role: str, **options: float) -> list[str]:
    cmd = [sys.executable, "-m", "robofume_robot.transport_bench", "--role", role]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def _is_role(cmd: list[str]) -> bool:
    return "--role" in cmd


def bench_environment(profile: bool = True) -> dict[str, str]:
    """:func:`ros_environment` on this run's ROS domain; ``profile=False`` drops the Fast DDS profile."""
    env = ros_environment()
    env.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    if not profile:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    return env


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _run_children(
    specs: list[tuple[str, list[str], dict[str, str]]], log_dir: Path, body: Callable[[list[_Child]], Any]
) -> Any:
    """Start children, run ``body`` on them, always stop them; errors carry the children's log tails."""
    children: list[_Child] = []
    logs: list[IO[bytes]] = []
    try:
        for name, cmd, env in specs:
            log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            children.append(_Child(name, cmd, env, log, interrupt=not _is_role(cmd)))
        return body(children)
    except TransportBenchError as exc:
        for child in children:
            child.proc.poll()
        tails = "; ".join(
            f"{name}: {tail}" for name, _, _ in specs if (tail := _log_tail(log_dir / f"{name}.log"))
        )
        raise TransportBenchError(f"{exc}" + (f" (logs: {tails})" if tails else "")) from None
    finally:
        for child in children:
            child.stop()
        for log in logs:
            log.close()


def run_image_case(case: ImageCase, seconds: float, log_dir: Path) -> dict[str, Any]:
    """One camera-stream case across two processes; counts, drop rate and latency percentiles."""
    env = bench_environment(case.profile)
    size = {"width": case.width, "height": case.height}
    specs = [
        ("image_sub", _role_cmd("image_sub", **size), env),
        ("image_pub", _role_cmd("image_pub", **size, hz=case.hz, seconds=seconds), env),
    ]

    def body(children: list[_Child]) -> dict[str, Any]:
        sub, pub = children
        sub.expect("matched", DISCOVERY_TIMEOUT + 10)
        pub.expect("matched", DISCOVERY_TIMEOUT + 10)
        pub.send("go")
        sent = pub.expect("done", seconds + 30)
        time.sleep(0.5)  # let the last frames arrive
        sub.send("stop")
        got = sub.expect("done", 30)
        pub.send("exit")
        return {"sent": sent, "got": got}

    result = _run_children(specs, log_dir, body)
    sent, got = result["sent"], result["got"]
    n_sent, n_received = int(sent["sent"]), int(got["received"])
    return {
        "name": case.name,
        "width": case.width,
        "height": case.height,
        "hz": case.hz,
        "frame_bytes": case.width * case.height * 3,
        "fastdds_profile": env.get("FASTDDS_DEFAULT_PROFILES_FILE", ""),
        "sent": n_sent,
        "received": n_received,
        "drop_rate": round(1.0 - n_received / n_sent, 4) if n_sent else None,
        **latency_stats(got["latencies_s"]),
        "duplicates": got["duplicates"],
        "out_of_order": got["out_of_order"],
        "bad_size": got["bad_size"],
        "publish_call_ms_p50": sent["publish_call_ms_p50"],
        "publish_elapsed_s": sent["elapsed_s"],
    }


def run_gate_case(seconds: float, log_dir: Path, hz: float = 10.0) -> dict[str, Any]:
    """Action -> command latency through the real safety gate node process (mock robot parameters)."""
    env = bench_environment(True)
    gate_cmd = [
        sys.executable,
        "-m",
        "robofume_robot.safety_gate_node",
        "--ros-args",
        "-r",
        "__node:=safety_gate",
        "-r",
        f"__ns:=/{NAMESPACE}",
        "--params-file",
        str(config_dir() / "mock_robot.yaml"),
        # Each action is told apart by the target it yields from the fixed pose the client reports;
        # with target deltas the targets would accumulate. The latency is the same either way.
        "-p",
        "delta_from:=measured",
    ]
    specs = [
        ("safety_gate", gate_cmd, env),
        ("gate_client", _role_cmd("gate_client", hz=hz, seconds=seconds), env),
    ]

    def body(children: list[_Child]) -> dict[str, Any]:
        gate, client = children
        client.expect("matched", 2 * DISCOVERY_TIMEOUT + 10)
        done = client.expect("done", seconds + 30)
        if gate.proc.poll() is not None:
            raise TransportBenchError(f"safety gate exited with code {gate.proc.returncode}")
        client.send("exit")
        return done

    done = _run_children(specs, log_dir, body)
    actions, passed = int(done["actions"]), len(done["latencies_s"])
    stats = latency_stats(done["latencies_s"])
    return {
        "hz": hz,
        "actions": actions,
        "commands_matched": passed,
        "pass_fraction": round(passed / actions, 4) if actions else None,
        "p50_ms": stats["p50_ms"],
        "p90_ms": stats["p90_ms"],
        "p99_ms": stats["p99_ms"],
        "max_ms": stats["max_ms"],
        "hold_commands": done["holds"],
        "unmatched_commands": done["unmatched"],
    }


def _machine() -> dict[str, Any]:
    try:
        from robofume.bench.machine import machine_info
    except ImportError:  # robofume_robot built alone (colcon), without the robofume package
        return {"cores": os.cpu_count() or 0}
    return dict(machine_info())


def _versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in ("ros-fastdds", "ros-rmw-fastrtps-cpp", "rclpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def run_transport_bench(
    seconds: float = 10.0, cases: tuple[ImageCase, ...] = CASES, gate: bool = True
) -> dict[str, Any]:
    """Run the camera cases and the safety-gate command case; a JSON-able result with pass/fail targets."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a positive number, got {seconds}")
    if importlib.util.find_spec("rclpy") is None:
        raise TransportBenchError("ROS 2 (rclpy) is not installed; ./run.sh setup installs it")
    env = bench_environment(True)
    with tempfile.TemporaryDirectory(prefix="robofume_transport_bench_") as tmp:
        results = [run_image_case(case, seconds, Path(tmp)) for case in cases]
        gate_result = run_gate_case(seconds, Path(tmp)) if gate else None
    target_case = next((r for r in results if r["name"] == CASES[0].name), None)
    return {
        "bench": "transport",
        "seconds_per_case": seconds,
        "cases": results,
        "gate_command": gate_result,
        "targets": evaluate_targets(target_case) if target_case else None,
        "machine": _machine(),
        "rmw": env.get("RMW_IMPLEMENTATION", ""),
        "versions": _versions(),
        "fastdds_profile": env.get("FASTDDS_DEFAULT_PROFILES_FILE", ""),
        "ros_domain_id": int(env["ROS_DOMAIN_ID"]),
        "discovery_range": env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", ""),
    }


ROLES: dict[str, Callable[[argparse.Namespace], int]] = {
    "image_pub": _role_image_pub,
    "image_sub": _role_image_sub,
    "gate_client": _role_gate_client,
}


def main(argv: list[str] | None = None) -> int:
    """Child roles (``--role``) or, without one, the whole benchmark printed as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m robofume_robot.transport_bench", description=__doc__)
    parser.add_argument("--role", choices=sorted(ROLES), help="internal: run one child process")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per case (default: 10)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--hz", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.role:
        return ROLES[args.role](args)
    try:
        print(json.dumps(run_transport_bench(args.seconds)))
    except (TransportBenchError, ValueError) as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
