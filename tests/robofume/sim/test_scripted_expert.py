"""The scripted expert solves both tasks, alternates them without resets, and fails on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from robofume.sim import MockArmConfig, MockArmEnv
from robofume.sim.scripted_expert import FAILURE_MODES, ScriptedExpert
from robofume.sim.tasks import other_task


def _run(env: MockArmEnv, expert: ScriptedExpert) -> bool:
    while True:
        _, _, terminated, truncated, info = env.step(expert.act())
        if terminated or truncated:
            return bool(info["success"])


@pytest.fixture(scope="module")
def env() -> MockArmEnv:
    e = MockArmEnv(MockArmConfig(image_size=0))
    yield e
    e.close()


@pytest.mark.parametrize("task", ["forward", "backward"])
def test_expert_solves_task_on_50_seeds(env: MockArmEnv, task: str) -> None:
    successes = 0
    for seed in range(50):
        env.reset(seed=1000 + seed, options={"task": task})
        successes += _run(env, ScriptedExpert(env, noise_std=0.1, rng=np.random.default_rng(seed)))
    assert successes / 50 >= 0.9, f"{task}: expert success {successes}/50"


def test_forward_backward_cycles_without_scene_reset(
    env: MockArmEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.reset(seed=42, options={"task": "forward"})
    scene_resets = []
    monkeypatch.setattr(env, "_randomize_scene", lambda *a: scene_resets.append(a))
    rng = np.random.default_rng(42)
    task, results = "forward", []
    for cycle in range(20):  # 10 forward + 10 backward
        if cycle:
            env.reset(options={"task": task, "keep_scene": True})
        results.append((task, _run(env, ScriptedExpert(env, noise_std=0.1, rng=rng))))
        task = other_task(task)
    assert scene_resets == []
    assert all(ok for _, ok in results), results
    assert [t for t, _ in results] == ["forward", "backward"] * 10


def test_failure_modes_mostly_fail(env: MockArmEnv) -> None:
    outcomes = []
    for i, mode in enumerate(FAILURE_MODES * 3):
        env.reset(seed=500 + i, options={"task": "forward"})
        outcomes.append(_run(env, ScriptedExpert(env, failure_mode=mode, rng=np.random.default_rng(i))))
    assert sum(outcomes) <= 2, outcomes


def test_expert_rejects_bad_parameters(env: MockArmEnv) -> None:
    with pytest.raises(ValueError, match="noise_std"):
        ScriptedExpert(env, noise_std=-1)
    with pytest.raises(ValueError, match="failure_mode"):
        ScriptedExpert(env, failure_mode="explode")  # type: ignore[arg-type]
