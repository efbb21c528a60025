"""The transport benchmark runs end to end across processes and reports sane figures (no targets asserted:
it is a benchmark, not a timed test)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")

from robofume_robot.transport_bench import CASES, latency_stats, run_transport_bench


def _finite_positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_transport_bench_structure_and_sanity() -> None:
    result = run_transport_bench(seconds=2.0)
    json.dumps(result)  # JSON-able
    assert result["bench"] == "transport"
    assert [c["name"] for c in result["cases"]] == [c.name for c in CASES]
    for case in result["cases"]:
        assert case["sent"] > 0 and 0 <= case["received"] <= case["sent"]
        assert case["duplicates"] == 0 and case["bad_size"] == 0
        if case["received"]:
            assert all(_finite_positive(case[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
            assert case["p50_ms"] <= case["p90_ms"] <= case["p99_ms"] <= case["max_ms"]
    small = next(c for c in result["cases"] if c["width"] == 128)
    assert small["fastdds_profile"].endswith("fastdds_shm.xml") and small["received"] > 0
    assert next(c for c in result["cases"] if not c["fastdds_profile"])["width"] == 640
    gate = result["gate_command"]
    assert gate["actions"] >= 15 and gate["pass_fraction"] >= 0.8
    assert _finite_positive(gate["p50_ms"]) and _finite_positive(gate["p99_ms"])
    targets = result["targets"]
    assert targets["case"] == CASES[0].name and isinstance(targets["pass"], bool)
    assert result["rmw"] and result["machine"]["cores"] > 0


def test_latency_stats() -> None:
    assert latency_stats([])["p50_ms"] is None
    stats = latency_stats([0.001, 0.002, 0.003])
    assert stats["p50_ms"] == 2.0 and stats["max_ms"] == 3.0
