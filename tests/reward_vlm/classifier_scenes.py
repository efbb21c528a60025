"""Synthetic pick-and-place episodes for the classifier tests (numpy drawing, no MuJoCo, ~ms per episode).

A top-down 64 px table: a hollow target (the bin), a green start square and a small object that a
dark gripper carries from one to the other. Forward success = the object rests inside the target;
backward success = it rests on the green square; failures drop it short of the goal. Prior episodes
use other object/target colours and their own instruction text, like ``robofume data generate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robofume.data.episode_format import Episode, save_episode
from robofume.sim.tasks import instruction

SIDE = 64
COLORS = {
    "red": (210, 40, 40),
    "blue": (40, 80, 210),
    "yellow": (220, 200, 30),
    "gray": (128, 128, 132),
    "purple": (140, 50, 180),
    "pink": (240, 140, 180),
    "orange": (240, 130, 30),
}
PRIOR = (("yellow", "gray"), ("purple", "pink"), ("orange", "blue"), ("red", "gray"))


def _draw(
    center_obj: np.ndarray,
    target: np.ndarray,
    square: np.ndarray,
    obj_rgb: tuple[int, int, int],
    target_rgb: tuple[int, int, int],
    carried: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    img = np.empty((SIDE, SIDE, 3), np.float32)
    img[:] = (150, 120, 90)
    img += rng.normal(0, 6, img.shape)
    sx, sy = square
    img[sy - 7 : sy + 7, sx - 7 : sx + 7] = (70, 170, 80)
    tx, ty = target
    img[ty - 10 : ty + 10, tx - 10 : tx + 10] = target_rgb
    img[ty - 7 : ty + 7, tx - 7 : tx + 7] = np.array(target_rgb) * 0.6
    ox, oy = np.round(center_obj).astype(int)
    img[oy - 3 : oy + 3, ox - 3 : ox + 3] = obj_rgb
    if carried:
        img[oy - 6 : oy - 3, ox - 5 : ox + 5] = (40, 40, 45)
    return img.clip(0, 255).astype(np.uint8)


def make_episode(
    task: str, kind: str, seed: int, frames: int = 20, colors: tuple[str, str] = ("red", "blue")
) -> Episode:
    """One episode of ``task``; ``kind`` is demos (ends in success), failures (never succeeds) or prior."""
    rng = np.random.default_rng(seed)
    target = np.array([44, 22]) + rng.integers(-2, 3, 2)
    square = np.array([18, 42]) + rng.integers(-2, 3, 2)
    start, goal = (square, target) if task == "forward" else (target, square)
    fail = kind == "failures" or (kind == "prior" and rng.random() < 0.3)
    end = goal + (rng.uniform(14, 20) * rng.choice([-1, 1], 2) if fail else rng.uniform(-2, 2, 2))
    end = np.clip(end, 6, SIDE - 7)
    move_until = int(frames * rng.uniform(0.55, 0.75))
    images, success = [], []
    for t in range(frames):
        a = min(1.0, t / move_until)
        pos = start + (end - start) * a
        carried = 0 < t < move_until
        images.append(_draw(pos, target, square, COLORS[colors[0]], COLORS[colors[1]], carried, rng))
        rel_goal = np.abs(pos - goal).max()
        success.append(bool(not carried and t >= move_until and rel_goal < 6))
    obj, tgt = f"{colors[0]} cube", f"{colors[1]} bin"
    return Episode(
        frames=np.stack(images),
        proprio=np.zeros((frames, 9), np.float32),
        actions=np.zeros((frames - 1, 5), np.float32),
        success=np.asarray(success),
        task=task,
        metadata={
            "kind": kind,
            "seed": seed,
            "instruction": instruction(task, obj, tgt),
            "scene": "target" if kind != "prior" else {"object": obj, "target": tgt},
        },
    )


def write_dataset(
    root: Path, demos: int = 10, failures: int = 4, prior: int = 8, seed: int = 0, frames: int = 20
) -> Path:
    """A robofume-episode folder (demos/, failures/, prior/) of synthetic episodes; returns ``root``."""
    for kind, count in (("demos", demos), ("failures", failures)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for task in ("forward", "backward"):
            for i in range(count):
                s = (
                    seed * 100_000
                    + {"demos": 0, "failures": 1}[kind] * 10_000
                    + (task == "backward") * 1000
                    + i
                )
                save_episode(root / kind / f"{task}_{i:06d}.npz", make_episode(task, kind, s, frames))
    (root / "prior").mkdir(parents=True, exist_ok=True)
    for i in range(prior):
        task = ("forward", "backward")[i % 2]
        ep = make_episode(task, "prior", seed * 100_000 + 50_000 + i, frames, PRIOR[i % len(PRIOR)])
        save_episode(root / "prior" / f"{task}_{i:06d}.npz", ep)
    return root
