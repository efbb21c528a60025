"""Coloured exploration noise: unit variance, the spectrum's colour, episodes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policy_server.exploration_noise import ColoredNoiseProcess, colored_noise
from policy_server.networks import AgentNetworks, NetworkConfig


def _lag1(x: np.ndarray) -> float:
    """Mean lag-1 autocorrelation of unit-variance columns stacked as (sequences, steps, dims)."""
    return float(np.mean(x[:, 1:] * x[:, :-1]))


@pytest.mark.parametrize("steps", [100, 101])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_unit_variance_and_zero_mean_for_every_colour(beta: float, steps: int) -> None:
    rng = np.random.default_rng(0)
    x = np.stack([colored_noise(beta, steps, 5, rng) for _ in range(1500)])
    assert x.shape == (1500, steps, 5) and x.dtype == np.float32
    assert abs(x.var() - 1.0) < 0.03
    assert abs(x.mean()) < 0.03


def test_colour_sets_the_correlation_between_steps() -> None:
    rng = np.random.default_rng(1)
    lags = {b: _lag1(np.stack([colored_noise(b, 100, 3, rng) for _ in range(800)])) for b in (0.0, 1.0, 2.0)}
    assert abs(lags[0.0]) < 0.03  # white: independent steps
    assert 0.55 < lags[1.0] < 0.8  # pink: slow drifts dominate
    assert lags[2.0] > 0.9  # red: nearly a random walk


def test_process_draws_a_new_sequence_at_reset_and_after_its_horizon() -> None:
    proc = ColoredNoiseProcess(1.0, dims=2, horizon=4, seed=3)
    first = np.stack([proc.sample() for _ in range(2)])
    proc.reset()
    second = np.stack([proc.sample() for _ in range(6)])  # crosses the 4-step horizon
    again = ColoredNoiseProcess(1.0, dims=2, horizon=4, seed=3)
    assert np.array_equal(first, np.stack([again.sample() for _ in range(2)]))  # seeded: reproducible
    assert not np.allclose(first, second[:2])
    assert second.shape == (6, 2)


@pytest.mark.parametrize("beta", [-0.5, 2.5, float("nan"), "pink"])
def test_bad_beta_is_a_one_line_error(beta: object) -> None:
    with pytest.raises(ValueError, match="beta must be in"):
        ColoredNoiseProcess(beta, dims=2, horizon=10)  # type: ignore[arg-type]


def test_act_uses_the_given_noise() -> None:
    torch.manual_seed(0)
    nets = AgentNetworks(NetworkConfig(image_size=32, feature_dim=8, hidden_dim=16, encoder_channels=4))
    images = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    proprio, task = torch.zeros(1, nets.cfg.proprio_dim), torch.zeros(1, dtype=torch.int64)
    mean = nets.act(images, proprio, task, deterministic=True)
    zero = nets.act(images, proprio, task, deterministic=False, noise=torch.zeros(1, nets.cfg.action_dim))
    one = nets.act(images, proprio, task, deterministic=False, noise=torch.ones(1, nets.cfg.action_dim))
    assert torch.allclose(zero, mean)  # a zero draw is the mean action
    assert torch.all(one > mean)  # a positive draw moves every dimension up
    with pytest.raises(ValueError, match="noise has shape"):
        nets.act(images, proprio, task, deterministic=False, noise=torch.ones(1, 2))
