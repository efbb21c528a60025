"""A durable replay buffer for image observations: one writer process, any number of reader processes.

Memory layout
-------------
Observations are stored once, as uint8 frames plus float32 proprioception, in a ring of
``capacity`` slots. An episode occupies consecutive slots o_0..o_T; the slot of o_t also holds
the transition data of step t (a_t, r_t, terminal, MC return), so transition t is
``(o_t, a_t, r_t, o_{t+1})`` with o_{t+1} in the next slot. The last slot of an episode has no
transition, so sampling never pairs one episode's last observation with the next one's first.
Sampling is uniform over every stored transition whose next observation is stored, the open
(still running) episode included. When the ring is full the oldest whole episodes are evicted
(from memory only; disk keeps everything). ``capacity`` counts stored observations, so a full
buffer holds ``capacity - num_episodes`` transitions. Arrays grow on demand (``ndarray.resize``,
which realloc/mremaps large blocks in place) up to ``capacity``; nothing is allocated upfront.
:meth:`ReplayBuffer.sample` gathers o_t and o_{t+1} with one ``np.take`` (its cost is the memory
traffic of 2 x B frames); ``frames``/``next_frames`` of a :class:`Batch` are two halves of one array.
Every slot also holds a write stamp (int64, unique per written observation, never reused), so a
reader can tell whether a slot still holds the observation it saw before: the learner's feature
cache (``policy_server.feature_cache``) keys on (slot, stamp) and then gathers only the frames it
has not encoded yet (``gather(..., frames=False)``, :meth:`ReplayBuffer.frames_at`).

Rewards, ``done`` and MC returns
--------------------------------
``terminals`` is 1 only on the step on which an episode ended by success/termination; a time-limit
truncation bootstraps (terminal 0) and marks the whole episode ``truncated``. ``mc_returns`` is the
discounted sum ``G_t = r_t + gamma * G_{t+1}`` of the episode's observed rewards, computed with
the buffer's ``gamma`` when the episode closes. For a truncated episode (and, provisionally, for
the open episode) it is the plain discounted sum of the observed rewards: no bootstrap tail.

On-disk layout (folder ``root``)
--------------------------------
``buffer.json``
    format name/version, frame shape, proprio/action sizes, gamma, source names (written once,
    atomically, at creation; reopening with other values is refused).
``chunk_00000001.npz``, ``chunk_00000002.npz``, ...
    the records appended since the previous chunk, uncompressed ``.npz`` loaded with
    ``allow_pickle=False``, written with :func:`robofume.atomic_io.atomic_writer`. One record per
    observation: ``episode`` (int64), ``step`` (int32, index of the observation in its episode),
    ``task`` (int16), ``source`` (int8), ``frames``, ``proprio``, and for step >= 1 the step that led
    to it: ``actions``, ``rewards``, ``flags`` (bit 0 terminated, bit 1 truncated). ``header`` is
    UTF-8 JSON (format, version, chunk number, record count, SHA-256 of every other array).
``buffer.lock``
    ``flock``-ed by the writer, so a second writer is refused (released by the OS on ``kill -9``).

The writer commits a chunk at least every ``flush_interval_s`` while steps are added. Loading
reads chunks in number order and verifies each one; at the first damaged chunk (unreadable,
truncated, bad checksum, inconsistent with the earlier ones, or a gap in the numbering) loading
stops: the earlier chunks are kept, and a writer moves the damaged chunk and every later one
aside to ``*.corrupt`` (never deleted) with a one-line warning; a reader only warns and retries
on its next :meth:`ReplayBuffer.refresh`. An episode left open by a dead writer is closed as
truncated at its last committed step (when a writer reopens the buffer, or when a reader sees
the next episode begin).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import itertools
import json
import os
import re
import sys
import time
import zipfile
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robofume.atomic_io import atomic_writer, fsync_dir, write_json_atomic

FORMAT_NAME = "robofume-replay"
FORMAT_VERSION = 1
BUFFER_JSON = "buffer.json"
LOCK_FILE = "buffer.lock"
CHUNK_PATTERN = re.compile(r"^chunk_(\d{8})\.npz$")
_TERMINATED = 1
_TRUNCATED = 2
_MIN_ALLOC = 256
_MAX_PENDING_BYTES = 256 << 20
_PAYLOAD = ("episode", "step", "task", "source", "frames", "proprio", "actions", "rewards", "flags")


class Source(enum.IntEnum):
    """Where a transition came from; ``prior``/``demos``/``failures`` are the offline data kinds."""

    OFFLINE = 0
    PRIOR = 1
    DEMOS = 2
    FAILURES = 3
    ONLINE = 4


SOURCE_NAMES: tuple[str, ...] = tuple(s.name.lower() for s in Source)
"""Valid ``source`` strings; ``sample(source="offline")`` matches every source but ``online``."""


def source_code(name: str) -> Source:
    """The :class:`Source` of a source name; one-line ``ValueError`` for an unknown name."""
    if name not in SOURCE_NAMES:
        raise ValueError(f"unknown replay source {name!r}; expected one of: {', '.join(SOURCE_NAMES)}")
    return Source[name.upper()]


@dataclass(frozen=True)
class BufferSpec:
    """Shapes and discount of a buffer, fixed at creation and stored in ``buffer.json``."""

    image_size: tuple[int, int]
    proprio_dim: int
    action_dim: int
    gamma: float = 0.99

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Shape of one RGB frame, (H, W, 3)."""
        return (int(self.image_size[0]), int(self.image_size[1]), 3)

    def to_json(self) -> dict[str, Any]:
        """The ``buffer.json`` payload."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "frame_shape": list(self.frame_shape),
            "proprio_dim": int(self.proprio_dim),
            "action_dim": int(self.action_dim),
            "gamma": float(self.gamma),
            "sources": list(SOURCE_NAMES),
        }

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> BufferSpec:
        """Inverse of :meth:`to_json` (format and version are checked by the caller)."""
        h, w, _ = meta["frame_shape"]
        return cls((int(h), int(w)), int(meta["proprio_dim"]), int(meta["action_dim"]), float(meta["gamma"]))


@dataclass
class Batch:
    """A batch of transitions (o_t, a_t, r_t, o_{t+1}); every array has the batch size as first axis."""

    frames: np.ndarray | None  # (B, H, W, 3) uint8; None when gathered with frames=False
    proprio: np.ndarray  # (B, P) float32
    actions: np.ndarray  # (B, A) float32
    rewards: np.ndarray  # (B,) float32
    next_frames: np.ndarray | None  # (B, H, W, 3) uint8; None when gathered with frames=False
    next_proprio: np.ndarray  # (B, P) float32
    terminals: np.ndarray  # (B,) float32, 1 only where the episode ended by success/termination
    tasks: np.ndarray  # (B,) int64
    mc_returns: np.ndarray  # (B,) float32
    sources: np.ndarray  # (B,) int8, values of Source
    truncated: np.ndarray  # (B,) bool, the episode ended by the time limit (or writer death)


@dataclass
class _Episode:
    """In-memory bookkeeping of one stored episode (its slots are start, start+1, ... mod alloc)."""

    id: int
    task: int
    source: int
    start: int = 0
    n_obs: int = 0
    closed: bool = False


@dataclass
class _Run:
    """Consecutive records of one episode: observations, and for step >= 1 the step leading to them."""

    episode: int
    task: int
    source: int
    steps: np.ndarray  # (n,) int32
    frames: np.ndarray  # (n, H, W, 3) uint8
    proprio: np.ndarray  # (n, P) float32
    actions: np.ndarray  # (n, A) float32, row i = action of the step that led to record i
    rewards: np.ndarray  # (n,) float32
    flags: np.ndarray  # (n,) uint8


class _DamagedChunkError(Exception):
    """A chunk cannot be used: the message says why."""


@dataclass
class _Arrays:
    """The per-slot arrays of the observation ring."""

    frames: np.ndarray
    proprio: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    mc_returns: np.ndarray
    tasks: np.ndarray
    sources: np.ndarray
    terminals: np.ndarray
    truncated: np.ndarray
    has_next: np.ndarray
    stamps: np.ndarray
    """Write stamp of each slot's observation (0: never written)."""

    @classmethod
    def empty(cls, spec: BufferSpec) -> _Arrays:
        """Zero-length arrays with the spec's trailing shapes."""
        return cls(
            frames=np.zeros((0, *spec.frame_shape), np.uint8),
            proprio=np.zeros((0, spec.proprio_dim), np.float32),
            actions=np.zeros((0, spec.action_dim), np.float32),
            rewards=np.zeros(0, np.float32),
            mc_returns=np.zeros(0, np.float32),
            tasks=np.zeros(0, np.int16),
            sources=np.zeros(0, np.int8),
            terminals=np.zeros(0, bool),
            truncated=np.zeros(0, bool),
            has_next=np.zeros(0, bool),
            stamps=np.zeros(0, np.int64),
        )

    def all(self) -> list[np.ndarray]:
        """Every array, for sizing and growing."""
        return list(vars(self).values())

    def grow(self, n: int) -> None:
        """Resize every array to ``n`` slots, keeping the contents (new slots are zero)."""
        for name, arr in list(vars(self).items()):
            shape = (n, *arr.shape[1:])
            try:
                arr.resize(shape, refcheck=False)  # realloc: no second copy of the frames in memory
            except (ValueError, MemoryError):
                new = np.zeros(shape, arr.dtype)
                new[: len(arr)] = arr
                setattr(self, name, new)


