"""The async learner as its own process: it trains while a writer appends online experience,
publishes new weight versions, stops cleanly on SIGTERM and resumes its counters on restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from policy_server.calql import AgentConfig
from policy_server.learner import LearnerConfig, write_resolved_config
from policy_server.networks import NetworkConfig
from policy_server.replay_buffer import BufferSpec, ReplayBuffer
from policy_server.weights import WeightStore

SIZE = 32


def _append_online(buffer: ReplayBuffer, episodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        buffer.begin_episode(
            rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8), np.zeros(9, np.float32), 0
        )
        for t in range(5):
            frame = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            buffer.add_step(
                rng.uniform(-1, 1, 5), float(t == 4), frame, np.zeros(9, np.float32), t == 4, False
            )
    buffer.flush()


def _start(run: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "robofume.cli", "learner", "--run", str(run), "--device", "cpu"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_learner_process_trains_on_new_data_publishes_and_resumes(tmp_path) -> None:
    run = tmp_path / "run"
    cfg = LearnerConfig(
        recipe="wsrl", batch_size=8, utd_ratio=1.0, wsrl_warmup_transitions=10, publish_every=5,
        checkpoint_every_s=1.0,
        network=NetworkConfig(image_size=SIZE, hidden_dim=32, feature_dim=16, encoder_channels=8),
        agent=AgentConfig(cql_num_actions=2),
    )  # fmt: skip
    write_resolved_config(run, cfg)
    buffer = ReplayBuffer(
        run / "buffer", BufferSpec((SIZE, SIZE), 9, 5, cfg.agent.gamma), flush_interval_s=0.1
    )
    store = WeightStore(run / "weights")
    proc = _start(run)
    try:
        _append_online(buffer, 1, seed=0)  # 5 transitions: below the WSRL warm-up, no training yet
        time.sleep(2.0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert store.latest_version() is None
        _append_online(buffer, 4, seed=1)  # 25 transitions -> 25 updates at UTD 1
        assert _wait_for(lambda: (store.latest_version() or 0) >= 5, 120), "no weights published"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    counters = json.loads(out.strip().splitlines()[-1])["counters"]
    assert counters["online_updates"] == 25 and counters["pretrain_updates"] == 0

    proc = _start(run)  # restart: resumes, trains only on what is new
    try:
        _append_online(buffer, 2, seed=2)
        # 10 new transitions -> 10 updates -> versions published at updates 30 and 35
        assert _wait_for(lambda: (store.latest_version() or 0) >= counters["weight_version"] + 2, 120)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert "resumed from checkpoint" in err
    assert json.loads(out.strip().splitlines()[-1])["counters"]["online_updates"] == 35
    buffer.close()
