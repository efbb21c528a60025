"""`robofume data generate`: what it writes, resume after a crash, and refusing to overwrite."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from robofume.data.episode_format import list_episodes, load_episode
from robofume.data.generate import GenerateConfig, generate_dataset, plan_jobs
from robofume.data.inspect import dataset_info


def _cfg(out, **kw) -> GenerateConfig:
    base = {"demos_per_task": 1, "failures_per_task": 1, "prior": 2, "image_size": 32, "workers": 1}
    return GenerateConfig(out=str(out), **{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "mock"
    manifest = generate_dataset(_cfg(out), progress=False)
    return out, manifest


def test_writes_demos_failures_and_prior_with_labels(dataset) -> None:
    out, manifest = dataset
    assert manifest["complete"] and manifest["episodes"] == {"demos": 2, "failures": 2, "prior": 2}
    demos = [load_episode(p) for p in list_episodes(out, "demos")]
    failures = [load_episode(p) for p in list_episodes(out, "failures")]
    prior = [load_episode(p) for p in list_episodes(out, "prior")]
    assert sorted(e.task for e in demos) == ["backward", "forward"]
    assert all(e.succeeded for e in demos) and not any(e.succeeded for e in failures)
    for ep in demos + failures + prior:
        assert ep.frames.dtype == np.uint8 and ep.frames.shape[1:] == (32, 32, 3)
        assert ep.metadata["instruction"] and ep.metadata["proprio_names"][0] == "ee_x"
    assert all(e.metadata["scene"] != "target" for e in prior)
    assert "red cube" not in " ".join(
        e.metadata["instruction"] for e in prior if e.metadata["scene"]["object_color"] != "red"
    )
    saved = json.loads((out / "dataset.json").read_text())
    assert saved["format"] == "robofume-episode" and saved["complete"]


def test_refuses_to_overwrite_an_existing_dataset(dataset) -> None:
    out, _ = dataset
    before = {p: os.path.getmtime(p) for p in list_episodes(out)}
    with pytest.raises(FileExistsError, match="--resume"):
        generate_dataset(_cfg(out), progress=False)
    assert {p: os.path.getmtime(p) for p in list_episodes(out)} == before


def test_resume_regenerates_exactly_what_is_missing_and_keeps_corrupt_files(dataset) -> None:
    out, _ = dataset
    files = list_episodes(out)
    missing, damaged = files[0], files[1]
    reference = load_episode(missing)
    os.unlink(missing)
    with open(damaged, "r+b") as f:
        f.truncate(100)
    generate_dataset(_cfg(out, resume=True), progress=False)
    redone = load_episode(missing)
    np.testing.assert_array_equal(redone.frames, reference.frames)
    np.testing.assert_array_equal(redone.actions, reference.actions)
    load_episode(damaged)
    assert [p for p in os.listdir(os.path.dirname(damaged)) if ".corrupt-" in p], "damaged file must be kept"
    info = dataset_info(str(out))
    assert info["episodes"] == 6 and info["corrupt"] == []


def test_seeds_are_distinct_per_episode(tmp_path) -> None:
    jobs = plan_jobs(_cfg(tmp_path, demos_per_task=5, prior=10))
    assert len({j.seed for j in jobs}) == len(jobs)
    assert len({j.path for j in jobs}) == len(jobs)


def test_bad_settings_are_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        _cfg(tmp_path, image_size=8)
    with pytest.raises(ValueError, match="prior must be >= 0"):
        _cfg(tmp_path, prior=-1)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot create output folder"):
        generate_dataset(_cfg(blocker / "sub"), progress=False)


@pytest.mark.slow
def test_parallel_workers_match_single_worker(tmp_path) -> None:
    generate_dataset(_cfg(tmp_path / "one"), progress=False)
    generate_dataset(_cfg(tmp_path / "two", workers=2), progress=False)
    for a, b in zip(list_episodes(tmp_path / "one"), list_episodes(tmp_path / "two"), strict=True):
        np.testing.assert_array_equal(load_episode(a).frames, load_episode(b).frames)


def test_layout_seed_records_target_scene_episodes_at_one_workstation(tmp_path) -> None:
    from robofume.data import generate as gen

    cfg = _cfg(tmp_path, demos_per_task=2, failures_per_task=0, prior=1, layout_seed=3, max_episode_steps=60)
    jobs = plan_jobs(cfg)
    for kind in ("demos", "failures", "prior"):
        (tmp_path / kind).mkdir()
    targets = []
    try:
        for job in jobs:
            gen.run_job(job, cfg.image_size, cfg.max_episode_steps)
            env = gen._env_for(job, cfg.image_size, cfg.max_episode_steps)
            targets.append((job.kind, env.target_pos()[:2].copy(), env.start_pos()[:2].copy()))
            meta = load_episode(job.path).metadata
            assert meta["layout_seed"] == (3 if job.kind != "prior" else None)
    finally:
        gen.close_cached_envs()
    demos = [(t, s) for kind, t, s in targets if kind == "demos"]
    assert len(demos) == 4
    for t, s in demos[1:]:
        np.testing.assert_allclose(t, demos[0][0])
        np.testing.assert_allclose(s, demos[0][1])
    with pytest.raises(ValueError, match="layout_seed"):
        _cfg(tmp_path, layout_seed=-1)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        _cfg(tmp_path, seed=-1)
    with pytest.raises(ValueError, match="demo_noise must be >= 0"):
        _cfg(tmp_path, demo_noise=-0.1)


def test_resume_with_other_episode_settings_is_refused_and_changes_nothing(dataset) -> None:
    out, _ = dataset
    before = {p: os.path.getmtime(p) for p in [*list_episodes(out), str(out / "dataset.json")]}
    with pytest.raises(ValueError, match="made with image_size 32"):
        generate_dataset(_cfg(out, image_size=64, resume=True), progress=False)
    assert {p: os.path.getmtime(p) for p in before} == before


def test_env_settings_are_recorded_and_a_dataset_made_differently_is_not_resumed(tmp_path) -> None:
    from robofume.data.generate import mock_env_settings, read_env_settings
    from robofume.sim.mock_arm_env import LEGACY_OBJECT_SPREAD, LEGACY_TRAY_HEIGHT

    out = tmp_path / "mock"
    generate_dataset(_cfg(out, prior=0, failures_per_task=0), progress=False)
    assert read_env_settings(str(out)) == mock_env_settings()
    assert (
        load_episode(list_episodes(out)[0]).metadata["visual_max_faces"]
        == mock_env_settings()["visual_max_faces"]
    )
    assert mock_env_settings()["tray_height"] > 0
    manifest = json.loads((out / "dataset.json").read_text())
    # a manifest from before the tray: its scenes had none
    del manifest["mock_scene"]["tray_height"]
    (out / "dataset.json").write_text(json.dumps(manifest))
    assert read_env_settings(str(out)) == {**mock_env_settings(), "tray_height": LEGACY_TRAY_HEIGHT}
    # a manifest from before the settings were recorded: original meshes, 3 cm spreads, no tray
    del manifest["mock_camera"], manifest["mock_scene"]
    (out / "dataset.json").write_text(json.dumps(manifest))
    assert read_env_settings(str(out)) == {
        "visual_max_faces": 0,
        "start_spread": LEGACY_OBJECT_SPREAD,
        "target_spread": LEGACY_OBJECT_SPREAD,
        "tray_height": LEGACY_TRAY_HEIGHT,
    }
    before = {p: os.path.getmtime(p) for p in list_episodes(out)}
    with pytest.raises(ValueError, match="new --out"):
        generate_dataset(_cfg(out, prior=0, failures_per_task=1, resume=True), progress=False)
    assert {p: os.path.getmtime(p) for p in list_episodes(out)} == before


def test_parallel_generation_exits_without_renderer_tracebacks(tmp_path) -> None:
    """Pool workers free their renderers before EGL's exit hook (they printed EGL tracebacks)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "robofume.cli", "data", "generate", "--out", str(tmp_path / "d"), "--demos",
           "1", "--failures", "0", "--prior", "2", "--image-size", "32", "--workers", "2"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "EGLError" not in done.stderr, done.stderr[-2000:]
    assert len(list_episodes(tmp_path / "d", "demos")) == 2


