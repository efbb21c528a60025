"""The on-disk episode format (``robofume-episode``, version 1). See docs/data_format.md.

One episode is one ``.npz`` file (a zip of ``.npy`` arrays, DEFLATE-compressed, CRC-checked),
written atomically, loaded with ``allow_pickle=False``:

========== ================= ========= ===============================================
array      shape             dtype     meaning
========== ================= ========= ===============================================
frames     (T+1, H, W, 3)    uint8     RGB camera observation before each step + final
proprio    (T+1, P)          float32   proprioception, order in ``meta["proprio_names"]``
actions    (T, A)            float32   action taken at each step, in [-1, 1]
success    (T+1,)            bool      ground-truth success of the episode's task per frame
meta       (n,)              uint8     UTF-8 JSON: format, version, task, kind, instruction, ...
========== ================= ========= ===============================================
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robofume.atomic_io import atomic_writer
from robofume.sim.tasks import task_name

FORMAT_NAME = "robofume-episode"
FORMAT_VERSION = 1
EPISODE_SUFFIX = ".npz"
_ARRAYS = ("frames", "proprio", "actions", "success")


class EpisodeFormatError(ValueError):
    """An episode file is corrupt, truncated, of another format or internally inconsistent."""


@dataclass
class Episode:
    """One trajectory of one task."""

    frames: np.ndarray
    proprio: np.ndarray
    actions: np.ndarray
    success: np.ndarray
    task: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.task = task_name(self.task)
        validate_arrays(self.frames, self.proprio, self.actions, self.success)

    @property
    def num_steps(self) -> int:
        """Number of actions (transitions) in the episode."""
        return int(self.actions.shape[0])

    @property
    def succeeded(self) -> bool:
        """Whether the task was achieved at the final frame."""
        return bool(self.success[-1])


def validate_arrays(
    frames: np.ndarray, proprio: np.ndarray, actions: np.ndarray, success: np.ndarray
) -> None:
    """Raise :class:`EpisodeFormatError` unless shapes and dtypes follow the format."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise EpisodeFormatError(f"frames must be uint8 (T+1, H, W, 3), got {frames.dtype} {frames.shape}")
    n = frames.shape[0]
    if n < 1:
        raise EpisodeFormatError("an episode needs at least one frame")
    if proprio.dtype != np.float32 or proprio.ndim != 2 or proprio.shape[0] != n:
        raise EpisodeFormatError(f"proprio must be float32 ({n}, P), got {proprio.dtype} {proprio.shape}")
    if actions.dtype != np.float32 or actions.ndim != 2 or actions.shape[0] != n - 1:
        raise EpisodeFormatError(f"actions must be float32 ({n - 1}, A), got {actions.dtype} {actions.shape}")
    if success.dtype != np.bool_ or success.shape != (n,):
        raise EpisodeFormatError(f"success must be bool ({n},), got {success.dtype} {success.shape}")


def save_episode(path: str | os.PathLike[str], episode: Episode) -> None:
    """Write ``episode`` to ``path`` atomically: a crash leaves the old file or none, never half a file."""
    meta = {**episode.metadata, "format": FORMAT_NAME, "version": FORMAT_VERSION, "task": episode.task}
    meta_bytes = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_writer(path) as f:
        np.savez_compressed(
            f,
            frames=episode.frames,
            proprio=episode.proprio,
            actions=episode.actions,
            success=episode.success,
            meta=meta_bytes,
        )


def load_episode(path: str | os.PathLike[str]) -> Episode:
    """Load and validate one episode file; any damage raises :class:`EpisodeFormatError` naming the file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            missing = [k for k in (*_ARRAYS, "meta") if k not in z.files]
            if missing:
                raise EpisodeFormatError(f"missing arrays {missing}")
            arrays = {k: z[k] for k in _ARRAYS}
            meta = json.loads(z["meta"].tobytes().decode())
    except EpisodeFormatError as exc:
        raise EpisodeFormatError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError) as exc:
        raise EpisodeFormatError(f"{path}: corrupt or truncated episode file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise EpisodeFormatError(f"{path}: not a {FORMAT_NAME} file")
    if meta.get("version") != FORMAT_VERSION:
        raise EpisodeFormatError(
            f"{path}: format version {meta.get('version')} is not supported "
            f"(this robofume reads {FORMAT_VERSION})"
        )
    task = meta.pop("task", None)
    if task is None:
        raise EpisodeFormatError(f"{path}: its metadata names no task")
    meta.pop("format")
    meta.pop("version")
    try:
        return Episode(task=task, metadata=meta, **arrays)
    except (EpisodeFormatError, ValueError, TypeError) as exc:
        raise EpisodeFormatError(f"{path}: {exc}") from None


def list_episodes(root: str | os.PathLike[str], kind: str | None = None) -> list[str]:
    """Sorted episode files under ``root`` (optionally only the ``kind`` subfolder); temp files excluded."""
    root = os.fspath(root)
    base = os.path.join(root, kind) if kind else root
    found: list[str] = []
    for folder, _dirs, files in os.walk(base):
        found.extend(
            os.path.join(folder, f) for f in files if f.endswith(EPISODE_SUFFIX) and not f.startswith(".")
        )
    return sorted(found)
