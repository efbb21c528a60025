"""Episode files: round trip, atomic writes, corrupt and foreign files."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from robofume.data.episode_format import (
    Episode,
    EpisodeFormatError,
    list_episodes,
    load_episode,
    save_episode,
)


def _episode(steps: int = 6, size: int = 16, task: str = "forward") -> Episode:
    rng = np.random.default_rng(steps)
    success = np.zeros(steps + 1, dtype=bool)
    success[-1] = True
    return Episode(
        frames=rng.integers(0, 255, (steps + 1, size, size, 3), dtype=np.uint8),
        proprio=rng.normal(size=(steps + 1, 9)).astype(np.float32),
        actions=rng.uniform(-1, 1, (steps, 5)).astype(np.float32),
        success=success,
        task=task,
        metadata={"kind": "demos", "instruction": "put the red cube in the blue bin"},
    )


def test_round_trip_keeps_every_array_and_field(tmp_path) -> None:
    ep = _episode()
    path = tmp_path / "forward_000000.npz"
    save_episode(path, ep)
    back = load_episode(path)
    for name in ("frames", "proprio", "actions", "success"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ep, name))
        assert getattr(back, name).dtype == getattr(ep, name).dtype
    assert back.task == "forward" and back.metadata == ep.metadata
    assert back.num_steps == 6 and back.succeeded


def test_crash_during_write_keeps_previous_file_and_leaves_no_partial(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ep.npz"
    save_episode(path, _episode(steps=4))
    original = path.read_bytes()

    def explode(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", explode)
    with pytest.raises(OSError, match="disk full"):
        save_episode(path, _episode(steps=8))
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["ep.npz"]


def test_half_written_temp_file_is_never_listed(tmp_path) -> None:
    save_episode(tmp_path / "a.npz", _episode())
    (tmp_path / ".b.npz.tmp-123").write_bytes(b"partial")
    assert list_episodes(tmp_path) == [str(tmp_path / "a.npz")]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_corrupt_file_gives_one_line_error_naming_it(tmp_path, damage: str) -> None:
    path = tmp_path / "ep.npz"
    save_episode(path, _episode())
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an episode at all")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("frames.npy")
        mid = info.header_offset + 60 + info.compress_size // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    with pytest.raises(EpisodeFormatError) as err:
        load_episode(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert path.exists(), "loading must never delete data"


def test_other_version_and_foreign_npz_are_refused(tmp_path) -> None:
    path = tmp_path / "ep.npz"
    save_episode(path, _episode())
    arrays = dict(np.load(path, allow_pickle=False))
    meta = json.loads(arrays["meta"].tobytes())
    assert meta["format"] == "robofume-episode" and meta["version"] == 1
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "version": 99}).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(EpisodeFormatError, match="version 99 is not supported"):
        load_episode(path)
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(EpisodeFormatError, match="missing arrays"):
        load_episode(tmp_path / "foreign.npz")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ([1, 2], "not a robofume-episode file"),
        ({"format": "robofume-episode", "version": 1}, "names no task"),
    ],
)
def test_foreign_or_taskless_metadata_is_a_format_error(tmp_path, meta: object, message: str) -> None:
    path = tmp_path / "ep.npz"
    save_episode(path, _episode())
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(EpisodeFormatError, match=message) as err:
        load_episode(path)
    assert str(path) in str(err.value) and path.exists()


def test_inconsistent_arrays_are_refused() -> None:
    ep = _episode()
    with pytest.raises(EpisodeFormatError, match="actions"):
        Episode(ep.frames, ep.proprio, ep.actions[:-1], ep.success, "forward")
    with pytest.raises(EpisodeFormatError, match="frames must be uint8"):
        Episode(ep.frames.astype(np.float32), ep.proprio, ep.actions, ep.success, "forward")
    with pytest.raises(ValueError, match="unknown task"):
        Episode(ep.frames, ep.proprio, ep.actions, ep.success, "upside_down")
