"""Pre-trained vision-language backbones (CLIP, SigLIP) behind one small interface.

Two backends: ``open_clip`` (default, e.g. ``ViT-B-32`` / ``laion2b_s34b_b79k``) and Hugging Face
``transformers`` (``CLIPModel`` or ``SiglipModel``, e.g. ``openai/clip-vit-base-patch32``). A backbone
is loaded by name (downloaded once into the Hugging Face cache while online) or from a local folder
written by :func:`save_backbone`; that folder is also how weights reach an offline machine::

    robofume reward export-backbone --out backbones/vit-b-32      # online, once
    robofume reward train --backbone-path backbones/vit-b-32 ...  # offline from then on

Frames are resized to ``image_size`` (default 128 px): the ViT position embeddings are interpolated to
that grid when it differs from the model's native size. That is a speed choice: ViT-B/32 at 224 px
takes ~170 ms per frame on a 2-core CPU, too slow to judge a 10 Hz camera.

A backbone folder::

    backbone.json        format "robofume-backbone" v1: backend, model, architecture config,
                         preprocessing, tokenizer settings, sha256 of the weights
    model.safetensors    all weights (safetensors: nothing is unpickled)
    tokenizer/           Hugging Face tokenizer files, where the backend needs them
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import safetensors.torch
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from robofume.atomic_io import atomic_writer, ensure_writable_dir, write_json_atomic

BACKBONE_FORMAT = "robofume-backbone"
BACKBONE_VERSION = 1
BACKBONE_JSON = "backbone.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
BACKENDS: tuple[str, ...] = ("open_clip", "transformers")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

EXPORT_ADVICE = (
    "run `robofume reward export-backbone --out DIR` once on a machine with internet access "
    "(same --backend/--model/--pretrained), copy DIR here and pass --backbone-path DIR"
)


class BackboneError(ValueError):
    """A backbone cannot be built or loaded (unknown name, damaged folder, unsupported architecture)."""


class BackboneUnavailableError(BackboneError):
    """The backbone's weights are neither in a local folder nor in the download cache, nor downloadable."""


