"""The learner speed bench runs end to end on a tiny setup and reports its figures."""

from __future__ import annotations

from policy_server.networks import NetworkConfig
from policy_server.speed_bench import run_learner_bench


def test_learner_bench_reports_both_phases() -> None:
    net = NetworkConfig(image_size=32, hidden_dim=16, feature_dim=8, encoder_channels=4)
    result = run_learner_bench(
        batch_size=8, updates=1, camera_size=32, device="cpu", network=net, online_updates=8
    )
    assert result["online_updates_per_actor_update"] == 4 and result["hidden_dim"] == 16
    for key in ("calql_pretrain", "sac_online_frozen_encoder"):
        assert result[f"{key}_updates_per_s"] > 0 and result[f"{key}_cpu_ms_per_update"] >= 0
        assert result[f"{key}_sample_ms"] > 0
    assert result["target_updates_per_s"] == 100 and isinstance(result["load_avg_1min"], float)
