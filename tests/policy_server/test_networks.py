"""Agent networks: shapes, action bounds, task conditioning, log-probabilities, target updates."""

from __future__ import annotations

import math

import pytest
import torch

from policy_server.networks import (
    AgentNetworks,
    ImageEncoder,
    NetworkConfig,
    SpatialSoftmax,
    TanhGaussianActor,
)


def _obs(b: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (b, size, size, 3), dtype=torch.uint8, generator=g)
    return images, torch.randn(b, 9, generator=g), torch.tensor([0, 1] * (b // 2))


def test_act_is_bounded_and_resizes_camera_frames() -> None:
    nets = AgentNetworks(NetworkConfig(image_size=32))
    images, proprio, task = _obs(size=48)  # a camera size other than the encoder's
    action = nets.act(images, proprio, task)
    assert action.shape == (4, 5) and action.abs().max() <= 1.0
    q = nets.critic(nets.state(images, proprio, task), action)
    assert q.shape == (2, 4)


def test_task_changes_the_action() -> None:
    torch.manual_seed(0)
    nets = AgentNetworks(NetworkConfig(image_size=32))
    images, proprio, _ = _obs(b=2)
    images[1], proprio[1] = images[0], proprio[0]
    action = nets.act(images, proprio, torch.tensor([0, 1]))
    assert not torch.allclose(action[0], action[1])


def test_acting_spread_scales_the_policy_noise() -> None:
    """std_scale 0 is the mean action, 1 the policy's own draw (same random stream as ``forward``), and
    a smaller scale lands closer to the mean."""
    torch.manual_seed(0)
    nets = AgentNetworks(NetworkConfig(image_size=32))
    images, proprio, task = _obs(b=64)
    mean = nets.act(images, proprio, task, deterministic=True)
    assert torch.equal(nets.act(images, proprio, task, deterministic=False, std_scale=0.0), mean)
    torch.manual_seed(1)
    own = nets.act(images, proprio, task, deterministic=False)
    torch.manual_seed(1)
    with torch.no_grad():
        drawn, _ = nets.actor(nets.state(images, proprio, task))
    assert torch.allclose(own, drawn)
    torch.manual_seed(1)
    narrow = nets.act(images, proprio, task, deterministic=False, std_scale=0.25)
    assert (narrow - mean).abs().mean() < 0.5 * (own - mean).abs().mean()


def test_text_embeddings_are_a_saved_buffer_and_validated() -> None:
    emb = torch.randn(2, 16)
    nets = AgentNetworks(NetworkConfig(image_size=32, task_embed_dim=16), text_embeddings=emb)
    assert "task_embedding.table" in nets.state_dict()
    torch.testing.assert_close(nets.task_embedding.table[1].norm(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="text embeddings must be"):
        AgentNetworks(NetworkConfig(image_size=32, task_embed_dim=16), text_embeddings=torch.randn(3, 16))


def test_tanh_gaussian_log_prob_matches_change_of_variables() -> None:
    torch.manual_seed(0)
    cfg = NetworkConfig(image_size=32, action_dim=1, feature_dim=1, proprio_dim=1, num_tasks=1)
    actor = TanhGaussianActor(cfg)
    state = torch.zeros(20000, cfg.feature_dim + cfg.proprio_dim + cfg.task_dim)
    action, log_prob = actor(state)
    mean, log_std = actor.net(state[:1]).chunk(2, dim=-1)
    pre = torch.atanh(action[:5].clamp(-0.999999, 0.999999))
    std = log_std.exp()
    expected = (
        -0.5 * ((pre - mean) / std) ** 2
        - log_std
        - 0.5 * math.log(2 * math.pi)
        - torch.log(1 - action[:5] ** 2)
    )
    torch.testing.assert_close(log_prob[:5], expected.squeeze(-1), atol=2e-3, rtol=1e-3)
    wide = TanhGaussianActor(NetworkConfig(image_size=32, action_dim=3))  # constants scale with the dims
    state = torch.randn(64, wide.cfg.feature_dim + wide.cfg.proprio_dim + wide.cfg.task_dim)
    action, log_prob = wide(state)
    mean, log_std = wide.net(state).chunk(2, dim=-1)
    pre = torch.atanh(action.clamp(-0.999, 0.999))
    normal = torch.distributions.Normal(mean, log_std.clamp(-5, 2).exp())
    expected = (normal.log_prob(pre) - torch.log(1 - action**2)).sum(-1)
    ok = action.abs().amax(-1) < 0.99  # atanh/log(1 - a^2) are ill-conditioned near the bounds
    torch.testing.assert_close(log_prob[ok], expected[ok], atol=2e-3, rtol=1e-3)
    torch.manual_seed(5)
    drawn, _ = wide(state)
    torch.manual_seed(5)
    torch.testing.assert_close(wide.sample(state), drawn)  # the TD target's action-only draw: same draw


def test_soft_update_moves_targets_toward_online() -> None:
    nets = AgentNetworks(NetworkConfig(image_size=32))
    with torch.no_grad():
        for p in nets.critic.parameters():
            p.add_(1.0)
    before = [p.clone() for p in nets.target_critic.parameters()]
    nets.soft_update_targets(0.5)
    for b, t, o in zip(before, nets.target_critic.parameters(), nets.critic.parameters(), strict=True):
        torch.testing.assert_close(t, (b + o) / 2)


def test_bad_config_rejected() -> None:
    with pytest.raises(ValueError, match="image_size"):
        NetworkConfig(image_size=16)
    with pytest.raises(ValueError, match="encoder_head must be one of flatten, spatial_softmax, got 'pool'"):
        NetworkConfig(encoder_head="pool")


def test_spatial_softmax_finds_each_channels_peak() -> None:
    maps = torch.zeros(1, 2, 11, 11)
    maps[0, 0, 2, 8] = 50.0  # row 2 (y), column 8 (x)
    maps[0, 1, 10, 0] = 50.0
    keypoints = SpatialSoftmax(11, 11)(maps).view(2, 2)
    step = 2.0 / 10
    torch.testing.assert_close(
        keypoints[0], torch.tensor([-1.0 + 8 * step, -1.0 + 2 * step]), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(keypoints[1], torch.tensor([-1.0, 1.0]), atol=1e-3, rtol=0)


def test_spatial_softmax_encoder_tracks_where_a_spot_is() -> None:
    torch.manual_seed(0)
    cfg = NetworkConfig(image_size=64, encoder_head="spatial_softmax")
    encoder = ImageEncoder(cfg)
    frames = torch.zeros(2, 64, 64, 3, dtype=torch.uint8)
    frames[0, 8:14, 8:14] = 255
    frames[1, 48:54, 40:46] = 255
    features = encoder(frames)
    assert features.shape == (2, cfg.feature_dim)
    with torch.no_grad():
        encoder.pool.log_temperature.fill_(math.log(0.01))  # sharp: each keypoint at its map's peak
        keypoints = encoder.pool(encoder.convs(frames.permute(0, 3, 1, 2).float() / 255.0)).view(2, -1, 2)
    assert keypoints.shape == (2, cfg.encoder_channels, 2) and keypoints.abs().max() <= 1.0
    shift = (keypoints[1] - keypoints[0]).mean(0)  # the spot moved right (x) and down (y)
    assert shift[0] > 0.1 and shift[1] > 0.1, shift
    nets = AgentNetworks(cfg)
    assert "encoder.pool.grid" in nets.state_dict()  # saved with the weights (safetensors)


def test_policy_server_factory_round_trip_through_weight_store(tmp_path) -> None:
    from dataclasses import asdict

    from policy_server.networks import build_policy_from_config
    from policy_server.weights import WeightStore, load_into

    cfg = NetworkConfig(image_size=32, task_embed_dim=8, encoder_head="spatial_softmax")
    nets = AgentNetworks(cfg, text_embeddings=torch.randn(2, 8))
    store = WeightStore(tmp_path)
    version = store.publish(nets.state_dict(), {"network": asdict(cfg)}, step=3)
    state, meta = store.load(version)
    fresh = build_policy_from_config(meta.config)
    load_into(fresh, state, meta)
    images, proprio, task = _obs()
    torch.testing.assert_close(fresh.act(images, proprio, task), nets.act(images, proprio, task))
    with pytest.raises(ValueError, match="unknown network config key"):
        build_policy_from_config({"network": {"image_sise": 64}})
