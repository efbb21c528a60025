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
