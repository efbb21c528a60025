"""Held-out evaluation of a mock session's policies with ground truth (simulation only): forward and
backward success (``success_rate`` is the forward one).

After the nodes stop, the session evaluates the pre-trained policy, evenly spaced milestones and the
final weights on fresh scenes the data, the classifier and the session never saw: the session's
workstation layout (where the demos were recorded), with the object's pose and the arm's start from
held-out seeds. Each policy acts with its mean action, as in ``robofume bench learning``. The
evaluation runs after the session so it takes no CPU from the control loop; policies are evaluated
in parallel worker processes.

Example::

    points = evaluate_session(cfg, log=print)
    # [{"source": "milestones", "version": 1, "step": 17000, "success_rate": 1.0,
    #   "backward_success_rate": 0.9, "forward_edge_success_rate": 0.7, "episodes": 20}, ...,
    #  {"source": "weights", ...}]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from robofume.session.config import SessionConfig, mock_scene_seed

HELD_OUT_SEED_BASE = 20_000
"""Scene seeds of the evaluation: the data uses seeds from ``data_stage.seed`` up, the session's
mock arm 10,000 + ``seed``."""


def held_out_seeds(episodes: int) -> tuple[int, ...]:
    """The evaluation's scene seeds (the same for every policy of every session)."""
    return tuple(range(HELD_OUT_SEED_BASE, HELD_OUT_SEED_BASE + episodes))


def pick_versions(milestones: list[int], points: int) -> list[int]:
    """At most ``points - 1`` milestone versions, evenly spaced, always with the first (the final
    weights are the last point). ``points`` >= 2."""
    if not milestones:
        return []
    room = max(1, points - 1)
    if len(milestones) <= room:
        return list(milestones)
    if room == 1:
        return [milestones[0]]
    step = (len(milestones) - 1) / (room - 1)
    return sorted({milestones[round(i * step)] for i in range(room)})


def evaluate_version(
    root: str, version: int, seeds: tuple[int, ...], layout_seed: int, image_size: int, max_steps: int
) -> dict[str, Any]:
    """Forward and backward success of weight ``version`` of store ``root`` on fresh scenes ``seeds``
    (ground truth, mean action), and forward success from edge starts: the object 4-5.5 cm from the
    start square's centre, where backward successes can leave it but no demo starts
    (``forward_edge_success_rate``); runs in a worker process."""
    import torch

    from policy_server.learning_bench import evaluate_task
    from policy_server.networks import build_policy_from_config
    from policy_server.weights import WeightStore, load_into
    from robofume.sim.mock_arm_env import EDGE_BAND, MockArmConfig, MockArmEnv

    torch.set_num_threads(1)
    state, meta = WeightStore(root).load(version)
    nets = build_policy_from_config(dict(meta.config))
    load_into(nets, state)
    nets.eval()
    env = MockArmEnv(MockArmConfig(image_size=image_size, max_episode_steps=max_steps))
    try:
        cpu = torch.device("cpu")
        forward = evaluate_task(nets, env, seeds, cpu, layout_seed, "forward")
        backward = evaluate_task(nets, env, seeds, cpu, layout_seed, "backward")
        edge = evaluate_task(nets, env, seeds, cpu, layout_seed, "forward", object_band=EDGE_BAND)
    finally:
        env.close()
    return {
        "version": version,
        "step": meta.step,
        "success_rate": forward,
        "backward_success_rate": backward,
        "forward_edge_success_rate": edge,
        "episodes": len(seeds),
    }


def evaluate_session(cfg: SessionConfig, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate the session's pre-trained policy, milestones and final weights (``online.eval_points``
    policies, ``online.eval_episodes`` scenes each); ``[]`` on a real robot or with ``eval_episodes`` 0.
    Sorted by learner step; each point names its store (``milestones`` or ``weights``) and version."""
    from policy_server.weights import WeightStore

    o = cfg.online
    if cfg.robot != "mock" or o.eval_episodes == 0:
        return []
    milestone_root = os.path.join(cfg.run_dir, "milestones")
    weights_root = os.path.join(cfg.run_dir, "weights")
    jobs = [("milestones", v) for v in pick_versions(WeightStore(milestone_root).versions(), o.eval_points)]
    final = WeightStore(weights_root).latest_version()
    if final is not None:
        jobs.append(("weights", final))
    if not jobs:
        return []
    seeds = held_out_seeds(o.eval_episodes)
    args = (seeds, mock_scene_seed(cfg), cfg.data_stage.image_size, o.max_episode_steps)
    log(f"evaluating {len(jobs)} policies on {len(seeds)} held-out scenes each (ground truth)")
    from tqdm import tqdm

    workers = max(1, min(cfg.data_stage.workers, len(jobs)))
    points = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        roots = {"milestones": milestone_root, "weights": weights_root}
        futures = [(src, pool.submit(evaluate_version, roots[src], v, *args)) for src, v in jobs]
        for src, future in tqdm(futures, desc="held-out evaluation", unit="policy"):
            points.append({"source": src, **future.result()})
    points.sort(key=lambda p: (p["step"], p["source"] == "weights"))
    return points
