"""The learning benchmark: one quick run of every method writes JSON + PNG, identical harnesses
(same env steps, same evaluation points), a reset-free training stream and the online data in each
buffer; plus config validation and dataset reuse."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
import torch

from policy_server import learning_bench as lb
from policy_server.learning_bench import (
    METHODS,
    LearningBenchConfig,
    evaluate_forward,
    make_env,
    prepare_data,
    run_learning_bench,
)
from policy_server.networks import AgentNetworks
from policy_server.replay_buffer import ReplayBuffer
from robofume.sim.mock_arm_env import MockArmEnv


def test_quick_bench_runs_every_method_reset_free_and_writes_json_and_png(tmp_path, monkeypatch) -> None:
    train_envs: list[tuple[MockArmEnv, list[int]]] = []
    make_env = lb.make_env

    def spy(cfg: LearningBenchConfig, role: str) -> MockArmEnv:
        env = make_env(cfg, role)
        if role == "train":
            train_envs.append((env, lb.count_scene_resets(env)))
        return env

    monkeypatch.setattr(lb, "make_env", spy)
    cfg = LearningBenchConfig.quick()
    result = run_learning_bench(cfg, str(tmp_path), progress=False)

    saved = json.loads((tmp_path / "learning.json").read_text())
    assert saved["bench"] == "learning" and saved["methods"].keys() == set(METHODS)
    assert (tmp_path / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(json.dumps(result)) == saved

    points = cfg.eval_steps()
    assert points[0] == 0 and points[-1] == cfg.online_steps and len(points) >= 3
    for name, m in saved["methods"].items():
        assert [p[0] for p in m["curve"]] == points, name
        assert all(0.0 <= p[1] <= 1.0 for p in m["curve"])
        assert m["env_steps"] == cfg.online_steps
        assert m["final"] == m["curve"][-1][1] and m["pre_trained_level"] == m["curve"][0][1]
        assert m["eval_layout"] == "train" and m["other_layout"] == "new"
        assert [p[0] for p in m["curve_other"]] == [0, cfg.online_steps]  # the other layout: first and last
        assert m["final_other"] == m["curve_other"][-1][1]
        # both tasks from table starts, first and last evaluation
        assert [p[0] for p in m["curve_recovery"]] == [0, cfg.online_steps]
        assert all(0.0 <= v <= 1.0 for p in m["curve_recovery"] for v in p[1:])
        assert m["pre_trained_recovery"] == m["curve_recovery"][0][1:]
        assert m["scene_resets"] == 1, f"{name} reset the scene during online training"
        for counts in m["train_episodes"].values():
            assert counts["successes"] + counts["already_done"] <= counts["episodes"]
            # every failed attempt says where it left the object
            failed = counts["episodes"] - counts["successes"] - counts["already_done"]
            assert sum(counts["failed_ends"].values()) == failed == len(counts["failed_end_coords"])
        with ReplayBuffer.open(m["run_dir"] + "/buffer", readonly=True) as buf:
            assert len(buf.valid_indices("online")) == cfg.online_steps == m["buffer"]["online_transitions"]
            assert len(buf.valid_indices("offline")) == m["buffer"]["offline_transitions"]

    # the spy saw one training env per method, each randomised only by its single initial reset(seed)
    assert len(train_envs) == len(METHODS)
    assert [count[0] for _env, count in train_envs] == [1] * len(METHODS)

    ms: dict[str, Any] = saved["methods"]
    updates = int(cfg.utd_ratio * cfg.online_steps)
    assert (
        ms["calql_finetune"]["updates"]
        == ms["bc_finetune"]["updates"]
        == ms["crr_finetune"]["updates"]
        == ms["sac_scratch"]["updates"]
        == updates
    )
    for control in ("bc_finetune", "crr_finetune"):
        assert ms[control]["pretrain_shared_from"] == "calql_finetune"
        assert ms[control]["pre_trained_level"] == ms["calql_finetune"]["pre_trained_level"]
    assert (
        saved["targets"]["gain_over_bc_finetune"]
        == ms["calql_finetune"]["final"] - ms["bc_finetune"]["final"]
    )
    crr_gain = ms["crr_finetune"]["final"] - ms["bc_finetune"]["final"]
    assert saved["targets"]["crr_gain_over_bc_finetune"] == crr_gain
    assert ms["pretrained_only"]["updates"] == ms["bc_only"]["updates"] == 0
    # the frozen pre-trained policy is the one calql_finetune starts from, so its curve is flat at that level
    assert ms["pretrained_only"]["pretrain_shared_from"] == "calql_finetune"
    assert {p[1] for p in ms["pretrained_only"]["curve"]} == {ms["calql_finetune"]["pre_trained_level"]}
    # fingerprints: shared pre-training starts every method from the same weights; a frozen one ends there
    starts = {ms[name]["start_fingerprint"] for name in ("calql_finetune", "bc_finetune", "pretrained_only")}
    assert len(starts) == 1 and ms["pretrained_only"]["final_fingerprint"] in starts
    assert ms["calql_finetune"]["final_fingerprint"] not in starts
    assert saved["data"]["fingerprint"] == lb.dataset_fingerprint(
        lb.prepare_data(cfg, str(tmp_path / "data"), progress=False)["jobs"]
    )
    assert saved["machine"]["torch_cpu_capability"]
    # same weights: deterministic results reused (every point, plus the other layout and both tasks'
    # table starts at the first and last)
    assert ms["pretrained_only"]["evals_reused"] == len(points) + 2 + 2 * 2
    assert ms["sac_scratch"]["buffer"]["offline_transitions"] == 0
    assert ms["bc_only"]["offline_kinds"] == ["demos"]
    offline = {name: m["buffer"]["offline_transitions"] for name, m in ms.items()}
    assert (
        0
        < offline["bc_only"]
        < offline["calql_finetune"]
        == offline["pretrained_only"]
        == offline["bc_finetune"]
        == offline["crr_finetune"]
    )
    assert set(saved["targets"]) >= {"final_ge_0.8", "gain_ge_30pts", "minutes_le_60", "pass"}
    assert saved["eval_seeds"] == list(cfg.eval_seeds) and cfg.seed not in cfg.eval_seeds

    # the dataset is reused by a later run with the same data settings, refused with other ones
    again = prepare_data(cfg, str(tmp_path / "data"), progress=False)
    assert again["reused"] and again["generate_s"] < 1.0
    with pytest.raises(ValueError, match="image_size"):
        prepare_data(dataclasses.replace(cfg, image_size=48), str(tmp_path / "data"), progress=False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"methods": ("calql_finetune", "dagger")}, "methods"),
        ({"methods": ()}, "methods"),
        ({"recipe": "td3"}, "recipe"),
        ({"seed": 10_000}, "eval_seed_base"),
        ({"online_steps": 0}, "online_steps"),
        ({"image_size": 16}, "image_size"),
        ({"demos_per_task": 0}, "bc_only"),
        ({"recipe": "wsrl", "wsrl_warmup_transitions": 40}, "warm-up"),
        ({"eval_layout": "mine"}, "eval_layout"),
        ({"demo_layout": "yours"}, "demo_layout"),
        ({"methods": ("bc_finetune",), "bc_weight": 0.0}, "bc_finetune imitates"),
        ({"bc_prior_fraction": 1.0}, "bc_prior_fraction"),
        ({"bc_average_tau": -0.1}, "bc_average_tau"),
        ({"bc_prior_fraction": 0.5, "prior": 0}, "prior must be >= 1"),
        ({"eval_recovery_episodes": -1}, "eval_recovery_episodes must be >= 0"),
        ({"eval_recovery_episodes": 3}, "must not exceed eval_episodes"),
    ],
)
def test_config_is_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LearningBenchConfig.quick(**overrides)


def test_evaluation_points_and_presets() -> None:
    cfg = LearningBenchConfig(online_steps=2_500, eval_every=1_000, eval_episodes=5)
    assert cfg.eval_steps() == [0, 1_000, 2_000, 2_500]
    assert cfg.eval_seeds == (10_000, 10_001, 10_002, 10_003, 10_004)
    assert LearningBenchConfig.preset("full") == LearningBenchConfig()
    assert LearningBenchConfig.preset("quick", seed=3).seed == 3
    assert LearningBenchConfig.medium().methods == METHODS
    sac = LearningBenchConfig().learner_config("sac_scratch")
    main = LearningBenchConfig().learner_config(lb.MAIN_METHOD)
    assert sac.agent.cql_alpha == 0.0 and main.agent.cql_alpha > 0 and main.recipe == "calql"
    assert main.freeze_encoder_online and not sac.freeze_encoder_online
    imitation = LearningBenchConfig().learner_config("bc_finetune")
    assert imitation.agent.actor_q_weight == 0.0 and main.agent.actor_q_weight == 1.0
    assert imitation == dataclasses.replace(main, agent=dataclasses.replace(main.agent, actor_q_weight=0.0))
    assert main.policy_average_tau == LearningBenchConfig().acting_average_tau > 0
    crr = LearningBenchConfig(crr_beta=0.2).learner_config("crr_finetune")
    assert crr == dataclasses.replace(
        main, agent=dataclasses.replace(main.agent, actor_objective="crr", crr_beta=0.2)
    )
    assert main.agent.actor_objective == "sac_bc"
    with pytest.raises(ValueError, match="crr_beta"):
        LearningBenchConfig(crr_beta=-1.0)


def test_dataset_fingerprint_follows_the_arrays_not_the_files_write_times(tmp_path) -> None:
    cfg = LearningBenchConfig.quick(max_episode_steps=4, prior=1, demos_per_task=1)
    jobs = prepare_data(cfg, str(tmp_path / "a"), progress=False)["jobs"]
    again = prepare_data(cfg, str(tmp_path / "b"), progress=False)["jobs"]  # made again, same seeds
    assert lb.dataset_fingerprint(jobs) == lb.dataset_fingerprint(again)
    with np.load(again[0].path) as episode:
        arrays = {name: episode[name] for name in episode.files}
    name = next(n for n, a in arrays.items() if a.dtype == np.uint8)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] ^= 1  # one bit of one pixel
    np.savez(again[0].path, **arrays)
    assert lb.dataset_fingerprint(jobs) != lb.dataset_fingerprint(again)


def test_evaluation_is_deterministic_so_results_of_equal_weights_can_be_reused() -> None:
    cfg = LearningBenchConfig.quick(max_episode_steps=6, eval_episodes=1)
    torch.manual_seed(0)
    nets = AgentNetworks(cfg.network_config())
    env = make_env(cfg, "eval")
    try:
        ends = []
        for _ in range(2):
            assert evaluate_forward(nets, env, cfg.eval_seeds, torch.device("cpu")) in (0.0, 1.0)
            ends.append((env.object_pos(), env.ee_pos(), env.joint_positions()))
    finally:
        env.close()
    for a, b in zip(*ends, strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_layout_evaluation_shares_the_training_scenes_fixtures_not_its_seed() -> None:
    cfg = LearningBenchConfig.quick(max_episode_steps=2, eval_episodes=2, seed=3)
    torch.manual_seed(0)
    nets = AgentNetworks(cfg.network_config())
    env = make_env(cfg, "eval")
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    reset = env.reset

    def spy(**kwargs: Any) -> Any:
        out = reset(**kwargs)
        seen.append((env.target_pos()[:2], env.object_pos()[:2]))
        return out

    env.reset = spy  # type: ignore[method-assign]
    try:
        evaluate_forward(nets, env, cfg.eval_seeds, torch.device("cpu"), layout_seed=cfg.seed)
        reset(seed=cfg.seed, options={"layout_seed": cfg.seed})  # the training stream's first scene
        train_target, train_object = env.target_pos()[:2], env.object_pos()[:2]
        evaluate_forward(nets, env, cfg.eval_seeds, torch.device("cpu"))
    finally:
        env.close()
    for target, obj in seen[:2]:
        np.testing.assert_allclose(target, train_target)
        assert np.linalg.norm(obj - train_object) > 1e-4  # held-out object poses
    assert all(np.linalg.norm(t - train_target) > 1e-3 for t, _o in seen[2:])  # "new": own layouts


def test_command_line_overrides_are_typed_and_checked() -> None:
    got = lb.parse_overrides(["seed=2", "cql_alpha=0.5", "methods=calql_finetune,bc_only", "recipe=wsrl",
                              "freeze_encoder_online=false"])  # fmt: skip
    assert got == {"seed": 2, "cql_alpha": 0.5, "methods": ("calql_finetune", "bc_only"), "recipe": "wsrl",
                   "freeze_encoder_online": False}  # fmt: skip
    got.pop("recipe")  # wsrl's default warm-up is longer than the quick preset
    assert LearningBenchConfig.quick(**got).methods == ("calql_finetune", "bc_only")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        lb.parse_overrides(["nonsense=1"])
    with pytest.raises(ValueError, match="takes a int"):
        lb.parse_overrides(["seed=two"])
    assert lb.parse_overrides(["entropy_per_action_dim=-3", "online_critic_warmup_updates=5"]) == {
        "entropy_per_action_dim": -3.0, "online_critic_warmup_updates": 5}  # fmt: skip
    cfg = LearningBenchConfig.quick(entropy_per_action_dim=-3.0, online_critic_warmup_updates=5)
    assert cfg.learner_config("calql_finetune").agent.entropy_per_action_dim == -3.0
    assert cfg.learner_config("calql_finetune").online_critic_warmup_updates == 5
    sac = cfg.learner_config("sac_scratch")  # plain SAC keeps SAC's own settings
    assert sac.agent.entropy_per_action_dim == -1.0 and sac.online_critic_warmup_updates == 0


def test_runs_that_split_the_methods_merge_into_one_result(tmp_path) -> None:
    def fake_run(folder: str, methods: dict[str, float], **config: Any) -> str:
        cfg = {**LearningBenchConfig.quick().to_dict(), "methods": list(methods), **config}
        result = {"bench": "learning", "config": cfg, "wall_s": 10.0, "methods": {
            name: {"curve": [[0, level], [30, level]], "final": level, "pre_trained_level": level,
                   "train_s": 5.0} for name, level in methods.items()}}  # fmt: skip
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "learning.json").write_text(json.dumps(result))
        return str(tmp_path / folder)

    a = fake_run("a", {"calql_finetune": 0.5, "pretrained_only": 0.2})
    a_cfg = json.loads((tmp_path / "a" / "learning.json").read_text())["config"]
    b = fake_run("b", {"bc_only": 0.1})
    merged = lb.merge_results([a, b], str(tmp_path / "all"))
    assert list(merged["methods"]) == ["calql_finetune", "pretrained_only", "bc_only"]
    assert json.loads((tmp_path / "all" / "learning.json").read_text())["config"]["methods"] == list(
        merged["methods"]
    )
    assert (tmp_path / "all" / "learning.png").exists()
    c = fake_run("c", {"sac_scratch": 0.0}, seed=5)
    with pytest.raises(ValueError, match="seed"):
        lb.merge_results([a, c], str(tmp_path / "bad"))
    # a run that loads no offline data may differ in the data settings, and nothing else
    d = fake_run("d", {"sac_scratch": 0.0}, demo_layout="new", prior=7, bc_warmup_steps=3)
    merged = lb.merge_results([d, a], str(tmp_path / "with_sac"))
    assert list(merged["methods"]) == ["calql_finetune", "pretrained_only", "sac_scratch"]
    assert merged["config"]["demo_layout"] == "train" and merged["config"]["prior"] != 7
    e = fake_run("e", {"bc_only": 0.1}, demo_layout="new")
    with pytest.raises(ValueError, match="demo_layout"):
        lb.merge_results([a, e], str(tmp_path / "bad2"))
    # baselines without Cal-QL may differ in its settings; the main method's run keeps its config
    f = fake_run("f", {"bc_only": 0.1, "sac_scratch": 0.0}, online_critic_warmup_updates=0, bc_weight=2.5)
    merged = lb.merge_results([f, a], str(tmp_path / "baselines"))
    assert merged["config"]["bc_weight"] == a_cfg["bc_weight"] and len(merged["methods"]) == 4
    g = fake_run("g", {"pretrained_only": 0.2}, cql_alpha=5.0)
    with pytest.raises(ValueError, match="cql_alpha"):
        lb.merge_results([a, g], str(tmp_path / "bad3"))


def test_explore_after_failure_acts_with_the_mean_until_an_attempt_fails(tmp_path, monkeypatch) -> None:
    scales: list[float] = []
    act = lb.policy_action

    def spy(nets, obs, device, deterministic, std_scale=1.0):
        if not deterministic:
            scales.append(std_scale)
        return act(nets, obs, device, deterministic, std_scale)

    monkeypatch.setattr(lb, "policy_action", spy)
    cfg = LearningBenchConfig.quick(
        methods=("pretrained_only",), explore_when="after_failure", explore_std_scale=0.5, online_steps=40
    )
    m = run_learning_bench(cfg, str(tmp_path), progress=False)["methods"]["pretrained_only"]
    episodes, explored = m["train_episodes"], m["train_episodes_explored"]
    assert len(scales) == 40 and set(scales) <= {0.0, 0.5} and scales[0] == 0.0
    fwd = episodes["forward"]
    assert explored["forward"]["episodes"] <= fwd["episodes"] - fwd["already_done"]
    if fwd["episodes"] >= 2 and fwd["successes"] == 0:  # the first forward attempt failed: the next explored
        assert explored["forward"]["episodes"] >= 1 and 0.5 in scales
    with pytest.raises(ValueError, match="explore_when"):
        LearningBenchConfig.quick(explore_when="sometimes")


def test_episodic_stream_is_a_labelled_diagnostic_that_resets_every_episode_at_the_workstation(
    tmp_path, monkeypatch
) -> None:
    resets: list[dict[str, Any]] = []
    train_env: list[MockArmEnv] = []
    make = lb.make_env

    def spy(cfg: LearningBenchConfig, role: str) -> MockArmEnv:
        env = make(cfg, role)
        if role == "train":
            train_env.append(env)
            reset = env.reset

            def logged(*, seed: int | None = None, options: dict[str, Any] | None = None):
                resets.append(dict(options or {}))
                return reset(seed=seed, options=options)

            env.reset = logged  # type: ignore[method-assign]
        return env

    monkeypatch.setattr(lb, "make_env", spy)
    cfg = LearningBenchConfig.quick(methods=("pretrained_only",), stream="episodic", online_steps=40)
    m = run_learning_bench(cfg, str(tmp_path), progress=False)["methods"]["pretrained_only"]
    episodes = sum(c["episodes"] for c in m["train_episodes"].values())
    assert episodes >= 3
    # a fresh scene for every episode: the finished ones and the one the run's last step cut short
    assert m["scene_resets"] == len(resets) and episodes <= len(resets) <= episodes + 1
    assert all(not o.get("keep_scene") and o["layout_seed"] == cfg.seed for o in resets)  # one workstation
    assert [o["task"] for o in resets] == [("forward", "backward")[i % 2] for i in range(len(resets))]
    with pytest.raises(ValueError, match="stream"):
        LearningBenchConfig.quick(stream="sometimes")


def test_acting_with_a_full_step_average_is_acting_with_the_trained_policy(tmp_path) -> None:
    """tau = 1 copies the trained weights into the acting copy after every step: the same run as
    without averaging, so the plumbing (acting and evaluation use the copy) changes nothing else."""
    base = LearningBenchConfig.quick(
        methods=("calql_finetune",), online_steps=24, eval_every=12, acting_average_tau=0.0
    )
    plain = run_learning_bench(base, str(tmp_path / "plain"), progress=False)["methods"]["calql_finetune"]
    full = dataclasses.replace(base, acting_average_tau=1.0)
    same = run_learning_bench(full, str(tmp_path / "avg"), progress=False)["methods"]["calql_finetune"]
    assert same["curve"] == plain["curve"] and same["train_episodes"] == plain["train_episodes"]
    with pytest.raises(ValueError, match="acting_average_tau"):
        LearningBenchConfig.quick(acting_average_tau=1.5)


def test_a_small_average_acts_near_the_pre_trained_policy_while_the_learner_moves_on(
    tmp_path, monkeypatch
) -> None:
    """With a tiny tau the acting copy barely leaves the pre-trained weights, although the learner's
    trained weights (in its checkpoint) do: acting, evaluation and the published weights use the
    average, training does not."""
    from policy_server.weights import WeightStore

    acting: list[AgentNetworks] = []
    act = lb.policy_action

    def spy(nets, obs, device, deterministic, std_scale=1.0):
        acting.append(nets)
        return act(nets, obs, device, deterministic, std_scale)

    monkeypatch.setattr(lb, "policy_action", spy)
    cfg = LearningBenchConfig.quick(methods=("calql_finetune",), online_steps=40, acting_average_tau=1e-6)
    m = run_learning_bench(cfg, str(tmp_path), progress=False)["methods"]["calql_finetune"]
    pre, _ = WeightStore(m["run_dir"] + "/milestones").load(1)
    published, _ = WeightStore(m["run_dir"] + "/weights").load()
    checkpoint, _ = WeightStore(m["run_dir"] + "/checkpoints").load()
    copy = acting[-1].actor.state_dict()
    keys = [k for k in copy if torch.is_floating_point(copy[k])]
    moved = max(float((checkpoint[f"nets.actor.{k}"] - pre[f"actor.{k}"]).abs().max()) for k in keys)
    drift = max(float((copy[k] - pre[f"actor.{k}"]).abs().max()) for k in keys)
    assert moved > 1e-4 and drift < 1e-3 * moved
    assert all(torch.equal(published[f"actor.{k}"], copy[k]) for k in keys)
    assert all(torch.equal(checkpoint[f"avg.actor.{k}"], copy[k]) for k in keys)


def test_encoder_head_reaches_the_networks_and_is_validated() -> None:
    cfg = LearningBenchConfig.quick(encoder_head="spatial_softmax")
    assert cfg.network_config().encoder_head == "spatial_softmax"
    assert LearningBenchConfig.quick().network_config().encoder_head == "flatten"
    with pytest.raises(ValueError, match="encoder_head must be one of flatten, spatial_softmax, got 'pool'"):
        LearningBenchConfig.quick(encoder_head="pool")


def test_bc_prior_fraction_reaches_the_learner_and_the_bc_baselines_data() -> None:
    cfg = LearningBenchConfig.quick(bc_prior_fraction=0.5)
    assert cfg.learner_config(lb.MAIN_METHOD).bc_prior_fraction == 0.5
    assert LearningBenchConfig.quick(bc_average_tau=0.01).learner_config("bc_only").bc_average_tau == 0.01
    assert lb.offline_kinds(cfg, "bc_only") == ("demos", "prior")
    assert lb.offline_kinds(LearningBenchConfig.quick(), "bc_only") == ("demos",)
    assert lb.offline_kinds(cfg, lb.MAIN_METHOD) == lb.OFFLINE_KINDS[lb.MAIN_METHOD]