@dataclass
class BackboneConfig:
    """Which vision-language backbone to use and at which input size."""

    backend: str = "open_clip"
    """``open_clip`` or ``transformers``."""
    model: str = "ViT-B-32"
    """open_clip model name (``ViT-B-32``) or Hugging Face repo id (``openai/clip-vit-base-patch32``)."""
    pretrained: str | None = "laion2b_s34b_b79k"
    """open_clip pretrained tag (or checkpoint file); ``None``: random weights; unused by transformers."""
    path: str | None = None
    """Local folder written by :func:`save_backbone`; when set, nothing is downloaded."""
    image_size: int = 128
    """Side of the square image the vision tower sees; position embeddings are interpolated to it."""
    allow_download: bool = True
    """When ``False`` only local files (``path`` or the Hugging Face cache) are used, never the network."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise BackboneError(
                f"unknown backbone backend {self.backend!r}; expected one of: {', '.join(BACKENDS)}"
            )
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise BackboneError(f"backbone image_size must be an integer >= 8, got {self.image_size!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a one-line :class:`BackboneError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BackboneError(f"unknown backbone config key(s): {', '.join(unknown)}")
        return cls(**data)


# --------------------------------------------------------------------------------------------- interface
class VisionLanguageBackbone(nn.Module, ABC):
    """Image and text towers of a CLIP-style model with a shared, L2-normalised embedding space.

    The vision tower is exposed as ``stem -> blocks -> pool`` so that trainers can freeze a prefix,
    cache its output tokens once, and tune only the last blocks (see :meth:`vision_blocks`).
    """

    backend: str
    model: nn.Module
    """The wrapped library model; its ``state_dict`` is what :func:`save_backbone` writes."""
    model_name: str
    pretrained: str | None
    embed_dim: int
    image_size: int

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer(
            "pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    # ---- images
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB -> normalised (N, 3, S, S), S = ``image_size`` (whole frame, no crop)."""
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise BackboneError(
                f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
            )
        x = frames.to(self.pixel_mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        return (x - self.pixel_mean) / self.pixel_std

    def encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB frames -> L2-normalised (N, D) float32 embeddings."""
        return F.normalize(self.encode_pixels(self.preprocess(frames)).float(), dim=-1)

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels (N, 3, S, S) -> unnormalised (N, D) embeddings."""
        return self.vision_pool(self.run_blocks(self.vision_stem(pixels), 0))

    def run_blocks(self, tokens: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
        """Apply vision blocks ``start:stop`` to (N, L, W) tokens."""
        for block in list(self.vision_blocks())[start:stop]:
            tokens = self.apply_block(block, tokens)
        return tokens

    @abstractmethod
    def vision_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch embedding, class token, position embedding, pre-norm: pixels -> (N, L, W) tokens."""

    @abstractmethod
    def vision_blocks(self) -> nn.ModuleList:
        """The vision transformer blocks, first to last."""

    @abstractmethod
    def apply_block(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Run one vision block on (N, L, W) tokens."""

    @abstractmethod
    def vision_pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final norm, pooling and projection: (N, L, W) tokens -> (N, D)."""

    @abstractmethod
    def vision_head_modules(self) -> list[nn.Module | nn.Parameter]:
        """What follows the blocks (final norm, pooling, projection); tuned together with the last blocks."""

    @abstractmethod
    def vision_tower(self) -> nn.Module:
        """The whole vision tower (everything :meth:`encode_pixels` uses)."""

    # ---- text
    @abstractmethod
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Texts -> model inputs (token ids, and a mask where the model takes one)."""

    @abstractmethod
    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenized texts -> unnormalised (M, D) embeddings."""

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> L2-normalised (M, D) float32 embeddings."""
        if not texts or not all(isinstance(t, str) for t in texts):
            raise BackboneError("encode_texts needs a non-empty list of strings")
        tokens = {k: v.to(self.pixel_mean.device) for k, v in self.tokenize(list(texts)).items()}
        return F.normalize(self.text_features(tokens).float(), dim=-1)

    @property
    @abstractmethod
    def logit_scale(self) -> float:
        """The model's image-text similarity temperature (exp of its learned log scale)."""

    # ---- persistence
    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Backend-specific part of ``backbone.json`` (architecture, preprocessing, tokenizer settings)."""

    @abstractmethod
    def save_tokenizer(self, folder: str) -> None:
        """Write whatever tokenizer files a reload needs into ``folder`` (may write nothing)."""

    def fingerprint(self) -> dict[str, str]:
        """``arch``: hash of parameter names and shapes; ``weights``: hash of samples of the values."""
        arch = hashlib.sha256()
        weights = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            arch.update(f"{name}:{tuple(tensor.shape)};".encode())
            sample = tensor.detach().reshape(-1)[:64].float().cpu().contiguous()
            weights.update(name.encode())
            weights.update(sample.numpy().tobytes())
        return {"arch": arch.hexdigest()[:16], "weights": weights.hexdigest()[:16]}

    def config(self) -> BackboneConfig:
        """A config that rebuilds this backbone (by name; set ``path`` to load a saved folder instead)."""
        return BackboneConfig(
            backend=self.backend,
            model=self.model_name,
            pretrained=self.pretrained,
            image_size=self.image_size,
        )


def _resize_grid(pos: torch.Tensor, prefix_tokens: int, new_grid: int) -> torch.Tensor:
    """Bicubically resize a (prefix + g*g, W) position embedding to (prefix + new_grid**2, W)."""
    prefix, grid = pos[:prefix_tokens], pos[prefix_tokens:]
    old = round(math.sqrt(grid.shape[0]))
    if old * old != grid.shape[0]:
        raise BackboneError(f"position embedding of {grid.shape[0]} patches is not a square grid")
    if old == new_grid:
        return pos
    img = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    img = F.interpolate(
        img, size=(new_grid, new_grid), mode="bicubic", antialias=old > new_grid, align_corners=False
    )
    img = img.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1).to(pos.dtype)
    return torch.cat([prefix, img], dim=0)


# --------------------------------------------------------------------------------------------- open_clip
class OpenClipBackbone(VisionLanguageBackbone):
    """An open_clip ``CLIP``/``CustomTextCLIP`` model with a standard ViT image tower."""

    backend = "open_clip"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        model_name: str,
        pretrained: str | None,
        model_cfg: dict[str, Any],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        tokenizer_info: dict[str, Any],
    ) -> None:
        super().__init__(mean, std)
        from open_clip.transformer import VisionTransformer

        if not isinstance(model.visual, VisionTransformer):
            raise BackboneError(
                f"open_clip model {model_name} has a {type(model.visual).__name__} image tower; "
                "only ViT image towers are supported"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.pretrained = pretrained
        self.model_cfg = copy.deepcopy(model_cfg)
        self.tokenizer_info = dict(tokenizer_info)
        self.mean, self.std = tuple(mean), tuple(std)
        self.embed_dim = int(model_cfg["embed_dim"])
        self.image_size = int(model.visual.image_size[0])

    def vision_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual._embeds(pixels)

    def vision_blocks(self) -> nn.ModuleList:
        return self.model.visual.transformer.resblocks

    def apply_block(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        if not self.model.visual.transformer.batch_first:
            return block(tokens.transpose(0, 1)).transpose(0, 1)
        return block(tokens)

    def vision_pool(self, tokens: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        pooled, _ = visual._pool(tokens)
        return pooled @ visual.proj if visual.proj is not None else pooled

    def vision_head_modules(self) -> list[nn.Module | nn.Parameter]:
        visual = self.model.visual
        out: list[nn.Module | nn.Parameter] = [visual.ln_post]
        if visual.attn_pool is not None:
            out.append(visual.attn_pool)
        if visual.proj is not None:
            out.append(visual.proj)
        return out

    def vision_tower(self) -> nn.Module:
        return self.model.visual

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokenizer(texts)}

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_text(tokens["input_ids"])

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp().reshape(-1)[0])

    def describe(self) -> dict[str, Any]:
        return {
            "model_cfg": self.model_cfg,
            "mean": list(self.mean),
            "std": list(self.std),
            "tokenizer": self.tokenizer_info,
        }

    def save_tokenizer(self, folder: str) -> None:
        if self.tokenizer_info["kind"] == "hf":
            self.tokenizer.save_pretrained(folder)

    @classmethod
    def build(
        cls,
        model_cfg: dict[str, Any],
        *,
        model_name: str,
        pretrained: str | None,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        tokenizer: Any,
        tokenizer_info: dict[str, Any],
        state_dict: dict[str, torch.Tensor] | None,
        image_size: int,
    ) -> OpenClipBackbone:
        """Instantiate from an architecture config (at ``image_size``) and optional weights."""
        from open_clip.model import CLIP, CustomTextCLIP, resize_pos_embed

        cfg = copy.deepcopy(model_cfg)
        cfg["vision_cfg"]["image_size"] = image_size
        text_cfg = cfg.get("text_cfg", {})
        custom = bool(cfg.pop("custom_text", False)) or "hf_model_name" in text_cfg
        if "multimodal_cfg" in cfg:
            raise BackboneError(
                f"open_clip model {model_name} is a captioning (CoCa) model; use a CLIP model"
            )
        if "hf_model_name" in text_cfg:
            text_cfg["hf_model_pretrained"] = False
        try:
            model = (CustomTextCLIP if custom else CLIP)(**cfg)
        except (TypeError, ValueError, KeyError, AssertionError) as exc:
            raise BackboneError(
                f"cannot build open_clip model {model_name} from its config ({exc})"
            ) from None
        if state_dict is not None:
            state_dict = dict(state_dict)
            resize_pos_embed(state_dict, model)
            _load_state(model, state_dict, model_name)
        model.eval()
        return cls(
            model,
            tokenizer,
            model_name,
            pretrained,
            cfg | {"custom_text": custom} if custom else cfg,
            mean,
            std,
            tokenizer_info,
        )


def _open_clip_tokenizer(info: dict[str, Any], folder: str | None) -> Any:
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    kwargs = dict(info.get("kwargs") or {})
    if info["kind"] == "simple":
        return SimpleTokenizer(context_length=info["context_length"], **kwargs)
    if folder is None:
        raise BackboneError("an HF tokenizer needs its saved files")
    return HFTokenizer(
        folder, context_length=info["context_length"], tokenizer_mode=info.get("mode"), **kwargs
    )


def _open_clip_by_name(cfg: BackboneConfig, native_size: bool) -> OpenClipBackbone:
    import open_clip

    model_cfg = open_clip.get_model_config(cfg.model)
    if model_cfg is None:
        raise BackboneError(f"unknown open_clip model {cfg.model!r} (see open_clip.list_models())")
    size = int(model_cfg["vision_cfg"]["image_size"]) if native_size else cfg.image_size
    known_tag = cfg.pretrained in open_clip.list_pretrained_tags_by_model(cfg.model)
    if cfg.pretrained and not known_tag and not os.path.isfile(cfg.pretrained):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(cfg.model)) or "none"
        raise BackboneError(
            f"open_clip model {cfg.model} has no pretrained tag {cfg.pretrained!r}; known: {tags}"
        )
    text_cfg = model_cfg.get("text_cfg", {})
    if not text_cfg.get("hf_tokenizer_name") and "siglip" in cfg.model.lower():
        raise BackboneError(
            f"open_clip SigLIP model {cfg.model} uses a SentencePiece tokenizer this tool does not export; "
            "use --backend transformers --model google/siglip-base-patch16-224"
        )
    what = f"open_clip {cfg.model}" + (f" ({cfg.pretrained})" if cfg.pretrained else "")
    with _hub_mode(cfg.allow_download), _quiet_root_logger():
        try:
            model = open_clip.create_model(
                cfg.model,
                pretrained=cfg.pretrained,
                force_image_size=size,
                require_pretrained=bool(cfg.pretrained),
            )
            tokenizer = open_clip.get_tokenizer(cfg.model)
        except Exception as exc:  # download/cache failures come in many types (HTTP, hub, OS)
            raise _unavailable(what, exc) from None
    pp = model.visual.preprocess_cfg
    if text_cfg.get("hf_tokenizer_name"):
        info = {
            "kind": "hf",
            "context_length": int(text_cfg.get("context_length", 77)),
            "mode": text_cfg.get("tokenizer_mode"),
            "kwargs": text_cfg.get("tokenizer_kwargs") or {},
        }
    else:
        info = {
            "kind": "simple",
            "context_length": int(text_cfg.get("context_length", 77)),
            "kwargs": text_cfg.get("tokenizer_kwargs") or {},
        }
    full_cfg = copy.deepcopy(model_cfg)
    full_cfg["vision_cfg"]["image_size"] = size
    model.eval()
    return OpenClipBackbone(
        model, tokenizer, cfg.model, cfg.pretrained, full_cfg, tuple(pp["mean"]), tuple(pp["std"]), info
    )


# ------------------------------------------------------------------------------------------ transformers
_HF_KINDS = ("clip", "siglip")


class TransformersBackbone(VisionLanguageBackbone):
    """A Hugging Face ``CLIPModel`` or ``SiglipModel``."""

    backend = "transformers"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        model_name: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        text_padding: str,
        max_length: int,
    ) -> None:
        super().__init__(mean, std)
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.pretrained = None
        self.kind = str(model.config.model_type)
        if self.kind not in _HF_KINDS:
            raise BackboneError(f"transformers model type {self.kind!r} is not supported; use CLIP or SigLIP")
        self.mean, self.std = tuple(mean), tuple(std)
        self.text_padding = text_padding
        self.max_length = int(max_length)
        vcfg = model.config.vision_config
        self.embed_dim = int(model.config.projection_dim) if self.kind == "clip" else int(vcfg.hidden_size)
        self.image_size = int(model.config.vision_config.image_size)

    def set_image_size(self, size: int) -> None:
        """Interpolate the position embeddings to a ``size`` x ``size`` input (in place)."""
        vcfg = self.model.config.vision_config
        if size == vcfg.image_size:
            return
        emb = self.model.vision_model.embeddings
        grid = size // vcfg.patch_size
        prefix = 1 if self.kind == "clip" else 0
        new = _resize_grid(emb.position_embedding.weight.detach(), prefix, grid)
        emb.position_embedding = nn.Embedding.from_pretrained(new.clone(), freeze=False)
        emb.image_size = size
        emb.num_patches = grid * grid
        emb.num_positions = new.shape[0]
        emb.position_ids = torch.arange(new.shape[0], device=new.device).expand((1, -1))
        vcfg.image_size = size
        self.model.vision_model.config.image_size = size
        self.image_size = size

    def vision_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        vm = self.model.vision_model
        x = vm.embeddings(pixels)
        return vm.pre_layrnorm(x) if self.kind == "clip" else x

    def vision_blocks(self) -> nn.ModuleList:
        return self.model.vision_model.encoder.layers

    def apply_block(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        out = block(tokens, attention_mask=None)
        return out[0] if isinstance(out, tuple) else out

    def vision_pool(self, tokens: torch.Tensor) -> torch.Tensor:
        vm = self.model.vision_model
        if self.kind == "clip":
            return self.model.visual_projection(vm.post_layernorm(tokens[:, 0, :]))
        return vm.head(vm.post_layernorm(tokens))

    def vision_head_modules(self) -> list[nn.Module | nn.Parameter]:
        vm = self.model.vision_model
        if self.kind == "clip":
            return [vm.post_layernorm, self.model.visual_projection]
        return [vm.post_layernorm, vm.head]

    def vision_tower(self) -> nn.Module:
        return nn.ModuleList(
            [self.model.vision_model] + ([self.model.visual_projection] if self.kind == "clip" else [])
        )

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        out = self.tokenizer(
            texts, padding=self.text_padding, max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        keep = ("input_ids", "attention_mask") if self.kind == "clip" else ("input_ids",)
        return {k: out[k] for k in keep if k in out}

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.get_text_features(**tokens).pooler_output

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp().reshape(-1)[0])

    def describe(self) -> dict[str, Any]:
        return {
            "model_type": self.kind,
            "config": self.model.config.to_dict(),
            "mean": list(self.mean),
            "std": list(self.std),
            "text_padding": self.text_padding,
            "max_length": self.max_length,
        }

    def save_tokenizer(self, folder: str) -> None:
        self.tokenizer.save_pretrained(folder)


def _hf_classes(kind: str) -> tuple[type, type]:
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    if kind == "clip":
        return CLIPConfig, CLIPModel
    if kind == "siglip":
        return SiglipConfig, SiglipModel
    raise BackboneError(f"transformers model type {kind!r} is not supported; use CLIP or SigLIP")


def _hf_text_settings(kind: str, tokenizer: Any, model_config: Any) -> tuple[str, int]:
    if kind == "siglip":  # SigLIP was trained on texts padded to the full length
        return "max_length", int(model_config.text_config.max_position_embeddings)
    limit = int(model_config.text_config.max_position_embeddings)
    return "longest", min(limit, int(getattr(tokenizer, "model_max_length", limit) or limit))


def _transformers_by_name(cfg: BackboneConfig, native_size: bool) -> TransformersBackbone:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    what = f"transformers {cfg.model}"
    with _hub_mode(cfg.allow_download):
        try:
            hf_cfg = AutoConfig.from_pretrained(cfg.model)
        except Exception as exc:  # hub/cache errors come as OSError, HTTP or hub-specific types
            raise _unavailable(what, exc) from None
        if hf_cfg.model_type not in _HF_KINDS:
            raise BackboneError(f"{cfg.model} is a {hf_cfg.model_type!r} model; use a CLIP or SigLIP model")
        try:
            model = AutoModel.from_pretrained(cfg.model)
            tokenizer = AutoTokenizer.from_pretrained(cfg.model)
            processor = AutoImageProcessor.from_pretrained(cfg.model)
        except Exception as exc:  # as above
            raise _unavailable(what, exc) from None
    mean = tuple(getattr(processor, "image_mean", None) or OPENAI_MEAN)
    std = tuple(getattr(processor, "image_std", None) or OPENAI_STD)
    padding, max_length = _hf_text_settings(hf_cfg.model_type, tokenizer, model.config)
    backbone = TransformersBackbone(model.eval(), tokenizer, cfg.model, mean, std, padding, max_length)
    if not native_size:
        backbone.set_image_size(cfg.image_size)
    return backbone


# ---------------------------------------------------------------------------------------- load and save
@contextlib.contextmanager
def _hub_mode(allow_download: bool) -> Iterator[None]:
    """Within the block, forbid network access of the Hugging Face hub client unless ``allow_download``."""
    if allow_download:
        yield
        return
    import huggingface_hub.constants as hub_constants

    old = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = old


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence open_clip's root-logger errors (we raise our own one-line error instead)."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(old)


def _unavailable(what: str, exc: BaseException) -> BackboneUnavailableError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return BackboneUnavailableError(
        f"weights of {what} are not available offline and could not be downloaded ({reason}); {EXPORT_ADVICE}"
    )


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])[:300]
        raise BackboneError(f"{what}: weights do not fit the architecture ({first})") from None


def load_backbone(cfg: BackboneConfig, native_size: bool = False) -> VisionLanguageBackbone:
    """Load the backbone ``cfg`` names: from ``cfg.path`` (offline) or by name (download cache / network).

    ``native_size`` keeps the model's own input size instead of ``cfg.image_size`` (an exported
    folder then holds the original position embeddings; any size can be chosen when loading it).
    """
    if cfg.path:
        return load_backbone_folder(cfg.path, image_size=None if native_size else cfg.image_size)
    if cfg.backend == "open_clip":
        backbone: VisionLanguageBackbone = _open_clip_by_name(cfg, native_size)
    else:
        backbone = _transformers_by_name(cfg, native_size)
    return backbone.eval()


def read_backbone_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``backbone.json`` of a folder; one-line :class:`BackboneError` if missing or damaged."""
    folder = os.fspath(folder)
    meta_path = os.path.join(folder, BACKBONE_JSON)
    if not os.path.isfile(meta_path):
        raise BackboneUnavailableError(
            f"{folder} is not a backbone folder (no {BACKBONE_JSON}); write one with "
            "`robofume reward export-backbone --out DIR`"
        )
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != BACKBONE_FORMAT:
        raise BackboneError(f"{meta_path}: not a {BACKBONE_FORMAT} file")
    if meta.get("version") != BACKBONE_VERSION:
        raise BackboneError(f"{meta_path}: backbone format version {meta.get('version')} is not supported")
    if meta.get("backend") not in BACKENDS:
        raise BackboneError(f"{meta_path}: unknown backend {meta.get('backend')!r}")
    return meta


def read_safetensors(path: str, sha256: str | None, what: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking its sha256 when given; one-line :class:`BackboneError` otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise BackboneError(f"{what}: cannot read {path} ({exc.strerror})") from None
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise BackboneError(f"{what}: {path} is corrupt or incomplete (checksum mismatch)")
    try:
        return safetensors.torch.load(raw)
    except Exception as exc:  # safetensors raises its own SafetensorError and others on damaged headers
        raise BackboneError(f"{what}: {path} is not a valid safetensors file ({exc})") from None


def load_backbone_folder(
    folder: str | os.PathLike[str], image_size: int | None = None
) -> VisionLanguageBackbone:
    """Load a folder written by :func:`save_backbone`, at ``image_size`` (default: the saved size)."""
    folder = os.fspath(folder)
    meta = read_backbone_meta(folder)
    where = os.path.join(folder, BACKBONE_JSON)
    try:
        weights = meta["weights"]
        state = read_safetensors(os.path.join(folder, weights["file"]), weights.get("sha256"), folder)
        size = int(image_size or meta["image_size"])
        spec = meta[meta["backend"]]
        if meta["backend"] == "open_clip":
            tok_info = spec["tokenizer"]
            tokenizer = _open_clip_tokenizer(tok_info, os.path.join(folder, TOKENIZER_DIR))
            backbone: VisionLanguageBackbone = OpenClipBackbone.build(
                spec["model_cfg"],
                model_name=meta["model"],
                pretrained=meta.get("pretrained"),
                mean=tuple(spec["mean"]),
                std=tuple(spec["std"]),
                tokenizer=tokenizer,
                tokenizer_info=tok_info,
                state_dict=state,
                image_size=size,
            )
        else:
            backbone = _transformers_from_folder(folder, meta, spec, state)
            assert isinstance(backbone, TransformersBackbone)
            backbone.set_image_size(size)
    except (KeyError, TypeError) as exc:
        raise BackboneError(f"{where}: missing or malformed field {exc}") from None
    except OSError as exc:
        raise BackboneError(f"{folder}: cannot load tokenizer files ({exc})") from None
    return backbone.eval()


def _transformers_from_folder(
    folder: str, meta: dict[str, Any], spec: dict[str, Any], state: dict[str, torch.Tensor]
) -> TransformersBackbone:
    from transformers import AutoTokenizer

    config_cls, model_cls = _hf_classes(spec["model_type"])
    hf_cfg = config_cls.from_dict(spec["config"])
    model = model_cls(hf_cfg)
    _load_state(model, state, folder)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, TOKENIZER_DIR), local_files_only=True)
    return TransformersBackbone(
        model.eval(),
        tokenizer,
        meta["model"],
        tuple(spec["mean"]),
        tuple(spec["std"]),
        spec["text_padding"],
        int(spec["max_length"]),
    )


