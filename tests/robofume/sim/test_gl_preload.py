"""Rendering first and importing torchvision afterwards must not crash the process."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from robofume.sim import MockArmConfig, MockArmEnv
env = MockArmEnv(MockArmConfig(image_size=32))
env.reset(seed=0)
env.close()
import torchvision  # loads Triton's LLVM after Mesa's: crashed before preload_before_gl
print("alive")
"""


def test_torchvision_import_after_rendering_does_not_segfault() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "alive" in result.stdout
