"""Run one episode of a policy in the mock arm env and collect it in the episode format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from robofume.data.episode_format import Episode
from robofume.sim.mock_arm_env import ACTION_NAMES, PROPRIO_NAMES, MockArmEnv

Policy = Callable[[dict[str, Any]], np.ndarray]


def record_episode(
    env: MockArmEnv,
    policy: Policy,
    task: str,
    *,
    seed: int | None = None,
    keep_scene: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Episode:
    """Reset ``env`` for ``task`` (reset-free when ``keep_scene``), run ``policy`` to the end, and
    return the episode."""
    if not env.config.image_size:
        raise ValueError("recording episodes needs the camera: set image_size > 0")
    obs, info = env.reset(seed=seed, options={"task": task, "keep_scene": keep_scene})
    frames, proprio, actions, success = [obs["image"]], [obs["proprio"]], [], [info["success"]]
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.asarray(policy(obs), dtype=np.float32)
        obs, _reward, terminated, truncated, info = env.step(action)
        frames.append(obs["image"])
        proprio.append(obs["proprio"])
        actions.append(action)
        success.append(info["success"])
    meta = {
        "terminated": bool(terminated),
        "truncated": bool(truncated),
        "seed": seed,
        "keep_scene": keep_scene,
        "control_hz": env.config.control_hz,
        "image_size": env.config.image_size,
        "proprio_names": list(PROPRIO_NAMES),
        "action_names": list(ACTION_NAMES),
        "variant": asdict(env.config.variant),
        "visual_max_faces": env.config.visual_max_faces,
        **(metadata or {}),
    }
    return Episode(
        frames=np.stack(frames),
        proprio=np.stack(proprio).astype(np.float32),
        actions=np.stack(actions).astype(np.float32)
        if actions
        else np.zeros((0, len(ACTION_NAMES)), np.float32),
        success=np.asarray(success, dtype=bool),
        task=task,
        metadata=meta,
    )