def test_recovery_demos_start_between_square_and_bin_and_finish_the_task(tmp_path) -> None:
    from robofume.data import generate as gen

    plain = plan_jobs(_cfg(tmp_path, layout_seed=3))
    cfg = _cfg(tmp_path, prior=0, failures_per_task=0, layout_seed=3, recovery_demos=1, max_episode_steps=80)
    jobs = plan_jobs(cfg)
    # without recovery demos the plan is what it was: same jobs, same seeds
    assert [j for j in jobs if j.object_in is None] == [j for j in plain if j.kind == "demos"]
    recovery = [j for j in jobs if j.object_in is not None]
    assert [(j.kind, j.task, j.object_in, os.path.basename(j.path)) for j in recovery] == [
        ("demos", task, "between", f"{task}_recovery_000000.npz") for task in ("forward", "backward")
    ]
    assert len({j.seed for j in jobs}) == len(jobs)
    plain_demo = next(j for j in jobs if j.object_in is None)
    (tmp_path / "demos").mkdir()
    try:
        results = [gen.run_job(job, cfg.image_size, cfg.max_episode_steps) for job in (*recovery, plain_demo)]
    finally:
        gen.close_cached_envs()
    for job, result in zip(recovery, results, strict=False):
        episode = load_episode(job.path)
        # not done at the first frame (the object lay outside both regions), done at the end
        assert result["success"] and episode.succeeded and not episode.success[0]
        assert episode.metadata["object_in"] == "between"
    assert "object_in" not in load_episode(plain_demo.path).metadata
    with pytest.raises(ValueError, match="recovery_demos must be >= 0"):
        _cfg(tmp_path, recovery_demos=-1)


