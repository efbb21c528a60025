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


def _render_times(env: MockArmEnv, renders: int) -> list[float]:
    """Milliseconds per camera frame of ``renders`` renders, after 5 untimed warm-up frames."""
    for _ in range(5):
        env.camera_frame()
    times = []
    for _ in range(renders):
        t0 = time.perf_counter()
        env.camera_frame()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def run_sim_bench(image_size: int = 128, steps: int = 200, renders: int = 100, seed: int = 0) -> dict:
    """Measure control steps/s with and without the camera, and render ms/frame (medians)."""
    state_env = MockArmEnv(MockArmConfig(image_size=0))
    state_steps = _expert_steps(state_env, steps, seed)
    state_env.close()

    env = MockArmEnv(MockArmConfig(image_size=image_size))
    image_steps = _expert_steps(env, steps, seed)
    render_ms = _render_times(env, renders)
    # the same scene with the arm's original meshes: what the simplified ones cost and change
    full = MockArmEnv(MockArmConfig(image_size=image_size, visual_max_faces=0))
    full.reset(seed=seed, options={"task": "forward"})
    full.data.qpos[:] = env.data.qpos
    full.data.mocap_pos[:] = env.data.mocap_pos
    full.data.mocap_quat[:] = env.data.mocap_quat
    mujoco.mj_forward(full.model, full.data)
    full_ms = _render_times(full, max(renders // 2, 10))
    diff = np.abs(env.camera_frame().astype(np.int16) - full.camera_frame().astype(np.int16))
    full.close()
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
        "visual_max_faces": env.config.visual_max_faces,
        "render_ms_original_meshes_median": round(statistics.median(full_ms), 2),
        "render_speedup_vs_original_meshes": round(
            statistics.median(full_ms) / statistics.median(render_ms), 2
        ),
        "mean_abs_pixel_diff_vs_original_meshes": round(float(diff.mean()), 3),
        "realtime_factor_with_camera": round(env.config.control_hz**-1 / statistics.median(image_steps), 2),
        "samples": {"steps": steps, "renders": renders},
        "mujoco": mujoco.__version__,
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
        "machine": machine_info(),
    }
