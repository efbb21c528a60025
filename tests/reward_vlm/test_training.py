"""Few-label training on synthetic mock episodes: beats zero-shot on unseen episodes, uses labels, saves."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from classifier_scenes import make_episode, write_dataset

from reward_vlm.backbones import BackboneConfig, build_tiny_backbone
from reward_vlm.classifier import SuccessClassifier
from reward_vlm.labels import FrameLabel, LabelError, save_labels
from reward_vlm.training import (
    ClassifierConfigError,
    ClassifierTrainConfig,
    build_dataset,
    episode_outcome,
    episode_paths,
    evaluate_classifier,
    load_train_config,
    path_stratum,
    split_episodes,
    subsample_indices,
    train_classifier,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A synthetic dataset, a tiny backbone, and unseen test episodes (other seeds)."""
    root = tmp_path_factory.mktemp("clf")
    data = write_dataset(root / "data")
    backbone = BackboneConfig(path=build_tiny_backbone("open_clip", root / "bb"), image_size=64)
    kinds = [(t, k) for t in ("forward", "backward") for k in ("demos",) * 4 + ("failures",) * 2]
    test = [make_episode(t, k, 900 + i) for i, (t, k) in enumerate(kinds)]
    return {"root": root, "data": data, "backbone": backbone, "test": test}


def _mean(result: dict[str, dict[str, Any]], key: str) -> float:
    return float(np.mean([m[key] for m in result.values()]))


def test_training_improves_precision_on_unseen_episodes(setup: dict[str, Any]) -> None:
    baseline = evaluate_classifier(SuccessClassifier.zero_shot(setup["backbone"]), setup["test"])
    out = setup["root"] / "run"
    phases: list[dict[str, Any]] = []
    cfg = ClassifierTrainConfig(
        data=[str(setup["data"])],
        out=str(out),
        backbone=setup["backbone"],
        method="last_blocks",
        tune_blocks=3,
        backbone_lr=1e-3,
        epochs=12,
        max_frames_per_episode=12,
        device="cpu",
    )
    metrics = train_classifier(cfg, progress=phases.append)

    assert set(metrics) == {"forward", "backward"}
    for m in metrics.values():
        assert {"precision", "recall", "accuracy", "threshold", "positives", "negatives"} <= set(m)
        assert m["positives"] > 0 and m["negatives"] > m["positives"]
    assert [p["phase"] for p in phases][-1] == "done"
    assert any(p["phase"] == "train" and p["epoch"] == 12 and p["epochs"] == 12 for p in phases)

    clf = SuccessClassifier.load(out)
    trained = evaluate_classifier(clf, setup["test"])
    # Threshold-free ranking quality on unseen episodes (robust to the tiny held-out set's threshold) ...
    for task in ("forward", "backward"):
        assert trained[task]["average_precision"] >= 0.8, trained
        assert trained[task]["average_precision"] > baseline[task]["average_precision"] + 0.4, (
            trained,
            baseline,
        )
    # ... and at the thresholds picked on held-out episodes.
    assert _mean(trained, "precision") > _mean(baseline, "precision") + 0.3, (trained, baseline)
    assert _mean(trained, "accuracy") > _mean(baseline, "accuracy"), (trained, baseline)
    assert sum(trained["forward"]["episodes"].values()) == 6  # 4 demos + 2 failures per task
    assert _mean(trained, "episode_recall") > _mean(baseline, "episode_recall")
    assert clf.confirm_frames == 2 and clf.training["method"] == "last_blocks"

    meta = json.loads((out / "classifier.json").read_text())
    assert meta["backbone_tuned"] and (out / "backbone" / "model.safetensors").is_file()
    assert meta["thresholds"] == {t: m["threshold"] for t, m in metrics.items()}
    assert load_train_config(out / "config.json") == cfg
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(out / "tb")).Reload().Tags()["scalars"]
    assert {"losses/train_bce", "charts/precision_forward", "charts/recall_backward"} <= set(tags)


