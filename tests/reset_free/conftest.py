"""Make the shared ROS test helpers (tests/robot_ws/ros_test_utils.py) importable here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "robot_ws"))