class _Staging:
    """Records not yet committed, in reusable growing arrays (no per-step allocation)."""

    def __init__(self, spec: BufferSpec) -> None:
        self.n = 0
        self.arrays: dict[str, np.ndarray] = {
            "episode": np.zeros(0, np.int64),
            "step": np.zeros(0, np.int32),
            "task": np.zeros(0, np.int16),
            "source": np.zeros(0, np.int8),
            "frames": np.zeros((0, *spec.frame_shape), np.uint8),
            "proprio": np.zeros((0, spec.proprio_dim), np.float32),
            "actions": np.zeros((0, spec.action_dim), np.float32),
            "rewards": np.zeros(0, np.float32),
            "flags": np.zeros(0, np.uint8),
        }
        self.record_bytes = sum(a.itemsize * int(np.prod(a.shape[1:])) for a in self.arrays.values())

    @property
    def nbytes(self) -> int:
        """Bytes of the staged records."""
        return self.n * self.record_bytes

    def append(self, run: _Run) -> None:
        """Copy a run's records in."""
        k = len(run.steps)
        if self.n + k > len(self.arrays["step"]):
            size = max(self.n + k, 2 * len(self.arrays["step"]), 16)
            for name, arr in self.arrays.items():
                new = np.zeros((size, *arr.shape[1:]), arr.dtype)
                new[: self.n] = arr[: self.n]
                self.arrays[name] = new
        a, lo, hi = self.arrays, self.n, self.n + k
        a["episode"][lo:hi] = run.episode
        a["task"][lo:hi] = run.task
        a["source"][lo:hi] = run.source
        a["step"][lo:hi] = run.steps
        a["frames"][lo:hi] = run.frames
        a["proprio"][lo:hi] = run.proprio
        a["actions"][lo:hi] = run.actions
        a["rewards"][lo:hi] = run.rewards
        a["flags"][lo:hi] = run.flags
        self.n = hi

    def view(self) -> dict[str, np.ndarray]:
        """The staged records (views, valid until the next append or clear)."""
        return {name: arr[: self.n] for name, arr in self.arrays.items()}