def test_user_labels_join_and_override_flags(setup: dict[str, Any], tmp_path: Path) -> None:
    data = setup["data"]
    labels = [
        FrameLabel("demos/forward_000000.npz", 19, "forward", False),  # the flag says success
        FrameLabel("demos/forward_000000.npz", 2, "backward", False),
        FrameLabel("failures/backward_000001.npz", 5, "backward", True),
    ]
    save_labels(tmp_path / "labels.json", labels)
    cfg = ClassifierTrainConfig(
        data=[str(data)],
        out=str(tmp_path / "o"),
        labels=str(tmp_path / "labels.json"),
        user_label_weight=3.0,
        max_frames_per_episode=40,
    )
    ds = build_dataset(cfg, progress=lambda _info: None)
    assert ds.user_labels == 3
    forward_text = ds.texts.index(cfg.resolved_task_texts()["forward"])
    picked = [
        s for s in ds.samples if s.group.endswith("demos/forward_000000.npz") and s.text == forward_text
    ]
    last = [s for s in picked if ds.frames[s.frame] is not None and s.weight == 3.0]
    assert len(last) == 1 and last[0].label is False
    assert sum(s.weight == 3.0 for s in ds.samples) == 3

    save_labels(tmp_path / "bad.json", [FrameLabel("demos/forward_000000.npz", 999, "forward", True)])
    with pytest.raises(LabelError, match="frame 999"):
        build_dataset(ClassifierTrainConfig(data=[str(data)], out="x", labels=str(tmp_path / "bad.json")))


def test_episodes_split_whole_and_per_stratum(setup: dict[str, Any]) -> None:
    cfg = ClassifierTrainConfig(data=[str(setup["data"])], out="unused", max_frames_per_episode=6)
    paths, _root, _labels = episode_paths(cfg)
    held = split_episodes(paths, 0.25, seed=0)
    assert held == split_episodes(reversed(paths), 0.25, seed=0)
    strata = {path_stratum(p) for p in held}
    assert {"demos/forward", "demos/backward", "failures/forward", "prior/forward"} <= strata
    assert sum(path_stratum(p) == "demos/forward" for p in held) == 2  # round(0.25 * 10) of each kind/task
    ds = build_dataset(cfg, progress=lambda _info: None, heldout=held)
    per_episode = {
        g: sum(1 for s in ds.samples if s.group == g and s.text == ds.samples[0].text) for g in paths
    }
    frames_of = {g: len({s.frame for s in ds.samples if s.group == g}) for g in paths}
    assert all(frames_of[g] == 20 for g in held)  # held-out episodes: every frame
    assert all(frames_of[g] <= 6 for g in paths if g not in held)  # training episodes: subsampled
    assert per_episode
    # cross-task negatives: success frames of a forward demo are failures of the backward text
    backward_text = ds.texts.index(cfg.resolved_task_texts()["backward"])
    assert any(s.text == backward_text and not s.label and s.stratum == "demos/forward" for s in ds.samples)


def test_episode_outcomes() -> None:
    success = np.array([0, 0, 0, 0, 1, 1], bool)
    fire = np.zeros(6, bool)
    assert episode_outcome(fire, success) == "fn"
    fire[3:] = True
    assert episode_outcome(fire, success) == "early"
    assert episode_outcome(fire, success, tolerance=1) == "tp"
    assert episode_outcome(fire, np.zeros(6, bool)) == "fp"
    assert episode_outcome(np.zeros(6, bool), np.zeros(6, bool)) == "tn"


def test_subsample_keeps_successes() -> None:
    success = np.zeros(100, bool)
    success[-3:] = True
    idx = subsample_indices(success, 10)
    assert len(idx) == 10 and set(np.nonzero(success)[0]) <= set(idx)
    assert list(subsample_indices(success[:5], 10)) == [0, 1, 2, 3, 4]


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": ["d"], "out": "o", "epochz": 3}))
    with pytest.raises(ClassifierConfigError, match=r"unknown classifier config key.*epochz"):
        load_train_config(path)
    path.write_text(json.dumps({"data": ["d"], "out": "o", "backbone": {"backend": "open_clip", "size": 3}}))
    with pytest.raises(ClassifierConfigError, match="unknown backbone config key"):
        load_train_config(path)
    with pytest.raises(ClassifierConfigError, match="method must be one of"):
        ClassifierTrainConfig(data=["d"], out="o", method="magic")
    with pytest.raises(ClassifierConfigError, match="holdout_fraction"):
        ClassifierTrainConfig(data=["d"], out="o", holdout_fraction=1.0)
    with pytest.raises(ClassifierConfigError, match="does not exist"):
        build_dataset(ClassifierTrainConfig(data=[str(tmp_path / "missing")], out="o"))


def test_training_refuses_a_policy_run_folder_and_leaves_it_alone(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    (run / "config.json").write_text('{"recipe": "calql"}')
    cfg = ClassifierTrainConfig(data=[str(setup["data"])], out=str(run), backbone=setup["backbone"], epochs=1)
    with pytest.raises(ClassifierConfigError, match=r"holds a policy run \(weights/\)"):
        train_classifier(cfg)
    assert (run / "config.json").read_text() == '{"recipe": "calql"}'
