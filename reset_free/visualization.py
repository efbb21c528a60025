"""What the session looks like in RViz2, without ROS: the annotated camera frame and the marker geometry.

:class:`SessionMonitor` collects what the visualizer node hears (phase, controller status, classifier
verdicts, end-effector poses) and hands out :class:`MonitorState` snapshots; :func:`render_overlay`
draws one onto a camera frame (Pillow); :func:`build_markers` turns it, the end-effector trail and the
safety workspace box into :class:`MarkerSpec` values that ``reset_free.visualizer_node`` converts to
``visualization_msgs/Marker``.

    >>> import numpy as np
    >>> monitor = SessionMonitor(trail_length=100)
    >>> monitor.on_phase("forward", now=0.0)
    >>> render_overlay(np.zeros((128, 128, 3), np.uint8), monitor.snapshot(now=0.0), size=384).shape
    (384, 384, 3)
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
RGBA = tuple[float, float, float, float]
Point = tuple[float, float, float]

PHASE_COLORS: dict[str, RGB] = {
    "forward": (66, 135, 245),
    "backward": (245, 150, 40),
    "homing": (120, 200, 220),
    "paused": (240, 190, 40),
    "help_needed": (230, 50, 50),
    "estop": (200, 0, 0),
}
"""Colour of each controller phase (frame border, trail, status text)."""
UNKNOWN_COLOR: RGB = (150, 150, 150)
VERDICT_COLORS: dict[str, RGB] = {
    "confirmed": (40, 200, 70),
    "success": (160, 215, 60),
    "failure": (220, 60, 50),
    "unknown": UNKNOWN_COLOR,
}
"""Colour of the success-probability bar by verdict (``confirmed`` = a confirmed success)."""
_SHORT = {"forward": "fwd", "backward": "bwd"}
_BAR_BG: RGB = (25, 25, 25)
_TEXT: RGB = (240, 240, 240)
_MIN_SIZE, _MAX_SIZE = 64, 2048


class VisualizationError(ValueError):
    """A bad input to the drawing or marker code (wrong frame shape, size out of range, ...)."""


def phase_color(phase: str) -> RGB:
    """RGB colour of a controller phase (grey when unknown)."""
    return PHASE_COLORS.get(phase, UNKNOWN_COLOR)


def rgba(color: RGB, alpha: float = 1.0) -> RGBA:
    """0..255 RGB to the 0..1 RGBA that ``std_msgs/ColorRGBA`` carries."""
    return (color[0] / 255.0, color[1] / 255.0, color[2] / 255.0, float(alpha))


# --- state ----------------------------------------------------------------------------------------


@dataclass
class MonitorState:
    """What the overlay and the status text show at one moment."""

    phase: str = "unknown"
    """Controller phase (``reset_free/phase``): forward, backward, homing, paused, help_needed, estop."""
    reason: str = ""
    """Why the controller is paused or needs help."""
    task: str | None = None
    episode: int | None = None
    episode_step: int | None = None
    episodes: dict[str, int] = field(default_factory=dict)
    """Attempts per task so far."""
    successes: dict[str, int] = field(default_factory=dict)
    """Successful attempts per task so far."""
    help_requests: int = 0
    probability: float = math.nan
    """The classifier's newest success probability (NaN: none yet)."""
    verdict: str = "unknown"
    """The classifier's newest verdict: success, failure or unknown."""
    confirmed: bool = False
    """The newest success verdict is confirmed (counts as a success)."""
    verdict_reason: str = ""
    status_stale: bool = True
    """No controller status or phase for a while (or never): the controller may be dead."""
    verdict_stale: bool = True
    """No classifier verdict for a while (or never)."""

    @property
    def verdict_color(self) -> RGB:
        """Colour of the probability bar."""
        if self.verdict_stale:
            return VERDICT_COLORS["unknown"]
        if self.verdict == "success" and self.confirmed:
            return VERDICT_COLORS["confirmed"]
        return VERDICT_COLORS.get(self.verdict, VERDICT_COLORS["unknown"])

    def banner(self) -> tuple[str, str, RGB] | None:
        """``(title, detail, colour)`` of the banner across the frame, or ``None`` while a task runs."""
        if self.phase == "help_needed":
            return (
                "HELP NEEDED",
                self.reason or "call reset_free/resume when the scene is fixed",
                (PHASE_COLORS["help_needed"]),
            )
        if self.phase == "estop":
            return "E-STOP", self.reason or "release with reset_free/release", PHASE_COLORS["estop"]
        if self.status_stale:
            return "NO CONTROLLER", "no reset_free/status or phase", UNKNOWN_COLOR
        if self.phase == "paused":
            return f"PAUSED: {self.reason}" if self.reason else "PAUSED", "", PHASE_COLORS["paused"]
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return None


