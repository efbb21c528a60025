"""The MCAP benchmark's writer part runs and reports sane figures (the ROS part is measured by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages not installed")
from reset_free import mcap_bench


def test_scene_frames_differ_and_fill_more_than_a_chunk() -> None:
    a, b = mcap_bench.scene(128, 128, 2.0, 0), mcap_bench.scene(128, 128, 2.0, 1)
    assert a.shape == (128, 128, 3) and a.dtype.name == "uint8" and (a != b).any()
    n = mcap_bench.distinct_frames(128, 128)
    assert n * 128 * 128 * 3 >= 3 * 1024 * 1024


def test_writer_bench_reports_compression(tmp_path: Path) -> None:
    render = mcap_bench.bench_writer("128x128", 0.0, "zstd", 0.2, tmp_path)
    raw = mcap_bench.bench_writer("128x128", 0.0, "none", 0.2, tmp_path)
    assert render.frames_per_s > 0 and render.cpu_ms_per_frame > 0
    assert render.compression_ratio > 5 and 0.95 < raw.compression_ratio <= 1.0
    assert not list(tmp_path.iterdir())  # cleans up after itself