def test_recovery_demos_from_anywhere_on_the_table_finish_the_task_and_keep_their_region(tmp_path) -> None:
    cfg = _cfg(tmp_path / "d", prior=0, failures_per_task=0, demos_per_task=0, layout_seed=3,
               recovery_demos=1, recovery_region="table", max_episode_steps=100)  # fmt: skip
    jobs = plan_jobs(cfg)
    assert [(j.task, j.object_in) for j in jobs] == [("forward", "table"), ("backward", "table")]
    # the same seeds as "between" recovery demos: only where the object starts differs
    between = plan_jobs(dataclasses.replace(cfg, recovery_region="between"))
    assert [j.seed for j in jobs] == [j.seed for j in between]
    generate_dataset(cfg, progress=False)
    for path in list_episodes(tmp_path / "d"):
        episode = load_episode(path)
        assert episode.metadata["object_in"] == "table"
        assert episode.succeeded and not episode.success[0]
    before = {p: os.path.getmtime(p) for p in list_episodes(tmp_path / "d")}
    with pytest.raises(ValueError, match="made with recovery_region table"):
        generate_dataset(dataclasses.replace(cfg, recovery_region="between", resume=True), progress=False)
    # a manifest from before the setting existed made its recovery demos "between"
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    del manifest["settings"]["recovery_region"]
    (tmp_path / "d" / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="made with recovery_region between"):
        generate_dataset(dataclasses.replace(cfg, resume=True), progress=False)
    assert {p: os.path.getmtime(p) for p in list_episodes(tmp_path / "d")} == before
    with pytest.raises(ValueError, match="recovery_region must be one of between, table, got 'floor'"):
        _cfg(tmp_path, recovery_region="floor")


def test_recovery_demos_of_any_region_can_be_added_to_a_dataset_without_any(tmp_path) -> None:
    from robofume.data.generate import changed_settings

    cfg = _cfg(tmp_path, prior=0, failures_per_task=0)
    (tmp_path / "dataset.json").write_text(json.dumps({"settings": dataclasses.asdict(cfg)}))
    more = dataclasses.replace(cfg, recovery_demos=2, recovery_region="table")
    assert changed_settings(str(tmp_path), more) == {}