def episode_to_rewards(success: np.ndarray) -> np.ndarray:
    """Sparse rewards from per-frame success (T+1,): 1.0 on each step that reaches success, else 0."""
    success = np.asarray(success)
    if success.dtype != np.bool_ or success.ndim != 1 or success.shape[0] < 1:
        raise ValueError(f"success must be bool (T+1,), got {success.dtype} {success.shape}")
    return (success[1:] & ~success[:-1]).astype(np.float32)


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = r_t + gamma * G_{t+1}`` with ``G_T = 0`` (no bootstrap), as float32."""
    out = np.empty(len(rewards), np.float64)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = float(rewards[t]) + gamma * g
        out[t] = g
    return out.astype(np.float32)


def payload_sha256(arrays: Mapping[str, np.ndarray], names: Sequence[str] = _PAYLOAD) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``names`` in ``arrays`` (by default a
    chunk's payload arrays)."""
    h = hashlib.sha256()
    for name in names:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def chunk_name(number: int) -> str:
    """File name of chunk ``number`` (1-based)."""
    return f"chunk_{number:08d}.npz"


def list_chunks(root: str) -> list[tuple[int, str]]:
    """(number, path) of every committed chunk file in ``root``, by number."""
    found = []
    for name in os.listdir(root):
        m = CHUNK_PATTERN.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(found)


def _warn(message: str) -> None:
    print(f"robofume: replay buffer: {message}", file=sys.stderr, flush=True)


def _move_aside(path: str) -> str:
    """Rename ``path`` to ``path.corrupt`` (or ``.corrupt.N`` if taken); return the new name."""
    aside = path + ".corrupt"
    n = 1
    while os.path.exists(aside):
        aside = f"{path}.corrupt.{n}"
        n += 1
    os.replace(path, aside)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return aside


