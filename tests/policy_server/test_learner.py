"""The learner: pre-training publishes weights, checkpoints resume, recipes sample the right data,
the update-to-data ratio and the WSRL warm-up are respected."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policy_server.calql import AgentConfig
from policy_server.learner import (
    Learner,
    LearnerConfig,
    config_from_dict,
    config_to_dict,
    draw_bc_batch,
    policy_parameters,
)
from policy_server.networks import NetworkConfig
from policy_server.replay_buffer import BufferSpec, ReplayBuffer, Source

SIZE = 32


def _cfg(**kw) -> LearnerConfig:
    base = {
        "batch_size": 8, "utd_ratio": 2.0, "publish_every": 5, "checkpoint_every_s": 1e9, "log_every": 1000,
        "wsrl_warmup_transitions": 6, "bc_warmup_steps": 0, "online_critic_warmup_updates": 0,
        "network": NetworkConfig(image_size=SIZE, hidden_dim=32, feature_dim=16, encoder_channels=8),
        "agent": AgentConfig(cql_num_actions=2),
    }  # fmt: skip
    return LearnerConfig(**{**base, **kw})


def _episode(buf: ReplayBuffer, steps: int, source: str, task: int = 0, success: bool = True) -> None:
    rng = np.random.default_rng(steps)
    frames = rng.integers(0, 255, (steps + 1, SIZE, SIZE, 3), dtype=np.uint8)
    proprio = rng.normal(size=(steps + 1, 9)).astype(np.float32)
    actions = rng.uniform(-1, 1, (steps, 5)).astype(np.float32)
    rewards = np.zeros(steps, np.float32)
    rewards[-1] = float(success)
    buf.add_episode(frames, proprio, actions, rewards, task, terminated=success, source=source)


@pytest.fixture
def buffer(tmp_path) -> ReplayBuffer:
    buf = ReplayBuffer(tmp_path / "buffer", BufferSpec((SIZE, SIZE), 9, 5, 0.97), capacity=2000)
    for i in range(4):
        _episode(buf, 5 + i, "demos", task=i % 2)
    buf.flush()
    yield buf
    buf.close()


def test_pretrain_publishes_weights_and_checkpoint_with_config(tmp_path, buffer) -> None:
    learner = Learner(_cfg(), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    learner.pretrain(steps=6, progress=False)
    assert learner.counters["pretrain_updates"] == 6
    assert learner.weights.latest_version() == learner.counters["weight_version"] >= 2  # every 5 + final
    _state, meta = learner.weights.load()
    assert meta.config["network"]["image_size"] == SIZE and meta.step == 6
    ckpt = json.loads(next((tmp_path / "run" / "checkpoints").glob("*.json")).read_text())
    assert ckpt["config"]["learner"]["recipe"] == "calql"


def test_old_weight_versions_are_deleted_and_milestones_kept(tmp_path, buffer) -> None:
    cfg = _cfg(publish_every=1, keep_weight_versions=3, milestone_every=4, pretrain_steps=10)
    learner = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    learner.pretrain(steps=10, progress=False)
    steps = [learner.milestones.read_meta(v).step for v in learner.milestones.versions()]
    assert steps == [10], "pre-training keeps only its final version"
    first, meta = learner.milestones.load(learner.milestones.versions()[0])
    assert meta.config["network"]["image_size"] == SIZE and set(first) == set(learner.nets.state_dict())
    learner.pretrain(steps=10, progress=False)  # resumed with nothing to do: no second milestone
    _episode(buffer, 30, "online")
    buffer.flush()
    for _ in range(9):  # updates 11..19: milestones at the first at or after every 4
        learner.update("online")
    top = learner.counters["weight_version"]
    assert learner.weights.versions() == [top - 2, top - 1, top]
    assert len(list((tmp_path / "run" / "weights").iterdir())) == 6, "json + safetensors of 3 versions"
    steps = [learner.milestones.read_meta(v).step for v in learner.milestones.versions()]
    assert steps == [10, 12, 16]
    # A restart keeps counting from the saved milestones: update 20 crosses the next boundary.
    learner.save_checkpoint()
    again = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    again.update("online")
    assert len(again.milestones.versions()) == 4
    with pytest.raises(ValueError, match="keep_weight_versions"):
        _cfg(keep_weight_versions=-1)


def test_bc_warmup_trains_the_encoder_then_calql_trains_the_heads_on_cached_features(
    tmp_path, buffer
) -> None:
    learner = Learner(_cfg(bc_warmup_steps=3), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    encoder0 = [p.detach().clone() for p in learner.nets.encoder.parameters()]
    learner.pretrain(steps=0, progress=False)
    assert learner.counters["bc_updates"] == 3 and learner.counters["pretrain_updates"] == 0
    encoder1 = [p.detach().clone() for p in learner.nets.encoder.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(encoder0, encoder1, strict=True))  # BC trains it
    critic1 = [p.detach().clone() for p in learner.nets.critic.parameters()]
    actor1 = [p.detach().clone() for p in learner.nets.actor.parameters()]
    assert learner.uses_cached_features("pretrain")
    learner.pretrain(steps=4, progress=False)
    assert learner.counters["bc_updates"] == 3 and learner.counters["pretrain_updates"] == 4
    for a, b in zip(encoder1 + actor1, [*learner.nets.encoder.parameters(), *learner.nets.actor.parameters()],
                    strict=True):  # fmt: skip
        torch.testing.assert_close(a, b)  # the encoder is frozen, the actor is the BC policy
    assert any(not torch.equal(a, b) for a, b in zip(critic1, learner.nets.critic.parameters(), strict=True))
    assert learner.features.misses > 0  # Cal-QL read the features, not the frames
    resumed = Learner(_cfg(bc_warmup_steps=3), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    assert resumed.counters == learner.counters
    assert any(k.startswith("opt.bc.") for k in resumed.agent.optimizer_state())  # BC optimiser resumed
    resumed.pretrain(steps=4, progress=False)  # both phases done: nothing more
    assert resumed.counters["bc_updates"] == 3 and resumed.counters["pretrain_updates"] == 4


def test_bc_batches_mix_in_successful_prior_episodes_only(tmp_path, buffer) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="no successful prior episodes"):
        draw_bc_batch(buffer, rng, 8, 0.5, "demos")  # the fixture holds demos only
    _episode(buffer, 11, "prior", success=False)
    buffer.flush()
    with pytest.raises(ValueError, match="no successful prior episodes"):
        draw_bc_batch(buffer, rng, 8, 0.5, "demos")
    _episode(buffer, 12, "prior", task=1)
    buffer.flush()
    batch, with_prior = draw_bc_batch(buffer, rng, 8, 0.5, "demos")
    sources = batch.sources.tolist()
    assert with_prior and sources.count(int(Source.PRIOR)) == 4 and sources.count(int(Source.DEMOS)) == 4
    assert (batch.mc_returns[batch.sources == Source.PRIOR] > 0).all(), "failed prior episodes are skipped"
    assert batch.frames is not None and batch.frames.shape == (8, SIZE, SIZE, 3)
    # No prior share: exactly the demos-only batch of before (same draws from the same generator).
    plain, with_prior = draw_bc_batch(buffer, np.random.default_rng(3), 8, 0.0, "demos")
    expected = buffer.sample(8, np.random.default_rng(3), source="demos")
    assert not with_prior and np.array_equal(plain.actions, expected.actions)
    learner = Learner(_cfg(bc_warmup_steps=2, bc_prior_fraction=0.5), tmp_path / "run", buffer, device="cpu",
                      log=lambda _m: None)  # fmt: skip
    learner.pretrain(steps=0, progress=False)
    assert learner.counters["bc_updates"] == 2
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="bc_prior_fraction"):
            _cfg(bc_prior_fraction=bad)


def test_bc_warmup_ends_with_the_average_of_its_iterates_and_resumes_it(tmp_path, buffer) -> None:
    def policy(learner: Learner) -> list[torch.Tensor]:
        return [p.clone() for p in policy_parameters(learner.nets)]

    start = Learner(_cfg(bc_warmup_steps=3), tmp_path / "plain", buffer, device="cpu", log=lambda _m: None)
    init = policy(start)
    start.pretrain(steps=0, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(init, policy(start), strict=True))  # BC moved it
    # An average that hardly moves ends the warm-up next to where it began (same seed, same init).
    slow = Learner(_cfg(bc_warmup_steps=3, bc_average_tau=1e-6), tmp_path / "slow", buffer, device="cpu",
                   log=lambda _m: None)  # fmt: skip
    slow.pretrain(steps=0, progress=False)
    assert slow.bc_average is None and slow.counters["bc_updates"] == 3
    for a, b in zip(init, policy(slow), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    # Stopped mid-warm-up (a checkpoint after every update), the average is restored with the run.
    cfg = _cfg(bc_warmup_steps=4, bc_average_tau=0.3, checkpoint_every_s=0.0)
    first = Learner(cfg, tmp_path / "resume", buffer, device="cpu", log=lambda _m: None)
    first.update("bc")
    first.update("bc")
    assert first.bc_average is not None
    second = Learner(cfg, tmp_path / "resume", buffer, device="cpu", log=lambda _m: None)
    assert second.bc_average is not None and second.counters["bc_updates"] == 2
    for key, value in first.bc_average.state().items():
        torch.testing.assert_close(second.bc_average.state()[key], value)
    logged: list[str] = []  # resumed mid-warm-up with the average switched off: dropped, and said so
    third = Learner(_cfg(bc_warmup_steps=4, bc_average_tau=0.0), tmp_path / "resume", buffer, device="cpu",
                    log=logged.append)  # fmt: skip
    assert third.bc_average is None and third.counters["bc_updates"] == 2
    assert any("last iterate" in m for m in logged)
    second.pretrain(steps=0, progress=False)
    assert second.counters["bc_updates"] == 4 and second.bc_average is None
    with pytest.raises(ValueError, match="does not fit"):
        first.bc_average.load({"bcavg.0": torch.zeros(1)})
    with pytest.raises(ValueError, match="bc_average_tau"):
        _cfg(bc_average_tau=1.5)


def test_end_to_end_pretraining_without_warmup_trains_the_encoder(tmp_path, buffer) -> None:
    learner = Learner(_cfg(), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    assert not learner.uses_cached_features("pretrain")
    encoder0 = [p.detach().clone() for p in learner.nets.encoder.parameters()]
    learner.pretrain(steps=2, progress=False)
    assert any(
        not torch.equal(a, b) for a, b in zip(encoder0, learner.nets.encoder.parameters(), strict=True)
    )


def test_restart_resumes_weights_optimizer_and_counters(tmp_path, buffer) -> None:
    first = Learner(_cfg(), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    first.pretrain(steps=4, progress=False)
    second = Learner(_cfg(), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    assert second.resumed and second.counters == first.counters
    for a, b in zip(first.nets.parameters(), second.nets.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(second.agent.log_alpha, first.agent.log_alpha)
    second.pretrain(steps=4, progress=False)  # already done: nothing more to do
    assert second.counters["pretrain_updates"] == 4
    version_before = second.counters["weight_version"]
    assert second.publish() == version_before + 1


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, buffer) -> None:
    learner = Learner(_cfg(), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    learner.pretrain(steps=2, progress=False)
    learner.update("pretrain")
    learner.save_checkpoint()
    newest = sorted((tmp_path / "run" / "checkpoints").glob("*.safetensors"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    messages: list[str] = []
    again = Learner(_cfg(), tmp_path / "run", buffer, device="cpu", log=messages.append)
    assert again.resumed and again.counters["pretrain_updates"] == 2
    assert any("skipping checkpoint" in m for m in messages)
    assert newest.exists(), "a damaged checkpoint is reported, not deleted"


def test_other_network_config_refuses_to_resume(tmp_path, buffer) -> None:
    Learner(_cfg(), tmp_path / "run", buffer, device="cpu", log=lambda _m: None).save_checkpoint()
    other = _cfg(network=NetworkConfig(image_size=SIZE, hidden_dim=64, feature_dim=16, encoder_channels=8))
    with pytest.raises(ValueError, match="another network config"):
        Learner(other, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)


def test_wsrl_waits_for_warmup_then_trains_on_online_data_at_utd(tmp_path, buffer) -> None:
    learner = Learner(_cfg(recipe="wsrl"), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    assert learner.update_budget() == 0
    _episode(buffer, 4, "online")
    assert learner.update_budget() == 0, "4 online transitions < warm-up of 6"
    _episode(buffer, 3, "online")
    assert learner.update_budget() == 14  # utd 2 x 7 transitions
    assert set(learner.sample("online").sources.tolist()) == {int(Source.ONLINE)}
    done = learner.train_online(
        stop=lambda: learner.counters["online_updates"] > 0 and learner.update_budget() == 0
    )
    assert done == 14 and learner.counters["online_updates"] == 14, "never more updates than utd x data"


@pytest.mark.parametrize("once", [True, False])
def test_online_actor_trains_once_per_transition_critic_every_update(tmp_path, buffer, once: bool) -> None:
    """RLPD/SERL high-UTD schedule: at UTD 2, the actor (and temperature) step on every 2nd update."""
    _episode(buffer, 5, "online")
    cfg = _cfg(recipe="wsrl", wsrl_warmup_transitions=1, actor_once_per_transition=once)
    learner = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    actor_moved, critic_moved = [], []

    def moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
        return any(not torch.equal(a, p) for a, p in zip(before, module.parameters(), strict=True))

    for _ in range(4):
        actor = [p.clone() for p in learner.nets.actor.parameters()]
        critic = [p.clone() for p in learner.nets.critic.parameters()]
        metrics = learner.update("online")
        actor_moved.append(moved(actor, learner.nets.actor))
        critic_moved.append(moved(critic, learner.nets.critic))
        assert ("losses/actor" in metrics) == actor_moved[-1] and "losses/td" in metrics
    assert critic_moved == [True] * 4
    assert actor_moved == ([False, True, False, True] if once else [True] * 4)
    learner.update("pretrain")  # Cal-QL pre-training without a BC warm-up trains the actor
    assert learner.counters["pretrain_updates"] == 1


def test_critic_first_holds_the_actor_for_the_first_online_updates(tmp_path, buffer) -> None:
    """online_critic_warmup_updates: the critic trains from the first online update, the actor and the
    temperature only after the warm-up (then at actor UTD 1 as usual)."""
    _episode(buffer, 5, "online")
    cfg = _cfg(recipe="calql", online_critic_warmup_updates=3, utd_ratio=1.0)
    learner = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    trained = []
    for _ in range(5):
        actor = [p.clone() for p in learner.nets.actor.parameters()]
        alpha = learner.agent.log_alpha.detach().clone()
        metrics = learner.update("online")
        params = learner.nets.actor.parameters()
        moved = any(not torch.equal(a, p) for a, p in zip(actor, params, strict=True))
        alpha_moved = not torch.equal(alpha, learner.agent.log_alpha.detach())
        assert moved == ("losses/actor" in metrics) == alpha_moved
        trained.append(moved)
    assert trained == [False, False, False, True, True]
    with pytest.raises(ValueError, match="online_critic_warmup_updates"):
        _cfg(online_critic_warmup_updates=-1)


def test_rlpd_batches_are_half_offline_half_online(tmp_path, buffer) -> None:
    _episode(buffer, 5, "online")
    learner = Learner(_cfg(recipe="rlpd"), tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    sources = learner.sample("online").sources
    assert (sources == int(Source.ONLINE)).sum() == 4 and (sources != int(Source.ONLINE)).sum() == 4


def test_config_round_trip_and_unknown_keys() -> None:
    cfg = _cfg(recipe="rlpd")
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    with pytest.raises(ValueError, match="unknown agent config key"):
        config_from_dict({"agent": {"gama": 0.9}})
    with pytest.raises(ValueError, match="unknown recipe"):
        LearnerConfig(recipe="ppo")


def test_config_of_the_wrong_shape_or_type_is_a_value_error(tmp_path) -> None:
    from policy_server.learner import load_config_file

    with pytest.raises(ValueError, match="learner config must be a JSON object"):
        config_from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="network config must be a JSON object"):
        config_from_dict({"network": 5})
    with pytest.raises(ValueError, match="learner config: batch_size must be int, got '64'"):
        config_from_dict({"batch_size": "64"})
    with pytest.raises(ValueError, match="learner config: seed must be int"):
        config_from_dict({"seed": "x"})  # a field nothing else validates
    with pytest.raises(ValueError, match="agent config: tau must be float"):
        config_from_dict({"agent": {"tau": "small"}})
    path = tmp_path / "config.json"
    path.write_text("not json {")
    with pytest.raises(ValueError, match="not a JSON learner config") as err:
        load_config_file(path)
    assert str(path) in str(err.value)


def _actor_params(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("actor.") and torch.is_floating_point(v)}


def test_online_publishes_a_polyak_average_of_the_policy_and_resumes_it(tmp_path, buffer) -> None:
    """policy_average_tau: pre-training publishes the trained networks; online, encoder and actor are
    published as an average that starts at the pre-trained policy and moves by tau per actor update
    (critics as trained); the average is checkpointed and a restarted learner resumes it."""
    _episode(buffer, 5, "online")
    cfg = _cfg(recipe="wsrl", wsrl_warmup_transitions=1, utd_ratio=1.0, policy_average_tau=0.25)
    learner = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    learner.pretrain(steps=2, progress=False)
    pre, _ = learner.weights.load()
    for k, v in learner.nets.state_dict().items():
        torch.testing.assert_close(pre[k], v)  # not fine-tuning yet: the trained networks
    pre_actor = {k: v.clone() for k, v in _actor_params(pre).items()}
    trained_after: list[dict[str, torch.Tensor]] = []
    for _ in range(3):
        learner.update("online")
        trained_after.append({k: v.clone() for k, v in _actor_params(learner.nets.state_dict()).items()})
    expected = dict(pre_actor)
    for trained in trained_after:  # avg <- avg + tau * (trained - avg), after every actor update
        expected = {k: v + 0.25 * (trained[k] - v) for k, v in expected.items()}
    learner.publish()
    published, _ = learner.weights.load()
    for k, v in expected.items():
        torch.testing.assert_close(published[k], v)
        assert not torch.allclose(published[k], trained_after[-1][k])
    for k, v in learner.nets.state_dict().items():
        if k.startswith("critic."):
            torch.testing.assert_close(published[k], v)
    learner.save_checkpoint()
    again = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    assert again.resumed and again.policy_networks() is again.average
    for k, v in expected.items():
        torch.testing.assert_close(again.published_state()[k], v)
        torch.testing.assert_close(again.nets.state_dict()[k], trained_after[-1][k])


def test_no_average_publishes_the_trained_policy(tmp_path, buffer) -> None:
    _episode(buffer, 5, "online")
    cfg = _cfg(recipe="wsrl", wsrl_warmup_transitions=1, policy_average_tau=0.0)
    learner = Learner(cfg, tmp_path / "run", buffer, device="cpu", log=lambda _m: None)
    learner.update("online")
    learner.publish()
    published, _ = learner.weights.load()
    assert learner.average is None and learner.policy_networks() is learner.nets
    for k, v in learner.nets.state_dict().items():
        torch.testing.assert_close(published[k], v)
    with pytest.raises(ValueError, match="policy_average_tau"):
        _cfg(policy_average_tau=2.0)
