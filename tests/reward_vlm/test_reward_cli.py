"""``robofume reward train|eval|export-backbone`` through :func:`reward_vlm.reward_cli.register_cli`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from classifier_scenes import write_dataset

from reward_vlm.backbones import BackboneError, build_tiny_backbone
from reward_vlm.reward_cli import register_cli

torch.set_num_threads(1)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="robofume")
    register_cli(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", demos=3, failures=1, prior=2)
    backbone = build_tiny_backbone("transformers", tmp_path / "bb")
    out = tmp_path / "clf"
    assert (
        _run(
            [
                "reward",
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--backend",
                "transformers",
                "--backbone-path",
                backbone,
                "--image-size",
                "64",
                "--method",
                "probe",
                "--epochs",
                "2",
                "--confirm-frames",
                "3",
                "--target-precision",
                "0.9",
                "--seed",
                "1",
                "--offline",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["method"] == "probe" and set(report["metrics"]) == {"forward", "backward"}
    config = json.loads((out / "config.json").read_text())
    assert config["confirm_frames"] == 3 and config["target_precision"] == 0.9 and config["seed"] == 1
    assert config["backbone"]["backend"] == "transformers" and config["backbone"]["allow_download"] is False

    assert _run(["reward", "eval", "--classifier", str(out), "--data", str(data / "demos"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"precision", "recall", "accuracy", "average_precision"} <= set(result["forward"])
    assert result["forward"]["positives"] > 0

    # A rerun from the saved config with one override.
    assert (
        _run(
            [
                "reward",
                "train",
                "--config",
                str(out / "config.json"),
                "--out",
                str(tmp_path / "clf2"),
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "clf2" / "config.json").read_text())
    assert again["epochs"] == 1 and again["confirm_frames"] == 3


def test_export_backbone_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(BackboneError, match="not available offline") as err:
        _run(["reward", "export-backbone", "--out", str(tmp_path / "bb"), "--offline"])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="--backbone-path"):
        _run(["reward", "export-backbone", "--out", str(tmp_path / "bb"), "--backbone-path", str(tmp_path)])


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--device", "tpu"], "unknown device 'tpu'"), (["--tolerance-frames", "-1"], "--tolerance-frames")],
)
def test_eval_bad_device_or_tolerance_is_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    argv = ["reward", "eval", "--classifier", str(tmp_path / "clf"), "--data", str(tmp_path), *extra]
    with pytest.raises(ValueError, match=message) as err:
        _run(argv)
    assert "\n" not in str(err.value)


def test_train_with_a_missing_label_file_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "clf"
    argv = ["reward", "train", "--data", str(tmp_path), "--out", str(out), "--labels", str(tmp_path / "typo")]
    with pytest.raises(ValueError, match="no label file at") as err:
        _run(argv)
    assert "\n" not in str(err.value) and not out.exists()