class ReplayBuffer:
    """Durable image replay buffer; see the module docstring for layout and crash semantics.

    ``ReplayBuffer(root, spec)`` creates a buffer (or opens an existing one with the same spec) for
    writing; ``ReplayBuffer(root, readonly=True)`` / ``ReplayBuffer.open(root, readonly=True)``
    opens one for reading, loading every committed chunk; :meth:`refresh` loads newer chunks.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        spec: BufferSpec | None = None,
        *,
        capacity: int = 1_000_000,
        flush_interval_s: float = 1.0,
        readonly: bool = False,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        if capacity < 2:
            raise ValueError(f"replay buffer capacity must be >= 2 observations, got {capacity}")
        self.capacity = int(capacity)
        self.flush_interval_s = float(flush_interval_s)
        self.readonly = readonly
        self._lock_fd: int | None = None
        self._pending: _Staging | None = None
        if readonly or spec is None:
            if not os.path.isdir(self.root):
                raise FileNotFoundError(f"replay buffer folder {self.root} does not exist")
            if not os.path.exists(os.path.join(self.root, BUFFER_JSON)):
                raise ValueError(f"{self.root} is not a replay buffer (no {BUFFER_JSON})")
        if not readonly:
            self._prepare_writer()
        self.spec = self._read_or_create_spec(spec)
        self._frame_shape = self.spec.frame_shape
        self._mem = _Arrays.empty(self.spec)
        self._alloc = 0
        self._tail = 0
        self._count = 0
        self._transitions = 0
        self._stamp = 0
        self._episodes: deque[_Episode] = deque()
        self._open: _Episode | None = None
        self._version = 0
        self._index_cache: dict[tuple[int, str | None], np.ndarray] = {}
        self._mc_dirty = False
        self._next_chunk = 1
        self._committed = 0
        self._max_episode_id = -1
        self._warned: set[str] = set()
        self._pending = _Staging(self.spec)
        self._last_commit = time.monotonic()
        self._load_new_chunks()
        if not readonly:
            if self._open is not None:
                self._close_episode(self._open, truncated=True)
            self._last_commit = time.monotonic()

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        *,
        readonly: bool = False,
        capacity: int = 1_000_000,
        flush_interval_s: float = 1.0,
    ) -> ReplayBuffer:
        """Open an existing buffer (spec from its ``buffer.json``), loading every committed chunk."""
        return cls(root, None, capacity=capacity, flush_interval_s=flush_interval_s, readonly=readonly)

    def _prepare_writer(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
            fd = os.open(os.path.join(self.root, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OSError(f"cannot write replay buffer folder {self.root}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            msg = f"replay buffer {self.root} already has a writer ({LOCK_FILE} is held)"
            raise RuntimeError(msg) from None
        self._lock_fd = fd
        for name in os.listdir(self.root):  # uncommitted temp files of a writer that died mid-write
            if name.startswith(".chunk_") and ".tmp-" in name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.root, name))

    def _read_or_create_spec(self, spec: BufferSpec | None) -> BufferSpec:
        path = os.path.join(self.root, BUFFER_JSON)
        if not os.path.exists(path) and spec is not None:
            write_json_atomic(path, spec.to_json())
            return spec
        try:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
            stored = BufferSpec.from_json(meta)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.close()
            raise ValueError(f"{path}: unreadable replay buffer description ({exc})") from None
        problem = self._spec_problem(meta, stored, spec)
        if problem:
            self.close()
            raise ValueError(f"{self.root}: {problem}")
        return stored

    @staticmethod
    def _spec_problem(meta: dict[str, Any], stored: BufferSpec, wanted: BufferSpec | None) -> str | None:
        if meta.get("format") != FORMAT_NAME:
            return f"not a {FORMAT_NAME} buffer (format {meta.get('format')!r})"
        if meta.get("version") != FORMAT_VERSION:
            version = meta.get("version")
            return f"replay buffer format version {version} is not supported (this reads {FORMAT_VERSION})"
        if wanted is None:
            return None
        have, want = stored.to_json(), wanted.to_json()
        diffs = [f"{k} {have[k]} (asked for {want[k]})" for k in have if have[k] != want[k]]
        return f"existing buffer has {', '.join(diffs)}" if diffs else None

    def close(self) -> None:
        """Commit pending data (writer) and release the writer lock."""
        if self._lock_fd is None:
            return
        try:
            if self._pending is not None and self._pending.n:
                self.flush()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> ReplayBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- sizes
    def __len__(self) -> int:
        """Number of transitions stored in memory."""
        return self._transitions

    @property
    def num_episodes(self) -> int:
        """Number of episodes (closed or open) stored in memory."""
        return len(self._episodes)

    @property
    def committed(self) -> int:
        """Number of transitions on disk: loaded from committed chunks plus committed by this writer."""
        return self._committed

    @property
    def num_chunks(self) -> int:
        """Number of chunk files loaded or written."""
        return self._next_chunk - 1

    @property
    def allocated_slots(self) -> int:
        """Observation slots allocated in memory so far (grows on demand up to ``capacity``)."""
        return self._alloc

    def slot_bytes(self) -> int:
        """Memory bytes of one stored observation with its transition data."""
        return sum(a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)) for a in self._mem.all())

    def bytes_per_transition(self) -> float:
        """Memory bytes of the stored data per stored transition (≈ one frame)."""
        if self._transitions == 0:
            return float(self.slot_bytes())
        return self.slot_bytes() * self._count / self._transitions

    def disk_bytes(self) -> int:
        """Total size of the committed chunk files."""
        return sum(os.path.getsize(p) for _, p in list_chunks(self.root))

    # ----------------------------------------------------------------- validation
    def _writable(self) -> None:
        if self.readonly:
            raise RuntimeError(f"replay buffer {self.root} was opened read-only")
        if self._lock_fd is None:
            raise RuntimeError(f"replay buffer {self.root} is closed")

    def _frames_arg(self, frames: Any, lead: tuple[int, ...], what: str) -> np.ndarray:
        arr = np.asarray(frames)
        want = (*lead, *self._frame_shape)
        if arr.dtype != np.uint8 or arr.shape != want:
            raise ValueError(f"{what} must be uint8 {want}, got {arr.dtype} {arr.shape}")
        return arr

    @staticmethod
    def _float_arg(x: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
        arr = np.asarray(x)
        numeric = arr.dtype.kind == "f" or (shape == () and arr.dtype.kind in "iu")
        if arr.shape != shape or not numeric:
            raise ValueError(f"{what} must be float {shape}, got {arr.dtype} {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} contains NaN or infinity")
        return arr.astype(np.float32, copy=False)

    @staticmethod
    def _task_arg(task: int | str) -> int:
        from robofume.sim.tasks import TASK_NAMES, task_id

        if isinstance(task, str):
            return task_id(task)
        valid = isinstance(task, (int, np.integer)) and not isinstance(task, bool)
        if not valid or not 0 <= task < len(TASK_NAMES):
            raise ValueError(f"task must be an id in 0..{len(TASK_NAMES) - 1} or a task name, got {task!r}")
        return int(task)

    # ----------------------------------------------------------------- writer API
    def begin_episode(
        self, frame: np.ndarray, proprio: np.ndarray, task: int | str, source: str = "online"
    ) -> None:
        """Start an episode with its first observation o_0 (``source`` is ``online`` unless told)."""
        self._writable()
        if self._open is not None:
            raise RuntimeError("begin_episode: an episode is still open; end it with terminated or truncated")
        frame = self._frames_arg(frame, (), "frame")
        prop = self._float_arg(proprio, (self.spec.proprio_dim,), "proprio")
        run = _Run(
            episode=self._max_episode_id + 1,
            task=self._task_arg(task),
            source=int(source_code(source)),
            steps=np.zeros(1, np.int32),
            frames=frame[None],
            proprio=prop[None],
            actions=np.zeros((1, self.spec.action_dim), np.float32),
            rewards=np.zeros(1, np.float32),
            flags=np.zeros(1, np.uint8),
        )
        self._record(run)

    def add_step(
        self,
        action: np.ndarray,
        reward: float,
        frame: np.ndarray,
        proprio: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store a_t, r_t and o_{t+1} of the open episode; close it if terminated or truncated."""
        self._writable()
        ep = self._open
        if ep is None:
            raise RuntimeError("add_step called with no open episode; call begin_episode first")
        act = self._float_arg(action, (self.spec.action_dim,), "action")
        rew = self._float_arg(reward, (), "reward")
        frame = self._frames_arg(frame, (), "frame")
        prop = self._float_arg(proprio, (self.spec.proprio_dim,), "proprio")
        flags = _TERMINATED if terminated else (_TRUNCATED if truncated else 0)
        run = _Run(
            episode=ep.id,
            task=ep.task,
            source=ep.source,
            steps=np.array([ep.n_obs], np.int32),
            frames=frame[None],
            proprio=prop[None],
            actions=act[None],
            rewards=rew[None],
            flags=np.array([flags], np.uint8),
        )
        self._record(run)
        if time.monotonic() - self._last_commit >= self.flush_interval_s:
            self.flush()

    def add_episode(
        self,
        frames: np.ndarray,
        proprio: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        task: int | str,
        terminated: bool,
        source: str = "offline",
    ) -> int:
        """Add a whole episode (T+1 observations, T steps); returns T (nothing is stored when T == 0).

        The episode ends terminated (terminal on its last step) or, if not, truncated.
        """
        self._writable()
        if self._open is not None:
            raise RuntimeError("add_episode: an online episode is open; end it first")
        frames = np.asarray(frames)
        if frames.ndim != 4:
            want = ("T+1", *self._frame_shape)
            raise ValueError(f"frames must be uint8 {want}, got {frames.dtype} {frames.shape}")
        n = frames.shape[0]
        frames = self._frames_arg(frames, (n,), "frames")
        prop = self._float_arg(proprio, (n, self.spec.proprio_dim), "proprio")
        act = self._float_arg(actions, (n - 1, self.spec.action_dim), "actions")
        rew = self._float_arg(rewards, (n - 1,), "rewards")
        if n < 2:
            return 0
        flags = np.zeros(n, np.uint8)
        flags[-1] = _TERMINATED if terminated else _TRUNCATED
        zero_a = np.zeros((1, self.spec.action_dim), np.float32)
        run = _Run(
            episode=self._max_episode_id + 1,
            task=self._task_arg(task),
            source=int(source_code(source)),
            steps=np.arange(n, dtype=np.int32),
            frames=frames,
            proprio=prop,
            actions=np.concatenate([zero_a, act]),
            rewards=np.concatenate([np.zeros(1, np.float32), rew]),
            flags=flags,
        )
        self._record(run)
        if time.monotonic() - self._last_commit >= self.flush_interval_s:
            self.flush()
        return n - 1

    def add_episode_file(self, path: str | os.PathLike[str], source: str | None = None) -> int:
        """Add a ``robofume-episode`` file (rewards from :func:`episode_to_rewards`); returns its steps.

        ``source`` defaults to the file's ``kind`` (prior/demos/failures); ``terminated`` comes from
        the file's metadata, or its final success if the metadata lacks it.
        """
        from robofume.data.episode_format import load_episode

        ep = load_episode(path)
        src = source if source is not None else str(ep.metadata.get("kind", "offline"))
        terminated = bool(ep.metadata.get("terminated", ep.succeeded))
        return self.add_episode(
            ep.frames, ep.proprio, ep.actions, episode_to_rewards(ep.success), ep.task, terminated, src
        )

    def _record(self, run: _Run) -> None:
        """Apply a new run in memory and queue it for the next chunk (both copy the arrays)."""
        self._apply_run(run)
        assert self._pending is not None
        self._pending.append(run)
        if self._pending.nbytes >= _MAX_PENDING_BYTES:
            self.flush()

    def flush(self) -> int:
        """Commit every pending record to a new chunk file now; returns :attr:`committed`."""
        self._writable()
        assert self._pending is not None
        if self._pending.n:
            arrays = self._pending.view()
            header = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "chunk": self._next_chunk,
                "records": len(arrays["step"]),
                "sha256": payload_sha256(arrays),
            }
            arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
            with atomic_writer(os.path.join(self.root, chunk_name(self._next_chunk))) as f:
                np.savez(f, **arrays)
            self._next_chunk += 1
            self._committed += int(np.count_nonzero(arrays["step"] > 0))
            self._pending.n = 0
        self._last_commit = time.monotonic()
        return self._committed

    # ----------------------------------------------------------------- loading
    def refresh(self) -> int:
        """Reader: load chunks committed since the last load; returns the number of new transitions."""
        if not self.readonly:
            return 0
        return self._load_new_chunks()

    def _load_new_chunks(self) -> int:
        before = self._committed
        chunks = [(n, p) for n, p in list_chunks(self.root) if n >= self._next_chunk]
        for i, (number, path) in enumerate(chunks):
            try:
                if number != self._next_chunk:
                    raise _DamagedChunkError(f"chunk {self._next_chunk} is missing before it")
                runs = self._check_runs(self._read_chunk(path, number))
            except _DamagedChunkError as exc:
                self._on_damaged(exc, [p for _, p in chunks[i:]])
                break
            for run in runs:
                self._apply_run(run)
            self._next_chunk += 1
            self._committed += sum(int(np.count_nonzero(r.steps > 0)) for r in runs)
        return self._committed - before

    def _on_damaged(self, exc: _DamagedChunkError, paths: list[str]) -> None:
        first = paths[0]
        if self.readonly:
            if first not in self._warned:
                self._warned.add(first)
                _warn(f"{first} is damaged ({exc}); not loading it or later chunks")
            return
        aside = _move_aside(first)
        _warn(f"{first} is damaged ({exc}); moved aside to {os.path.basename(aside)}")
        for later in paths[1:]:
            aside = _move_aside(later)
            _warn(f"{later} follows a damaged chunk; moved aside to {os.path.basename(aside)}")

    def _read_chunk(self, path: str, number: int) -> dict[str, np.ndarray]:
        """Load and verify one chunk file; :class:`_DamagedChunkError` on any problem."""
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in (*_PAYLOAD, "header") if k not in z.files]
                if missing:
                    raise _DamagedChunkError(f"missing arrays {missing}")
                arrays = {k: z[k] for k in _PAYLOAD}
                header = json.loads(z["header"].tobytes().decode())
        except _DamagedChunkError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError) as exc:
            raise _DamagedChunkError(f"unreadable: {exc}") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise _DamagedChunkError("bad header")
        if header.get("version") != FORMAT_VERSION or header.get("chunk") != number:
            said = f"version {header.get('version')} chunk {header.get('chunk')}"
            raise _DamagedChunkError(f"header says {said}")
        self._check_shapes(arrays)
        if payload_sha256(arrays) != header.get("sha256"):
            raise _DamagedChunkError("SHA-256 mismatch")
        return arrays

    def _check_shapes(self, a: dict[str, np.ndarray]) -> None:
        n = len(a["step"])
        want = {
            "episode": ((n,), np.int64),
            "step": ((n,), np.int32),
            "task": ((n,), np.int16),
            "source": ((n,), np.int8),
            "frames": ((n, *self._frame_shape), np.uint8),
            "proprio": ((n, self.spec.proprio_dim), np.float32),
            "actions": ((n, self.spec.action_dim), np.float32),
            "rewards": ((n,), np.float32),
            "flags": ((n,), np.uint8),
        }
        for name, (shape, dtype) in want.items():
            if a[name].shape != shape or a[name].dtype != dtype:
                got = f"{a[name].dtype} {a[name].shape}"
                raise _DamagedChunkError(f"{name} is {got}, expected {np.dtype(dtype)} {shape}")

    def _check_runs(self, a: dict[str, np.ndarray]) -> list[_Run]:
        """Split a verified chunk into runs and check they continue the stored episodes consistently."""
        ep, step = a["episode"], a["step"]
        n = len(step)
        if n == 0:
            raise _DamagedChunkError("empty chunk")
        cut = np.flatnonzero((step[1:] == 0) | (ep[1:] != ep[:-1]) | (step[1:] != step[:-1] + 1)) + 1
        bounds = [0, *cut.tolist(), n]
        open_id, open_len = (self._open.id, self._open.n_obs) if self._open else (None, 0)
        max_id = self._max_episode_id
        runs = []
        for lo, hi in itertools.pairwise(bounds):
            first, eid = int(step[lo]), int(ep[lo])
            if first != 0 and (eid != open_id or first != open_len):
                raise _DamagedChunkError(f"episode {eid} step {first} does not continue the stored data")
            if first == 0 and eid <= max_id:
                raise _DamagedChunkError(f"episode id {eid} is not new")
            max_id = max(max_id, eid)
            if (a["task"][lo:hi] != a["task"][lo]).any() or (a["source"][lo:hi] != a["source"][lo]).any():
                raise _DamagedChunkError(f"episode {eid} changes task or source")
            if (a["flags"][lo : hi - 1] != 0).any() or (first == 0 and a["flags"][lo]):
                raise _DamagedChunkError(f"episode {eid} continues after it ended")
            if not 0 <= int(a["source"][lo]) <= max(Source) or int(a["flags"][hi - 1]) > _TRUNCATED:
                raise _DamagedChunkError(f"episode {eid} has an unknown source or flag")
            ended = bool(a["flags"][hi - 1])
            open_id, open_len = (None, 0) if ended else (eid, first + hi - lo)
            runs.append(
                _Run(
                    episode=eid,
                    task=int(a["task"][lo]),
                    source=int(a["source"][lo]),
                    steps=step[lo:hi],
                    frames=a["frames"][lo:hi],
                    proprio=a["proprio"][lo:hi],
                    actions=a["actions"][lo:hi],
                    rewards=a["rewards"][lo:hi],
                    flags=a["flags"][lo:hi],
                )
            )
        return runs

    # ----------------------------------------------------------------- memory ring
    def _apply_run(self, run: _Run) -> None:
        """Store a (validated) run in the ring, evicting old episodes as needed."""
        first = int(run.steps[0])
        n = len(run.steps)
        if first == 0:
            if self._open is not None:  # abandoned by a writer that died: ends where it was committed
                self._close_episode(self._open, truncated=True)
            ep = _Episode(id=run.episode, task=run.task, source=run.source)
        else:
            assert self._open is not None and self._open.id == run.episode
            ep = self._open
        head = self._reserve(n, ep)
        if first == 0:
            ep.start = head
            self._episodes.append(ep)
            self._open = ep
            self._max_episode_id = max(self._max_episode_id, ep.id)
        m = self._mem
        obs = self._ring(head, n)
        m.frames[obs] = run.frames
        m.stamps[obs] = np.arange(self._stamp + 1, self._stamp + n + 1, dtype=np.int64)
        self._stamp += n
        m.proprio[obs] = run.proprio
        m.tasks[obs] = run.task
        m.sources[obs] = run.source
        m.terminals[obs] = m.truncated[obs] = m.has_next[obs] = False
        m.rewards[obs] = m.mc_returns[obs] = 0.0
        lo = 1 if first == 0 else 0  # records from lo on end a step: store it in the previous slot
        if lo < n:
            prev = self._ring((ep.start + first + lo - 1) % self._alloc, n - lo)
            m.actions[prev] = run.actions[lo:]
            m.rewards[prev] = run.rewards[lo:]
            m.terminals[prev] = (run.flags[lo:] & _TERMINATED) != 0
            m.has_next[prev] = True
        ep.n_obs += n
        self._count += n
        self._transitions += n - lo
        self._touch()
        last = int(run.flags[-1])
        if last:
            self._close_episode(ep, truncated=not last & _TERMINATED)
        else:
            self._mc_dirty = True

    def _ring(self, start: int, n: int) -> slice | np.ndarray:
        """Index of ``n`` consecutive ring slots from ``start``: a slice unless they wrap."""
        if start + n <= self._alloc:
            return slice(start, start + n)
        return (start + np.arange(n, dtype=np.int64)) % self._alloc

    def _reserve(self, n: int, ep: _Episode) -> int:
        """Make room for ``n`` new observations at the head of the ring (growing, then evicting)."""
        if ep.n_obs + n > self.capacity:
            raise ValueError(
                f"episode {ep.id} has more than {self.capacity} observations, the replay buffer capacity; "
                "use a larger capacity"
            )
        need = self._count + n
        if need > self._alloc and self._alloc < self.capacity:  # tail is 0 until the ring is full
            self._mem.grow(min(self.capacity, max(need, 2 * self._alloc, _MIN_ALLOC)))
            self._alloc = len(self._mem.has_next)
        while self._count + n > self._alloc:
            self._evict_oldest()
        return (self._tail + self._count) % self._alloc

    def _evict_oldest(self) -> None:
        ep = self._episodes.popleft()
        assert ep.start == self._tail, "replay ring out of order"
        if ep is self._open:
            self._open = None
        self._mem.has_next[self._ring(ep.start, ep.n_obs)] = False
        self._tail = (self._tail + ep.n_obs) % self._alloc
        self._count -= ep.n_obs
        self._transitions -= max(ep.n_obs - 1, 0)
        self._touch()

    def _close_episode(self, ep: _Episode, truncated: bool) -> None:
        self._mem.truncated[self._ring(ep.start, ep.n_obs)] = truncated
        self._set_mc_returns(ep)
        ep.closed = True
        if self._open is ep:
            self._open = None
        self._touch()

    def _set_mc_returns(self, ep: _Episode) -> None:
        steps = self._ring(ep.start, ep.n_obs - 1)
        self._mem.mc_returns[steps] = discounted_returns(self._mem.rewards[steps], self.spec.gamma)

    def _touch(self) -> None:
        self._version += 1
        self._index_cache.clear()

    # ----------------------------------------------------------------- sampling
    def valid_indices(self, source: str | None = None) -> np.ndarray:
        """Slots of every stored transition (optionally of one source, ``"offline"`` = not online)."""
        key = (self._version, source)
        cached = self._index_cache.get(key)
        if cached is not None:
            return cached
        ok = self._mem.has_next
        if source == "offline":
            ok = ok & (self._mem.sources != Source.ONLINE)
        elif source is not None:
            ok = ok & (self._mem.sources == source_code(source))
        idx = np.flatnonzero(ok)
        self._index_cache[key] = idx
        return idx

    def sample(self, batch_size: int, rng: np.random.Generator, source: str | None = None) -> Batch:
        """Uniformly sample ``batch_size`` transitions (with replacement), optionally of one source."""
        idx = self.valid_indices(source)
        if len(idx) == 0:
            which = f"{source} transitions" if source else "transitions"
            raise ValueError(f"cannot sample: the replay buffer {self.root} holds no {which}")
        return self.gather(idx[rng.integers(0, len(idx), int(batch_size))])

    def observation_slots(self, indices: np.ndarray) -> np.ndarray:
        """Slots of o_t then o_{t+1} of the transitions at ``indices``: (2B,) int64."""
        idx = np.asarray(indices, np.int64)
        both = np.concatenate([idx, idx + 1])
        both[both == self._alloc] = 0  # o_{t+1} of a transition in the last slot wrapped to slot 0
        return both

    def slot_stamps(self, slots: np.ndarray) -> np.ndarray:
        """Write stamps of ``slots``: a stamp names one stored observation; it changes when the ring
        overwrites the slot and is never reused (0: the slot was never written)."""
        return self._mem.stamps[np.asarray(slots, np.int64)]

    def frames_at(self, slots: np.ndarray) -> np.ndarray:
        """Copies of the frames stored at ``slots``: (N, H, W, 3) uint8."""
        return np.take(self._mem.frames, np.asarray(slots, np.int64), axis=0)

    def gather(self, indices: np.ndarray, frames: bool = True) -> Batch:
        """The transitions at the given slots (from :meth:`valid_indices`); with ``frames=False``
        the batch's ``frames``/``next_frames`` are ``None`` (no image bytes are copied)."""
        if self._mc_dirty and self._open is not None:
            self._set_mc_returns(self._open)
        self._mc_dirty = False
        m = self._mem
        idx = np.asarray(indices, np.int64)
        b = len(idx)
        both = self.observation_slots(idx)
        # One gather for o_t and o_{t+1}: the cost is the memory traffic of 2 x B frames.
        images = np.take(m.frames, both, axis=0) if frames else None
        proprio = np.take(m.proprio, both, axis=0)
        return Batch(
            frames=images[:b] if images is not None else None,
            proprio=proprio[:b],
            actions=m.actions[idx],
            rewards=m.rewards[idx],
            next_frames=images[b:] if images is not None else None,
            next_proprio=proprio[b:],
            terminals=m.terminals[idx].astype(np.float32),
            tasks=m.tasks[idx].astype(np.int64),
            mc_returns=m.mc_returns[idx],
            sources=m.sources[idx],
            truncated=m.truncated[idx],
        )


