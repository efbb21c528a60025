"""Cal-QL update: the lower bound, terminal vs truncated targets, finite updates, and a small
learning problem it must solve (task-conditioned, from offline data only)."""

from __future__ import annotations

import pytest
import torch

from policy_server.calql import (
    Agent,
    AgentConfig,
    calql_lower_bound,
    clip_grad_norm,
    crr_weights,
    non_prior_mask,
    success_weighted_mse,
    td_target,
)
from policy_server.networks import AgentNetworks, NetworkConfig
from policy_server.replay_buffer import Source


def test_calql_lower_bound_floors_policy_q_by_mc_return() -> None:
    q = torch.tensor([[[0.1, 2.0], [-1.0, 0.5]]], requires_grad=True)  # (critics=1, B=2, samples=2)
    mc = torch.tensor([1.0, -2.0])
    bounded = calql_lower_bound(q, mc)
    torch.testing.assert_close(bounded, torch.tensor([[[1.0, 2.0], [-1.0, 0.5]]]))
    bounded.sum().backward()
    torch.testing.assert_close(q.grad, torch.tensor([[[0.0, 1.0], [1.0, 1.0]]]))  # floored values get no push


def test_truncated_transitions_bootstrap_and_terminal_ones_do_not() -> None:
    rewards = torch.tensor([0.0, 1.0, 0.0])
    terminals = torch.tensor(
        [0.0, 1.0, 0.0]
    )  # second: success (terminal); first/third: mid-episode/truncated
    next_q = torch.tensor([0.5, 0.9, 0.8])
    torch.testing.assert_close(td_target(rewards, terminals, next_q, 0.9), torch.tensor([0.45, 1.0, 0.72]))


def test_clip_grad_norm_matches_torch() -> None:
    torch.manual_seed(0)
    for scale in (0.01, 100.0):  # below and above the limit
        params = [torch.zeros(5, 3, requires_grad=True), torch.zeros(4, requires_grad=True)]
        ref = [p.detach().clone().requires_grad_() for p in params]
        for p, r in zip(params, ref, strict=True):
            p.grad = torch.randn_like(p) * scale
            r.grad = p.grad.clone()
        params.append(torch.zeros(2, requires_grad=True))  # no gradient: skipped
        clip_grad_norm(params, 1.0)
        torch.nn.utils.clip_grad_norm_(ref, 1.0)
        for p, r in zip(params, ref, strict=False):
            torch.testing.assert_close(p.grad, r.grad)


def _bandit_batch(n: int, size: int = 32) -> dict[str, torch.Tensor]:
    """One-step episodes: reward 1 when the sign of action[0] matches the task (+ forward, - backward)."""
    g = torch.Generator().manual_seed(1)
    tasks = torch.randint(0, 2, (n,), generator=g)
    actions = torch.rand(n, 5, generator=g) * 2 - 1
    sign = torch.where(tasks == 0, 1.0, -1.0)
    rewards = (actions[:, 0] * sign > 0).float()
    frames = torch.full((n, size, size, 3), 128, dtype=torch.uint8)  # uninformative: the task must decide
    return {
        "frames": frames, "proprio": torch.zeros(n, 9), "actions": actions, "rewards": rewards,
        "next_frames": frames, "next_proprio": torch.zeros(n, 9), "terminals": torch.ones(n),
        "tasks": tasks, "mc_returns": rewards,
    }  # fmt: skip


def test_update_is_finite_and_reports_metrics() -> None:
    torch.manual_seed(0)
    agent = Agent(AgentNetworks(NetworkConfig(image_size=32, hidden_dim=32)), AgentConfig(bc_weight=1.0))
    metrics = agent.update(_bandit_batch(32))
    for key in (
        "losses/td",
        "losses/cql_gap",
        "losses/actor",
        "losses/bc",
        "charts/alpha",
        "charts/calql_bound_rate",
    ):
        assert key in metrics and torch.isfinite(torch.tensor(metrics[key])), key


