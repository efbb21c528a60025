"""robofume's own launcher: command lines from the shared parameter files, overrides, and errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from robofume.cli import main
from robofume_robot.config_paths import config_dir
from robofume_robot.launcher import ROBOTS, Launcher, parse_overrides, ros_environment


@pytest.mark.parametrize("robot", sorted(ROBOTS))
def test_every_node_has_a_section_in_its_parameter_file(robot: str) -> None:
    params_name, nodes = ROBOTS[robot]
    sections = yaml.safe_load((config_dir() / params_name).read_text())
    for spec in nodes:
        assert f"/**/{spec.name}" in sections, f"{params_name} lacks /**/{spec.name}"


def test_command_line_carries_params_namespace_and_overrides() -> None:
    launcher = Launcher("real", namespace="/arm2/", overrides={"safety_gate": {"limits_file": "/x.yaml"}})
    gate = next(s for s in launcher.nodes if s.name == "safety_gate")
    cmd = launcher.command(gate)
    assert cmd[:3] == [sys.executable, "-m", "robofume_robot.safety_gate_node"]
    assert "__ns:=/arm2" in cmd and "__node:=safety_gate" in cmd
    assert str(config_dir() / "real_robot.yaml") in cmd and "limits_file:=/x.yaml" in cmd


def test_environment_defaults_to_localhost_and_shm_profile(monkeypatch) -> None:
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    env = ros_environment({"PATH": "/usr/bin"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml")
    assert (
        ros_environment({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})["ROS_AUTOMATIC_DISCOVERY_RANGE"]
        == "SUBNET"
    )


def test_bad_overrides_and_robot_are_one_line_errors(capsys) -> None:
    with pytest.raises(ValueError, match=r"NODE\.PARAMETER=VALUE"):
        parse_overrides(["limits_file=/x"])
    with pytest.raises(ValueError, match="unknown robot"):
        Launcher("hexapod")
    assert main(["robot", "--robot", "real", "--param", "gripper.x=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown node" in err and "\n" not in err


@pytest.mark.parametrize("namespace", ["bad ns!", "1robot", "a//b", "arm-2"])
def test_a_namespace_ros_refuses_is_a_one_line_error_before_any_node_starts(namespace: str, capsys) -> None:
    with pytest.raises(ValueError, match="bad namespace"):
        Launcher("mock", namespace=namespace)
    assert main(["robot", "--namespace", namespace]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robofume: error: bad namespace") and "\n" not in err
    assert Launcher("mock", namespace="/fleet/robot_1/").namespace == "fleet/robot_1"


def test_real_gate_refuses_to_start_without_limits() -> None:
    pytest.importorskip("rclpy")
    launcher = Launcher("real")
    gate = next(s for s in launcher.nodes if s.name == "safety_gate")
    result = subprocess.run(
        launcher.command(gate), env=launcher.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("robofume: error: safety_gate: parameter 'limits_file'")
    )


def test_nodes_off_the_control_path_run_at_lower_priority(tmp_path, monkeypatch) -> None:
    from robofume_robot import launcher as launcher_module
    from robofume_robot.launcher import MCAP_NODE, OFF_PATH_NICE, SESSION_NODES, lower_priority

    nice = {s.name: s.nice for s in (*ROBOTS["mock"][1], *SESSION_NODES, MCAP_NODE)}
    on_path = ("arm", "safety_gate", "policy_server")
    assert all(nice[name] == 0 for name in on_path)
    assert all(v == OFF_PATH_NICE > 0 for name, v in nice.items() if name not in on_path)
    spawned: dict[str, object] = {}

    class FakePopen:
        def __init__(self, cmd: list[str], **kwargs: object) -> None:
            spawned[cmd[cmd.index("-r") + 1].removeprefix("__node:=")] = kwargs["preexec_fn"]

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(launcher_module.subprocess, "Popen", FakePopen)
    Launcher("mock", log_dir=tmp_path, extra_nodes=SESSION_NODES).start()
    assert spawned["arm"] is None and spawned["policy_server"] is None and spawned["recorder"] is not None
    monkeypatch.undo()
    # the hook really lowers a child's priority
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.nice(0))"],
        preexec_fn=lower_priority(3),
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) == min(19, os.nice(0) + 3)  # 19 is the floor of priority
