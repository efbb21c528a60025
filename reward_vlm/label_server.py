"""The labeling tool's server: a local web page to mark episode frames success/failure per task.

Plain Python (``http.server``), no web framework, no build step. It serves the static page in
``reward_vlm/label_web/`` and a small JSON API:

=====================================  =========================================================
``GET  /api/episodes``                 episodes under the data folder (damaged ones flagged)
``GET  /api/episodes/<id>/frames/<i>.png``  one frame as PNG (``?full=1``: not downscaled)
``GET  /api/labels``                   all labels, counts per task, undo depth
``POST /api/labels``                   ``{"changes": [{"episode", "frame", "task", "success"}]}``
                                       (``success``: true, false, or null to clear), one undo step
``POST /api/undo``                     revert the last change
``POST /api/train``                    start classifier training in a background thread
``GET  /api/train/status``             training state, progress, precision/recall per task
=====================================  =========================================================

Episode ids are paths relative to the data folder (``demos/forward_000003.npz``), URL-encoded.
Every label change is written at once through :func:`reward_vlm.labels.update_labels` (atomic,
locked read-modify-write), so labels survive a crash or restart. The server listens on loopback
only unless ``allow_remote`` is set, and rejects requests whose ``Host`` or ``Origin`` is not
local (DNS rebinding, cross-site form posts).

Example::

    from reward_vlm.label_server import LabelServer, LabelServerConfig
    with LabelServer(LabelServerConfig(data="data/mock")) as server:
        print(server.url)
        server.serve_forever()
"""

from __future__ import annotations

import dataclasses
import http.server
import importlib.resources
import io
import ipaddress
import json
import math
import os
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reward_vlm.labels import (
    LABELS_FILENAME,
    FrameLabel,
    LabelError,
    label_counts,
    load_labels,
    update_labels,
)
from robofume.data.episode_format import FORMAT_NAME, FORMAT_VERSION, Episode, list_episodes, load_episode
from robofume.sim.tasks import TASK_NAMES

MAX_BODY_BYTES = 1 << 20
DRAIN_LIMIT_BYTES = 16 << 20
MAX_CHANGES_PER_REQUEST = 20_000
UNDO_DEPTH = 1000
PROGRESS_HISTORY = 200
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

ProgressFn = Callable[[dict[str, Any]], None]
Trainer = Callable[[ProgressFn], dict[str, Any]]
"""Runs classifier training, calling ``progress`` with dicts like ``{"phase": "train", "epoch": 3}``,
and returns ``{task: {"precision", "recall", "accuracy", "threshold", "positives", "negatives"}}``."""


class LabelServerError(ValueError):
    """The labeling tool cannot start: bad data folder, refused bind address, port in use."""


class ApiError(Exception):
    """A request the API refuses, with its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class LabelServerConfig:
    """Settings of ``robofume label``.

    Attributes:
        data: folder of ``robofume-episode`` files (searched recursively).
        labels: label file; default ``<data>/labels.json``.
        host: address to listen on; loopback unless ``allow_remote``.
        port: TCP port; 0 picks a free one.
        allow_remote: permit a non-loopback ``host`` (the API has no authentication).
        thumb_side: frames larger than this many pixels on a side are downscaled for thumbnails.
        episode_cache_mb: memory budget for decoded episodes (least recently used evicted).
        png_cache_mb: memory budget for encoded thumbnails.
    """

    data: str
    labels: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    allow_remote: bool = False
    thumb_side: int = 160
    episode_cache_mb: int = 256
    png_cache_mb: int = 64

    @property
    def labels_path(self) -> str:
        """The label file this server reads and writes."""
        return self.labels or os.path.join(self.data, LABELS_FILENAME)


def check_bind_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback listen address unless ``allow_remote``; one-line :class:`LabelServerError`."""
    if allow_remote:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LabelServerError(
            f"refusing to listen on {host or 'all interfaces'!s}: the labeling tool has no authentication; "
            "use a loopback address (127.0.0.1) or pass --allow-remote"
        )