def test_an_imitation_only_actor_ignores_the_critic() -> None:
    """actor_q_weight = 0 (the bench's bc_finetune control): the actor's step is the same whatever the
    critic says; with the RL loss on, it is not."""
    batch = _bandit_batch(32)

    def actor_after_update(q_weight: float, critic_scale: float) -> list[torch.Tensor]:
        torch.manual_seed(0)
        nets = AgentNetworks(NetworkConfig(image_size=32, hidden_dim=32))
        with torch.no_grad():
            for p in nets.critic.parameters():
                p.mul_(critic_scale)
        agent = Agent(nets, AgentConfig(cql_alpha=0.0, bc_weight=1.0, actor_q_weight=q_weight))
        torch.manual_seed(1)
        agent.update(batch)
        return [p.detach().clone() for p in nets.actor.parameters()]

    for a, b in zip(actor_after_update(0.0, 1.0), actor_after_update(0.0, 3.0), strict=True):
        torch.testing.assert_close(a, b)
    rl = zip(actor_after_update(1.0, 1.0), actor_after_update(1.0, 3.0), strict=True)
    assert any(not torch.allclose(a, b) for a, b in rl)
    with pytest.raises(ValueError, match="needs a loss"):
        AgentConfig(actor_q_weight=0.0, bc_weight=0.0)


@pytest.mark.parametrize("cql_alpha", [0.0, 1.0])
def test_learns_task_conditioned_bandit_from_offline_data(cql_alpha: float) -> None:
    torch.manual_seed(0)
    cfg = NetworkConfig(image_size=32, hidden_dim=64, feature_dim=16, encoder_channels=8)
    agent = Agent(AgentNetworks(cfg), AgentConfig(cql_alpha=cql_alpha, actor_lr=1e-3, critic_lr=1e-3))
    data = _bandit_batch(512)
    g = torch.Generator().manual_seed(2)
    for _ in range(150):
        idx = torch.randint(0, 512, (64,), generator=g)
        agent.update({k: v[idx] for k, v in data.items()})
    test = _bandit_batch(64)
    actions = agent.nets.act(test["frames"], test["proprio"], test["tasks"])
    sign = torch.where(test["tasks"] == 0, 1.0, -1.0)
    assert (actions[:, 0] * sign > 0).float().mean() >= 0.95


@pytest.mark.parametrize(("target", "rises"), [(50.0, True), (-50.0, False)])
def test_temperature_moves_the_entropy_toward_the_configured_target(target: float, rises: bool) -> None:
    """AgentConfig.entropy_per_action_dim: below the target the temperature rises (more spread),
    above it the temperature falls."""
    torch.manual_seed(0)
    nets = AgentNetworks(NetworkConfig(image_size=32, hidden_dim=32))
    assert Agent(nets, AgentConfig()).target_entropy == -2.0 * nets.cfg.action_dim
    agent = Agent(nets, AgentConfig(entropy_per_action_dim=target / nets.cfg.action_dim))
    before = agent.log_alpha.item()
    agent.update(_bandit_batch(16))
    assert (agent.log_alpha.item() > before) == rises


def test_optimizer_state_round_trip() -> None:
    torch.manual_seed(0)
    nets = AgentNetworks(NetworkConfig(image_size=32, hidden_dim=32))
    agent = Agent(nets, AgentConfig())
    agent.update(_bandit_batch(16))
    flat = agent.optimizer_state()
    assert all(isinstance(v, torch.Tensor) for v in flat.values())
    other = Agent(AgentNetworks(NetworkConfig(image_size=32, hidden_dim=32)), AgentConfig())
    other.load_optimizer_state(flat)
    torch.testing.assert_close(other.log_alpha, agent.log_alpha)
    key = next(k for k in flat if k.startswith("opt.critic.") and k.endswith("exp_avg"))
    idx = int(key.split(".")[2])
    torch.testing.assert_close(other.critic_opt.state_dict()["state"][idx]["exp_avg"], flat[key])


def test_bad_agent_config_rejected() -> None:
    with pytest.raises(ValueError, match="gamma"):
        AgentConfig(gamma=1.5)
    with pytest.raises(ValueError, match="actor_objective"):
        AgentConfig(actor_objective="awac")
    with pytest.raises(ValueError, match="crr_beta"):
        AgentConfig(actor_objective="crr", crr_beta=-0.1)


def test_crr_weights_binary_and_exponential() -> None:
    adv = torch.tensor([-1.0, -0.01, 0.0, 0.02, 10.0])
    torch.testing.assert_close(crr_weights(adv, 0.0), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))
    expo = crr_weights(adv, 0.5)
    torch.testing.assert_close(expo[:4], torch.exp(adv[:4] / 0.5))
    assert expo[4].item() == 20.0  # capped


