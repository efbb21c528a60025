"""Session log bookkeeping, the report files, and the session config round trip."""

from __future__ import annotations

import json

import pytest

from robofume.session.config import SessionConfig, SessionConfigError, config_from_dict, config_to_dict
from robofume.session.report import write_report
from robofume.session.session_log import SessionLog


class Scalars:
    def __init__(self) -> None:
        self.tags: dict[str, list[float]] = {}

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.tags.setdefault(tag, []).append(value)


def simulated_log() -> tuple[SessionLog, Scalars]:
    writer = Scalars()
    log = SessionLog(t0=100.0, writer=writer)
    log.on_phase("forward", "", 100.5)
    t = 101.0
    for i in range(10):
        for task in ("forward", "backward"):
            success = i >= 5 or task == "backward"
            log.on_ground_truth({"success": {task: success, "forward": success and task == "forward"}})
            if success:
                log.on_success_event(task, t)
            log.on_action(t - 0.1)
            log.on_action(t)
            log.on_event(
                {"kind": "episode_end", "task": task, "outcome": "success" if success else "timeout"}, t
            )
            t += 10
    for _ in range(2):  # the object already lay in the start region: not attempts, not successes
        log.on_event({"kind": "episode_end", "task": "backward", "outcome": "already_done"}, t)
    log.on_event({"kind": "homed", "outcome": "home", "step": 12}, t)
    log.on_event({"kind": "homed", "outcome": "gave_up", "step": 40}, t)
    log.on_weights(1, 2000, 101.0)
    log.on_weights(2, 2050, 150.0)
    log.on_weights(2, 2050, 160.0)
    log.on_transitions(1000, 150.0)
    log.on_transitions(2234, 200.0)
    log.on_event({"kind": "help"}, 250.0)
    log.on_phase("paused", "policy server silent", 260.0)
    return log, writer


def test_summary_counts_episodes_ground_truth_and_weights() -> None:
    log, writer = simulated_log()
    s = log.summary()
    fwd = s["tasks"]["forward"]
    assert fwd["episodes"] == 10 and fwd["classifier_successes"] == 5 and fwd["already_done"] == 0
    assert s["homing"] == {"home": 1, "gave_up": 1, "steps_median": 26.0}
    bwd = s["tasks"]["backward"]
    assert bwd["episodes"] == 10 and bwd["already_done"] == 2 and bwd["success_rate"] == 1.0
    assert fwd["ground_truth_success_rate"] == pytest.approx(0.5)
    assert fwd["ground_truth_success_rate_last_half"] == pytest.approx(1.0)
    assert s["classifier"]["event_precision_ground_truth"] == pytest.approx(1.0)
    assert s["classifier"]["episode_recall_ground_truth"] == pytest.approx(1.0)
    assert s["weights"] == {"versions_served": 2, "last_version": 2, "last_learner_step": 2050}
    assert s["control"]["p50_ms"] == pytest.approx(100.0, abs=1e-6)
    assert s["transitions"] == 1234 and s["help_requests"] == 1 and s["pauses"] == 1
    assert "charts/forward_success_rate" in writer.tags and "system/weight_version" in writer.tags
    assert "reward/precision_ground_truth" in writer.tags and "system/control_period_ms" in writer.tags


def test_false_success_lowers_precision() -> None:
    log = SessionLog(t0=0.0)
    log.on_ground_truth({"success": {"forward": False}})
    log.on_success_event("forward", 1.0)
    log.on_event({"kind": "episode_end", "task": "forward", "outcome": "success"}, 1.0)
    c = log.summary()["classifier"]
    assert c["event_precision_ground_truth"] == 0.0 and c["episode_precision_ground_truth"] == 0.0


def test_report_files(tmp_path) -> None:
    log, _ = simulated_log()
    summary = write_report(log, str(tmp_path), {"robot": "mock", "out": "runs/x", "recipe": "wsrl"})
    for name in ("report.md", "report.json", "success.png", "classifier.png", "system.png"):
        assert (tmp_path / name).stat().st_size > 0
    text = (tmp_path / "report.md").read_text()
    assert "| forward | 10 | 0 | 50 % | 50 % | 100 % |" in text and "![success](success.png)" in text
    assert "| backward | 10 | 2 | 100 % |" in text
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["summary"] == json.loads(json.dumps(summary)) and len(payload["episodes"]) == 22
    assert "scheduling" not in text  # none recorded
    assert "recipe `wsrl`, " in text and "CRR" not in text
    write_report(
        log, str(tmp_path), {"robot": "mock", "recipe": "calql", "actor_objective": "crr", "crr_beta": 0.5}
    )
    assert (
        "recipe `calql` with the CRR actor (`online.crr_beta` 0.5), " in (tmp_path / "report.md").read_text()
    )


