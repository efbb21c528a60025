"""Backbones of both backends: tiny models saved and loaded through the real code path, never a download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reward_vlm.backbones import (
    BackboneConfig,
    BackboneError,
    BackboneUnavailableError,
    build_tiny_backbone,
    load_backbone,
    save_backbone,
)

torch.set_num_threads(1)
VARIANTS = [("open_clip", "clip"), ("transformers", "clip"), ("transformers", "siglip")]
TEXTS = ["put the red cube in the blue bin", "take the red cube out of the blue bin"]


def _frames(n: int = 3, side: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8))


@pytest.mark.parametrize(("backend", "arch"), VARIANTS)
def test_save_load_round_trip_gives_identical_embeddings(tmp_path: Path, backend: str, arch: str) -> None:
    folder = build_tiny_backbone(backend, tmp_path / "tiny", seed=3, arch=arch)
    first = load_backbone(BackboneConfig(backend=backend, path=folder, image_size=64))
    frames = _frames()
    with torch.inference_mode():
        img, txt = first.encode_images(frames), first.encode_texts(TEXTS)
    assert img.shape == (3, first.embed_dim) and txt.shape == (2, first.embed_dim)
    assert img.dtype == torch.float32
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(txt[0], txt[1]), "different texts must embed differently"

    again = save_backbone(first, tmp_path / "copy")
    second = load_backbone(BackboneConfig(backend=backend, path=again, image_size=64))
    with torch.inference_mode():
        assert torch.equal(second.encode_images(frames), img)
        assert torch.equal(second.encode_texts(TEXTS), txt)
    assert second.fingerprint() == first.fingerprint()
    meta = json.loads((Path(again) / "backbone.json").read_text())
    assert meta["format"] == "robofume-backbone" and meta["backend"] == backend


@pytest.mark.parametrize(("backend", "arch"), VARIANTS)
def test_other_image_size_interpolates_position_embeddings(tmp_path: Path, backend: str, arch: str) -> None:
    folder = build_tiny_backbone(backend, tmp_path / "tiny", arch=arch)
    big = load_backbone(BackboneConfig(backend=backend, path=folder, image_size=96))
    assert big.image_size == 96
    with torch.inference_mode():
        out = big.encode_images(_frames(2, side=128))
    assert out.shape == (2, big.embed_dim) and torch.isfinite(out).all()
    # Saved at 96 px and loaded again: the resized model round-trips exactly.
    again = load_backbone(
        BackboneConfig(backend=backend, path=save_backbone(big, tmp_path / "b96"), image_size=96)
    )
    with torch.inference_mode():
        assert torch.equal(again.encode_images(_frames(2, side=128)), out)


def test_vision_tower_pieces_compose_to_encode_images(tmp_path: Path) -> None:
    backbone = load_backbone(
        BackboneConfig(path=build_tiny_backbone("open_clip", tmp_path / "t"), image_size=64)
    )
    frames = _frames()
    with torch.inference_mode():
        pixels = backbone.preprocess(frames)
        tokens = backbone.run_blocks(backbone.vision_stem(pixels), 0, 1)
        split = torch.nn.functional.normalize(backbone.vision_pool(backbone.run_blocks(tokens, 1)), dim=-1)
        assert torch.allclose(split, backbone.encode_images(frames), atol=1e-6)
    assert len(backbone.vision_blocks()) == 3


def test_open_clip_by_name_without_download(tmp_path: Path) -> None:
    """A built-in open_clip architecture with random weights (no tag): the by-name path, resized, exported."""
    cfg = BackboneConfig(model="ViT-S-32-alt", pretrained=None, image_size=64, allow_download=False)
    native = load_backbone(cfg, native_size=True)
    assert native.image_size == 224 and native.model_name == "ViT-S-32-alt"
    folder = save_backbone(native, tmp_path / "vits")
    small = load_backbone(BackboneConfig(path=folder, image_size=64))
    assert small.image_size == 64 and len(small.vision_blocks()) == 12
    with torch.inference_mode():
        out = small.encode_images(_frames(2))
        assert torch.equal(
            out, load_backbone(BackboneConfig(path=folder, image_size=64)).encode_images(_frames(2))
        )
    assert out.shape == (2, native.embed_dim)


def test_missing_weights_offline_is_one_line_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for cfg in (
        BackboneConfig(allow_download=False),
        BackboneConfig(backend="transformers", model="robofume-tests/no-such-model", allow_download=False),
    ):
        with pytest.raises(BackboneUnavailableError) as err:
            load_backbone(cfg)
        message = str(err.value)
        assert "\n" not in message and "--backbone-path" in message and "export-backbone" in message
    with pytest.raises(BackboneUnavailableError, match="not a backbone folder"):
        load_backbone(BackboneConfig(path=str(tmp_path / "nowhere")))


def test_unknown_names_and_damaged_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="unknown open_clip model"):
        load_backbone(BackboneConfig(model="ViT-Nope", allow_download=False))
    with pytest.raises(BackboneError, match="no pretrained tag"):
        load_backbone(BackboneConfig(pretrained="nope", allow_download=False))
    with pytest.raises(BackboneError, match="unknown backbone backend"):
        BackboneConfig(backend="keras")
    with pytest.raises(BackboneError, match="unknown backbone config key"):
        BackboneConfig.from_dict({"backend": "open_clip", "colour": "red"})

    folder = Path(build_tiny_backbone("transformers", tmp_path / "t"))
    weights = folder / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(BackboneError, match="corrupt or incomplete") as err:
        load_backbone(BackboneConfig(path=str(folder)))
    assert "\n" not in str(err.value)
    (folder / "backbone.json").write_text("{ not json")
    with pytest.raises(BackboneError, match="unreadable"):
        load_backbone(BackboneConfig(path=str(folder)))


def test_bad_frames_are_rejected(tmp_path: Path) -> None:
    backbone = load_backbone(
        BackboneConfig(path=build_tiny_backbone("open_clip", tmp_path / "t"), image_size=64)
    )
    with pytest.raises(BackboneError, match="uint8"):
        backbone.encode_images(torch.zeros(1, 32, 32, 3))
    with pytest.raises(BackboneError, match="uint8"):
        backbone.encode_images(torch.zeros(1, 32, 32, 4, dtype=torch.uint8))
    with pytest.raises(BackboneError, match="non-empty list"):
        backbone.encode_texts([])