# --------------------------------------------------------------------------------------------------
# PNG encoding and thumbnails


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """Encode an 8-bit RGB (H, W, 3) or grey (H, W) image as PNG bytes (zlib, no extra dependency)."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"encode_png needs uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    color_type = 2 if image.ndim == 3 else 0
    rows = image.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, level))
        + _png_chunk(b"IEND", b"")
    )


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink ``image`` by an integer factor (box average) until no side exceeds ``max_side``."""
    factor = math.ceil(max(image.shape[0], image.shape[1]) / max(1, max_side))
    if factor <= 1:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor, -1).astype(np.float32)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8).reshape(h // factor, w // factor, -1)


class _ByteLRU:
    """A thread-safe least-recently-used map bounded by the total size of its values."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: OrderedDict[Any, tuple[int, Any]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Any, value: Any, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[0]
            self._items[key] = (size, value)
            self._total += size
            while self._total > self._max and len(self._items) > 1:
                _, (dropped, _) = self._items.popitem(last=False)
                self._total -= dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# --------------------------------------------------------------------------------------------------
# Episodes


@dataclass
class EpisodeInfo:
    """What the episode list shows about one file, read without decoding its frames."""

    id: str
    path: str
    stamp: tuple[int, int]
    task: str | None = None
    kind: str | None = None
    instruction: str | None = None
    frames: int = 0
    height: int = 0
    width: int = 0
    damaged: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API's view (no absolute path)."""
        return {
            "id": self.id,
            "task": self.task,
            "kind": self.kind,
            "instruction": self.instruction,
            "frames": self.frames,
            "height": self.height,
            "width": self.width,
            "damaged": self.damaged,
            "version": f"{self.stamp[0]:x}-{self.stamp[1]:x}",
        }


def _read_npy_header(z: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    with z.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), np.dtype(dtype)


def _fill_info(info: EpisodeInfo, meta: Any, shape: tuple[int, ...], dtype: np.dtype) -> EpisodeInfo:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        info.damaged = f"not a {FORMAT_NAME} file"
    elif meta.get("version") != FORMAT_VERSION:
        info.damaged = f"format version {meta.get('version')} is not supported"
    elif meta.get("task") not in TASK_NAMES:
        info.damaged = f"unknown task {meta.get('task')!r}"
    elif dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or shape[0] < 1:
        info.damaged = f"frames must be uint8 (T+1, H, W, 3), got {dtype} {shape}"
    else:
        info.task = str(meta["task"])
        info.kind = str(meta.get("kind") or os.path.dirname(info.id) or "")
        info.instruction = str(meta["instruction"]) if meta.get("instruction") is not None else None
        info.frames, info.height, info.width = int(shape[0]), int(shape[1]), int(shape[2])
    return info


def _meta_from_npy(raw: bytes) -> Any:
    """Decode the ``meta`` member (a uint8 .npy array of UTF-8 JSON)."""
    array = np.load(io.BytesIO(raw), allow_pickle=False)
    return json.loads(array.tobytes().decode())


class EpisodeCatalog:
    """The episodes under a folder, rescanned on demand, with LRU caches of decoded frames and PNGs."""

    def __init__(self, root: str, episode_cache_bytes: int, png_cache_bytes: int, thumb_side: int) -> None:
        self.root = root
        self.thumb_side = thumb_side
        self._infos: dict[str, EpisodeInfo] = {}
        self._lock = threading.Lock()
        self._episodes = _ByteLRU(episode_cache_bytes)
        self._pngs = _ByteLRU(png_cache_bytes)
        self._load_locks: dict[str, threading.Lock] = {}
        self.scan()

    def scan(self) -> list[EpisodeInfo]:
        """Rescan the folder; unchanged files keep their cached info."""
        found: dict[str, EpisodeInfo] = {}
        for path in list_episodes(self.root):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            rel = os.path.relpath(path, self.root).replace(os.sep, "/")
            with self._lock:
                old = self._infos.get(rel)
            if old is not None and old.stamp == (st.st_mtime_ns, st.st_size):
                found[rel] = old
            else:
                found[rel] = peek_episode(path, self.root)
        with self._lock:
            self._infos = found
            return list(found.values())

    def info(self, episode_id: str) -> EpisodeInfo:
        """The listed episode ``episode_id``; :class:`ApiError` 404 if unknown."""
        with self._lock:
            info = self._infos.get(episode_id)
        if info is None:
            raise ApiError(404, f"unknown episode {episode_id!r}")
        return info

    def infos(self) -> list[EpisodeInfo]:
        """The episodes found by the last scan."""
        with self._lock:
            return list(self._infos.values())

    def episode(self, info: EpisodeInfo) -> Episode:
        """The decoded episode (cached); a damaged file is marked and raises :class:`ApiError` 422."""
        if info.damaged:
            raise ApiError(422, f"episode {info.id} is damaged: {info.damaged}")
        key = (info.path, info.stamp)
        cached = self._episodes.get(key)
        if cached is not None:
            return cached
        with self._lock:
            load_lock = self._load_locks.setdefault(info.path, threading.Lock())
        with load_lock:  # concurrent thumbnail requests decode the file once
            cached = self._episodes.get(key)
            if cached is not None:
                return cached
            try:
                episode = load_episode(info.path)
            except FileNotFoundError:
                raise ApiError(404, f"episode {info.id} is gone from {self.root}") from None
            except ValueError as exc:
                info.damaged = str(exc).removeprefix(f"{info.path}: ")
                raise ApiError(422, f"episode {info.id} is damaged: {info.damaged}") from None
            self._episodes.put(key, episode, int(episode.frames.nbytes) + 4096)
            return episode

    def frame_png(self, episode_id: str, frame: int, full: bool = False) -> bytes:
        """Frame ``frame`` of ``episode_id`` as PNG, downscaled to the thumbnail size unless ``full``."""
        info = self.info(episode_id)
        if info.damaged:
            raise ApiError(422, f"episode {info.id} is damaged: {info.damaged}")
        if not 0 <= frame < info.frames:
            raise ApiError(400, f"frame {frame} is out of range for {info.id} ({info.frames} frames)")
        key = (info.path, info.stamp, frame, full)
        png = self._pngs.get(key)
        if png is None:
            image = self.episode(info).frames[frame]
            png = encode_png(image if full else downscale(image, self.thumb_side))
            self._pngs.put(key, png, len(png))
        return png


def peek_episode(path: str, root: str) -> EpisodeInfo:
    """Read an episode's metadata and frame shape without decoding frames; damage is reported, not raised."""
    try:
        st = os.stat(path)
    except OSError as exc:
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        return EpisodeInfo(id=rel, path=path, stamp=(0, 0), damaged=f"unreadable ({exc.strerror})")
    info = EpisodeInfo(
        id=os.path.relpath(path, root).replace(os.sep, "/"), path=path, stamp=(st.st_mtime_ns, st.st_size)
    )
    try:
        with zipfile.ZipFile(path) as z:
            meta = _meta_from_npy(z.read("meta.npy"))
            shape, dtype = _read_npy_header(z, "frames.npy")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError, zlib.error) as exc:
        info.damaged = f"corrupt or truncated episode file ({type(exc).__name__}: {exc})"
        return info
    return _fill_info(info, meta, shape, dtype)


