"""``robofume demo``: the scripted expert runs the mock arm forward and backward, reset-free.

Writes ``demo.mp4`` (the camera), ``strip.png`` (an image strip), ``summary.json`` and a small
dataset in the episode format under ``data/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import imageio.v2 as imageio
import numpy as np
from tqdm import tqdm

from robofume.atomic_io import ensure_writable_dir, write_json_atomic
from robofume.data.generate import GenerateConfig, generate_dataset
from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv
from robofume.sim.scripted_expert import ScriptedExpert
from robofume.sim.tasks import other_task


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo."""

    out: str = "outputs/demo"
    cycles: int = 2
    video_size: int = 256
    seed: int = 0
    dataset: bool = True

    def __post_init__(self) -> None:
        if self.cycles < 1:
            raise ValueError(f"cycles must be >= 1, got {self.cycles}")
        if not 64 <= self.video_size <= 1024:
            raise ValueError(f"video_size must be between 64 and 1024, got {self.video_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def _strip(frames: list[np.ndarray], n: int = 8) -> np.ndarray:
    idx = np.linspace(0, len(frames) - 1, n).astype(int)
    return np.concatenate([frames[i] for i in idx], axis=1)


def run_demo(cfg: DemoConfig) -> dict:
    """Run ``cfg.cycles`` forward+backward cycles without scene resets and write the outputs."""
    ensure_writable_dir(cfg.out)
    env = MockArmEnv(MockArmConfig(image_size=0, max_episode_steps=120))
    env.reset(seed=cfg.seed, options={"task": "forward"})
    frames: list[np.ndarray] = [env.camera_frame(cfg.video_size)]
    episodes = []
    task = "forward"
    rng = np.random.default_rng(cfg.seed)
    bar = tqdm(total=2 * cfg.cycles, desc="demo episodes", unit="ep")
    for k in range(2 * cfg.cycles):
        if k:
            env.reset(options={"task": task, "keep_scene": True})
        expert = ScriptedExpert(env, noise_std=0.05, rng=rng)
        steps, info = 0, {"success": False}
        while True:
            _obs, _r, terminated, truncated, info = env.step(expert.act())
            frames.append(env.camera_frame(cfg.video_size))
            steps += 1
            if terminated or truncated:
                break
        episodes.append({"task": task, "success": info["success"], "steps": steps})
        bar.update(1)
        bar.set_postfix(task=task, success=info["success"])
        task = other_task(task)
    bar.close()
    env.close()
    video = os.path.join(cfg.out, "demo.mp4")
    imageio.mimwrite(video, frames, fps=int(env.config.control_hz), macro_block_size=1)
    strip = os.path.join(cfg.out, "strip.png")
    imageio.imwrite(strip, _strip(frames))
    summary: dict = {"episodes": episodes, "video": video, "strip": strip, "scene_resets": 0}
    if cfg.dataset:
        data_dir = os.path.join(cfg.out, "data")
        gen = GenerateConfig(
            out=data_dir,
            demos_per_task=2,
            failures_per_task=1,
            prior=4,
            workers=1,
            seed=cfg.seed,
            resume=True,
        )
        print(f"writing a small dataset to {data_dir} (the full one: robofume data generate)")
        summary["dataset"] = data_dir
        summary["dataset_episodes"] = generate_dataset(gen)["episodes"]
    write_json_atomic(os.path.join(cfg.out, "summary.json"), summary)
    print(json.dumps(summary, indent=2))
    return summary
