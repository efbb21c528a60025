"""``robofume bench classifier``: the quick preset end to end, session clips, label draws, summaries."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reward_vlm.classifier_bench import (
    CLIPS_MANIFEST,
    PLOT_FILE,
    RESULT_FILE,
    ClassifierBenchConfig,
    ClassifierBenchError,
    ClipInfo,
    label_orders,
    latency_summary,
    markdown_tables,
    prepare_clips,
    run_classifier_bench,
    select_labels,
    targets_summary,
)
from reward_vlm.labels import load_labels
from robofume.data.episode_format import load_episode
from robofume.sim.tasks import TASK_NAMES

UNIT_KEYS = (
    "precision",
    "recall",
    "accuracy",
    "average_precision",
    "false_negative_rate",
    "confirmed_precision",
    "confirmed_recall",
    "episode_precision",
    "episode_recall",
    "oracle_precision",
    "oracle_recall",
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One run of the quick preset (data, clips, zero-shot + probe at 0 and 2 positives, tiny latency)."""
    out = tmp_path_factory.mktemp("classifier_bench")
    return run_classifier_bench(ClassifierBenchConfig.preset("quick"), str(out)), out


def test_quick_result_structure_and_ranges(quick: tuple[dict[str, Any], Path]) -> None:
    result, out = quick
    assert result["bench"] == "classifier" and result["preset"] == "quick"
    assert result["backbone_weights"] == "random-init tiny (offline)"
    assert {"cpu", "cores", "python"} <= set(result["machine"])
    rows = result["accuracy"]
    assert [(r["method"], r["positives"], r["negatives"]) for r in rows] == [
        ("zero_shot", 0, 0),
        ("probe", 0, 0),
        ("probe", 2, 4),
    ]
    for row in rows:
        assert set(row["tasks"]) == set(TASK_NAMES)
        for task, m in row["tasks"].items():
            for key in UNIT_KEYS:
                assert 0.0 <= m[key] <= 1.0, (row["method"], row["positives"], task, key, m[key])
            assert 0.0 <= m["threshold"] <= 1.0
            assert m["tp"] + m["fn"] == m["positives"] > 0  # held-out clips contain successes of each task
            assert m["fp"] + m["tn"] == m["negatives"] > 0
            assert sum(m["episodes"].values()) >= 1
        assert isinstance(row["meets_target"], bool)
    targets = result["targets"]
    assert targets["precision"] == 0.95 and targets["recall"] == 0.8 and targets["max_positives"] == 20
    assert targets["met"] == bool(targets["met_by"])
    assert result["robofume_table2"]["precision"] == [0.153, 0.92, 0.243]

    latency = result["latency"]
    assert [(r["threads"], r["batch"]) for r in latency] == [(1, 1), (1, 4)]
    for r in latency:
        assert 0 < r["median_ms_per_frame"] <= r["p90_ms_per_frame"]
        assert r["median_cpu_ms_per_frame"] > 0
        assert r["median_ms_per_call"] == pytest.approx(r["median_ms_per_frame"] * r["batch"], rel=0.02)
    assert result["latency_summary"]["frame_budget_ms"] == 100.0

    on_disk = json.loads((out / RESULT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| probe | 2 / 4 |" in markdown_tables(result)


def test_session_clips_hold_success_and_keep_splits_apart(quick: tuple[dict[str, Any], Path]) -> None:
    result, _out = quick
    clip_dir = Path(result["data"]["clips"])
    manifest = json.loads((clip_dir / CLIPS_MANIFEST).read_text())
    assert manifest["complete"] and manifest["settings"]["hold_frames"] == 4
    seeds = {}
    for split in ("label_pool", "heldout"):
        clips = [ClipInfo(**c) for c in manifest["clips"][split]]
        seeds[split] = {c.seed for c in clips}
        assert {c.task for c in clips if c.onset is not None} == set(TASK_NAMES)
        for clip in clips:
            episode = load_episode(clip_dir / split / clip.path)
            assert np.array_equal(episode.success, clip.flags())
            meta = episode.metadata
            assert meta["bench_clip"]["split"] == split and meta["truncated"] and not meta["terminated"]
            if clip.onset is None:
                assert meta["kind"] == "failures" and not episode.success.any()
            else:
                # the clip goes on hold_frames frames after the first success, and the success persists
                assert meta["kind"] == "demos" and episode.success[clip.onset]
                assert len(episode.success) - 1 - clip.onset == 4
                assert episode.success[clip.onset :].sum() >= 3
                assert not episode.success[: clip.onset].any()
    assert not seeds["label_pool"] & seeds["heldout"]
    assert result["data"]["seeds_disjoint"]
    assert result["data"]["label_pool"]["forward"]["success_frames"] >= 2


def test_labels_come_from_the_label_pool_with_true_verdicts(quick: tuple[dict[str, Any], Path]) -> None:
    result, out = quick
    pool = Path(result["data"]["clips"]) / "label_pool"
    labels = load_labels(out / "runs" / "probe_n02" / "labels.json")
    assert not (out / "runs" / "probe_n00" / "labels.json").exists()
    for task in TASK_NAMES:
        mine = [lb for lb in labels if lb.task == task]
        assert sum(lb.success for lb in mine) == 2 and sum(not lb.success for lb in mine) == 4
    for label in labels:
        episode = load_episode(pool / label.episode)
        assert episode.task == label.task
        assert bool(episode.success[label.frame]) == label.success


def test_clips_are_cached(quick: tuple[dict[str, Any], Path]) -> None:
    result, out = quick
    cfg = ClassifierBenchConfig.preset("quick")
    manifest = Path(result["data"]["clips"]) / CLIPS_MANIFEST
    before = manifest.stat().st_mtime_ns
    folder, clips = prepare_clips(cfg, str(out / "bench_data"), result["data"]["frame_size"])
    assert os.path.samefile(folder, result["data"]["clips"])
    assert manifest.stat().st_mtime_ns == before  # reused, not recorded again
    assert len(clips["heldout"]) == cfg.test_sessions * cfg.attempts_per_session


def _clip(path: str, task: str, flags: str) -> ClipInfo:
    onset = flags.find("1")
    return ClipInfo(path, task, 0, 0, 1, None, flags, None if onset < 0 else onset)


def test_label_draws_are_nested_spread_and_hard_first() -> None:
    clips = [
        _clip("forward_000000.npz", "forward", "0000001111"),
        _clip("forward_000001.npz", "forward", "00000111"),
        _clip("forward_000002.npz", "forward", "000000"),
        _clip("backward_000000.npz", "backward", "0001111"),
    ]
    pos, neg = label_orders(clips, "forward", hard_window=2, seed=3)
    assert {p for p, _ in pos[:2]} == {"forward_000000.npz", "forward_000001.npz"}  # round-robin over clips
    assert len(pos) == 7 and len(neg) == 6 + 5 + 6
    hard = {("forward_000000.npz", 4), ("forward_000000.npz", 5)}
    hard |= {("forward_000001.npz", 3), ("forward_000001.npz", 4)}
    assert neg[0] in hard and neg[2] in hard and neg[1] not in hard  # alternate hard / other
    small = select_labels(clips, 2, 1, 2, seed=3)
    large = select_labels(clips, 3, 1, 2, seed=3)
    assert set(small) <= set(large)
    assert sum(lb.success for lb in large if lb.task == "backward") == 3
    with pytest.raises(ClassifierBenchError, match="label-pool clips hold 4 success"):
        select_labels(clips, 5, 2, 2, seed=3)


def test_config_errors_are_one_line() -> None:
    with pytest.raises(ClassifierBenchError, match="unknown preset"):
        ClassifierBenchConfig.preset("huge")
    with pytest.raises(ClassifierBenchError, match="unknown classifier bench setting"):
        ClassifierBenchConfig.preset("quick", positive=3)
    with pytest.raises(ClassifierBenchError, match="positives"):
        ClassifierBenchConfig(positives=(0, -5))
    with pytest.raises(ClassifierBenchError, match="methods"):
        ClassifierBenchConfig(methods=("magic",))
    assert ClassifierBenchConfig.preset("full").positives == (0, 5, 10, 20)
    assert ClassifierBenchConfig.preset("full", backbone_path="x").resolved_backbone_image_size() == 128


def test_targets_and_latency_summaries() -> None:
    cfg = ClassifierBenchConfig.preset("full")

    def row(n: int, p: float, r: float) -> dict[str, Any]:
        m = {"precision": p, "recall": r, "confirmed_precision": p, "confirmed_recall": r}
        m |= {"episode_precision": 1.0, "episode_recall": 1.0}
        return {"method": "probe", "positives": n, "tasks": {t: dict(m) for t in TASK_NAMES}}

    assert targets_summary([row(5, 0.99, 0.5), row(20, 0.96, 0.85)], cfg)["met_by"] == ["probe@20"]
    missed = targets_summary([row(20, 0.94, 0.99), row(40, 1.0, 1.0)], cfg)
    assert not missed["met"] and missed["met_episode_level_by"] == ["probe@20"]
    fast = {"backbone": "x (default)", "batch": 1, "threads": 1, "p90_ms_per_frame": 99.0}
    assert latency_summary([fast], cfg)["default_keeps_up"] is True
    assert latency_summary([{**fast, "p90_ms_per_frame": 101.0}], cfg)["default_keeps_up"] is False