# --------------------------------------------------------------------------------------------------
# Labels with undo


def _label_json(label: FrameLabel) -> dict[str, Any]:
    return dataclasses.asdict(label)


class LabelStore:
    """The labels of one file, changed through locked atomic writes, with an undo history.

    Each change re-reads the file under its lock, so labels written meanwhile by another writer
    (the session's auto-labeler) are kept; ``external_change`` tells the page to reload them.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._labels: dict[tuple[str, int, str], FrameLabel] = {lab.key: lab for lab in load_labels(path)}
        self._undo: list[list[tuple[tuple[str, int, str], FrameLabel | None]]] = []
        self.revision = 0

    def labels(self) -> tuple[list[FrameLabel], int]:
        """All labels and the revision they belong to."""
        with self._lock:
            return list(self._labels.values()), self.revision

    @property
    def undo_depth(self) -> int:
        """How many changes can be undone."""
        with self._lock:
            return len(self._undo)

    def apply(
        self, changes: list[tuple[tuple[str, int, str], FrameLabel | None]], record: bool = True
    ) -> bool:
        """Set (label) or clear (None) each key, save, and push one undo step; return ``external_change``."""
        before: dict[tuple[str, int, str], FrameLabel | None] = {}
        on_disk: dict[tuple[str, int, str], FrameLabel] = {}

        def change(current: list[FrameLabel]) -> list[FrameLabel]:
            by_key = {lab.key: lab for lab in current}
            on_disk.update(by_key)
            for key, new in changes:
                before.setdefault(key, by_key.get(key))
                by_key.pop(key, None)
                if new is not None:
                    by_key[key] = new
            return list(by_key.values())

        with self._lock:
            try:
                saved = update_labels(self.path, change)
            except LabelError as exc:
                raise ApiError(500, f"labels not saved, file left as it is: {exc}") from None
            except OSError as exc:
                raise ApiError(500, f"labels not saved: cannot write {self.path} ({exc.strerror})") from None
            external = on_disk != self._labels
            self._labels = {lab.key: lab for lab in saved}
            self.revision += 1
            if record and any(before[key] != new for key, new in changes):
                self._undo.append(list(before.items()))
                del self._undo[:-UNDO_DEPTH]
            return external

    def undo(self) -> tuple[list[tuple[tuple[str, int, str], FrameLabel | None]], bool]:
        """Revert the last recorded change; return the restored (key, label) pairs and ``external_change``."""
        with self._lock:
            if not self._undo:
                raise ApiError(409, "nothing to undo")
            step = self._undo.pop()
        try:
            external = self.apply(step, record=False)
        except ApiError:
            with self._lock:
                self._undo.append(step)
            raise
        return step, external


# --------------------------------------------------------------------------------------------------
# Training


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Plain JSON types only (numpy scalars to Python numbers; NaN/inf to None)."""
    if depth > 6:
        return None
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    return str(value)


