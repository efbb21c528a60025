"""The session's cached data stage: reused while the mock arm renders and starts scenes alike,
regenerated when not."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from robofume.data.episode_format import list_episodes, load_episode
from robofume.data.generate import mock_env_settings, read_env_settings
from robofume.session.config import DataStage, SessionConfig, SessionConfigError
from robofume.session.prepare import check_session_folder, ensure_data, ensure_labels


def test_data_stage_is_cached_and_regenerated_when_made_differently(tmp_path) -> None:
    cfg = SessionConfig(
        out=str(tmp_path / "session"),
        data_stage=DataStage(demos_per_task=1, failures_per_task=0, prior=0, image_size=32, workers=1),
    )
    said: list[str] = []
    data = ensure_data(cfg, said.append)
    assert len(list_episodes(data)) == 2 and read_env_settings(data) == mock_env_settings()
    first = {p: os.path.getmtime(p) for p in list_episodes(data)}
    ensure_data(cfg, said.append)
    assert said[-1].startswith("data: cached")
    # a session folder whose fresh scenes were drawn with another spread
    manifest_path = os.path.join(data, "dataset.json")
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    manifest["mock_scene"]["start_spread"] = 0.05
    with open(manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    marker = os.path.join(cfg.out, ".stages", "data.json")
    with open(marker, encoding="utf-8") as f:
        settings = json.load(f)
    del settings["mock_env"]
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(settings, f)
    ensure_data(cfg, said.append)
    assert any("generating it again" in line for line in said)
    assert read_env_settings(data) == mock_env_settings()
    again = {p: os.path.getmtime(p) for p in list_episodes(data)}
    assert again.keys() == first.keys() and all(again[p] > first[p] for p in first)

    # another episode setting of the data stage: generated again, never mixed into the old episodes
    said.clear()
    bigger = dataclasses.replace(cfg, data_stage=dataclasses.replace(cfg.data_stage, image_size=48))
    ensure_data(bigger, said.append)
    assert any("image_size 32; generating it again" in line for line in said)
    assert {load_episode(p).frames.shape[1] for p in list_episodes(data)} == {48}


def test_stage_markers_survive_a_copied_session_folder(tmp_path) -> None:
    import shutil

    from robofume.session.prepare import _is_done, _mark_done

    first = SessionConfig(out=str(tmp_path / "a"))
    settings = {"steps": 5, "data": first.data_dir, "labels": os.path.join(first.out, "labels.json")}
    _mark_done(first, "pretrain", settings)
    with open(os.path.join(first.out, ".stages", "pretrain.json"), encoding="utf-8") as f:
        assert json.load(f)["data"] == "data", "paths inside the session folder are stored relative"
    shutil.copytree(first.out, tmp_path / "b")
    copy = SessionConfig(out=str(tmp_path / "b"))
    moved = {**settings, "data": copy.data_dir, "labels": os.path.join(copy.out, "labels.json")}
    assert _is_done(copy, "pretrain", moved)
    assert not _is_done(copy, "pretrain", {**moved, "steps": 6})
    assert not _is_done(copy, "pretrain", {**moved, "data": str(tmp_path / "elsewhere")})
    # a marker written before: absolute paths, inside the same folder, still match
    old = SessionConfig(out=str(tmp_path / "c"))
    os.makedirs(os.path.join(old.out, ".stages"))
    absolute = {**settings, "data": old.data_dir, "labels": os.path.join(old.out, "labels.json")}
    with open(os.path.join(old.out, ".stages", "pretrain.json"), "w", encoding="utf-8") as f:
        json.dump(absolute, f)
    assert _is_done(old, "pretrain", absolute)


def test_a_folder_of_other_files_is_refused_as_session_folder_and_left_alone(tmp_path) -> None:
    from robofume.session.runner import prepare

    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "recording.txt").write_text("keep")
    (mine / "labels.json").write_text('{"my": "labels"}')
    with pytest.raises(SessionConfigError, match="not a session folder") as err:
        prepare(SessionConfig(out=str(mine)), lambda _line: None)
    assert "\n" not in str(err.value)
    assert (mine / "data" / "recording.txt").read_text() == "keep"
    assert (mine / "labels.json").read_text() == '{"my": "labels"}'
    assert sorted(os.listdir(mine)) == ["data", "labels.json"]
    check_session_folder(str(tmp_path / "new"))  # a new, an empty or a session folder is fine
    (tmp_path / "empty").mkdir()
    check_session_folder(str(tmp_path / "empty"))
    (mine / "session_config.json").write_text("{}")
    check_session_folder(str(mine))


def test_a_named_label_file_that_does_not_exist_is_an_error(tmp_path) -> None:
    cfg = SessionConfig(out=str(tmp_path / "s"), labels=str(tmp_path / "typo.json"))
    with pytest.raises(ValueError, match="no label file at"):
        ensure_labels(cfg, str(tmp_path))


def test_recovery_demos_are_added_to_the_cached_data_and_older_caches_stay_valid(tmp_path) -> None:
    stage = DataStage(demos_per_task=1, failures_per_task=0, prior=0, image_size=32, workers=1)
    cfg = SessionConfig(out=str(tmp_path / "session"), data_stage=stage)
    said: list[str] = []
    data = ensure_data(cfg, said.append)
    with open(os.path.join(cfg.out, ".stages", "data.json"), encoding="utf-8") as f:
        assert "recovery_demos" not in json.load(f), "a cache made before the setting existed stays valid"
    first = {p: os.path.getmtime(p) for p in list_episodes(data)}
    more = dataclasses.replace(cfg, data_stage=dataclasses.replace(stage, recovery_demos=1))
    ensure_data(more, said.append)
    now = list_episodes(data)
    added = sorted(os.path.basename(p) for p in set(now) - set(first))
    assert added == ["backward_recovery_000000.npz", "forward_recovery_000000.npz"]
    assert all(os.path.getmtime(p) == first[p] for p in first), "the demos already made are kept"
    ensure_data(more, said.append)
    assert said[-1].startswith("data: cached")
    # another region: the recovery demos made "between" must not mix with new ones; made again
    table_stage = dataclasses.replace(more.data_stage, recovery_region="table")
    table = dataclasses.replace(more, data_stage=table_stage)
    ensure_data(table, said.append)
    assert any("made with recovery_region between" in line for line in said)
    assert {load_episode(p).metadata.get("object_in") for p in list_episodes(data)} == {None, "table"}
    with pytest.raises(SessionConfigError, match="recovery_region between or table, got 1 and 'floor'"):
        floor = dataclasses.replace(table_stage, recovery_region="floor")
        dataclasses.replace(table, data_stage=floor).validate()