def _counts(text: str | None) -> dict[str, int] | None:
    """``'{"backward": 1, "forward": 2}'`` (the controller's JSON) -> a dict; ``None`` if unreadable."""
    try:
        data = json.loads(text or "")
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return {str(k): int(v) for k, v in data.items()}
    except (TypeError, ValueError):
        return None


class Trail:
    """The last ``length`` end-effector positions (with the phase at each), skipping standstill."""

    def __init__(self, length: int, min_step_m: float = 0.001) -> None:
        if length < 2:
            raise VisualizationError(f"trail length must be >= 2 points, got {length}")
        if not min_step_m >= 0:
            raise VisualizationError(f"trail min_step_m must be >= 0, got {min_step_m}")
        self.min_step_m = float(min_step_m)
        self._points: deque[tuple[Point, str]] = deque(maxlen=int(length))

    @property
    def length(self) -> int:
        """Most points kept."""
        return int(self._points.maxlen or 0)

    def add(self, point: Sequence[float], phase: str) -> bool:
        """Append a position (m); ``False`` if it is not finite or within ``min_step_m`` of the last one."""
        p = (float(point[0]), float(point[1]), float(point[2]))
        if not all(math.isfinite(v) for v in p):
            return False
        if self._points and math.dist(self._points[-1][0], p) < self.min_step_m:
            return False
        self._points.append((p, phase))
        return True

    def points(self) -> list[Point]:
        """Positions, oldest first."""
        return [p for p, _ in self._points]

    def phases(self) -> list[str]:
        """The phase at each position, oldest first."""
        return [ph for _, ph in self._points]

    def __len__(self) -> int:
        return len(self._points)


class SessionMonitor:
    """Collects phase, controller status, verdicts and end-effector poses; gives :class:`MonitorState`."""

    def __init__(self, trail_length: int = 200, stale_after_s: float = 3.0) -> None:
        if not stale_after_s > 0:
            raise VisualizationError(f"stale_after_s must be > 0, got {stale_after_s}")
        self.stale_after_s = float(stale_after_s)
        self.trail = Trail(trail_length)
        self._state = MonitorState()
        self._status_time: float | None = None
        self._verdict_time: float | None = None

    def on_phase(self, phase: str, now: float) -> None:
        """A ``reset_free/phase`` message."""
        self._state.phase = phase or "unknown"
        if phase in ("forward", "backward"):
            self._state.task, self._state.reason = phase, ""
        self._status_time = now

    def on_status(self, values: Mapping[str, str], now: float) -> None:
        """The values of a ``reset_free/status`` entry (strings; counters as the controller's JSON)."""
        state = self._state
        if values.get("phase"):
            state.phase = values["phase"]
        state.reason = values.get("reason", state.reason) or ""
        state.task = values.get("task") or state.task
        state.episode = _int(values.get("episode"))
        state.episode_step = _int(values.get("episode_step"))
        state.help_requests = _int(values.get("help_requests")) or 0
        for key in ("episodes", "successes"):
            counts = _counts(values.get(key))
            if counts is not None:
                setattr(state, key, counts)
        self._status_time = now

    def on_verdict(self, status: str, probability: float, confirmed: bool, reason: str, now: float) -> None:
        """A classifier verdict (``reward/verdict``)."""
        self._state.verdict = status if status in ("success", "failure", "unknown") else "unknown"
        self._state.probability = float(probability)
        self._state.confirmed = bool(confirmed)
        self._state.verdict_reason = reason
        self._verdict_time = now

    def on_pose(self, position: Sequence[float]) -> bool:
        """An end-effector position (m, in the marker frame); ``True`` if the trail grew."""
        return self.trail.add(position, self._state.phase)

    def snapshot(self, now: float) -> MonitorState:
        """A copy of the state at ``now`` with the staleness flags set."""
        state = replace(self._state)
        state.episodes, state.successes = dict(state.episodes), dict(state.successes)
        state.status_stale = self._status_time is None or now - self._status_time > self.stale_after_s
        state.verdict_stale = self._verdict_time is None or now - self._verdict_time > self.stale_after_s
        return state


# --- the annotated frame --------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text``, shortened with '...' to fit ``width`` px."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _tasks(state: MonitorState) -> list[str]:
    """Tasks with counts: forward, backward first, then any others by name."""
    known = set(state.episodes) | set(state.successes)
    return [t for t in ("forward", "backward") if t in known] + sorted(known - {"forward", "backward"})