def test_non_prior_mask_keeps_demos_failures_and_online() -> None:
    batch = {"rewards": torch.zeros(4), "sources": torch.tensor([int(s) for s in
             (Source.PRIOR, Source.DEMOS, Source.FAILURES, Source.ONLINE)])}  # fmt: skip
    torch.testing.assert_close(non_prior_mask(batch), torch.tensor([0.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(non_prior_mask({"rewards": torch.zeros(2)}), torch.ones(2))


def _crr_agent(beta: float) -> Agent:
    torch.manual_seed(0)
    cfg = NetworkConfig(image_size=32, hidden_dim=64, feature_dim=16, encoder_channels=8)
    return Agent(AgentNetworks(cfg), AgentConfig(actor_objective="crr", crr_beta=beta, cql_alpha=0.0,
                                                 actor_lr=1e-3, critic_lr=1e-3))  # fmt: skip


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_crr_imitates_only_what_the_critic_prefers(beta: float) -> None:
    """The bandit's data actions are uniform and no episode is marked successful (mc_returns 0), so
    filtered BC has nothing to imitate and plain BC would learn the mean action 0; CRR learns from the
    critic which half of the actions pays and imitates that half."""
    agent = _crr_agent(beta)
    data = {**_bandit_batch(512), "mc_returns": torch.zeros(512),
            "sources": torch.full((512,), int(Source.ONLINE))}  # fmt: skip
    g = torch.Generator().manual_seed(2)
    for _ in range(200):
        idx = torch.randint(0, 512, (64,), generator=g)
        metrics = agent.update({k: v[idx] for k, v in data.items()})
    assert 0.2 < metrics["charts/crr_kept"] <= 1.0 and "losses/crr_mse" in metrics
    test = _bandit_batch(64)
    actions = agent.nets.act(test["frames"], test["proprio"], test["tasks"])
    sign = torch.where(test["tasks"] == 0, 1.0, -1.0)
    assert (actions[:, 0] * sign > 0).float().mean() >= 0.9


def test_crr_never_imitates_prior_data() -> None:
    agent = _crr_agent(0.0)
    before = [p.detach().clone() for p in agent.nets.actor.parameters()]
    batch = {**_bandit_batch(64), "sources": torch.full((64,), int(Source.PRIOR))}
    metrics = agent.update(batch)
    assert metrics["losses/actor"] == 0.0
    for a, b in zip(before, agent.nets.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach())


def test_success_weighted_mse_ignores_failed_episodes() -> None:
    pred = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    target = torch.zeros(3, 2)
    mc = torch.tensor([0.9, 0.0, 0.5])  # the second transition is from a failed episode
    torch.testing.assert_close(success_weighted_mse(pred, target, mc), torch.tensor(0.125))
    assert success_weighted_mse(pred, target, torch.zeros(3)).item() == 0.0


def _imitation_batch(n: int) -> dict[str, torch.Tensor]:
    """The demo action is written in the image (bright frame: +1, dark frame: -1); rewards are 0, so
    only a BC term can teach it, and only through the encoder can the actor see it."""
    g = torch.Generator().manual_seed(3)
    bright = torch.randint(0, 2, (n,), generator=g)
    frames = (bright * 200 + 20).to(torch.uint8).view(n, 1, 1, 1).expand(n, 32, 32, 3).contiguous()
    actions = torch.zeros(n, 5)
    actions[:, 0] = bright.float() * 1.6 - 0.8
    return {
        "frames": frames, "proprio": torch.zeros(n, 9), "actions": actions, "rewards": torch.zeros(n),
        "next_frames": frames, "next_proprio": torch.zeros(n, 9), "terminals": torch.zeros(n),
        "tasks": torch.zeros(n, dtype=torch.long), "mc_returns": torch.full((n,), 0.5),
    }  # fmt: skip


def _imitation_error(encoder_bc_weight: float) -> tuple[float, dict[str, float], bool]:
    """Train on :func:`_imitation_batch`; (mean |error| of the imitated action, last metrics, whether
    the encoder's weights moved)."""
    torch.manual_seed(0)
    cfg = NetworkConfig(image_size=32, hidden_dim=32, feature_dim=8, encoder_channels=4)
    nets = AgentNetworks(cfg)
    encoder_before = [p.detach().clone() for p in nets.encoder.parameters()]
    agent = Agent(nets, AgentConfig(cql_alpha=0.0, bc_weight=1.0, encoder_bc_weight=encoder_bc_weight,
                                    actor_lr=1e-3, critic_lr=1e-3))  # fmt: skip
    data = _imitation_batch(256)
    for _ in range(200):
        idx = torch.randint(0, 256, (32,))
        metrics = agent.update({k: v[idx] for k, v in data.items()})
    actions = nets.act(data["frames"][:64], data["proprio"][:64], data["tasks"][:64])
    error = (actions[:, 0] - data["actions"][:64, 0]).abs().mean().item()
    moved = any(not torch.equal(a, b) for a, b in zip(encoder_before, nets.encoder.parameters(), strict=True))
    return error, metrics, moved


def test_encoder_bc_teaches_the_encoder_what_the_demos_show() -> None:
    without, metrics_without, moved_without = _imitation_error(0.0)
    with_bc, metrics_with, moved_with = _imitation_error(5.0)
    assert "losses/encoder_bc" in metrics_with and "losses/encoder_bc" not in metrics_without
    assert moved_without and moved_with  # the critic trains the encoder in both cases
    assert with_bc < 0.5 * without  # measured 0.29 against 0.79


def test_bc_update_imitates_demos_and_fits_the_spread_without_touching_the_trunk_through_it() -> None:
    torch.manual_seed(0)
    nets = AgentNetworks(NetworkConfig(image_size=32, hidden_dim=32, feature_dim=8, encoder_channels=4))
    # The spread's gradient reaches only the output layer (its log-std rows), not the trunk.
    state = torch.randn(8, nets.cfg.feature_dim + nets.cfg.proprio_dim + nets.cfg.task_dim)
    _mean, log_std = nets.actor.mean_and_spread(state)
    log_std.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in nets.actor.net[:-1].parameters())
    assert nets.actor.net[-1].weight.grad[: nets.cfg.action_dim].abs().sum() == 0  # mean rows untouched
    nets.zero_grad(set_to_none=True)

    agent = Agent(nets, AgentConfig(actor_lr=3e-3))
    data = _imitation_batch(256)
    left = data["actions"][:, 0] > 0  # the demo action is where a bright square is, not how bright
    frames = torch.full((256, 32, 32, 3), 20, dtype=torch.uint8)
    frames[left, 8:20, 2:14] = 230
    frames[~left, 8:20, 18:30] = 230
    data["frames"] = data["next_frames"] = frames
    data["actions"][:, 1:] = 0.3 + 0.05 * torch.randn(256, 4, generator=torch.Generator().manual_seed(4))
    log_std_start = None
    for _ in range(300):
        idx = torch.randint(0, 256, (32,))
        metrics = agent.bc_update({k: v[idx] for k, v in data.items()})
        log_std_start = metrics["charts/bc_log_std"] if log_std_start is None else log_std_start
    actions = nets.act(data["frames"][:64], data["proprio"][:64], data["tasks"][:64])
    assert (actions[:, 0] - data["actions"][:64, 0]).abs().mean() < 0.15  # seen through the encoder
    assert metrics["charts/bc_log_std"] < log_std_start - 0.5  # the spread shrinks toward the demos'
    with pytest.raises(ValueError, match="frames"):
        agent.bc_update({k: v for k, v in data.items() if k != "frames"})


def test_bc_never_imitates_prior_data() -> None:
    from policy_server.calql import imitation_returns
    from policy_server.replay_buffer import Source

    batch = {
        "mc_returns": torch.tensor([0.9, 0.8, 0.7, 0.0]),
        "sources": torch.tensor(
            [int(Source.DEMOS), int(Source.PRIOR), int(Source.ONLINE), int(Source.FAILURES)]
        ),
    }
    torch.testing.assert_close(imitation_returns(batch), torch.tensor([0.9, 0.0, 0.7, 0.0]))
    assert imitation_returns({"mc_returns": batch["mc_returns"]}) is batch["mc_returns"]  # no sources: all


def test_bc_update_imitates_prior_data_only_when_asked() -> None:
    from policy_server.replay_buffer import Source

    torch.manual_seed(0)
    nets = AgentNetworks(NetworkConfig(image_size=32, hidden_dim=32, feature_dim=8, encoder_channels=4))
    agent = Agent(nets, AgentConfig())
    batch = _imitation_batch(16)
    batch["sources"] = torch.full((16,), int(Source.PRIOR))  # successful prior episodes only
    before = [p.detach().clone() for p in nets.actor.parameters()]
    assert agent.bc_update(batch)["losses/bc_warmup"] == 0.0  # the default: prior data is not imitated
    assert all(torch.equal(a, b) for a, b in zip(before, nets.actor.parameters(), strict=True))
    assert agent.bc_update(batch, imitate_prior=True)["losses/bc_warmup"] > 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, nets.actor.parameters(), strict=True))
