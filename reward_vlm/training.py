"""Few-label training of the success classifier, threshold selection, and evaluation.

Training data, per frame and task text:

* target episodes (``demos/``, ``failures/``): the episode's task instruction and its per-frame
  ground-truth ``success`` flags;
* prior episodes (``prior/``): their own instruction (another object/target) and their flags;
* cross-task negatives: a frame where task X is done shows the other task not done (the object is in
  the bin, not on the green square), so it is a negative for the other task's text;
* the user's labels (``labels.json``, see :mod:`reward_vlm.labels`), weighted ``user_label_weight``;
  a label replaces the flag of the same frame and task.

Episodes (never single frames) are split into training and held-out sets, per kind and task. The
decision threshold of each task is the lowest one whose held-out precision reaches
``target_precision`` (which maximises recall). Methods:

* ``probe``: frozen backbone, image features computed once, only the head trains (fastest);
* ``last_blocks``: also tunes the last ``tune_blocks`` vision blocks and the final norm/projection;
  the frozen prefix's tokens are computed once and cached;
* ``lora``: low-rank adapters on the linear/attention weights of the last ``tune_blocks`` vision
  blocks (``reward_vlm.lora``), merged into the weights when saved;
* ``full``: the whole vision tower (sensible for small backbones only).

Example::

    robofume reward train --data data/mock --labels data/session/labels.json --out runs/classifier
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from tqdm import tqdm

from reward_vlm.backbones import BackboneConfig, BackboneError, VisionLanguageBackbone, load_backbone
from reward_vlm.classifier import (
    SuccessClassifier,
    TaskConditionedHead,
    average_precision,
    binary_metrics,
    confirm_sequence,
    default_task_texts,
    select_threshold,
)
from reward_vlm.labels import FrameLabel, check_labels_against, load_labels
from reward_vlm.lora import add_lora, merge_lora
from robofume.atomic_io import ensure_writable_dir, write_json_atomic
from robofume.data.episode_format import Episode, list_episodes, load_episode
from robofume.devices import resolve_device as resolve_torch_device
from robofume.sim.tasks import TASK_NAMES, instruction, other_task

METHODS: tuple[str, ...] = ("probe", "last_blocks", "lora", "full")
EPISODE_KINDS: tuple[str, ...] = ("demos", "failures", "prior")
_DEFAULT_BACKBONE_LR = {"last_blocks": 1e-4, "lora": 1e-3, "full": 1e-4}

Progress = Callable[[dict[str, Any]], None]


class ClassifierConfigError(ValueError):
    """A classifier training config is invalid (unknown key, bad value, missing data)."""


@dataclass
class ClassifierTrainConfig:
    """Everything ``robofume reward train`` needs; saved resolved as ``config.json`` beside the checkpoint."""

    data: list[str]
    """Episode folders (robofume-episode format: ``prior/``, ``demos/``, ``failures/``)."""
    out: str
    """Checkpoint folder (``classifier.json``, ``head.safetensors``, ``config.json``, ``tb/``)."""
    labels: str | None = None
    """A ``labels.json`` file (or the folder holding it) with the user's labels."""
    labels_root: str | None = None
    """Folder the label episode paths are relative to; default ``data[0]``."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: str = "probe"
    """``probe``, ``last_blocks``, ``lora`` or ``full``."""
    tune_blocks: int = 2
    """``last_blocks``/``lora``: how many of the last vision blocks adapt."""
    lora_rank: int = 8
    lora_alpha: float = 16.0
    head_hidden: int = 256
    head_layers: int = 2
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    """Head learning rate."""
    backbone_lr: float | None = None
    """Learning rate of tuned backbone weights; default 1e-4 (``last_blocks``, ``full``), 1e-3 (``lora``)."""
    weight_decay: float = 1e-4
    holdout_fraction: float = 0.25
    """Fraction of the episodes of each kind and task held out for the threshold and the metrics."""
    target_precision: float = 0.95
    confirm_frames: int = 2
    """Consecutive positive frames the reward node needs before it reports success."""
    max_frames_per_episode: int = 24
    """Frames taken per episode (half from its success frames where it has them), to bound cost."""
    kinds: list[str] = field(default_factory=lambda: list(EPISODE_KINDS))
    """Episode kinds used from the data folders."""
    cross_task_negatives: bool = True
    user_label_weight: float = 4.0
    task_texts: dict[str, str] | None = None
    """Task name -> instruction text; default :func:`reward_vlm.classifier.default_task_texts`."""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            try:
                self.backbone = BackboneConfig.from_dict(self.backbone)
            except BackboneError as exc:
                raise ClassifierConfigError(str(exc)) from None
        if isinstance(self.data, str):
            self.data = [self.data]
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (bool(self.data) or bool(self.labels), "give at least one --data folder or --labels"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (
                0.0 < self.holdout_fraction < 1.0,
                f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}",
            ),
            (
                0.0 < self.target_precision <= 1.0,
                f"target_precision must be in (0, 1], got {self.target_precision}",
            ),
            (self.confirm_frames >= 1, f"confirm_frames must be >= 1, got {self.confirm_frames}"),
            (
                self.max_frames_per_episode >= 2,
                f"max_frames_per_episode must be >= 2, got {self.max_frames_per_episode}",
            ),
            (self.tune_blocks >= 1, f"tune_blocks must be >= 1, got {self.tune_blocks}"),
            (self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}"),
            (self.user_label_weight > 0, f"user_label_weight must be > 0, got {self.user_label_weight}"),
            (self.lr > 0 and self.weight_decay >= 0, "lr must be > 0 and weight_decay >= 0"),
            (
                set(self.kinds) <= set(EPISODE_KINDS) and bool(self.kinds),
                f"kinds must be a non-empty subset of {', '.join(EPISODE_KINDS)}, got {self.kinds}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ClassifierConfigError(message)

    def resolved_task_texts(self) -> dict[str, str]:
        """The task texts in use."""
        return dict(self.task_texts) if self.task_texts else default_task_texts()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (the backbone as a nested dict)."""
        out = dataclasses.asdict(self)
        out["backbone"] = self.backbone.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierTrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a one-line :class:`ClassifierConfigError`."""
        if not isinstance(data, dict):
            raise ClassifierConfigError("a classifier config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClassifierConfigError(f"unknown classifier config key(s): {', '.join(unknown)}")
        missing = sorted(k for k in ("data", "out") if k not in data)
        if missing:
            raise ClassifierConfigError(f"classifier config lacks: {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ClassifierConfigError(f"bad classifier config: {exc}") from None


def check_classifier_folder(out: str | os.PathLike[str]) -> None:
    """Refuse an output folder that holds a policy run (``robofume pretrain``: ``weights/``,
    ``buffer/`` or ``checkpoints/``, and its ``config.json``, which training would write over)."""
    run_parts = [
        name for name in ("weights", "buffer", "checkpoints") if os.path.isdir(os.path.join(out, name))
    ]
    if run_parts:
        raise ClassifierConfigError(
            f"{out} holds a policy run ({', '.join(run_parts)}/); choose another --out for the classifier"
        )


def load_train_config(path: str | os.PathLike[str]) -> ClassifierTrainConfig:
    """A training config from a JSON file (e.g. a previous run's ``config.json``)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifierConfigError(f"{path}: unreadable classifier config ({exc})") from None
    return ClassifierTrainConfig.from_dict(data)


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Sample:
    """One training/evaluation example: a frame, the text of a task, whether it is done there."""

    frame: int
    """Index into the frame table."""
    text: int
    """Index into the text table."""
    label: bool
    weight: float
    task: str | None
    """Target task judged (None for prior-scene texts)."""
    task_kind: str
    """forward/backward, also for prior scenes (fallback calibration)."""
    group: str
    """Episode the frame comes from (the unit of the train/held-out split)."""
    stratum: str
    """kind/task of that episode (the split is stratified by it)."""


@dataclass
class Dataset:
    """Frames (uint8, possibly of several sizes), texts, and the samples that pair them."""

    frames: list[np.ndarray] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    episodes: int = 0
    user_labels: int = 0
    _frame_ids: dict[tuple[str, int], int] = field(default_factory=dict)
    _text_ids: dict[str, int] = field(default_factory=dict)

    def frame_id(self, episode: str, index: int, frame: np.ndarray) -> int:
        """Id of frame ``index`` of ``episode``, adding it on first use."""
        key = (episode, index)
        if key not in self._frame_ids:
            self._frame_ids[key] = len(self.frames)
            self.frames.append(frame)
        return self._frame_ids[key]

    def text_id(self, text: str) -> int:
        """Id of ``text``, adding it on first use."""
        if text not in self._text_ids:
            self._text_ids[text] = len(self.texts)
            self.texts.append(text)
        return self._text_ids[text]


def episode_kind(path: str, episode: Episode) -> str:
    """``demos``/``failures``/``prior`` from the episode's metadata (or its folder name)."""
    kind = episode.metadata.get("kind")
    if kind in EPISODE_KINDS:
        return str(kind)
    parent = os.path.basename(os.path.dirname(path))
    return parent if parent in EPISODE_KINDS else "demos"


def subsample_indices(success: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` frame indices, evenly spread, half of them from the success frames if there are any."""
    n = success.shape[0]
    if n <= limit:
        return np.arange(n)
    pos, neg = np.nonzero(success)[0], np.nonzero(~success)[0]
    k_pos = min(len(pos), limit // 2)
    k_neg = min(len(neg), limit - k_pos)
    k_pos = min(len(pos), limit - k_neg)

    def spread(idx: np.ndarray, k: int) -> np.ndarray:
        return idx[np.unique(np.linspace(0, len(idx) - 1, k).round().astype(int))] if k else idx[:0]

    return np.sort(np.concatenate([spread(pos, k_pos), spread(neg, k_neg)]))


def _episode_texts(
    path: str, episode: Episode, kind: str, task_texts: dict[str, str]
) -> tuple[str, str | None, str]:
    """(text, target task or None, text of the other task) for an episode."""
    if kind == "prior":
        obj_target = _prior_words(episode)
        own = str(episode.metadata.get("instruction") or instruction(episode.task, *obj_target))
        other = instruction(other_task(episode.task), *obj_target)
        return own, None, other
    other_name = other_task(episode.task)
    return (
        task_texts.get(episode.task, instruction(episode.task)),
        episode.task,
        task_texts.get(other_name, instruction(other_name)),
    )


def _prior_words(episode: Episode) -> tuple[str, str]:
    scene = episode.metadata.get("scene")
    if isinstance(scene, dict):
        try:
            from robofume.data.generate import PriorScene

            return PriorScene(**scene).words()
        except (TypeError, KeyError, ImportError):
            pass
    return "red cube", "blue bin"


def episode_paths(cfg: ClassifierTrainConfig) -> tuple[list[str], str | None, list[FrameLabel]]:
    """Episode files of the data folders (of ``cfg.kinds``), the label root, and the validated labels."""
    paths: list[str] = []
    for folder in cfg.data:
        if not os.path.isdir(folder):
            raise ClassifierConfigError(f"data folder {folder} does not exist")
        for kind in cfg.kinds:
            paths.extend(list_episodes(folder, kind) if os.path.isdir(os.path.join(folder, kind)) else [])
        if not any(os.path.isdir(os.path.join(folder, k)) for k in EPISODE_KINDS):
            paths.extend(list_episodes(folder))
    labels: list[FrameLabel] = []
    root = None
    if cfg.labels:
        root = os.path.abspath(cfg.labels_root or (cfg.data[0] if cfg.data else os.path.dirname(cfg.labels)))
        labels = load_labels(cfg.labels)
        check_labels_against(root, labels)
    return sorted({os.path.abspath(p) for p in paths}), root, labels


def path_stratum(path: str) -> str:
    """``kind/task`` of an episode file from its folder and name (``demos/forward_000003.npz``)."""
    kind = os.path.basename(os.path.dirname(path))
    task = os.path.basename(path).split("_", 1)[0]
    return f"{kind if kind in EPISODE_KINDS else 'episodes'}/{task if task in TASK_NAMES else 'any'}"


def split_episodes(paths: Iterable[str], fraction: float, seed: int) -> set[str]:
    """Held-out episodes: ``fraction`` of those of each kind and task (at least one where there are two)."""
    strata: dict[str, list[str]] = {}
    for path in sorted(set(paths)):
        strata.setdefault(path_stratum(path), []).append(path)
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for _name, group in sorted(strata.items()):
        if len(group) < 2:
            continue
        n = max(1, round(fraction * len(group)))
        held.update(group[i] for i in rng.permutation(len(group))[:n])
    return held


def build_dataset(
    cfg: ClassifierTrainConfig, progress: Progress | None = None, heldout: set[str] | None = None
) -> Dataset:
    """Collect frames and samples from the data folders and the label file.

    Training episodes contribute ``max_frames_per_episode`` frames each; ``heldout`` episodes all
    their frames, so that held-out metrics are those of whole episodes.
    """
    task_texts = cfg.resolved_task_texts()
    heldout = heldout or set()
    ds = Dataset()
    paths, root, labels = episode_paths(cfg)
    labelled = {(os.path.join(root or "", lb.episode), lb.frame, lb.task): lb for lb in labels}
    flag_samples: dict[tuple[int, int], Sample] = {}
    for path in tqdm(paths, desc="loading episodes", unit="ep", leave=False, disable=progress is not None):
        episode = load_episode(path)
        kind = episode_kind(path, episode)
        own, task, other = _episode_texts(path, episode, kind, task_texts)
        own_id, other_id = ds.text_id(own), ds.text_id(other)
        stratum = f"{kind}/{episode.task}"
        picked = (
            np.arange(episode.success.shape[0])
            if path in heldout
            else subsample_indices(episode.success, cfg.max_frames_per_episode)
        )
        for i in picked:
            fid = ds.frame_id(path, int(i), episode.frames[i].copy())  # a copy: frees the episode
            done = bool(episode.success[i])
            flag_samples[(fid, own_id)] = Sample(fid, own_id, done, 1.0, task, episode.task, path, stratum)
            if done and cfg.cross_task_negatives:
                other_task_name = other_task(episode.task) if task is not None else None
                flag_samples[(fid, other_id)] = Sample(
                    fid, other_id, False, 1.0, other_task_name, other_task(episode.task), path, stratum
                )
        ds.episodes += 1
        if progress:
            progress(
                {
                    "phase": "loading",
                    "epoch": 0,
                    "epochs": cfg.epochs,
                    "loss": None,
                    "episodes": ds.episodes,
                    "total": len(paths),
                }
            )
    cache: dict[str, Episode] = {}
    for (path, index, task_name), label in labelled.items():
        if path not in cache:
            cache[path] = load_episode(path)
        episode = cache[path]
        fid = ds.frame_id(path, index, episode.frames[index].copy())
        tid = ds.text_id(task_texts.get(task_name, instruction(task_name)))
        kind = episode_kind(path, episode)
        flag_samples[(fid, tid)] = Sample(
            fid,
            tid,
            label.success,
            cfg.user_label_weight,
            task_name,
            task_name,
            path,
            f"{kind}/{episode.task}",
        )
        ds.user_labels += 1
    ds.episodes = len({s.group for s in flag_samples.values()})
    ds.samples = list(flag_samples.values())
    if not ds.samples:
        raise ClassifierConfigError(
            "no training frames: the data folders hold no episodes and there are no labels"
        )
    return ds


# --------------------------------------------------------------------------------------------- model
class _ImageModel(nn.Module):
    """The trainable part of the image path for one method, fed by what :meth:`cache` computes once."""

    def __init__(self, backbone: VisionLanguageBackbone, cfg: ClassifierTrainConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.method = cfg.method
        blocks = len(backbone.vision_blocks())
        self.start = {"probe": blocks, "full": 0}.get(cfg.method, max(0, blocks - cfg.tune_blocks))
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.tuned: list[nn.Parameter] = []
        if cfg.method == "last_blocks":
            for block in list(backbone.vision_blocks())[self.start :]:
                self.tuned.extend(block.parameters())
            for item in backbone.vision_head_modules():
                self.tuned.extend([item] if isinstance(item, nn.Parameter) else item.parameters())
        elif cfg.method == "lora":
            for block in list(backbone.vision_blocks())[self.start :]:
                self.tuned.extend(add_lora(block, cfg.lora_rank, cfg.lora_alpha))
        elif cfg.method == "full":
            self.tuned.extend(backbone.vision_tower().parameters())
        for p in self.tuned:
            p.requires_grad_(True)

    @torch.inference_mode()
    def cache(self, frames: Sequence[np.ndarray], device: torch.device, batch: int = 64) -> torch.Tensor:
        """Per frame, the input of the trainable part: embeddings (probe), prefix tokens, or pixels (full)."""
        out: list[torch.Tensor] = []
        for i in range(0, len(frames), batch):
            chunk = frames[i : i + batch]
            if all(f.shape == chunk[0].shape for f in chunk):
                pixels = self.backbone.preprocess(torch.from_numpy(np.stack(chunk)).to(device))
            else:
                pixels = torch.cat(
                    [self.backbone.preprocess(torch.from_numpy(f[None]).to(device)) for f in chunk]
                )
            if self.method == "probe":
                out.append(F.normalize(self.backbone.encode_pixels(pixels).float(), dim=-1))
            elif self.method == "full":
                out.append(pixels)
            else:
                out.append(self.backbone.run_blocks(self.backbone.vision_stem(pixels), 0, self.start))
        return torch.cat(out)

    def forward(self, cached: torch.Tensor) -> torch.Tensor:
        """Cached inputs -> L2-normalised image embeddings."""
        if self.method == "probe":
            return cached
        if self.method == "full":
            return F.normalize(self.backbone.encode_pixels(cached).float(), dim=-1)
        tokens = self.backbone.run_blocks(cached, self.start)
        return F.normalize(self.backbone.vision_pool(tokens).float(), dim=-1)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU (:func:`robofume.devices.resolve_device`); a bad
    name is a :class:`ClassifierConfigError`."""
    try:
        return resolve_torch_device(device)
    except ValueError as exc:
        raise ClassifierConfigError(str(exc)) from None


def _scores(
    model: _ImageModel,
    head: nn.Module,
    cached: torch.Tensor,
    text_emb: torch.Tensor,
    samples: Sequence[Sample],
    batch: int,
) -> np.ndarray:
    """Probabilities of held-out samples (frames embedded once each)."""
    if not samples:
        return np.zeros(0)
    head.eval()
    frame_ids = sorted({s.frame for s in samples})
    pos = {f: i for i, f in enumerate(frame_ids)}
    with torch.no_grad():
        emb = torch.cat([model(cached[frame_ids[i : i + batch]]) for i in range(0, len(frame_ids), batch)])
        idx = torch.tensor([pos[s.frame] for s in samples], device=emb.device)
        txt = torch.tensor([s.text for s in samples], device=emb.device)
        logits = head(emb[idx], text_emb[txt])
    return torch.sigmoid(logits).cpu().numpy()


def _calibration_sets(held: Sequence[Sample], tasks: Iterable[str]) -> dict[str, tuple[list[int], str]]:
    """Per task, indices into ``held`` to calibrate on: target-task samples, else prior ones of that kind."""
    out: dict[str, tuple[list[int], str]] = {}
    for task in tasks:
        own = [i for i, s in enumerate(held) if s.task == task]
        if any(held[i].label for i in own):
            out[task] = (own, "target")
        else:
            out[task] = ([i for i, s in enumerate(held) if s.task_kind == task], "prior")
    return out


def _heldout_metrics(
    scores: np.ndarray, held: Sequence[Sample], tasks: Iterable[str], target_precision: float
) -> dict[str, dict[str, Any]]:
    metrics: dict[str, dict[str, Any]] = {}
    for task, (idx, source) in _calibration_sets(held, tasks).items():
        s = scores[idx] if idx else np.zeros(0)
        y = np.array([held[i].label for i in idx], dtype=bool)
        choice = select_threshold(s, y, target_precision)
        m = binary_metrics(s, y, choice.threshold)
        metrics[task] = {
            "precision": m["precision"],
            "recall": m["recall"],
            "accuracy": m["accuracy"],
            "threshold": choice.threshold,
            "positives": m["positives"],
            "negatives": m["negatives"],
            "attainable": choice.attainable,
            "source": source,
            "average_precision": average_precision(s, y),
            **({"note": choice.note} if choice.note else {}),
        }
    return metrics


# ------------------------------------------------------------------------------------------ training
def train_classifier(
    cfg: ClassifierTrainConfig, progress: Progress | None = None
) -> dict[str, dict[str, Any]]:
    """Train, pick thresholds on held-out episodes, write the checkpoint to ``cfg.out``; return the metrics.

    Returns ``{task: {precision, recall, accuracy, threshold, positives, negatives, attainable, source}}``.
    """
    t0 = time.monotonic()
    out = ensure_writable_dir(cfg.out, "classifier output folder")
    check_classifier_folder(out)
    write_json_atomic(os.path.join(out, "config.json"), cfg.to_dict())
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    task_texts = cfg.resolved_task_texts()
    report = progress or (lambda _info: None)

    report({"phase": "loading", "epoch": 0, "epochs": cfg.epochs, "loss": None})
    paths, root, labels = episode_paths(cfg)
    label_paths = {os.path.join(root or "", lb.episode) for lb in labels}
    held_groups = split_episodes([*paths, *label_paths], cfg.holdout_fraction, cfg.seed)
    ds = build_dataset(cfg, progress, heldout=held_groups)
    train = [s for s in ds.samples if s.group not in held_groups]
    held = [s for s in ds.samples if s.group in held_groups]
    if not train or not any(s.label for s in train) or all(s.label for s in train):
        raise ClassifierConfigError(
            "training data needs both success and failure frames outside the held-out episodes"
        )

    backbone = load_backbone(cfg.backbone).to(device).eval()
    model = _ImageModel(backbone, cfg).to(device)
    head = TaskConditionedHead(backbone.embed_dim, cfg.head_hidden, cfg.head_layers).to(device)
    report({"phase": "features", "epoch": 0, "epochs": cfg.epochs, "loss": None, "frames": len(ds.frames)})
    with torch.inference_mode():
        text_emb = backbone.encode_texts(ds.texts).clone()
    cached = model.cache(ds.frames, device).clone()

    groups = [{"params": list(head.parameters()), "lr": cfg.lr}]
    if model.tuned:
        groups.append({"params": model.tuned, "lr": cfg.backbone_lr or _DEFAULT_BACKBONE_LR[cfg.method]})
    optim = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    n_pos = sum(s.weight for s in train if s.label)
    n_neg = sum(s.weight for s in train if not s.label)
    pos_weight = torch.tensor(float(np.clip(n_neg / max(n_pos, 1e-6), 0.1, 10.0)), device=device)
    frames_t = torch.tensor([s.frame for s in train], device=device)
    texts_t = torch.tensor([s.text for s in train], device=device)
    labels_t = torch.tensor([float(s.label) for s in train], device=device)
    weights_t = torch.tensor([s.weight for s in train], device=device)
    steps_per_epoch = max(1, int(np.ceil(len(train) / cfg.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optim, max_lr=[g["lr"] for g in groups], total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1
    )

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(out, "tb"))
    generator = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(
        range(cfg.epochs), desc=f"train classifier ({cfg.method})", unit="epoch", disable=progress is not None
    )
    metrics: dict[str, dict[str, Any]] = {}
    loss_value = float("nan")
    for epoch in bar:
        head.train()
        order = torch.randperm(len(train), generator=generator).to(device)
        total, count = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            emb = model(cached[frames_t[idx]])
            logits = head(emb, text_emb[texts_t[idx]])
            loss = (
                F.binary_cross_entropy_with_logits(
                    logits, labels_t[idx], pos_weight=pos_weight, reduction="none"
                )
                * weights_t[idx]
            ).sum() / weights_t[idx].sum()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
        loss_value = total / max(count, 1)
        writer.add_scalar("losses/train_bce", loss_value, epoch)
        last = epoch == cfg.epochs - 1
        if held and (last or epoch % max(1, cfg.epochs // 10) == 0):
            scores = _scores(model, head, cached, text_emb, held, 256)
            metrics = _heldout_metrics(scores, held, task_texts, cfg.target_precision)
            for task, m in metrics.items():
                writer.add_scalar(f"charts/precision_{task}", m["precision"], epoch)
                writer.add_scalar(f"charts/recall_{task}", m["recall"], epoch)
                writer.add_scalar(f"charts/threshold_{task}", m["threshold"], epoch)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        report({"phase": "train", "epoch": epoch + 1, "epochs": cfg.epochs, "loss": loss_value})
    writer.close()
    if not held:
        metrics = {
            t: {
                "precision": 0.0,
                "recall": 0.0,
                "accuracy": 0.0,
                "threshold": 0.5,
                "positives": 0,
                "negatives": 0,
                "attainable": False,
                "source": "none",
                "note": "no held-out episodes (too few episodes per kind and task)",
            }
            for t in task_texts
        }

    report({"phase": "saving", "epoch": cfg.epochs, "epochs": cfg.epochs, "loss": loss_value})
    tuned = cfg.method != "probe"
    if cfg.method == "lora":
        merge_lora(backbone)
    for p in backbone.parameters():
        p.requires_grad_(False)
    head_cfg = {"type": "mlp", "hidden": cfg.head_hidden, "layers": cfg.head_layers, "dropout": 0.1}
    clf = SuccessClassifier(
        backbone,
        head,
        head_cfg,
        task_texts,
        {t: m["threshold"] for t, m in metrics.items()},
        cfg.backbone,
        backbone_tuned=tuned,
        metrics=metrics,
        confirm_frames=cfg.confirm_frames,
        device=device,
    )
    clf.training = {
        "method": cfg.method,
        "seconds": round(time.monotonic() - t0, 1),
        "episodes": ds.episodes,
        "frames": len(ds.frames),
        "train_samples": len(train),
        "heldout_samples": len(held),
        "heldout_episodes": len(held_groups),
        "user_labels": ds.user_labels,
        "final_loss": loss_value,
    }
    clf.save(out)
    report(
        {"phase": "done", "epoch": cfg.epochs, "epochs": cfg.epochs, "loss": loss_value, "metrics": metrics}
    )
    return metrics


# ---------------------------------------------------------------------------------------- evaluation
def episode_outcome(confirmed: np.ndarray, success: np.ndarray, tolerance: int = 0) -> str:
    """Episode-level verdict of a confirmed-success sequence against the ground truth.

    ``tp``: the first confirmed success comes at most ``tolerance`` frames before the true onset (or
    after it); ``early``: it comes sooner (a false success in an episode that does succeed later);
    ``fp``: it fires in an episode that never succeeds; ``fn``: it never fires although the episode
    succeeds; ``tn``: neither.
    """
    fired = np.flatnonzero(confirmed)
    onset = np.flatnonzero(success)
    if onset.size == 0:
        return "fp" if fired.size else "tn"
    if fired.size == 0:
        return "fn"
    return "tp" if fired[0] >= onset[0] - tolerance else "early"


def evaluate_classifier(
    classifier: SuccessClassifier,
    episodes: Iterable[Episode | str | os.PathLike[str]],
    *,
    cross_task_negatives: bool = True,
    tolerance_frames: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per-task precision/recall/accuracy at the classifier's thresholds, from ground-truth ``success`` flags.

    Each target episode is judged for its own task on every frame; with ``cross_task_negatives`` its
    success frames are also judged for the other task (where they must be failures). Prior-scene
    episodes are skipped (their task text is not the classifier's). ``average_precision`` is the
    threshold-free area under the precision-recall curve; ``confirmed_*`` apply the classifier's
    k-frame confirmation along each episode. ``episode_*`` count whole episodes, as the reward
    node sees them: the first confirmed success must come no more than ``tolerance_frames`` before
    the true onset (see :func:`episode_outcome`); ``episode_precision = tp / (tp + fp + early)``,
    ``episode_recall = tp / (tp + fn + early)``.
    """
    scores: dict[str, list[np.ndarray]] = {t: [] for t in classifier.tasks}
    labels: dict[str, list[np.ndarray]] = {t: [] for t in classifier.tasks}
    confirmed: dict[str, list[np.ndarray]] = {t: [] for t in classifier.tasks}
    own_labels: dict[str, list[np.ndarray]] = {t: [] for t in classifier.tasks}
    outcomes: dict[str, dict[str, int]] = {
        t: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "early": 0} for t in classifier.tasks
    }
    for item in episodes:
        path = os.fspath(item) if not isinstance(item, Episode) else ""
        episode = item if isinstance(item, Episode) else load_episode(path)
        if episode_kind(path, episode) == "prior" or episode.task not in classifier.tasks:
            continue
        feats = classifier.image_features(episode.frames)
        p = torch.sigmoid(classifier.logits_from_features(feats, episode.task)).cpu().numpy()
        scores[episode.task].append(p)
        labels[episode.task].append(episode.success)
        thr = classifier.threshold(episode.task)
        conf = confirm_sequence(p >= thr, classifier.confirm_frames)
        confirmed[episode.task].append(conf)
        own_labels[episode.task].append(episode.success)
        outcomes[episode.task][episode_outcome(conf, episode.success, tolerance_frames)] += 1
        other = other_task(episode.task)
        if cross_task_negatives and other in classifier.tasks and episode.success.any():
            mask = torch.from_numpy(episode.success).to(feats.device)
            q = torch.sigmoid(classifier.logits_from_features(feats[mask], other))
            scores[other].append(q.cpu().numpy())
            labels[other].append(np.zeros(int(episode.success.sum()), dtype=bool))
    result: dict[str, dict[str, Any]] = {}
    for task in classifier.tasks:
        s = np.concatenate(scores[task]) if scores[task] else np.zeros(0)
        y = np.concatenate(labels[task]) if labels[task] else np.zeros(0, dtype=bool)
        m: dict[str, Any] = dict(binary_metrics(s, y, classifier.threshold(task)))
        m["threshold"] = classifier.threshold(task)
        m["average_precision"] = average_precision(s, y)
        if confirmed[task]:
            c = binary_metrics(
                np.concatenate(confirmed[task]).astype(float), np.concatenate(own_labels[task]), 0.5
            )
            m["confirmed_precision"], m["confirmed_recall"] = c["precision"], c["recall"]
        o = outcomes[task]
        fired_wrong = o["fp"] + o["early"]
        m["episodes"] = dict(o)
        m["episode_precision"] = o["tp"] / (o["tp"] + fired_wrong) if o["tp"] + fired_wrong else 0.0
        m["episode_recall"] = (
            o["tp"] / (o["tp"] + o["fn"] + o["early"]) if o["tp"] + o["fn"] + o["early"] else 0.0
        )
        result[task] = m
    return result