def test_report_says_how_each_process_was_scheduled(tmp_path) -> None:
    log, _ = simulated_log()
    context = {"robot": "mock", "scheduling": {"arm": "FIFO 50", "reward": "nice 5", "learner": "nice 10"}}
    write_report(log, str(tmp_path), context)
    assert "- scheduling: arm FIFO 50, reward nice 5, learner nice 10" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["context"]["scheduling"]["arm"] == "FIFO 50"


def test_real_robot_report_has_no_ground_truth(tmp_path) -> None:
    log = SessionLog(t0=0.0)
    log.on_event({"kind": "episode_end", "task": "forward", "outcome": "success"}, 5.0)
    summary = write_report(log, str(tmp_path), {"robot": "real"})
    assert summary["tasks"]["forward"]["ground_truth_success_rate"] is None
    assert "n/a on a real robot" in (tmp_path / "report.md").read_text()


def test_config_round_trip_and_errors() -> None:
    cfg = SessionConfig()
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    with pytest.raises(SessionConfigError, match="unknown key"):
        config_from_dict({"online": {"bogus": 1}})
    with pytest.raises(SessionConfigError, match="--data"):
        SessionConfig(robot="real", labels="l.json").validate()
    with pytest.raises(SessionConfigError, match="duration"):
        config_from_dict({"online": {"duration_s": 0}})
    with pytest.raises(SessionConfigError, match="home must be"):
        config_from_dict({"online": {"home": [0.4, 0.0]}})
    with pytest.raises(SessionConfigError, match="already_done_steps"):
        config_from_dict({"online": {"already_done_steps": -1}})
    with pytest.raises(SessionConfigError, match="explore_std_scale"):
        config_from_dict({"online": {"explore_std_scale": -0.5}})
    with pytest.raises(SessionConfigError, match="bc_average_tau"):
        config_from_dict({"pretrain": {"bc_average_tau": 2.0}})


def test_session_pretrain_defaults_follow_the_learner() -> None:
    from policy_server.learner import LearnerConfig

    assert SessionConfig().pretrain.bc_average_tau == LearnerConfig().bc_average_tau


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"online": {"duration_s": "600"}}, "online.duration_s must be float"),
        ({"pretrain": {"steps": 1.5}}, "pretrain.steps must be int"),
        ({"online": {"eval_episodes": None}}, "online.eval_episodes must be int"),
        ({"classifier": {"allow_weak": 1}}, "classifier.allow_weak must be bool"),
        ({"seed": True}, "seed must be int"),
        ({"online": {"home": 5}}, "home must be"),
        ({"online": {"home": [float("nan"), 0.0, 0.3]}}, "home must be"),
    ],
)
def test_config_values_of_the_wrong_type_are_one_line_errors(payload: dict, message: str) -> None:
    with pytest.raises(SessionConfigError, match=message) as err:
        config_from_dict(payload)
    assert "\n" not in str(err.value)
    config_from_dict({"classifier": {"pretrained": None}, "online": {"duration_s": 60}})  # None, int: fine


def test_node_overrides_set_homing_per_robot() -> None:
    from robofume.session.runner import node_overrides

    mock = node_overrides(SessionConfig())["reset_free_controller"]
    assert "homing" not in mock and mock["already_done_steps"] == 5  # session.yaml: the mock's home
    real = SessionConfig(robot="real", data="d", labels="l.json", limits_file="limits.yaml")
    assert node_overrides(real)["reset_free_controller"]["homing"] is False  # no home given: no homing
    real.online.home = [0.3, 0.0, 0.25, 0.5]
    ctrl = node_overrides(real)["reset_free_controller"]
    assert ctrl["homing"] is True and ctrl["home_xyz"] == [0.3, 0.0, 0.25] and ctrl["home_yaw"] == 0.5
    assert ctrl["limits_file"].endswith("limits.yaml")


def test_node_overrides_pass_exploration_to_the_policy_server() -> None:
    from robofume.session.runner import node_overrides

    assert node_overrides(SessionConfig())["policy_server"]["explore_std_scale"] == 0.0
    cfg = SessionConfig()
    cfg.online.explore_std_scale = 0.5
    assert node_overrides(cfg)["policy_server"]["explore_std_scale"] == 0.5


def test_system_scalars_updates_per_second_and_latencies() -> None:
    writer = Scalars()
    log = SessionLog(t0=0.0, writer=writer)
    log.on_weights(1, 100, 10.0)
    log.on_weights(2, 300, 20.0)
    log.on_latency("policy", 2.5, 4.0, 21.0)
    log.on_reward_latency(12.0, 21.0)
    assert writer.tags["system/learner_updates_per_s"] == [20.0]
    assert writer.tags["system/policy_p99_ms"] == [4.0] and writer.tags["system/reward_latency_ms"] == [12.0]


