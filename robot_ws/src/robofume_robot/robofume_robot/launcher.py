"""robofume's own launcher: starts a robot's ROS 2 nodes as processes from the same parameter
files the ROS 2 launch files read (``config/*.yaml``), so the two cannot drift.

It is what ``robofume robot`` runs, and what the integration tests use, on machines with ROS 2
from PyPI wheels (which lack ``ros2 launch``). Each node runs as
``python -m <module> --ros-args -r __node:=<name> -r __ns:=<ns> --params-file <file>``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from robofume_robot.config_paths import config_dir


@dataclass(frozen=True)
class NodeSpec:
    """One node process: its name (= section of the parameter file) and Python module."""

    name: str
    module: str
    overrides: dict[str, Any] = field(default_factory=dict)
    params_file: str | None = None
    """Parameter file in config/ for this node; default: the robot's file."""
    nice: int = 0
    """Scheduling niceness added to the node's process (0: unchanged). Session nodes off the
    per-step control path (camera → policy → gate → arm) get ``OFF_PATH_NICE``, so the path gets the
    CPU first."""


ROBOTS: dict[str, tuple[str, tuple[NodeSpec, ...]]] = {
    "mock": (
        "mock_robot.yaml",
        (
            NodeSpec("arm", "robofume_robot.mock_arm_node"),
            NodeSpec("safety_gate", "robofume_robot.safety_gate_node"),
        ),
    ),
    "real": (
        "real_robot.yaml",
        (
            NodeSpec("camera", "robofume_robot.realsense_camera_node"),
            NodeSpec("arm_adapter", "robofume_robot.arm_adapter_node"),
            NodeSpec("safety_gate", "robofume_robot.safety_gate_node"),
        ),
    ),
}
"""Robot flavour -> (parameter file in config/, nodes)."""

SESSION_PARAMS = "session.yaml"
OFF_PATH_NICE = 5
"""Niceness of the session nodes that are not on the per-step control path (reward, controller,
recorder, visualizer, MCAP recorder): they work per frame or per episode, but an action never
waits for them."""
SESSION_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("policy_server", "policy_server.policy_server_node", params_file=SESSION_PARAMS),
    NodeSpec("reward", "reward_vlm.reward_node", params_file=SESSION_PARAMS, nice=OFF_PATH_NICE),
    NodeSpec(
        "reset_free_controller", "reset_free.controller_node", params_file=SESSION_PARAMS, nice=OFF_PATH_NICE
    ),
    NodeSpec("recorder", "reset_free.recorder_node", params_file=SESSION_PARAMS, nice=OFF_PATH_NICE),
    NodeSpec("visualizer", "reset_free.visualizer_node", params_file=SESSION_PARAMS, nice=OFF_PATH_NICE),
)
"""The fine-tuning session's nodes, on top of a robot's (``robofume session``); parameters in session.yaml.
The policy server is on the control path; the others run at ``OFF_PATH_NICE``."""

MCAP_NODE = NodeSpec(
    "mcap_recorder", "reset_free.mcap_recorder_node", params_file=SESSION_PARAMS, nice=OFF_PATH_NICE
)
"""Optional: records the session's topics to MCAP (``robofume session --record-mcap``)."""


