"""The session's held-out evaluation: which policies it picks, and a real evaluation of saved weights
on the mock arm in worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from policy_server.learner import LearnerConfig, config_to_dict
from policy_server.networks import AgentNetworks, NetworkConfig
from policy_server.weights import WeightStore
from robofume.session.config import SessionConfig, SessionConfigError, config_from_dict
from robofume.session.evaluation import evaluate_session, evaluate_version, held_out_seeds, pick_versions
from robofume.session.report import write_report
from robofume.session.session_log import SessionLog

NET = NetworkConfig(image_size=32, hidden_dim=16, feature_dim=8, encoder_channels=4)


def test_pick_versions_keeps_the_first_and_spreads_the_rest() -> None:
    assert pick_versions([], 4) == []
    assert pick_versions([1, 2], 4) == [1, 2]
    assert pick_versions(list(range(1, 11)), 4) == [1, 5, 10]
    assert pick_versions(list(range(1, 11)), 2) == [1]
    assert held_out_seeds(3) == (20_000, 20_001, 20_002)


def _publish(root: Path, steps: list[int]) -> None:
    store = WeightStore(root)
    config = config_to_dict(LearnerConfig(network=NET))
    for step in steps:
        torch.manual_seed(step)
        store.publish(AgentNetworks(NET).state_dict(), config, step=step)


def test_evaluate_version_runs_saved_weights_on_fresh_scenes(tmp_path: Path) -> None:
    _publish(tmp_path / "w", [7])
    point = evaluate_version(
        str(tmp_path / "w"), 1, (20_000,), layout_seed=10_000, image_size=32, max_steps=3
    )
    assert point["version"] == 1 and point["step"] == 7 and point["episodes"] == 1
    assert point["success_rate"] in (0.0, 1.0) and point["backward_success_rate"] in (0.0, 1.0)
    assert point["forward_edge_success_rate"] in (0.0, 1.0)


def test_evaluate_session_pre_trained_milestones_and_final(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {
            "out": str(tmp_path),
            "data_stage": {"image_size": 32, "workers": 2},
            "online": {"eval_episodes": 1, "eval_points": 3, "max_episode_steps": 2},
        }
    )
    _publish(Path(cfg.run_dir) / "milestones", [100, 200, 300, 400, 500])
    _publish(Path(cfg.run_dir) / "weights", [520, 540])
    said: list[str] = []
    points = evaluate_session(cfg, said.append)
    assert [(p["source"], p["version"], p["step"]) for p in points] == [
        ("milestones", 1, 100),
        ("milestones", 5, 500),
        ("weights", 2, 540),
    ]
    assert "3 policies on 1 held-out scenes" in said[0]
    cfg.online.eval_episodes = 0
    assert evaluate_session(cfg) == []
    with pytest.raises(SessionConfigError, match="eval_points"):
        config_from_dict({"online": {"eval_points": 1}})

    write_report(SessionLog(t0=0.0), str(tmp_path / "report"), {"robot": "mock"}, None, points)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Held-out evaluation (ground truth)" in text
    assert "| 100 | pre-trained (v1) |" in text and "| 540 | final (v2) |" in text
    assert "| learner step | policy | forward success | forward, edge starts | backward success |" in text
    assert "Polyak average" not in text  # not said when the context does not say so
    context = {"robot": "mock", "policy_average_tau": 0.001}
    write_report(SessionLog(t0=0.0), str(tmp_path / "report"), context, None, points)
    assert (
        "Polyak average of the trained policy (`online.policy_average_tau` 0.001)"
        in (tmp_path / "report" / "report.md").read_text()
    )


def test_real_robot_session_is_not_evaluated(tmp_path: Path) -> None:
    cfg = SessionConfig(out=str(tmp_path), robot="real", data="d", labels="l.json", limits_file="x.yaml")
    _publish(Path(cfg.run_dir) / "milestones", [1])
    assert evaluate_session(cfg) == []
