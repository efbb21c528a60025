"""User labels of episode frames: success or failure of a task, stored atomically as JSON.

A label file (``labels.json``, format ``robofume-labels`` version 1) belongs to one episode folder
(a dataset from ``robofume data generate`` or a session's recordings) and names frames by the
episode's path relative to that folder and the frame index::

    {"format": "robofume-labels", "version": 1,
     "labels": [{"episode": "demos/forward_000003.npz", "frame": 17, "task": "forward", "success": true}]}

The labeling tool (``robofume label``) writes it, the classifier trainer (``robofume reward train``)
reads it, and the session's auto-labeler writes the same file. Every save is atomic (temp file,
fsync, rename), so a crash leaves the previous or the new file, never a half one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from robofume.atomic_io import write_json_atomic
from robofume.data.episode_format import list_episodes
from robofume.sim.tasks import TASK_NAMES

LABELS_FORMAT = "robofume-labels"
LABELS_VERSION = 1
LABELS_FILENAME = "labels.json"


class LabelError(ValueError):
    """A label file or a label is invalid (bad JSON, unknown task, missing episode or frame)."""


@dataclass(frozen=True)
class FrameLabel:
    """One user verdict: frame ``frame`` of ``episode`` shows ``task`` done (``success``) or not."""

    episode: str
    frame: int
    task: str
    success: bool

    @property
    def key(self) -> tuple[str, int, str]:
        """Identity of the labelled frame and task; a newer label with the same key replaces the older."""
        return (self.episode, self.frame, self.task)


def validate_label(label: FrameLabel) -> FrameLabel:
    """Check types and the task name; raise :class:`LabelError` with one line otherwise."""
    if not isinstance(label.episode, str) or not label.episode or os.path.isabs(label.episode):
        raise LabelError(f"label episode must be a relative episode path, got {label.episode!r}")
    if ".." in label.episode.replace("\\", "/").split("/"):
        raise LabelError(f"label episode must stay inside the episode folder, got {label.episode!r}")
    if isinstance(label.frame, bool) or not isinstance(label.frame, int) or label.frame < 0:
        raise LabelError(f"label frame must be a non-negative integer, got {label.frame!r}")
    if label.task not in TASK_NAMES:
        raise LabelError(f"unknown task {label.task!r} in label; expected one of: {', '.join(TASK_NAMES)}")
    if not isinstance(label.success, bool):
        raise LabelError(f"label success must be true or false, got {label.success!r}")
    return label


def merge_labels(labels: Iterable[FrameLabel]) -> list[FrameLabel]:
    """Keep the last label per (episode, frame, task), in first-seen order."""
    merged: dict[tuple[str, int, str], FrameLabel] = {}
    for label in labels:
        merged.pop(label.key, None)
        merged[label.key] = label
    return list(merged.values())


def require_label_file(path: str | os.PathLike[str]) -> str:
    """The label file at ``path`` (or ``path/labels.json``); :class:`LabelError` when there is none. For a
    file the user named, where a typo must not read as "no labels" as in :func:`load_labels`."""
    path = os.fspath(path)
    file = os.path.join(path, LABELS_FILENAME) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise LabelError(f"no label file at {file}; make one with `robofume label`")
    return file


def load_labels(path: str | os.PathLike[str]) -> list[FrameLabel]:
    """Read a label file; a missing file is an empty list, a damaged one raises :class:`LabelError`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, LABELS_FILENAME)
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"{path}: unreadable label file ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != LABELS_FORMAT:
        raise LabelError(f"{path}: not a {LABELS_FORMAT} file")
    if payload.get("version") != LABELS_VERSION:
        raise LabelError(f"{path}: label format version {payload.get('version')} is not supported")
    raw = payload.get("labels")
    if not isinstance(raw, list):
        raise LabelError(f"{path}: 'labels' must be a list")
    labels = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"episode", "frame", "task", "success"}:
            raise LabelError(f"{path}: label {i} must have exactly episode, frame, task, success")
        try:
            labels.append(validate_label(FrameLabel(**item)))
        except LabelError as exc:
            raise LabelError(f"{path}: label {i}: {exc}") from None
    return merge_labels(labels)


def save_labels(path: str | os.PathLike[str], labels: Iterable[FrameLabel]) -> None:
    """Validate and write ``labels`` atomically (one entry per frame and task, the last one wins)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, LABELS_FILENAME)
    checked = [validate_label(label) for label in merge_labels(labels)]
    write_json_atomic(
        path,
        {"format": LABELS_FORMAT, "version": LABELS_VERSION, "labels": [asdict(label) for label in checked]},
    )


def check_labels_against(root: str | os.PathLike[str], labels: Iterable[FrameLabel]) -> None:
    """Raise :class:`LabelError` if a label names an episode missing under ``root`` or an absent frame."""
    from robofume.data.episode_format import load_episode

    root = os.fspath(root)
    known = {os.path.relpath(p, root).replace(os.sep, "/") for p in list_episodes(root)}
    lengths: dict[str, int] = {}
    for label in labels:
        if label.episode not in known:
            raise LabelError(f"label names episode {label.episode!r}, which is not in {root}")
        if label.episode not in lengths:
            lengths[label.episode] = len(load_episode(os.path.join(root, label.episode)).frames)
        if label.frame >= lengths[label.episode]:
            raise LabelError(
                f"label names frame {label.frame} of {label.episode}, "
                f"which has {lengths[label.episode]} frames"
            )


def label_counts(labels: Iterable[FrameLabel]) -> dict[str, dict[str, int]]:
    """Number of success and failure labels per task, e.g. ``{"forward": {"success": 5, "failure": 9}}``."""
    counts = {task: {"success": 0, "failure": 0} for task in TASK_NAMES}
    for label in labels:
        counts[label.task]["success" if label.success else "failure"] += 1
    return counts


def _lock_path(path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.lock")


def update_labels(
    path: str | os.PathLike[str], change: Callable[[list[FrameLabel]], Iterable[FrameLabel]]
) -> list[FrameLabel]:
    """Read-modify-write the label file under an exclusive lock; return the labels now on disk.

    ``change`` receives the labels currently on disk and returns the new list, which is validated
    and saved atomically. Writers that all go through this function (the labeling tool, the
    session's auto-labeler) never drop each other's labels. A damaged file raises
    :class:`LabelError` and is left untouched.
    """
    import fcntl

    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, LABELS_FILENAME)
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        new = merge_labels(validate_label(label) for label in change(load_labels(path)))
        save_labels(path, new)
        return new
    finally:
        os.close(fd)  # closing the descriptor releases the lock
