"""The visualizer's drawing and marker core (no ROS): overlay, banners, workspace box, trail, status text."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reset_free.visualization import (
    PHASE_COLORS,
    VERDICT_COLORS,
    MonitorState,
    SessionMonitor,
    Trail,
    VisualizationError,
    build_markers,
    render_overlay,
    status_text,
    workspace_edges,
)

STATUS = {
    "phase": "forward",
    "reason": "",
    "task": "forward",
    "episode": "12",
    "episode_step": "34",
    "episodes": '{"backward": 6, "forward": 7}',
    "successes": '{"backward": 4, "forward": 5}',
    "help_requests": "0",
}


def frame(h: int = 64, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def running_monitor() -> SessionMonitor:
    monitor = SessionMonitor(trail_length=5, stale_after_s=3.0)
    monitor.on_phase("forward", now=0.0)
    monitor.on_status(STATUS, now=0.0)
    monitor.on_verdict("success", 0.83, True, "", now=0.0)
    return monitor


def band(image: np.ndarray) -> np.ndarray:
    """The middle rows, where a banner goes."""
    h = image.shape[0]
    return image[h // 2 - h // 12 : h // 2 + h // 12].astype(int)


def test_monitor_parses_the_controllers_status() -> None:
    state = running_monitor().snapshot(now=1.0)
    assert (state.phase, state.task, state.episode, state.episode_step) == ("forward", "forward", 12, 34)
    assert state.episodes == {"forward": 7, "backward": 6} and state.successes["forward"] == 5
    assert state.probability == pytest.approx(0.83) and state.confirmed and not state.status_stale
    assert state.verdict_color == VERDICT_COLORS["confirmed"]
    # Garbage values do not crash the monitor: the counters stay as they were.
    monitor = running_monitor()
    monitor.on_status({**STATUS, "episode": "?", "episodes": "not json", "successes": "[1]"}, now=1.0)
    state = monitor.snapshot(now=1.0)
    assert state.episode is None and state.episodes == {"forward": 7, "backward": 6}


def test_monitor_marks_silence_as_stale() -> None:
    assert SessionMonitor().snapshot(now=0.0).status_stale  # nothing heard yet
    state = running_monitor().snapshot(now=10.0)
    assert state.status_stale and state.verdict_stale
    assert state.verdict_color == VERDICT_COLORS["unknown"]
    assert state.banner() is not None and state.banner()[0] == "NO CONTROLLER"
    with pytest.raises(VisualizationError, match="stale_after_s"):
        SessionMonitor(stale_after_s=0)


def test_overlay_size_and_content() -> None:
    state = running_monitor().snapshot(now=0.5)
    out = render_overlay(frame(64, 64), state, size=384)
    assert out.shape == (384, 384, 3) and out.dtype == np.uint8
    wide = render_overlay(frame(48, 64), state, size=240)
    assert wide.shape == (240, 320, 3)
    # The probability bar is filled in the verdict's colour, about 83 % of its length.
    bottom = out[-20:]
    green = np.all(bottom == VERDICT_COLORS["confirmed"], axis=-1)
    assert green.sum() > 500
    # The frame border is drawn in the phase colour.
    assert np.any(np.all(out[:, 0] == PHASE_COLORS["forward"], axis=-1))


def test_banner_pixels_differ_for_paused_vs_running() -> None:
    image = frame()
    running = running_monitor()
    paused = running_monitor()
    paused.on_status({**STATUS, "phase": "paused", "reason": "policy server silent"}, now=0.0)
    help_needed = running_monitor()
    help_needed.on_status({**STATUS, "phase": "help_needed", "reason": "stuck"}, now=0.0)
    a = render_overlay(image, running.snapshot(0.1), 384)
    b = render_overlay(image, paused.snapshot(0.1), 384)
    c = render_overlay(image, help_needed.snapshot(0.1), 384)
    assert running.snapshot(0.1).banner() is None
    assert paused.snapshot(0.1).banner()[0] == "PAUSED: policy server silent"
    assert c is not None and help_needed.snapshot(0.1).banner()[0] == "HELP NEEDED"
    # Running: the middle shows the camera; paused: an amber banner; help: a red one.
    amber = np.all(band(b) == PHASE_COLORS["paused"], axis=-1).mean()
    red = np.all(band(c) == PHASE_COLORS["help_needed"], axis=-1).mean()
    assert amber > 0.5 and red > 0.5
    assert np.all(band(a) == PHASE_COLORS["paused"], axis=-1).mean() < 0.01
    assert np.abs(band(a) - band(b)).mean() > 20


def test_overlay_rejects_bad_input() -> None:
    state = MonitorState()
    with pytest.raises(VisualizationError, match="HxWx3 uint8"):
        render_overlay(np.zeros((64, 64), np.uint8), state)
    with pytest.raises(VisualizationError, match="HxWx3 uint8"):
        render_overlay(np.zeros((64, 64, 3), np.float32), state)
    with pytest.raises(VisualizationError, match="size"):
        render_overlay(frame(), state, size=10)


def test_overlay_with_nothing_known_yet() -> None:
    out = render_overlay(frame(), MonitorState(probability=math.nan), size=128)
    assert out.shape == (128, 128, 3)


def test_workspace_box_has_12_edges() -> None:
    low, high = (0.28, -0.32, 0.012), (0.72, 0.32, 0.35)
    edges = workspace_edges(low, high)
    assert len(edges) == 12 and len({frozenset(e) for e in edges}) == 12
    for a, b in edges:  # each edge is axis-aligned and as long as the box along that axis
        diff = [abs(x - y) for x, y in zip(a, b, strict=True)]
        assert sum(d > 0 for d in diff) == 1
        assert max(diff) == pytest.approx(
            max(h - lo for h, lo, d in zip(high, low, diff, strict=True) if d > 0)
        )
    corners = {p for e in edges for p in e}
    assert len(corners) == 8
    with pytest.raises(VisualizationError, match="low < high"):
        workspace_edges(high, low)


def test_trail_is_bounded_and_skips_standstill() -> None:
    trail = Trail(length=5, min_step_m=0.001)
    for i in range(20):
        trail.add((0.01 * i, 0.0, 0.1), "forward" if i < 15 else "backward")
    assert len(trail) == 5
    assert trail.points()[0][0] == pytest.approx(0.15) and trail.points()[-1][0] == pytest.approx(0.19)
    assert trail.phases() == ["backward"] * 5
    assert not trail.add((0.1904, 0.0, 0.1), "backward")  # under 1 mm: not a new point
    assert not trail.add((math.nan, 0.0, 0.1), "backward")
    with pytest.raises(VisualizationError, match=">= 2"):
        Trail(length=1)


def test_markers_trail_box_and_text() -> None:
    monitor = running_monitor()
    for i in range(12):
        monitor.on_pose((0.3 + 0.01 * i, 0.0, 0.1))
    markers = build_markers(monitor.snapshot(0.5), monitor.trail, ((0.28, -0.32, 0.012), (0.72, 0.32, 0.35)))
    by_ns = {m.ns: m for m in markers}
    assert set(by_ns) == {"ee_trail", "workspace", "status"}
    trail = by_ns["ee_trail"]
    assert trail.kind == "line_strip" and len(trail.points) == 5 and len(trail.colors) == 5
    assert trail.colors[-1][:3] == pytest.approx([c / 255 for c in PHASE_COLORS["forward"]])
    box = by_ns["workspace"]
    assert box.kind == "line_list" and len(box.points) == 24
    text = by_ns["status"]
    assert text.kind == "text" and text.position[2] > 0.35  # above the workspace
    assert text.text.splitlines() == [
        "FORWARD",
        "task forward, episode 12",
        "forward: 5/7 successes",
        "backward: 4/6 successes",
    ]
    # No trail until two points; no box without limits (the text then follows the end effector).
    fresh = SessionMonitor()
    fresh.on_pose((0.5, 0.0, 0.2))
    only = build_markers(fresh.snapshot(0.0), fresh.trail, None)
    assert [m.ns for m in only] == ["status"] and only[0].position[2] == pytest.approx(0.3)
    assert build_markers(SessionMonitor().snapshot(0.0), SessionMonitor().trail, None) == []


def test_status_text_when_held() -> None:
    state = MonitorState(
        phase="help_needed", reason="stuck in both directions", task="backward", help_requests=2
    )
    state.status_stale = False
    assert status_text(state).splitlines()[0] == "HELP NEEDED: stuck in both directions"
    assert "help requests: 2" in status_text(state)
    state.status_stale = True
    assert status_text(state).startswith("NO CONTROLLER STATUS (last: HELP NEEDED)")