class TrainingJob:
    """One classifier training at a time in a background thread, with its progress and result."""

    def __init__(self, trainer: Trainer | None) -> None:
        self.trainer = trainer
        self._lock = threading.Lock()
        self._state = "idle"
        self._events: list[dict[str, Any]] = []
        self._events_total = 0
        self._result: dict[str, Any] | None = None
        self._error: str | None = None
        self._started: float | None = None
        self._finished: float | None = None
        self._thread: threading.Thread | None = None

    def start(self, label_counts_now: dict[str, dict[str, int]]) -> None:
        """Start training; :class:`ApiError` 503 without a trainer, 409 while one runs."""
        if self.trainer is None:
            raise ApiError(503, "training is not available in this server (no trainer configured)")
        with self._lock:
            if self._state == "running":
                raise ApiError(409, "training is already running")
            self._state = "running"
            self._events = [{"phase": "start", "labels": label_counts_now}]
            self._events_total = 1
            self._result = None
            self._error = None
            self._started = time.time()
            self._finished = None
            self._thread = threading.Thread(target=self._run, name="label-train", daemon=True)
            self._thread.start()

    def _progress(self, event: dict[str, Any]) -> None:
        safe = _json_safe(event) if isinstance(event, dict) else {"message": str(event)}
        with self._lock:
            self._events.append(safe)
            self._events_total += 1
            del self._events[:-PROGRESS_HISTORY]

    def _run(self) -> None:
        assert self.trainer is not None
        try:
            result = self.trainer(self._progress)
            if not isinstance(result, dict):
                raise TypeError(f"trainer returned {type(result).__name__}, not a dict of metrics per task")
            safe = _json_safe(result)
            with self._lock:
                self._result, self._state = safe, "done"
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not isinstance(exc, (ValueError, OSError, ImportError)):  # a bug, not a user error: keep it
                traceback.print_exc()
            with self._lock:
                self._error, self._state = message, "failed"
        finally:
            with self._lock:
                self._finished = time.time()

    def status(self) -> dict[str, Any]:
        """State (idle, running, done, failed), latest progress, recent events, result or error."""
        with self._lock:
            now = self._finished or time.time()
            return {
                "available": self.trainer is not None,
                "state": self._state,
                "progress": self._events[-1] if self._events else None,
                "events": list(self._events[-20:]),
                "events_total": self._events_total,
                "result": self._result,
                "error": self._error,
                "elapsed_s": round(now - self._started, 3) if self._started else None,
            }

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running training to end; True if none is running afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