def _counts_text(state: MonitorState) -> str:
    parts = []
    for task in _tasks(state):
        short = _SHORT.get(task, task)
        parts.append(f"{short} {state.successes.get(task, 0)}/{state.episodes.get(task, 0)}")
    return "  ".join(parts)


def render_overlay(frame: np.ndarray, state: MonitorState, size: int = 384) -> np.ndarray:
    """The camera ``frame`` (HxWx3 uint8) scaled to ``size`` px high, with the session drawn on it:
    a border in the phase colour, a top bar (phase, task, episode/step, successes per task), a bottom
    bar (success probability, coloured by the verdict) and a banner when the arm is held."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise VisualizationError(f"expected an HxWx3 uint8 frame, got {got}")
    if not _MIN_SIZE <= size <= _MAX_SIZE:
        raise VisualizationError(f"overlay size must be in [{_MIN_SIZE}, {_MAX_SIZE}] px, got {size}")
    h, w = frame.shape[:2]
    if h < 1 or w < 1:
        raise VisualizationError(f"empty frame {frame.shape}")
    width = max(_MIN_SIZE, round(w * size / h))
    exact = size % h == 0 and width % w == 0
    resample = Image.Resampling.NEAREST if exact else Image.Resampling.BILINEAR
    img = Image.fromarray(np.ascontiguousarray(frame)).resize((width, size), resample)
    draw = ImageDraw.Draw(img)
    small, big = _font(max(9, size // 26)), _font(max(12, size // 11))
    pad = max(2, size // 96)
    bar_h = max(12, size // 14)
    color = phase_color(state.phase)

    # Top bar: phase (in its colour), task, episode/step; success counts on the right.
    draw.rectangle((0, 0, width, bar_h), fill=_BAR_BG)
    label = state.phase.upper().replace("_", " ")
    if state.task and state.phase not in ("forward", "backward"):
        label += f" ({_SHORT.get(state.task, state.task)})"
    draw.text((pad * 2, bar_h // 2), label, fill=color, font=small, anchor="lm")
    x = pad * 3 + draw.textlength(label, font=small)
    right = _counts_text(state)
    right_w = draw.textlength(right, font=small) if right else 0.0
    if state.episode is not None and state.episode >= 0:
        episode = f"ep {state.episode}" + (
            f"  step {state.episode_step}" if state.episode_step is not None else ""
        )
        episode = _fit(draw, episode, small, max(0.0, width - x - right_w - pad * 4))
        draw.text((x + pad, bar_h // 2), episode, fill=_TEXT, font=small, anchor="lm")
    if right:
        draw.text((width - pad * 2, bar_h // 2), right, fill=_TEXT, font=small, anchor="rm")

    # Bottom bar: p(success) with a bar in the verdict's colour.
    top = size - bar_h
    draw.rectangle((0, top, width, size), fill=_BAR_BG)
    p = state.probability
    shown = not state.verdict_stale and math.isfinite(p)
    text = f"p(success) {p:.2f}" if shown else "p(success) --"
    draw.text((pad * 2, top + bar_h // 2), text, fill=_TEXT, font=small, anchor="lm")
    x0 = pad * 3 + draw.textlength("p(success) 0.00", font=small)
    word = (
        "no verdict"
        if state.verdict_stale
        else ("success (confirmed)" if state.verdict == "success" and state.confirmed else state.verdict)
    )
    word_w = draw.textlength(word, font=small)
    x1 = max(x0 + 10, width - word_w - pad * 4)
    y0, y1 = top + pad + 1, size - pad - 2
    draw.rectangle((x0, y0, x1, y1), outline=(90, 90, 90), width=1)
    if shown:
        fill_to = x0 + 1 + (x1 - x0 - 2) * min(max(p, 0.0), 1.0)
        if fill_to > x0 + 1:
            draw.rectangle((x0 + 1, y0 + 1, fill_to, y1 - 1), fill=state.verdict_color)
    draw.text((width - pad * 2, top + bar_h // 2), word, fill=state.verdict_color, font=small, anchor="rm")

    # Banner across the middle while the arm is held.
    banner = state.banner()
    if banner is not None:
        title, detail, banner_color = banner
        band_h = int(big.size * 1.6 + (small.size * 1.4 if detail else 0))
        y = (size - band_h) // 2
        draw.rectangle((0, y, width, y + band_h), fill=banner_color)
        title = _fit(draw, title, big, width - pad * 4)
        draw.text((width / 2, y + big.size * 0.8), title, fill=(255, 255, 255), font=big, anchor="mm")
        if detail:
            detail = _fit(draw, detail, small, width - pad * 4)
            draw.text(
                (width / 2, y + big.size * 1.6 + small.size * 0.6),
                detail,
                fill=(255, 255, 255),
                font=small,
                anchor="mm",
            )

    # Border in the phase colour (inside the bars, so it frames the camera view).
    border = max(2, size // 128)
    draw.rectangle((0, bar_h + 1, width - 1, top - 1), outline=color, width=border)
    return np.frombuffer(img.tobytes(), np.uint8).reshape(size, width, 3)


# --- markers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarkerSpec:
    """One RViz marker, independent of ROS: the node copies it into a ``visualization_msgs/Marker``."""

    ns: str
    marker_id: int
    kind: str
    """``line_strip``, ``line_list`` or ``text``."""
    scale: float
    """Line width (m) for lines, text height (m) for text."""
    color: RGBA
    points: tuple[Point, ...] = ()
    colors: tuple[RGBA, ...] = ()
    """Per-point colours (empty: ``color`` everywhere)."""
    position: Point = (0.0, 0.0, 0.0)
    text: str = ""


def workspace_edges(low: Sequence[float], high: Sequence[float]) -> list[tuple[Point, Point]]:
    """The 12 edges of the axis-aligned box ``low``..``high`` as point pairs."""
    lo = [float(v) for v in low]
    hi = [float(v) for v in high]
    if len(lo) != 3 or len(hi) != 3 or not all(a < b for a, b in zip(lo, hi, strict=True)):
        raise VisualizationError(f"workspace box needs 3D corners with low < high, got {lo} and {hi}")

    def corner(i: int) -> Point:
        return (hi[0] if i & 1 else lo[0], hi[1] if i & 2 else lo[1], hi[2] if i & 4 else lo[2])

    return [(corner(a), corner(a | bit)) for a in range(8) for bit in (1, 2, 4) if not a & bit]


def status_text(state: MonitorState) -> str:
    """The status text shown above the workspace: phase and task, episode, successes per task."""
    phase = state.phase.upper().replace("_", " ")
    lines = [
        phase + (f": {state.reason}" if state.reason and state.phase not in ("forward", "backward") else "")
    ]
    if state.status_stale:
        lines[0] = "NO CONTROLLER STATUS" + (f" (last: {phase})" if state.phase != "unknown" else "")
    detail = []
    if state.task:
        detail.append(f"task {state.task}")
    if state.episode is not None and state.episode >= 0:
        detail.append(f"episode {state.episode}")
    if detail:
        lines.append(", ".join(detail))
    for task in _tasks(state):
        lines.append(f"{task}: {state.successes.get(task, 0)}/{state.episodes.get(task, 0)} successes")
    if state.help_requests:
        lines.append(f"help requests: {state.help_requests}")
    return "\n".join(lines)


def build_markers(
    state: MonitorState,
    trail: Trail,
    workspace: tuple[Sequence[float], Sequence[float]] | None,
    line_width: float = 0.004,
    text_height: float = 0.035,
) -> list[MarkerSpec]:
    """The session's markers: the end-effector trail (coloured by phase, once it has 2 points), the
    safety workspace box and the status text above it (above the trail's end without a box)."""
    markers: list[MarkerSpec] = []
    points = trail.points()
    if len(points) >= 2:
        colors = tuple(rgba(phase_color(ph)) for ph in trail.phases())
        markers.append(
            MarkerSpec(
                "ee_trail", 0, "line_strip", line_width, rgba(phase_color(state.phase)), tuple(points), colors
            )
        )
    if workspace is not None:
        low, high = workspace
        edges = workspace_edges(low, high)
        flat = tuple(p for edge in edges for p in edge)
        markers.append(
            MarkerSpec("workspace", 0, "line_list", line_width / 2, rgba((200, 200, 200), 0.8), flat)
        )
        anchor: Point | None = (
            (float(low[0]) + float(high[0])) / 2,
            (float(low[1]) + float(high[1])) / 2,
            float(high[2]) + 2.5 * text_height,
        )
    else:
        anchor = (points[-1][0], points[-1][1], points[-1][2] + 0.1) if points else None
    if anchor is not None:
        color = UNKNOWN_COLOR if state.status_stale else phase_color(state.phase)
        markers.append(
            MarkerSpec(
                "status", 0, "text", text_height, rgba(color), position=anchor, text=status_text(state)
            )
        )
    return markers
