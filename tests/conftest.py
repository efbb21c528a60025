"""Shared test setup: headless rendering and an isolated ROS 2 domain per test run."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# One OpenMP thread per process: tests start learner/node subprocesses beside the test process, and
# torch's spinning OpenMP threads competing for 2 cores made small updates up to ~90x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