# --------------------------------------------------------------------------------------------------
# The application (HTTP-independent) and the HTTP server


@dataclass
class Response:
    """What a request gets back."""

    status: int
    body: bytes
    content_type: str = "application/json"
    cache: str = "no-store"


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, (json.dumps(payload, separators=(",", ":")) + "\n").encode())


def _parse_change(item: Any, index: int) -> tuple[str, int, str, bool | None]:
    if not isinstance(item, dict):
        raise ApiError(400, f"change {index} must be an object with episode, frame, task, success")
    extra = set(item) - {"episode", "frame", "task", "success"}
    if extra:
        raise ApiError(400, f"change {index} has unknown fields: {', '.join(sorted(extra))}")
    missing = {"episode", "frame", "task", "success"} - set(item)
    if missing:
        raise ApiError(400, f"change {index} lacks: {', '.join(sorted(missing))}")
    episode, frame, task, success = item["episode"], item["frame"], item["task"], item["success"]
    if not isinstance(episode, str):
        raise ApiError(400, f"change {index}: episode must be a string")
    if isinstance(frame, bool) or not isinstance(frame, int):
        raise ApiError(400, f"change {index}: frame must be an integer, got {frame!r}")
    if task not in TASK_NAMES:
        raise ApiError(
            400, f"change {index}: unknown task {task!r}; expected one of: {', '.join(TASK_NAMES)}"
        )
    if success is not None and not isinstance(success, bool):
        raise ApiError(400, f"change {index}: success must be true, false or null, got {success!r}")
    return episode, frame, task, success


