"""Frozen-encoder feature cache: computed once per slot, recomputed when a slot's frame changes,
and online updates with it leave the encoder untouched."""

from __future__ import annotations

import numpy as np
import torch

from policy_server.feature_cache import FeatureCache
from policy_server.networks import ImageEncoder, NetworkConfig


def test_cache_hits_after_first_use_and_detects_overwritten_slots() -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(NetworkConfig(image_size=32, feature_dim=8, encoder_channels=4))
    cache = FeatureCache(encoder, torch.device("cpu"))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    slots = np.arange(6)
    first = cache.features(frames, slots)
    assert cache.misses == 6 and cache.hits == 0
    again = cache.features(frames[[1, 3]], slots[[1, 3]])
    assert cache.hits == 2
    torch.testing.assert_close(again, first[[1, 3]])
    with torch.no_grad():
        torch.testing.assert_close(first, encoder(torch.from_numpy(frames)))
    new_frame = rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)  # slot 3 overwritten by the ring
    updated = cache.features(new_frame, np.array([3]))
    assert cache.misses == 7
    with torch.no_grad():
        torch.testing.assert_close(updated, encoder(torch.from_numpy(new_frame)))


def test_online_updates_with_frozen_encoder_do_not_change_it(tmp_path) -> None:
    from policy_server.calql import AgentConfig
    from policy_server.learner import Learner, LearnerConfig
    from policy_server.replay_buffer import BufferSpec, ReplayBuffer

    buffer = ReplayBuffer(tmp_path / "b", BufferSpec((32, 32), 9, 5, 0.97))
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (7, 32, 32, 3), dtype=np.uint8)
    buffer.add_episode(frames, np.zeros((7, 9), np.float32), rng.uniform(-1, 1, (6, 5)).astype(np.float32),
                       np.zeros(6, np.float32), 0, terminated=False, source="online")  # fmt: skip
    cfg = LearnerConfig(
        recipe="wsrl", batch_size=8, wsrl_warmup_transitions=1, publish_every=10**6, checkpoint_every_s=1e9,
        network=NetworkConfig(image_size=32, hidden_dim=32, feature_dim=8, encoder_channels=4),
        agent=AgentConfig(cql_num_actions=2),
    )  # fmt: skip
    learner = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    before = [p.clone() for p in learner.nets.encoder.parameters()]
    critic_before = [p.clone() for p in learner.nets.critic.parameters()]
    for _ in range(3):
        learner.update("online")
    for b, p in zip(before, learner.nets.encoder.parameters(), strict=True):
        torch.testing.assert_close(b, p)
    assert any(
        not torch.equal(b, p) for b, p in zip(critic_before, learner.nets.critic.parameters(), strict=True)
    )
    assert learner.features.hits > 0
    buffer.close()
