"""The session's cached data stage: reused while the mock arm renders and starts scenes alike,
regenerated when not."""

from __future__ import annotations

import json
import os

from robofume.data.episode_format import list_episodes
from robofume.data.generate import mock_env_settings, read_env_settings
from robofume.session.config import DataStage, SessionConfig
from robofume.session.prepare import ensure_data


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
