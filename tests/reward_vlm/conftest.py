"""Fixtures for the labeling tool tests: a tiny episode folder (with a damaged file) and a fake trainer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robofume.data.episode_format import Episode, save_episode

FRAME_SIDE = 32


def synthetic_episode(task: str, frames: int, kind: str, seed: int, side: int = FRAME_SIDE) -> Episode:
    """An episode whose frames are distinct colour gradients; success from the last third on."""
    rng = np.random.default_rng(seed)
    shape = (frames, side, side)
    t = np.broadcast_to(np.arange(frames, dtype=np.float32)[:, None, None], shape)
    y = np.broadcast_to(np.linspace(0, 1, side, dtype=np.float32)[None, :, None], shape)
    x = np.broadcast_to(np.linspace(0, 1, side, dtype=np.float32)[None, None, :], shape)
    red, green, blue = 40 + 180 * x, 40 + 150 * y, 30 + 200 * (t / max(1, frames - 1))
    images = np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)
    success = np.zeros(frames, dtype=bool)
    success[frames - frames // 3 :] = True
    return Episode(
        frames=images,
        proprio=rng.normal(size=(frames, 9)).astype(np.float32),
        actions=rng.uniform(-1, 1, (frames - 1, 5)).astype(np.float32),
        success=success,
        task=task,
        metadata={"kind": kind, "instruction": f"{task}: put the cube in the bin", "seed": seed},
    )


def write_label_dataset(root: Path) -> dict[str, int]:
    """Two demos, one failure and two damaged files under ``root``; returns frame counts by episode id."""
    episodes = {
        "demos/forward_000000.npz": synthetic_episode("forward", 8, "demos", 1),
        "demos/backward_000000.npz": synthetic_episode("backward", 6, "demos", 2),
        "failures/forward_000000.npz": synthetic_episode("forward", 5, "failures", 3),
    }
    for rel, episode in episodes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        save_episode(root / rel, episode)
    (root / "failures" / "backward_000000.npz").write_bytes(b"this is not a zip file")
    good = (root / "demos" / "forward_000000.npz").read_bytes()
    (root / "failures" / "backward_000001.npz").write_bytes(good[: len(good) // 2])  # truncated
    return {rel: int(ep.frames.shape[0]) for rel, ep in episodes.items()}


@pytest.fixture
def label_data(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A folder of tiny episodes for the labeling tool, and their frame counts."""
    root = tmp_path / "episodes"
    root.mkdir()
    return root, write_label_dataset(root)


FAKE_METRICS = {
    "forward": {
        "precision": 0.975,
        "recall": 0.85,
        "accuracy": 0.9,
        "threshold": 0.62,
        "positives": 12,
        "negatives": 30,
    },
    "backward": {
        "precision": 0.96,
        "recall": 0.81,
        "accuracy": 0.88,
        "threshold": 0.7,
        "positives": 9,
        "negatives": 25,
    },
}


FakeTrainer = Callable[[Callable[[dict[str, Any]], None]], dict]


def make_fake_trainer(epochs: int = 3, delay: float = 0.05) -> FakeTrainer:
    """A trainer that reports a few epochs of progress, then returns fixed metrics."""

    def trainer(progress: Callable[[dict[str, Any]], None]) -> dict:
        for epoch in range(1, epochs + 1):
            time.sleep(delay)
            progress({"phase": "train", "epoch": epoch, "epochs": epochs, "loss": np.float32(1.0 / epoch)})
        progress({"phase": "evaluate"})
        return FAKE_METRICS

    return trainer


@pytest.fixture
def fake_trainer() -> Callable[..., FakeTrainer]:
    """Factory of fake trainers: ``fake_trainer(epochs=3, delay=0.05)``."""
    return make_fake_trainer


@pytest.fixture
def fake_metrics() -> dict[str, dict[str, float]]:
    """What the fake trainer returns."""
    return FAKE_METRICS


@pytest.fixture
def synthetic_episode_factory() -> Callable[..., Episode]:
    """:func:`synthetic_episode` as a fixture: ``(task, frames, kind, seed, side=32) -> Episode``."""
    return synthetic_episode