class LabelApp:
    """The labeling tool without HTTP: routes a request to the catalog, the labels and training."""

    def __init__(self, config: LabelServerConfig, trainer: Trainer | None = None) -> None:
        if not os.path.isdir(config.data):
            raise LabelServerError(f"episode folder {config.data} does not exist")
        self.config = config
        self.catalog = EpisodeCatalog(
            config.data, config.episode_cache_mb << 20, config.png_cache_mb << 20, config.thumb_side
        )
        try:
            self.store = LabelStore(config.labels_path)
        except LabelError as exc:
            raise LabelError(f"{exc}; not starting, file left as is (repair it or move it aside)") from None
        self.training = TrainingJob(trainer)
        self._static: dict[str, bytes] = {}

    # -- views ------------------------------------------------------------------------------------

    def _labels_payload(self) -> dict[str, Any]:
        labels, revision = self.store.labels()
        known = {info.id for info in self.catalog.infos()}
        return {
            "labels": [_label_json(lab) for lab in labels],
            "counts": label_counts(labels),
            "revision": revision,
            "undo_depth": self.store.undo_depth,
            "orphans": sum(lab.episode not in known for lab in labels),
            "path": self.config.labels_path,
        }

    def _change_payload(self, touched: list[tuple[str, int, str]], external: bool) -> dict[str, Any]:
        labels, revision = self.store.labels()
        by_key = {lab.key: lab for lab in labels}
        return {
            "changed": [
                {
                    "episode": k[0],
                    "frame": k[1],
                    "task": k[2],
                    "success": by_key[k].success if k in by_key else None,
                }
                for k in dict.fromkeys(touched)
            ],
            "counts": label_counts(labels),
            "revision": revision,
            "undo_depth": self.store.undo_depth,
            "external_change": external,
        }

    def _episodes_payload(self) -> dict[str, Any]:
        infos = self.catalog.scan()
        return {
            "root": os.path.abspath(self.config.data),
            "tasks": list(TASK_NAMES),
            "episodes": [info.to_json() for info in infos],
            "damaged": sum(info.damaged is not None for info in infos),
        }

    def _static_file(self, name: str) -> bytes:
        if name not in self._static:
            self._static[name] = (
                importlib.resources.files("reward_vlm").joinpath("label_web", name).read_bytes()
            )
        return self._static[name]

    # -- routing ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes | None) -> Response:
        """Answer one request; API errors become JSON ``{"error": ...}`` with their status."""
        try:
            return self._route(method, target, body)
        except ApiError as exc:
            return _json_response({"error": exc.message}, exc.status)

    def _route(self, method: str, target: str, body: bytes | None) -> Response:
        parsed = urllib.parse.urlsplit(target)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query)
        if method == "GET":
            if path in STATIC_FILES:
                name, content_type = STATIC_FILES[path]
                return Response(200, self._static_file(name), content_type, "no-cache")
            if path == "/favicon.ico":
                return Response(204, b"", "image/x-icon", "max-age=86400")
            if path == "/api/episodes":
                return _json_response(self._episodes_payload())
            if path.startswith("/api/episodes/") and "/frames/" in path:
                return self._frame(path, query)
            if path == "/api/labels":
                return _json_response(self._labels_payload())
            if path == "/api/train/status":
                return _json_response(self.training.status())
            if path.startswith("/api/"):
                raise ApiError(404, f"no such API endpoint: GET {path}")
            raise ApiError(404, f"not found: {path}")
        if method == "POST":
            if path == "/api/labels":
                return self._post_labels(self._json_body(body))
            if path == "/api/undo":
                step, external = self.store.undo()
                return _json_response(self._change_payload([key for key, _ in step], external))
            if path == "/api/train":
                labels, _ = self.store.labels()
                self.training.start(label_counts(labels))
                return _json_response(self.training.status(), 202)
            raise ApiError(404, f"no such API endpoint: POST {path}")
        raise ApiError(405, f"method {method} is not allowed")

    def _frame(self, path: str, query: dict[str, list[str]]) -> Response:
        encoded_id, _, frame_part = path[len("/api/episodes/") :].rpartition("/frames/")
        episode_id = urllib.parse.unquote(encoded_id)
        if not frame_part.endswith(".png") or not frame_part[:-4].isdigit():
            raise ApiError(400, f"frame must be a non-negative integer followed by .png, got {frame_part!r}")
        full = query.get("full", ["0"])[-1] in ("1", "true")
        png = self.catalog.frame_png(episode_id, int(frame_part[:-4]), full=full)
        return Response(200, png, "image/png", "private, max-age=3600")

    @staticmethod
    def _json_body(body: bytes | None) -> Any:
        if not body:
            raise ApiError(400, "request body must be JSON, got nothing")
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON ({exc})") from None

    def _post_labels(self, payload: Any) -> Response:
        items = payload.get("changes") if isinstance(payload, dict) and "changes" in payload else [payload]
        if not isinstance(items, list) or not items:
            raise ApiError(400, "'changes' must be a non-empty list")
        if len(items) > MAX_CHANGES_PER_REQUEST:
            raise ApiError(400, f"at most {MAX_CHANGES_PER_REQUEST} changes per request, got {len(items)}")
        changes: list[tuple[tuple[str, int, str], FrameLabel | None]] = []
        for index, item in enumerate(items):
            episode, frame, task, success = _parse_change(item, index)
            try:
                info = self.catalog.info(episode)
            except ApiError:
                raise ApiError(400, f"change {index}: unknown episode {episode!r}") from None
            if info.damaged:
                raise ApiError(400, f"change {index}: episode {episode} is damaged and cannot be labelled")
            if not 0 <= frame < info.frames:
                raise ApiError(
                    400, f"change {index}: frame {frame} is out of range for {episode} ({info.frames} frames)"
                )
            key = (episode, frame, task)
            changes.append((key, None if success is None else FrameLabel(episode, frame, task, success)))
        external = self.store.apply(changes)
        return _json_response(self._change_payload([key for key, _ in changes], external))