def run_buffer_bench(
    root: str, image_size: int = 128, transitions: int = 5000, batch_size: int = 256
) -> dict[str, float]:
    """Insert ``transitions`` online steps (episodes of 100, durable 1 s flushes), then time sampling.

    ``root`` must not hold a buffer yet. Returns insert rate, sample latency (median/p99 over 200
    batches), bytes per transition in memory and on disk, chunk count and the reopen time.
    """
    if os.path.exists(os.path.join(root, BUFFER_JSON)):
        raise ValueError(f"{root} already holds a replay buffer; give an empty folder")
    rng = np.random.default_rng(0)
    spec = BufferSpec((image_size, image_size), proprio_dim=9, action_dim=5)
    pool = rng.integers(0, 256, (64, image_size, image_size, 3), dtype=np.uint8)
    prop = rng.normal(size=(64, 9)).astype(np.float32)
    act = rng.uniform(-1, 1, (64, 5)).astype(np.float32)
    episode_len = 100
    with ReplayBuffer(root, spec, capacity=max(2 * transitions, 1024)) as buf:
        t0 = time.perf_counter()
        step = 0
        while step < transitions:
            buf.begin_episode(pool[step % 64], prop[step % 64], task=0)
            n = min(episode_len, transitions - step)
            for k in range(n):
                i = (step + k + 1) % 64
                buf.add_step(act[i], 0.0, pool[i], prop[i], terminated=False, truncated=k == n - 1)
            step += n
        buf.flush()
        insert_s = time.perf_counter() - t0
        for _ in range(10):
            buf.sample(batch_size, rng)
        times = []
        for _ in range(200):
            t = time.perf_counter()
            buf.sample(batch_size, rng)
            times.append((time.perf_counter() - t) * 1e3)
        result = {
            "image_size": image_size,
            "transitions": len(buf),
            "batch_size": batch_size,
            "insert_per_s": transitions / insert_s,
            "sample_ms_median": float(np.median(times)),
            "sample_ms_p99": float(np.percentile(times, 99)),
            "frame_bytes": int(np.prod(spec.frame_shape)),
            "bytes_per_transition_memory": buf.bytes_per_transition(),
            "bytes_per_transition_disk": buf.disk_bytes() / len(buf),
            "chunks": buf.num_chunks,
        }
    t = time.perf_counter()
    reader = ReplayBuffer.open(root, readonly=True, capacity=max(2 * transitions, 1024))
    result["reopen_s"] = time.perf_counter() - t
    assert len(reader) == result["transitions"]
    return result
