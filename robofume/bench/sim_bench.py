"""``robofume bench sim``: mock-arm env steps/s and camera render time per frame."""

from __future__ import annotations

import os
import statistics
import time

import mujoco
import numpy as np

from robofume.bench.machine import machine_info
from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv
from robofume.sim.scripted_expert import ScriptedExpert


def _expert_steps(env: MockArmEnv, steps: int, seed: int) -> list[float]:
    """Step durations (s) of ``steps`` expert-driven steps, cycling forward/backward without resets."""
    env.reset(seed=seed, options={"task": "forward"})
    expert = ScriptedExpert(env, rng=np.random.default_rng(seed))
    durations: list[float] = []
    for _ in range(steps):
        action = expert.act()
        t0 = time.perf_counter()
        _obs, _r, terminated, truncated, _info = env.step(action)
        durations.append(time.perf_counter() - t0)
        if terminated or truncated:
            nxt = "backward" if env.task == "forward" else "forward"
            env.reset(options={"task": nxt, "keep_scene": not truncated})
            expert = ScriptedExpert(env, rng=np.random.default_rng(seed + len(durations)))
    return durations


def run_sim_bench(image_size: int = 128, steps: int = 200, renders: int = 100, seed: int = 0) -> dict:
    """Measure control steps/s with and without the camera, and render ms/frame (medians)."""
    state_env = MockArmEnv(MockArmConfig(image_size=0))
    state_steps = _expert_steps(state_env, steps, seed)
    state_env.close()

    env = MockArmEnv(MockArmConfig(image_size=image_size))
    image_steps = _expert_steps(env, steps, seed)
    for _ in range(5):
        env.camera_frame()
    render_ms = []
    for _ in range(renders):
        t0 = time.perf_counter()
        env.camera_frame()
        render_ms.append((time.perf_counter() - t0) * 1e3)
    env.close()
    return {
        "bench": "sim",
        "image_size": image_size,
        "control_hz": env.config.control_hz,
        "physics_substeps_per_step": env.n_substeps,
        "steps_per_s_no_camera": round(1.0 / statistics.median(state_steps), 1),
        "steps_per_s_with_camera": round(1.0 / statistics.median(image_steps), 1),
        "render_ms_per_frame_median": round(statistics.median(render_ms), 2),
        "render_ms_per_frame_p90": round(float(np.percentile(render_ms, 90)), 2),
        "realtime_factor_with_camera": round(env.config.control_hz**-1 / statistics.median(image_steps), 2),
        "samples": {"steps": steps, "renders": renders},
        "mujoco": mujoco.__version__,
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
        "machine": machine_info(),
    }