def test_reward_source_config_and_node_overrides() -> None:
    from robofume.session.runner import node_overrides

    assert node_overrides(SessionConfig())["reward"]["source"] == "classifier"
    truth = node_overrides(SessionConfig(reward="ground_truth"))["reward"]
    assert truth["source"] == "ground_truth" and "classifier_path" not in truth
    with pytest.raises(SessionConfigError, match="only in simulation"):
        SessionConfig(
            robot="real", data="d", labels="l.json", limits_file="x.yaml", reward="ground_truth"
        ).validate()
    with pytest.raises(SessionConfigError, match="reward must be one of"):
        config_from_dict({"reward": "oracle"})
    with pytest.raises(SessionConfigError, match="min_precision"):
        config_from_dict({"classifier": {"min_precision": 1.5}})


WEAK_METRICS = {
    "forward": {"precision": 0.027, "attainable": False},
    "backward": {"precision": 1.0, "attainable": True},
}


def test_weak_classifier_refuses_a_real_robot_and_warns_on_the_mock() -> None:
    from robofume.session.prepare import check_classifier, weak_classifier_tasks

    real = SessionConfig(robot="real", data="d", labels="l.json", limits_file="x.yaml")
    assert weak_classifier_tasks(real, WEAK_METRICS) == {"forward": 0.027}
    assert weak_classifier_tasks(real, {"forward": {"note": "no precision"}}) == {"forward": 0.0}
    with pytest.raises(SessionConfigError) as info:
        check_classifier(real, WEAK_METRICS, log=lambda m: None)
    assert "forward 0.027" in str(info.value) and "--allow-weak-classifier" in str(info.value)
    assert "\n" not in str(info.value)
    said: list[str] = []
    real.classifier.allow_weak = True
    assert check_classifier(real, WEAK_METRICS, said.append).startswith("WARNING:") and len(said) == 1
    mock = SessionConfig()
    warning = check_classifier(mock, WEAK_METRICS, said.append)
    assert "--reward ground-truth" in warning and "forward 0.027" in warning
    strong = {"forward": {"precision": 0.96}, "backward": {"precision": 0.5}}
    assert check_classifier(real, strong, said.append) == "" and len(said) == 2


def test_prepare_with_ground_truth_reward_trains_no_classifier(tmp_path, monkeypatch) -> None:
    from robofume.session import runner

    calls: list[str] = []
    monkeypatch.setattr(runner, "ensure_data", lambda cfg, log: calls.append("data") or "data_dir")
    monkeypatch.setattr(runner, "ensure_labels", lambda *a: calls.append("labels") or "labels.json")
    monkeypatch.setattr(runner, "ensure_classifier", lambda *a: calls.append("classifier") or WEAK_METRICS)
    monkeypatch.setattr(runner, "ensure_pretrained", lambda *a: calls.append("pretrain") or {})
    said: list[str] = []
    metrics = runner.prepare(SessionConfig(out=str(tmp_path), reward="ground_truth"), said.append)
    assert metrics == {} and calls == ["data", "pretrain"] and "ground truth" in said[0]
    calls.clear()
    real = SessionConfig(out=str(tmp_path), robot="real", data="d", labels="l.json", limits_file="x.yaml")
    with pytest.raises(SessionConfigError, match="below min_precision"):
        runner.prepare(real, said.append)
    assert calls == ["data", "labels", "classifier"], "refused before the (long) pre-training"


def test_report_names_the_reward_source_and_a_weak_classifier(tmp_path) -> None:
    log, _ = simulated_log()
    write_report(log, str(tmp_path / "a"), {"robot": "mock", "reward": "ground_truth"})
    assert "Reward: ground truth from the simulator" in (tmp_path / "a" / "report.md").read_text()
    context = {
        "robot": "mock",
        "reward": "classifier",
        "weak_classifier": {"forward": 0.027},
        "min_precision": 0.5,
    }
    write_report(log, str(tmp_path / "b"), context)
    text = (tmp_path / "b" / "report.md").read_text()
    assert "Warning: weak reward" in text and "forward 0.027" in text


@pytest.mark.parametrize(
    ("reward", "judge"), [("ground_truth", "ground-truth reward"), ("classifier", "classifier")]
)
def test_success_plot_names_the_reward_source(tmp_path, monkeypatch, reward: str, judge: str) -> None:
    from matplotlib.axes import Axes

    labels: list[str] = []
    plot = Axes.plot

    def spy(self, *args, **kwargs):
        labels.append(kwargs.get("label", ""))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    log, _ = simulated_log()
    write_report(log, str(tmp_path), {"robot": "mock", "reward": reward})
    assert f"forward ({judge})" in labels and "forward (ground truth at episode end)" in labels


