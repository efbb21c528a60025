"""robot_ws builds with colcon as an ament_python package, and the installed nodes run from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_colcon_build_installs_nodes_and_config(tmp_path) -> None:
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not os.path.exists(colcon):
        pytest.skip("colcon not installed (./run.sh setup installs it)")
    result = subprocess.run(
        [
            colcon,
            "build",
            "--base-paths",
            str(ROOT / "robot_ws" / "src"),
            "--build-base",
            str(tmp_path / "build"),
            "--install-base",
            str(tmp_path / "install"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    prefix = tmp_path / "install" / "robofume_robot"
    for node in ("mock_arm_node", "safety_gate_node", "realsense_camera_node", "arm_adapter_node"):
        assert (prefix / "lib" / "robofume_robot" / node).exists(), node
    share = prefix / "share" / "robofume_robot"
    assert (share / "config" / "safety_limits_mock.yaml").exists()
    assert (share / "package.xml").exists()
    assert (share / "rviz" / "robofume.rviz").exists()  # ros2 launch ... gui:=true reads it from here
    launch_files = sorted(p.name for p in (ROOT / "launch").glob("*.launch.yaml"))
    assert launch_files and sorted(p.name for p in (share / "launch").iterdir()) == launch_files

    # The installed package finds its config in the ament share folder, like after `source setup.bash`.
    site = next((prefix / "lib").glob("python3*/site-packages"))
    env = {
        **os.environ,
        "AMENT_PREFIX_PATH": str(prefix),
        "PYTHONPATH": f"{site}:{os.environ.get('PYTHONPATH', '')}",
    }
    probe = (
        "import robofume_robot, robofume_robot.config_paths as c; "
        "print(robofume_robot.__file__); print(c.config_dir())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path, check=True
    )
    module_file, config = out.stdout.split()
    assert module_file.startswith(str(site)) and Path(config) == share / "config"
