"""``robofume label`` as a process: prints its URL, serves, stops on Ctrl-C; one-line refusals; the trainer
built from the command line's training options."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from reward_vlm.label_cli import build_trainer, register_cli

REPO = Path(__file__).resolve().parents[2]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="verb", required=True))
    return parser.parse_args(["label", *argv])


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reward_vlm.label_cli", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_defaults() -> None:
    args = _parse("--data", "d")
    assert (args.host, args.port, args.allow_remote, args.labels) == ("127.0.0.1", 8765, False, None)
    assert args.out == "runs/classifier" and args.train_data == []


def test_serves_until_interrupted(label_data: tuple[Path, dict[str, int]]) -> None:
    root, frames = label_data
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reward_vlm.label_cli", "--data", str(root), "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "open http://" in line or not line:
                break
        assert "5 episodes (2 damaged" in lines[0], lines
        url = lines[-1].split("open ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/episodes", timeout=10) as res:
            assert len(json.loads(res.read())["episodes"]) == len(frames) + 2
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped; labels are saved in" in out


def test_non_loopback_host_is_refused_in_one_line(label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data
    result = _run("--data", str(root), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--allow-remote" in result.stderr


def test_corrupt_label_file_is_refused_in_one_line_and_kept(label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data
    labels = root / "labels.json"
    labels.write_text("{garbage")
    result = _run("--data", str(root), "--port", "0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unreadable label file" in result.stderr
    assert labels.read_text() == "{garbage"


@dataclasses.dataclass
class _FakeBackboneConfig:
    backend: str = "open_clip"
    model: str = "ViT-B-32"
    path: str | None = None


@dataclasses.dataclass
class _FakeTrainConfig:
    data: list[str]
    labels: str | None
    labels_root: str | None
    out: str
    backbone: Any
    method: str = "linear"
    epochs: int = 10


def test_trainer_built_from_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def train_classifier(cfg: _FakeTrainConfig, progress: Any = None) -> dict:
        seen["cfg"] = cfg
        progress({"phase": "train", "epoch": 1, "epochs": 1})
        return {"forward": {"precision": 1.0}}

    training = types.ModuleType("reward_vlm.training")
    training.ClassifierTrainConfig = _FakeTrainConfig  # type: ignore[attr-defined]
    training.train_classifier = train_classifier  # type: ignore[attr-defined]
    backbones = types.ModuleType("reward_vlm.backbones")
    backbones.BackboneConfig = _FakeBackboneConfig  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reward_vlm.training", training)
    monkeypatch.setitem(sys.modules, "reward_vlm.backbones", backbones)

    args = _parse(
        "--data", str(tmp_path), "--train-data", "prior", "--backend", "transformers",
        "--backbone-path", "bb", "--epochs", "3", "--method", "lora", "--out", "clf",
    )  # fmt: skip
    events: list[dict] = []
    assert build_trainer(args)(events.append) == {"forward": {"precision": 1.0}}
    cfg = seen["cfg"]
    assert cfg.data == [str(tmp_path), "prior"] and cfg.labels == os.path.join(str(tmp_path), "labels.json")
    assert (cfg.labels_root, cfg.out, cfg.method, cfg.epochs) == (str(tmp_path), "clf", "lora", 3)
    assert cfg.backbone == _FakeBackboneConfig(backend="transformers", path="bb")
    assert events == [{"phase": "train", "epoch": 1, "epochs": 1}]

    with pytest.raises(ValueError, match="has no setting 'device'"):
        build_trainer(_parse("--data", str(tmp_path), "--device", "cpu"))(events.append)


def test_train_button_with_the_real_trainer_on_a_tiny_backbone(
    tmp_path: Path, synthetic_episode_factory: Any
) -> None:
    pytest.importorskip("reward_vlm.training", reason="reward_vlm.training is not in this checkout")
    import torch

    from reward_vlm.backbones import build_tiny_backbone
    from reward_vlm.label_server import LabelServer, LabelServerConfig
    from robofume.data.episode_format import save_episode

    torch.set_num_threads(1)
    root = tmp_path / "episodes"
    for task in ("forward", "backward"):
        for i in range(4):
            (root / "demos").mkdir(parents=True, exist_ok=True)
            save_episode(
                root / "demos" / f"{task}_{i:06d}.npz", synthetic_episode_factory(task, 9, "demos", i)
            )
    tiny = build_tiny_backbone("open_clip", tmp_path / "tiny_backbone")
    args = _parse(
        "--data", str(root), "--backend", "open_clip", "--backbone-path", tiny, "--epochs", "2",
        "--out", str(tmp_path / "classifier"), "--device", "cpu",
    )  # fmt: skip
    with LabelServer(LabelServerConfig(data=str(root), port=0), trainer=build_trainer(args)) as server:
        server.start()
        base = f"http://127.0.0.1:{server.port}"
        changes = [
            {"episode": "demos/forward_000000.npz", "frame": f, "task": "forward", "success": f >= 6}
            for f in range(9)
        ]
        req = urllib.request.Request(
            base + "/api/labels",
            json.dumps({"changes": changes}).encode(),
            {"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10).close()
        req = urllib.request.Request(base + "/api/train", b"{}", {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with urllib.request.urlopen(base + "/api/train/status", timeout=10) as res:
                status = json.loads(res.read())
            if status["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
    assert status["state"] == "done", status["error"]
    assert {"train"} <= {e.get("phase") for e in status["events"]}
    for task in ("forward", "backward"):
        metrics = status["result"][task]
        assert {"precision", "recall", "accuracy", "threshold", "positives", "negatives"} <= set(metrics)
    assert any((tmp_path / "classifier").iterdir())
