"""robofume: a robot arm that improves at a manipulation task by itself."""

import os

# Headless rendering by default; must be set before anything imports mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

__version__ = "0.1.0"