def save_backbone(backbone: VisionLanguageBackbone, folder: str | os.PathLike[str]) -> str:
    """Write ``backbone`` into ``folder`` (weights, tokenizer, then ``backbone.json`` last); return it."""
    folder = ensure_writable_dir(os.fspath(folder), "backbone folder")
    backbone.save_tokenizer(os.path.join(folder, TOKENIZER_DIR))
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in backbone.model.state_dict().items()}
    raw = safetensors.torch.save(state)
    with atomic_writer(os.path.join(folder, WEIGHTS_FILE)) as f:
        f.write(raw)
    meta = {
        "format": BACKBONE_FORMAT,
        "version": BACKBONE_VERSION,
        "backend": backbone.backend,
        "model": backbone.model_name,
        "pretrained": backbone.pretrained,
        "image_size": backbone.image_size,
        "embed_dim": backbone.embed_dim,
        "fingerprint": backbone.fingerprint(),
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(raw).hexdigest()},
        backbone.backend: backbone.describe(),
    }
    write_json_atomic(os.path.join(folder, BACKBONE_JSON), meta)
    return folder


# ------------------------------------------------------------------------------------------ tiny models
def _byte_level_clip_tokenizer(max_length: int) -> Any:
    """A CLIP BPE tokenizer with a byte-level vocabulary and no merges (works offline, 514 tokens)."""
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    units = list(bytes_to_unicode().values())
    vocab = {
        t: i for i, t in enumerate(units + [u + "</w>" for u in units] + ["<|startoftext|>", "<|endoftext|>"])
    }
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def build_tiny_backbone(
    backend: str, folder: str | os.PathLike[str], seed: int = 0, arch: str = "clip", image_size: int = 64
) -> str:
    """Build a tiny random-initialised CLIP-architecture backbone, save it into ``folder``, return the folder.

    ``arch`` is ``clip`` or (transformers only) ``siglip``. Tests and the offline demo load it with
    ``BackboneConfig(path=folder)`` through the same code path as a real backbone; nothing is downloaded.
    """
    if backend not in BACKENDS:
        raise BackboneError(f"unknown backbone backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if arch not in _HF_KINDS or (backend == "open_clip" and arch != "clip"):
        raise BackboneError(
            f"tiny {backend} backbones come as: {'clip' if backend == 'open_clip' else 'clip, siglip'}"
        )
    torch.manual_seed(seed)
    backbone: VisionLanguageBackbone
    if backend == "open_clip":
        model_cfg = {
            "embed_dim": 64,
            "vision_cfg": {
                "image_size": image_size,
                "layers": 3,
                "width": 96,
                "head_width": 32,
                "patch_size": 16,
            },
            "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        }
        info = {"kind": "simple", "context_length": 32, "kwargs": {}}
        backbone = OpenClipBackbone.build(
            model_cfg,
            model_name="tiny-open-clip",
            pretrained=None,
            mean=OPENAI_MEAN,
            std=OPENAI_STD,
            tokenizer=_open_clip_tokenizer(info, None),
            tokenizer_info=info,
            state_dict=None,
            image_size=image_size,
        )
    else:
        config_cls, model_cls = _hf_classes(arch)
        text = {
            "vocab_size": 514,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": 512,
            "eos_token_id": 513,
            "pad_token_id": 513,
        }
        vision = {
            "hidden_size": 96,
            "intermediate_size": 192,
            "num_hidden_layers": 3,
            "num_attention_heads": 3,
            "image_size": image_size,
            "patch_size": 16,
        }
        if arch == "clip":
            hf_cfg = config_cls(text_config=text, vision_config=vision, projection_dim=64)
        else:
            text["projection_size"] = 64
            vision["hidden_size"] = 64
            vision["intermediate_size"] = 128
            vision["num_attention_heads"] = 2
            hf_cfg = config_cls(text_config=text, vision_config=vision)
        model = model_cls(hf_cfg).eval()
        tokenizer = _byte_level_clip_tokenizer(32)
        padding = "max_length" if arch == "siglip" else "longest"
        mean, std = (OPENAI_MEAN, OPENAI_STD) if arch == "clip" else ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        backbone = TransformersBackbone(model, tokenizer, f"tiny-{arch}", mean, std, padding, 32)
    return save_backbone(backbone.eval(), folder)
