"""The success classifier: zero-shot, input checks, threshold choice, confirmation, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reward_vlm.backbones import BackboneConfig, build_tiny_backbone
from reward_vlm.classifier import (
    ClassifierCheckpointError,
    ClassifierInputError,
    SuccessClassifier,
    SuccessConfirmation,
    confirm_sequence,
    default_prompts,
    select_threshold,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BackboneConfig]:
    """Tiny backbones: open_clip (seeds 0, 1: same architecture, other weights), transformers CLIP, SigLIP."""
    root = tmp_path_factory.mktemp("backbones")
    return {
        "open_clip": BackboneConfig(path=build_tiny_backbone("open_clip", root / "oc"), image_size=64),
        "open_clip_seed1": BackboneConfig(
            path=build_tiny_backbone("open_clip", root / "oc1", seed=1), image_size=64
        ),
        "hf_clip": BackboneConfig(
            backend="transformers", path=build_tiny_backbone("transformers", root / "hc"), image_size=64
        ),
        "hf_siglip": BackboneConfig(
            backend="transformers",
            image_size=64,
            path=build_tiny_backbone("transformers", root / "hs", arch="siglip"),
        ),
    }


def _frames(n: int = 4, side: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("which", ["open_clip", "hf_clip", "hf_siglip"])
def test_zero_shot_returns_probabilities(tiny: dict[str, BackboneConfig], which: str) -> None:
    clf = SuccessClassifier.zero_shot(tiny[which])
    assert clf.tasks == ("forward", "backward")
    for task in clf.tasks:
        p = clf.predict_proba(_frames(), task)
        assert p.shape == (4,) and p.dtype == np.float32
        assert np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
        assert clf.threshold(task) == 0.5
        assert clf.is_success(_frames(), task).dtype == bool
    single = clf.predict_proba(_frames(1)[0], "forward")
    assert single.shape == (1,)
    assert np.allclose(single, clf.predict_proba(_frames(1), "forward"))
    assert clf.predict_proba(np.zeros((0, 64, 64, 3), np.uint8), "forward").shape == (0,)


def test_zero_shot_is_the_softmax_over_prompt_similarities(tiny: dict[str, BackboneConfig]) -> None:
    prompts = {"forward": (["the red cube is in the blue bin"], ["the red cube is on the table"])}
    clf = SuccessClassifier.zero_shot(tiny["hf_clip"], prompts, temperature=10.0)
    frames = _frames(3)
    with torch.inference_mode():
        img = clf.backbone.encode_images(torch.from_numpy(frames))
        txt = clf.backbone.encode_texts([prompts["forward"][0][0], prompts["forward"][1][0]])
        expected = torch.softmax(10.0 * img @ txt.T, dim=-1)[:, 0].numpy()
    assert np.allclose(clf.predict_proba(frames, "forward"), expected, atol=1e-5)
    assert "red cube" in default_prompts()["forward"][0][0]


def test_calibration_sets_the_precision_threshold(tiny: dict[str, BackboneConfig]) -> None:
    clf = SuccessClassifier.zero_shot(tiny["open_clip"])
    frames = _frames(12)
    scores = clf.predict_proba(frames, "forward")
    labels = scores >= np.median(scores)  # perfectly separable by construction
    choice = clf.calibrate("forward", frames, labels, target_precision=0.95)
    assert choice.attainable and choice.precision == 1.0 and choice.recall == 1.0
    assert scores[~labels].max() < clf.threshold("forward") <= scores[labels].min()
    assert np.array_equal(clf.is_success(frames, "forward"), labels)


def test_bad_input_is_a_one_line_error(tiny: dict[str, BackboneConfig]) -> None:
    clf = SuccessClassifier.zero_shot(tiny["open_clip"])
    bad = [
        (_frames().astype(np.float32), "uint8"),
        (_frames()[..., :2], "RGB"),
        (np.zeros((64, 64), np.uint8), "RGB"),
        (np.zeros((2, 4, 4, 3), np.uint8), "too small"),
        ([[1, 2, 3]], "numpy"),
    ]
    for frames, words in bad:
        with pytest.raises(ClassifierInputError, match=words) as err:
            clf.predict_proba(frames, "forward")  # type: ignore[arg-type]
        assert "\n" not in str(err.value)
    with pytest.raises(ClassifierInputError, match=r"unknown task 'sideways'.*forward, backward"):
        clf.predict_proba(_frames(), "sideways")
    with pytest.raises(ClassifierInputError, match="unknown task"):
        clf.threshold("sideways")
    with pytest.raises(ClassifierInputError, match="within"):
        clf.set_threshold("forward", 1.5)
    with pytest.raises(ClassifierInputError, match="positive texts, negative texts"):
        SuccessClassifier.zero_shot(tiny["open_clip"], {"forward": (["done"], [])})


def test_threshold_is_the_lowest_meeting_precision() -> None:
    # ranked by score: P P N P P N N ; precision at cut 2: 1.0, at 4: 0.75, at 5: 0.8
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    labels = np.array([1, 1, 0, 1, 1, 0, 0], dtype=bool)
    choice = select_threshold(scores, labels, target_precision=0.8)
    assert choice.attainable and choice.threshold == pytest.approx(0.55)  # midway between 0.6 and 0.5
    assert choice.precision == pytest.approx(0.8) and choice.recall == 1.0
    strict = select_threshold(scores, labels, target_precision=0.95)
    assert strict.threshold == pytest.approx(0.85) and strict.recall == 0.5 and strict.precision == 1.0
    lowest = select_threshold(scores, np.ones(7, bool), target_precision=0.95)
    assert lowest.threshold == 0.1 and lowest.recall == 1.0  # nothing below: the lowest score itself
    # ties: a threshold cannot split equal scores
    tied = select_threshold(np.array([0.9, 0.9, 0.2]), np.array([1, 0, 1], bool), 0.95)
    assert not tied.attainable and "0.95" in tied.note


def test_unattainable_and_degenerate_thresholds_are_reported() -> None:
    choice = select_threshold(np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0], bool), 0.95)
    assert not choice.attainable and choice.threshold == pytest.approx(0.75)
    assert choice.precision == pytest.approx(0.5)
    none = select_threshold(np.array([0.3, 0.2]), np.array([0, 0], bool), 0.95)
    assert not none.attainable and none.threshold == 0.5 and "no positive" in none.note
    with pytest.raises(ValueError, match="differ in length"):
        select_threshold(np.zeros(3), np.zeros(2, bool))


def test_confirmation_needs_k_consecutive_positives() -> None:
    conf = SuccessConfirmation(3)
    assert [conf.update(v) for v in (True, True, False, True, True, True, True)] == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
    ]
    conf.reset()
    assert not conf.update(True)
    assert conf.update(True) is False and conf.update(None) is False and conf.run_length == 0
    assert SuccessConfirmation(1).update(True)
    assert list(confirm_sequence([True, True, False, True], 2)) == [False, True, False, False]
    with pytest.raises(ValueError, match="k >= 1"):
        SuccessConfirmation(0)


def test_checkpoint_round_trip(tiny: dict[str, BackboneConfig], tmp_path: Path) -> None:
    clf = SuccessClassifier.zero_shot(tiny["hf_siglip"])
    clf.set_threshold("backward", 0.7)
    folder = clf.save(tmp_path / "clf")
    back = SuccessClassifier.load(folder)
    assert back.tasks == clf.tasks and back.threshold("backward") == 0.7
    for task in clf.tasks:
        assert np.array_equal(back.predict_proba(_frames(), task), clf.predict_proba(_frames(), task))
    meta = json.loads((Path(folder) / "classifier.json").read_text())
    assert meta["format"] == "robofume-success-classifier" and meta["version"] == 1
    assert not meta["backbone_tuned"] and Path(meta["backbone"]["path"]).is_absolute()


def test_checkpoint_for_another_backbone_is_refused(tiny: dict[str, BackboneConfig], tmp_path: Path) -> None:
    folder = SuccessClassifier.zero_shot(tiny["open_clip"]).save(tmp_path / "clf")
    with pytest.raises(ClassifierCheckpointError, match="architectures differ") as err:
        SuccessClassifier.load(folder, backbone=tiny["hf_clip"])
    assert "\n" not in str(err.value)
    with pytest.raises(ClassifierCheckpointError, match="other weights"):
        SuccessClassifier.load(folder, backbone=tiny["open_clip_seed1"])
    big = BackboneConfig(path=tiny["open_clip"].path, image_size=96)  # other position-embedding grid
    with pytest.raises(ClassifierCheckpointError, match="architectures differ"):
        SuccessClassifier.load(folder, backbone=big)


def test_corrupt_checkpoint_is_a_one_line_error(tiny: dict[str, BackboneConfig], tmp_path: Path) -> None:
    folder = Path(SuccessClassifier.zero_shot(tiny["open_clip"]).save(tmp_path / "clf"))
    head = folder / "head.safetensors"
    good = head.read_bytes()
    head.write_bytes(good[: len(good) // 2])
    with pytest.raises(ClassifierCheckpointError, match="corrupt or incomplete") as err:
        SuccessClassifier.load(folder)
    assert "\n" not in str(err.value)
    head.write_bytes(good)
    meta = folder / "classifier.json"
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(ClassifierCheckpointError, match="unreadable or corrupt"):
        SuccessClassifier.load(folder)
    meta.write_text(json.dumps({"format": "robofume-success-classifier", "version": 1}))
    with pytest.raises(ClassifierCheckpointError, match="missing or malformed"):
        SuccessClassifier.load(folder)
    with pytest.raises(ClassifierCheckpointError, match="not a classifier checkpoint"):
        SuccessClassifier.load(tmp_path / "empty")
