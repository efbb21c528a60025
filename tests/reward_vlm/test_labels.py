"""The label file contract: round trip, merge, validation, damaged files, checks against episodes, locking."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from reward_vlm.labels import (
    LABELS_FILENAME,
    FrameLabel,
    LabelError,
    check_labels_against,
    label_counts,
    load_labels,
    merge_labels,
    save_labels,
    update_labels,
)


def _labels() -> list[FrameLabel]:
    return [
        FrameLabel("demos/forward_000000.npz", 7, "forward", True),
        FrameLabel("demos/forward_000000.npz", 0, "forward", False),
        FrameLabel("demos/forward_000000.npz", 7, "backward", False),
        FrameLabel("demos/backward_000000.npz", 5, "backward", True),
    ]


def test_round_trip_keeps_labels_in_order(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    save_labels(path, _labels())
    assert load_labels(path) == _labels()
    payload = json.loads(path.read_text())
    assert payload["format"] == "robofume-labels" and payload["version"] == 1
    assert payload["labels"][0] == {
        "episode": "demos/forward_000000.npz",
        "frame": 7,
        "task": "forward",
        "success": True,
    }
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp file left behind"


def test_missing_file_is_empty_and_folder_means_labels_json(tmp_path: Path) -> None:
    assert load_labels(tmp_path / "nothing.json") == []
    save_labels(tmp_path, _labels()[:1])
    assert (tmp_path / LABELS_FILENAME).exists()
    assert load_labels(tmp_path) == _labels()[:1]


def test_merge_keeps_the_last_label_per_frame_and_task(tmp_path: Path) -> None:
    first = FrameLabel("a.npz", 1, "forward", True)
    other_task = FrameLabel("a.npz", 1, "backward", True)
    changed = FrameLabel("a.npz", 1, "forward", False)
    assert merge_labels([first, other_task, changed]) == [other_task, changed]
    save_labels(tmp_path / "l.json", [first, other_task, changed])
    assert load_labels(tmp_path / "l.json") == [other_task, changed]


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (FrameLabel("a.npz", 1, "sideways", True), "unknown task 'sideways'"),
        (FrameLabel("a.npz", -1, "forward", True), "non-negative integer"),
        (FrameLabel("a.npz", True, "forward", True), "non-negative integer"),
        (FrameLabel("/abs/a.npz", 1, "forward", True), "relative episode path"),
        (FrameLabel("../a.npz", 1, "forward", True), "inside the episode folder"),
        (FrameLabel("a.npz", 1, "forward", "yes"), "true or false"),  # type: ignore[arg-type]
    ],
)
def test_invalid_labels_are_refused_and_nothing_is_written(
    tmp_path: Path, label: FrameLabel, message: str
) -> None:
    path = tmp_path / "labels.json"
    save_labels(path, _labels())
    before = path.read_bytes()
    with pytest.raises(LabelError, match=message):
        save_labels(path, [*_labels(), label])
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "robofume-labels", "version": 1, "labels": [', "unreadable label file"),
        ('{"format": "something-else", "version": 1, "labels": []}', "not a robofume-labels file"),
        ('{"format": "robofume-labels", "version": 9, "labels": []}', "version 9 is not supported"),
        ('{"format": "robofume-labels", "version": 1, "labels": {}}', "'labels' must be a list"),
        (
            '{"format": "robofume-labels", "version": 1, "labels": [{"episode": "a.npz", "frame": 1}]}',
            "exactly episode, frame, task, success",
        ),
        (
            '{"format": "robofume-labels", "version": 1, "labels": '
            '[{"episode": "a.npz", "frame": 1, "task": "up", "success": true}]}',
            "label 0: unknown task",
        ),
    ],
)
def test_damaged_file_raises_one_line_and_is_left_alone(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(LabelError, match=message) as info:
        load_labels(path)
    assert "\n" not in str(info.value)
    with pytest.raises(LabelError):
        update_labels(path, lambda labels: [*labels, FrameLabel("a.npz", 0, "forward", True)])
    assert path.read_text() == content


def test_check_labels_against_episodes(label_data: tuple[Path, dict[str, int]]) -> None:
    root, frames = label_data
    check_labels_against(
        root,
        [FrameLabel("demos/forward_000000.npz", frames["demos/forward_000000.npz"] - 1, "forward", True)],
    )
    with pytest.raises(LabelError, match="not in"):
        check_labels_against(root, [FrameLabel("demos/forward_000099.npz", 0, "forward", True)])
    with pytest.raises(LabelError, match="which has 8 frames"):
        check_labels_against(root, [FrameLabel("demos/forward_000000.npz", 8, "forward", True)])


def test_label_counts_per_task() -> None:
    counts = label_counts(_labels())
    assert counts == {"forward": {"success": 1, "failure": 1}, "backward": {"success": 1, "failure": 1}}
    assert label_counts([]) == {
        "forward": {"success": 0, "failure": 0},
        "backward": {"success": 0, "failure": 0},
    }


def test_update_labels_keeps_concurrent_writers_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(15):
                update_labels(
                    path, lambda labels, i=i: [*labels, FrameLabel(f"w{worker}.npz", i, "forward", True)]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(load_labels(path)) == 60


def test_update_labels_validates_the_new_list(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    save_labels(path, _labels())
    with pytest.raises(LabelError, match="unknown task"):
        update_labels(path, lambda labels: [*labels, FrameLabel("a.npz", 0, "left", True)])
    assert load_labels(path) == _labels()
    kept = update_labels(path, lambda labels: [lab for lab in labels if lab.task == "forward"])
    assert kept == load_labels(path) == _labels()[:2]
