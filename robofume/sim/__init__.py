"""The MuJoCo mock arm: scene, Cartesian controller, gymnasium env, tasks and scripted expert."""

from robofume.sim.mock_arm_env import ACTION_NAMES, PROPRIO_NAMES, MockArmConfig, MockArmEnv
from robofume.sim.scene import SceneVariant
from robofume.sim.tasks import TASK_NAMES

__all__ = ["ACTION_NAMES", "PROPRIO_NAMES", "TASK_NAMES", "MockArmConfig", "MockArmEnv", "SceneVariant"]
