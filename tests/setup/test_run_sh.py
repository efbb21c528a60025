"""The bootstrap script's guards (no install is attempted)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_setup_refuses_a_venv_folder_without_free_space(tmp_path: Path) -> None:
    """A new venv on a nearly full disk: one clear line, exit 1, nothing created."""
    venv = tmp_path / "venv"
    env = {**os.environ, "ROBOFUME_VENV": str(venv), "ROBOFUME_VENV_MIN_FREE_GB": "10000000"}
    env.pop("ROS_DISTRO", None)
    proc = subprocess.run(
        [str(ROOT / "run.sh"), "setup"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert "needs about 10000000 GB free in" in proc.stderr
    assert "ROBOFUME_VENV" in proc.stderr
    assert not venv.exists()
