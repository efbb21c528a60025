"""Speed benchmarks of the learning core: ``robofume bench learner|policy|buffer``."""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np
import torch

from policy_server.calql import AgentConfig
from policy_server.learner import Learner, LearnerConfig
from policy_server.networks import AgentNetworks, NetworkConfig
from policy_server.policy_core import run_policy_bench
from policy_server.replay_buffer import BufferSpec, ReplayBuffer, run_buffer_bench
from robofume.bench.machine import machine_info


def _synchronize(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so a wall-clock interval covers the work it started."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fill(buffer: ReplayBuffer, size: int, transitions: int, source: str) -> None:
    rng = np.random.default_rng(0)
    steps = 50
    for _ in range(max(1, transitions // steps)):
        frames = rng.integers(0, 255, (steps + 1, size, size, 3), dtype=np.uint8)
        proprio = rng.normal(size=(steps + 1, 9)).astype(np.float32)
        actions = rng.uniform(-1, 1, (steps, 5)).astype(np.float32)
        rewards = np.zeros(steps, np.float32)
        buffer.add_episode(frames, proprio, actions, rewards, 0, terminated=False, source=source)


def run_learner_bench(
    batch_size: int = 256,
    updates: int = 20,
    camera_size: int = 128,
    device: str = "auto",
    cpu_threads: int = 1,
    network: NetworkConfig | None = None,
    online_updates: int | None = None,
    actor_once_per_transition: bool = True,
) -> dict[str, object]:
    """Learner updates/s at ``batch_size``: the Cal-QL pre-training update (encoder trained end to end,
    ``updates`` timed) and the online SAC update of WSRL/RLPD with the frozen encoder's cached
    features (``online_updates`` timed, default ``max(updates, 100)``); default network and learner
    config (UTD 4) unless told, frames sampled from a buffer of camera-size images.

    Updates are timed in groups of one actor step: online, ``round(utd_ratio)`` updates (critic
    only, then critic + actor) when ``actor_once_per_transition``, else one. Per phase: the median
    over groups of wall time per update (sampling included) and updates/s, the same for process CPU
    time (less sensitive than wall time to other processes sharing the CPU), and the median time to
    sample a batch the way the phase does (online: no frames once the feature cache holds them).
    ``load_avg_1min`` is the machine's load when the bench ended. On CUDA each timed interval ends
    with a device synchronisation, so it covers the kernels it queued."""
    if cpu_threads > 0:
        torch.set_num_threads(cpu_threads)  # a learner shares the CPU with the robot-side processes
    net = network or NetworkConfig()
    results: dict[str, object] = {
        "bench": "learner", "batch_size": batch_size, "camera_size": camera_size,
        "encoder_image_size": net.image_size, "hidden_dim": net.hidden_dim, "num_critics": net.num_critics,
        "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        buffer = ReplayBuffer(
            f"{tmp}/buffer", BufferSpec((camera_size, camera_size), 9, 5, 0.97), capacity=4000
        )
        _fill(buffer, camera_size, 1000, "demos")
        _fill(buffer, camera_size, 1000, "online")
        cfg = LearnerConfig(
            batch_size=batch_size, recipe="wsrl", wsrl_warmup_transitions=1, network=net, agent=AgentConfig(),
            publish_every=10**9, log_every=10**9, checkpoint_every_s=1e9,
            actor_once_per_transition=actor_once_per_transition, bc_warmup_steps=0,
            online_critic_warmup_updates=0,  # time the steady state: actor steps included
        )  # fmt: skip
        learner = Learner(cfg, f"{tmp}/run", buffer, device=device, log=lambda _m: None)
        group = max(1, round(cfg.utd_ratio)) if actor_once_per_transition else 1
        results.update({"utd_ratio": cfg.utd_ratio, "online_updates_per_actor_update": group})
        results["device"] = str(learner.device)
        timed = {"pretrain": updates, "online": online_updates or max(updates, 100)}
        for phase, key in (("pretrain", "calql_pretrain"), ("online", "sac_online_frozen_encoder")):
            size = group if phase == "online" else 1
            for _ in range(12 if phase == "online" else 1):  # warm-up (online: fill the feature cache)
                learner.update(phase)
            while learner.counters[f"{phase}_updates"] % size:  # start at a group boundary
                learner.update(phase)
            frames = not learner.uses_cached_features(phase)
            times, cpu_times, sample_times = [], [], []
            _synchronize(learner.device)
            for _ in range(max(1, timed[phase] // size)):
                t0 = time.perf_counter()
                learner.sample_with_slots(phase, frames=frames)
                sample_times.append(time.perf_counter() - t0)
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(size):
                    learner.update(phase)
                _synchronize(learner.device)
                times.append((time.perf_counter() - t0) / size)
                cpu_times.append((time.process_time() - c0) / size)
            median = statistics.median(times)
            results[f"{key}_ms_per_update"] = round(median * 1e3, 2)
            results[f"{key}_updates_per_s"] = round(1.0 / median, 1)
            results[f"{key}_cpu_ms_per_update"] = round(statistics.median(cpu_times) * 1e3, 2)
            results[f"{key}_sample_ms"] = round(statistics.median(sample_times) * 1e3, 2)
        buffer.close()
    results["target_updates_per_s"] = 100
    results["load_avg_1min"] = round(os.getloadavg()[0], 2)
    results["machine"] = machine_info()
    return results


def run_policy_latency_bench(
    camera_size: int = 128,
    iters: int = 300,
    device: str = "auto",
    batches: tuple[int, ...] = (1, 4),
    policy_image_size: int | None = None,
) -> dict[str, object]:
    """Policy-server inference latency with the default network at each batch (robots served together);
    ``device``: auto (CUDA if present), cpu or cuda; ``policy_image_size``: the network's input side
    (default: ``NetworkConfig``'s), to which each ``camera_size`` frame is resized."""
    net = NetworkConfig() if policy_image_size is None else NetworkConfig(image_size=policy_image_size)
    result = dict(
        run_policy_bench(
            lambda: AgentNetworks(net),
            image_size=camera_size,
            iters=iters,
            device=device,
            batches=batches,
        )
    )
    result.update(
        {
            "bench": "policy",
            "policy_image_size": net.image_size,
            "target_p99_ms_batch1": 5.0,
            "machine": machine_info(),
        }
    )
    return result


def run_replay_bench(image_size: int = 128, transitions: int = 5000) -> dict[str, object]:
    """Replay buffer insert rate, sample time and bytes per transition (in a temporary folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = dict(run_buffer_bench(f"{tmp}/buffer", image_size=image_size, transitions=transitions))
    result.update({"bench": "buffer", "machine": machine_info()})
    return result