def ros_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: localhost-only discovery and the shared-memory Fast DDS profile,
    unless the caller's environment already says otherwise."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_dir() / "fastdds_shm.xml"))
    env.setdefault("MUJOCO_GL", "egl")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def lower_priority(increment: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that adds ``increment`` to the child's niceness (no privileges needed);
    None for 0."""
    if increment == 0:
        return None

    def lower() -> None:
        os.nice(increment)

    return lower


_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


def check_namespace(namespace: str) -> str:
    """``namespace`` without leading/trailing ``/``; a one-line ``ValueError`` unless ROS 2 accepts it
    (``/``-separated names of letters, digits and ``_``, not starting with a digit; empty: none)."""
    stripped = namespace.strip("/")
    if stripped and not _NAMESPACE.fullmatch(stripped):
        raise ValueError(
            f"bad namespace {namespace!r}: use names of letters, digits and _ separated by /, e.g. robot1"
        )
    return stripped


def _param_arg(key: str, value: Any) -> str:
    if isinstance(value, bool):
        value = str(value).lower()
    return f"{key}:={value}"


class Launcher:
    """Starts, watches and stops node processes; a context manager."""

    def __init__(
        self,
        robot: str = "mock",
        namespace: str = "",
        overrides: dict[str, dict[str, Any]] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        extra_nodes: tuple[NodeSpec, ...] = (),
    ) -> None:
        if robot not in ROBOTS:
            raise ValueError(f"unknown robot {robot!r}; expected one of: {', '.join(ROBOTS)}")
        params_name, nodes = ROBOTS[robot]
        self.params_file = config_dir() / params_name
        self.nodes = (*nodes, *extra_nodes)
        self.namespace = check_namespace(namespace)
        self.overrides = overrides or {}
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = ros_environment(env)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def command(self, spec: NodeSpec) -> list[str]:
        """The command line of one node."""
        cmd = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
        if self.namespace:
            cmd += ["-r", f"__ns:=/{self.namespace}"]
        params_file = config_dir() / spec.params_file if spec.params_file else self.params_file
        cmd += ["--params-file", str(params_file)]
        for key, value in {**spec.overrides, **self.overrides.get(spec.name, {})}.items():
            cmd += ["-p", _param_arg(key, value)]
        return cmd

    def start(self) -> None:
        """Start every node; their output goes to ``log_dir/<name>.log`` (or this terminal)."""
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.nodes:
            if self.log_dir:
                (self.log_dir / f"{spec.name}.log").write_bytes(b"")
            self._spawn(spec)

    def _spawn(self, spec: NodeSpec) -> None:
        out: IO[bytes] | None = None
        if self.log_dir:
            out = open(self.log_dir / f"{spec.name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(out)
        # Own process group: a terminal's Ctrl-C reaches the launcher, which stops the nodes in order.
        self.processes[spec.name] = subprocess.Popen(
            self.command(spec),
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
            preexec_fn=lower_priority(spec.nice),
        )

    def exited(self) -> dict[str, int]:
        """Nodes whose process has exited, with their exit codes."""
        return {name: code for name, proc in self.processes.items() if (code := proc.poll()) is not None}

    def restart(self, name: str) -> None:
        """Start node ``name`` again (its log file is appended to)."""
        spec = next((s for s in self.nodes if s.name == name), None)
        if spec is None:
            raise ValueError(f"unknown node {name!r}")
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"node {name} is still running")
        self._spawn(spec)

    def check(self) -> None:
        """Raise ``RuntimeError`` naming the first node that has exited."""
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None:
                where = f"; see {self.log_dir / (name + '.log')}" if self.log_dir else ""
                raise RuntimeError(f"node {name} exited with code {code}{where}")

    def stop(self, timeout: float = 5.0) -> None:
        """Interrupt every node, wait up to ``timeout`` s, then kill what is left."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in self._logs:
            f.close()
        self._logs.clear()

    def __enter__(self) -> Launcher:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``["safety_gate.limits_file=/x.yaml"]`` -> ``{"safety_gate": {"limits_file": "/x.yaml"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not (sep and dot and node and param):
            raise ValueError(
                f"bad --param {item!r}; expected NODE.PARAMETER=VALUE, e.g. safety_gate.limits_file=l.yaml"
            )
        out.setdefault(node, {})[param] = value
    return out


def run_robot(
    robot: str, namespace: str = "", log_dir: str | None = None, params: list[str] | None = None
) -> int:
    """Run a robot's nodes until Ctrl-C or until one exits; returns a process exit code."""
    overrides = parse_overrides(params or [])
    known = {spec.name for spec in ROBOTS.get(robot, ("", ()))[1]}
    unknown = sorted(set(overrides) - known)
    if unknown and robot in ROBOTS:
        raise ValueError(f"--param names unknown node(s) {unknown}; {robot} has: {', '.join(sorted(known))}")
    with Launcher(robot, namespace=namespace, log_dir=log_dir, overrides=overrides) as launcher:
        names = ", ".join(spec.name for spec in launcher.nodes)
        print(f"robofume: {robot} robot running ({names}); Ctrl-C to stop", file=sys.stderr)
        try:
            while True:
                launcher.check()
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        except RuntimeError as exc:
            print(f"robofume: error: {exc}", file=sys.stderr)
            return 1