def test_learner_runs_at_lower_priority() -> None:
    import os
    import subprocess
    import sys

    from robofume_robot.launcher import lower_priority as _niceness

    base = os.nice(0)
    cmd = [sys.executable, "-c", "import os; print(os.nice(0))"]
    out = subprocess.run(cmd, preexec_fn=_niceness(5), capture_output=True, text=True, check=True)
    assert int(out.stdout) == min(19, base + 5)
    assert _niceness(0) is None
    with pytest.raises(SessionConfigError, match="learner_nice"):
        config_from_dict({"online": {"learner_nice": 25}})


def test_the_session_passes_its_policy_average_to_the_learner() -> None:
    from robofume.session.runner import learner_command

    cmd = learner_command(config_from_dict({"online": {"policy_average_tau": 0.0}}))
    assert cmd[cmd.index("--policy-average-tau") + 1] == "0.0"
    cmd = learner_command(config_from_dict({}))
    assert float(cmd[cmd.index("--policy-average-tau") + 1]) == 0.001
    with pytest.raises(SessionConfigError, match="policy_average_tau"):
        config_from_dict({"online": {"policy_average_tau": 1.5}})


def test_the_session_passes_its_actor_objective_to_the_learner() -> None:
    from robofume.session.runner import learner_command

    cmd = learner_command(config_from_dict({}))
    assert (
        cmd[cmd.index("--actor-objective") + 1] == "sac_bc" and float(cmd[cmd.index("--crr-beta") + 1]) == 0
    )
    cmd = learner_command(config_from_dict({"online": {"actor_objective": "crr", "crr_beta": 0.3}}))
    assert cmd[cmd.index("--actor-objective") + 1] == "crr" and cmd[cmd.index("--crr-beta") + 1] == "0.3"
    with pytest.raises(SessionConfigError, match="actor_objective"):
        config_from_dict({"online": {"actor_objective": "awac"}})
    with pytest.raises(SessionConfigError, match="crr_beta"):
        config_from_dict({"online": {"actor_objective": "crr", "crr_beta": -1}})


def test_time_held_is_counted_per_phase_up_to_the_end(tmp_path) -> None:
    log = SessionLog(t0=100.0)
    log.on_phase("paused", "waiting for the classifier", 100.0)
    log.on_phase("forward", "", 110.0)
    log.on_phase("help_needed", "stuck", 400.0)
    log.on_end(1300.0)
    s = log.summary()
    assert s["duration_s"] == 1200.0
    assert s["held_s"] == {"paused": 10.0, "help_needed": 900.0}
    write_report(log, str(tmp_path), {"robot": "mock"})
    assert (
        "20.0 min of autonomous fine-tuning (the arm held for 15.0 min help needed)"
        in (tmp_path / "report.md").read_text()
    )


def test_control_period_splits_into_camera_cadence_and_latency() -> None:
    log = SessionLog(t0=0.0)
    log.on_phase("forward", "", 0.0)
    # frames every 100 ms; the third action arrives 30 ms late, the fourth on time again
    stamps = [1.0, 1.1, 1.2, 1.3, 1.4]
    delays = [0.01, 0.01, 0.04, 0.01, 0.01]
    for stamp, delay in zip(stamps, delays, strict=True):
        log.on_action(stamp + delay, stamp)
    ctl = log.summary()["control"]
    assert ctl["periods"] == 4
    assert sorted(round(p * 1e3) for p in log.action_periods_s) == [70, 100, 100, 130]
    assert ctl["camera_period_p50_ms"] == pytest.approx(100.0)
    assert ctl["camera_period_p99_ms"] == pytest.approx(100.0)
    assert ctl["latency_p50_ms"] == pytest.approx(10.0)
    assert ctl["latency_p99_ms"] == pytest.approx(38.8)  # numpy interpolates between 10 and 40
    # a hold restarts both chains: the gap across it is no control period
    log.on_phase("paused", "policy server silent", 1.5)
    log.on_phase("forward", "", 2.0)
    log.on_action(3.01, 3.0)
    assert log.summary()["control"]["periods"] == 4 and len(log.frame_periods_s) == 4


def test_episodes_record_where_the_object_lay() -> None:
    log = SessionLog(t0=0.0)
    log.on_ground_truth({"success": {"forward": False}, "object_pos": [0.5, 0.151234567, 0.02]})
    log.on_event({"kind": "episode_end", "task": "forward", "outcome": "timeout", "step": 100}, 10.0)
    log.on_ground_truth({"success": {"backward": False}, "object_pos": "somewhere"})
    log.on_event({"kind": "episode_end", "task": "backward", "outcome": "timeout", "step": 100}, 20.0)
    episodes = log.to_json()["episodes"]
    assert episodes[0]["object_pos"] == [0.5, 0.1512, 0.02]
    assert episodes[1]["object_pos"] is None and episodes[1]["ground_truth"] is False