class _Handler(http.server.BaseHTTPRequestHandler):
    """Translates HTTP to :meth:`LabelApp.handle`, enforcing local Host/Origin and the body size limit."""

    protocol_version = "HTTP/1.1"
    server_version = "robofume-label"
    app: LabelApp
    allowed_hosts: frozenset[str]
    check_hosts: bool

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tool prints its URL and errors only."""

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", response.cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        if response.content_type.startswith("text/html"):
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
                "frame-ancestors 'none'",
            )
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _refuse(self, status: int, message: str) -> None:
        self._send(_json_response({"error": message}, status))

    def _host_ok(self) -> bool:
        if not self.check_hosts:
            return True
        host = self.headers.get("Host", "")
        name = urllib.parse.urlsplit(f"//{host}").hostname or ""
        if name not in self.allowed_hosts:
            self._refuse(403, f"forbidden Host {host!r}: open the tool through its local address")
            return False
        origin = self.headers.get("Origin")
        if origin is not None and (urllib.parse.urlsplit(origin).hostname or "") not in self.allowed_hosts:
            self._refuse(403, f"forbidden Origin {origin!r}")
            return False
        return True

    def do_GET(self) -> None:
        """Serve the page, frames and API reads."""
        if self._host_ok():
            self._send(self.app.handle("GET", self.path, None))

    def do_HEAD(self) -> None:
        """Like GET without the body."""
        self.do_GET()

    def do_POST(self) -> None:
        """API writes: JSON bodies up to :data:`MAX_BODY_BYTES`."""
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text is not None else 0
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._refuse(400, f"bad Content-Length {length_text!r}")
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            if length <= DRAIN_LIMIT_BYTES:  # read and drop it, so the client sees the answer, not a reset
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(1 << 16, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            self._refuse(413, f"request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length) if length else b""
        if not self._host_ok():
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if body and content_type != "application/json":
            self._refuse(415, f"POST bodies must be application/json, got {content_type or 'no type'!r}")
            return
        self._send(self.app.handle("POST", self.path, body))

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._refuse(405, f"method {self.command} is not allowed")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815


class _ThreadingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that goes away mid-answer (page closed, thumbnails of a left episode) is normal."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class LabelServer:
    """The labeling tool's HTTP server; ``trainer`` (optional) runs when the page's Train button is pressed.

    Raises :class:`LabelServerError` for a refused address or a port in use, and
    :class:`reward_vlm.labels.LabelError` if the label file is damaged (it is never overwritten).
    """

    def __init__(self, config: LabelServerConfig, trainer: Trainer | None = None) -> None:
        check_bind_host(config.host, config.allow_remote)
        if not 0 <= config.port <= 65535:
            raise LabelServerError(f"port must be 0-65535 (0: a free one), got {config.port}")
        self.config = config
        self.app = LabelApp(config, trainer)
        allowed = set(LOCAL_HOST_NAMES) | {config.host.strip("[]")}
        handler = type(
            "LabelHandler",
            (_Handler,),
            {"app": self.app, "allowed_hosts": frozenset(allowed), "check_hosts": not config.allow_remote},
        )
        server_cls = _ThreadingServer6 if ":" in config.host else _ThreadingServer
        try:
            self.httpd = server_cls((config.host.strip("[]"), config.port), handler)
        except OSError as exc:
            raise LabelServerError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """The page's address."""
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` or Ctrl-C."""
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> LabelServer:
        """Serve in a background thread; return self."""
        self._thread = threading.Thread(target=self.serve_forever, name="label-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (a running training keeps its thread)."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> LabelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
