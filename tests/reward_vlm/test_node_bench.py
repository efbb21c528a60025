"""The reward node benchmark: a short run against the node process reports consistent figures; bad
settings are one-line errors."""

from __future__ import annotations

import pytest

from reward_vlm.node_bench import RewardNodeBenchConfig, main, percentiles, run_reward_node_bench
from reward_vlm.reward_core import RewardConfigError


def test_percentiles() -> None:
    assert percentiles([]) == {"p50": None, "p99": None, "max": None}
    assert percentiles([1.0, 2.0, 3.0]) == {"p50": 2.0, "p99": 3.0, "max": 3.0}


def test_short_run_keeps_up_with_a_fast_stand_in(tmp_path) -> None:
    pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")
    cfg = RewardNodeBenchConfig(
        delay_ms=10.0, busy=False, camera_hz=10.0, seconds=2.0, warmup_s=0.5, image_size=64
    )
    result = run_reward_node_bench(cfg, str(tmp_path))
    assert 15 <= result["frames_published"] <= 21
    assert result["verdicts_judged"] <= result["frames_published"]
    assert result["judged_share"] >= 0.8 and result["verdicts_unknown"] == 0
    assert 10.0 <= result["classifier_latency_ms"]["p50"] < 100
    assert result["frame_age_ms"]["p50"] >= result["classifier_latency_ms"]["p50"]
    assert (tmp_path / "reward_node.log").exists()


def test_bad_settings(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RewardConfigError, match="camera_hz"):
        RewardNodeBenchConfig(camera_hz=0.0).validate()
    assert main(["--classifier", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robofume: error:") and "\n" not in err
