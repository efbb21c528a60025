"""Frozen-encoder feature cache: computed once per slot, recomputed when a slot is overwritten
(write stamps), hits read no frames, and online updates with it leave the encoder untouched."""

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
    store = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)  # stand-in for the buffer's slots
    stamps = np.arange(1, 7)
    loaded: list[list[int]] = []

    def load(slots: np.ndarray) -> np.ndarray:
        loaded.append(slots.tolist())
        return store[slots]

    slots = np.array([0, 1, 2, 3, 4, 5, 3])  # a slot twice in one call is encoded once
    first = cache.features(slots, stamps[slots], load)
    assert cache.misses == 7 and cache.hits == 0 and loaded == [[0, 1, 2, 3, 4, 5]]
    with torch.no_grad():
        torch.testing.assert_close(first, encoder(torch.from_numpy(store[slots])))
    again = cache.features(np.array([1, 3]), stamps[[1, 3]], load)
    assert cache.hits == 2 and len(loaded) == 1  # hits read no frames
    torch.testing.assert_close(again, first[[1, 3]])
    store[3] = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)  # slot 3 overwritten by the ring
    stamps[3] = 7
    updated = cache.features(np.array([2, 3]), stamps[[2, 3]], load)
    assert cache.misses == 8 and loaded[-1] == [3]
    with torch.no_grad():
        torch.testing.assert_close(updated, encoder(torch.from_numpy(store[[2, 3]])))
    cache.clear()  # e.g. the encoder was trained: everything is encoded again
    cache.features(np.array([2]), stamps[[2]], load)
    assert loaded[-1] == [2]
    big = cache.features(np.array([40]), np.array([9]), lambda s: store[[0]])  # grows past its size
    assert big.shape == (1, 8)


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
