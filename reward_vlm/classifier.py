"""The success classifier: a vision-language backbone plus a task-conditioned head.

``SuccessClassifier.predict_proba(frames, task)`` says how likely each frame shows ``task`` done.
The task enters as the text embedding of its instruction (cached per task), as in RoboFuME, so one
head serves the forward and the backward task and learns from prior data of other scenes too.

Two heads:

* **zero-shot** (:meth:`SuccessClassifier.zero_shot`), before any labels exist: image-text
  similarity against per-task positive prompts ("the red cube is in the blue bin") and negative
  prompts ("the red cube is on the table"). Each prompt set is averaged into one unit vector and
  ``p = softmax(T * [cos(img, pos), cos(img, neg)])[0] = sigmoid(T * (cos_pos - cos_neg))`` with the
  backbone's own temperature ``T`` (CLIP's logit scale, ~100). Threshold calibration: without data
  the threshold is 0.5 (the image is closer to the positive than to the negative description); with
  frames of known outcome (:meth:`SuccessClassifier.calibrate`, e.g. the target demos, whose
  per-frame ``success`` flags are ground truth) it is the lowest threshold whose precision on those
  frames reaches the target (:func:`select_threshold`).
* **trained** (``reward_vlm.training``): an MLP on ``[img, txt, img*txt]`` plus a learned multiple
  of ``cos(img, txt)``, fitted on labelled frames, threshold picked on held-out episodes.

Checkpoint folder (format ``robofume-success-classifier`` version 1)::

    classifier.json     backbone config + fingerprint, head config, task texts, thresholds,
                        training metrics, confirm_frames, sha256 of head.safetensors; written last
    head.safetensors    head weights
    backbone/           tuned backbone (see reward_vlm.backbones), only when training changed it;
                        otherwise classifier.json refers to the frozen backbone by name or path
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from reward_vlm.backbones import (
    BackboneConfig,
    BackboneError,
    BackboneUnavailableError,
    VisionLanguageBackbone,
    load_backbone,
    load_backbone_folder,
    read_safetensors,
    save_backbone,
)
from robofume.atomic_io import atomic_writer, ensure_writable_dir, write_json_atomic
from robofume.sim.tasks import TASK_NAMES, instruction

CLASSIFIER_FORMAT = "robofume-success-classifier"
CLASSIFIER_VERSION = 1
CLASSIFIER_JSON = "classifier.json"
HEAD_FILE = "head.safetensors"
BACKBONE_SUBDIR = "backbone"
_MIN_FRAME_SIDE = 8
_CHUNK = 64


class ClassifierInputError(ValueError):
    """Frames of the wrong dtype/shape, or an unknown task name."""


class ClassifierCheckpointError(ValueError):
    """A classifier checkpoint is damaged, incomplete, or made for another backbone."""


# ------------------------------------------------------------------------------------------- prompts
def default_task_texts(object_desc: str = "red cube", target_desc: str = "blue bin") -> dict[str, str]:
    """Task name -> instruction text (the task conditioning), from :func:`robofume.sim.tasks.instruction`."""
    return {task: instruction(task, object_desc, target_desc) for task in TASK_NAMES}


def default_prompts(
    object_desc: str = "red cube", target_desc: str = "blue bin"
) -> dict[str, tuple[list[str], list[str]]]:
    """Per task, (positive, negative) descriptions of the finished and unfinished scene.

    They use the same object and target words as :func:`robofume.sim.tasks.instruction`; the
    backward task's goal region is the green square its instruction names.
    """
    in_target = [
        f"the {object_desc} is in the {target_desc}",
        f"a photo of a {object_desc} inside a {target_desc}",
    ]
    on_square = [
        f"the {object_desc} is on the green square",
        f"a photo of a {object_desc} on a green square next to a {target_desc}",
    ]
    held = [f"a robot gripper holding the {object_desc} in the air"]
    return {
        "forward": (
            in_target,
            [*on_square, f"the {object_desc} is on the table outside the {target_desc}", *held],
        ),
        "backward": (
            on_square,
            [*in_target, f"the {object_desc} is on the table away from the green square", *held],
        ),
    }


# ---------------------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold and how it does on the frames it was chosen on."""

    threshold: float
    precision: float
    recall: float
    attainable: bool
    """Whether some threshold reached the target precision."""
    positives: int
    negatives: int
    note: str = ""


def select_threshold(
    scores: np.ndarray, labels: np.ndarray, target_precision: float = 0.95
) -> ThresholdChoice:
    """The lowest threshold whose precision on (``scores``, ``labels``) is >= ``target_precision``.

    A frame counts as success when ``score >= threshold``. Recall only falls as the threshold rises,
    so the lowest qualifying cut has the best recall. All thresholds between the lowest score kept
    and the next lower score make the same verdicts; the midpoint of that gap is returned, so that
    rounding differences (another batch size, CPU vs GPU) cannot flip the frames at the cut. If no
    threshold qualifies, the best-precision cut is returned with ``attainable=False``; without
    positives the threshold is 0.5 and ``attainable=False``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} vs {labels.shape[0]}")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0:
        return ThresholdChoice(0.5, 0.0, 0.0, False, 0, n_neg, "no positive frames to calibrate on")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    # Only the last index of a run of equal scores is a reachable cut.
    last = np.r_[s[1:] != s[:-1], True]
    idx = np.nonzero(last)[0]
    precision = tp[idx] / (tp[idx] + fp[idx])
    recall = tp[idx] / n_pos

    def cut(i: int) -> float:
        k = idx[i]
        return float(s[k]) if k + 1 >= s.size else float((s[k] + s[k + 1]) / 2)

    ok = np.nonzero(precision >= target_precision)[0]
    if ok.size:
        best = int(ok[-1])  # lowest cut (furthest down the ranking) that still meets the target
        return ThresholdChoice(cut(best), float(precision[best]), float(recall[best]), True, n_pos, n_neg)
    best = int(np.argmax(precision))
    return ThresholdChoice(
        cut(best),
        float(precision[best]),
        float(recall[best]),
        False,
        n_pos,
        n_neg,
        f"no threshold reaches precision {target_precision:.2f}; best is {precision[best]:.3f}",
    )


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Precision, recall, accuracy and counts of ``scores >= threshold`` against ``labels``."""
    pred = np.asarray(scores) >= threshold
    labels = np.asarray(labels, dtype=bool)
    tp = int(np.sum(pred & labels))
    fp = int(np.sum(pred & ~labels))
    fn = int(np.sum(~pred & labels))
    tn = int(np.sum(~pred & ~labels))
    n = tp + fp + fn + tn
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "accuracy": (tp + tn) / n if n else 0.0,
        "positives": tp + fn,
        "negatives": fp + tn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (mean precision at each positive's rank); 0 without positives."""
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    if not labels.any():
        return 0.0
    y = labels[np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")]
    precision = np.cumsum(y) / np.arange(1, y.size + 1)
    return float(precision[y].mean())


# --------------------------------------------------------------------------------------------- heads
class TaskConditionedHead(nn.Module):
    """Logit of success from an image embedding and the task's text embedding (both unit vectors)."""

    def __init__(self, embed_dim: int, hidden: int = 256, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        dims = [3 * embed_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            blocks += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU(), nn.Dropout(dropout)]
        blocks.append(nn.Linear(dims[-1], 1))
        self.mlp = nn.Sequential(*blocks)
        self.sim_scale = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(N, D) image and (N, D) text embeddings -> (N,) logits."""
        sim = (image * text).sum(-1)
        scale = math.sqrt(self.embed_dim)  # unit vectors have entries ~1/sqrt(D); bring them to ~1
        x = torch.cat([image * scale, text * scale, image * text * self.embed_dim], dim=-1)
        return self.mlp(x).squeeze(-1) + self.sim_scale * sim * 10.0 + self.bias


class ZeroShotHead(nn.Module):
    """Logit ``T * (cos(img, pos_task) - cos(img, neg_task))`` from averaged prompt embeddings."""

    def __init__(self, embed_dim: int, num_tasks: int, temperature: float) -> None:
        super().__init__()
        self.register_buffer("positive", torch.zeros(num_tasks, embed_dim))
        self.register_buffer("negative", torch.zeros(num_tasks, embed_dim))
        self.temperature = float(temperature)

    def forward(self, image: torch.Tensor, task_index: int) -> torch.Tensor:
        """(N, D) image embeddings -> (N,) logits for task ``task_index``."""
        return self.temperature * (image @ self.positive[task_index] - image @ self.negative[task_index])


# ------------------------------------------------------------------------------------ the classifier
class SuccessClassifier:
    """Says, per camera frame, whether a task is done: ``predict_proba``, ``is_success``, thresholds."""

    def __init__(
        self,
        backbone: VisionLanguageBackbone,
        head: nn.Module,
        head_config: dict[str, Any],
        task_texts: dict[str, str],
        thresholds: dict[str, float],
        backbone_config: BackboneConfig,
        *,
        backbone_tuned: bool = False,
        metrics: dict[str, Any] | None = None,
        confirm_frames: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        if not task_texts:
            raise ClassifierInputError("a classifier needs at least one task")
        if confirm_frames < 1:
            raise ClassifierInputError(f"confirm_frames must be >= 1, got {confirm_frames}")
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        self.head = head.to(self.device).eval()
        self.head_config = dict(head_config)
        self.task_texts = dict(task_texts)
        self.thresholds = {task: float(thresholds.get(task, 0.5)) for task in self.task_texts}
        self.backbone_config = backbone_config
        self.backbone_tuned = backbone_tuned
        self.metrics = dict(metrics or {})
        self.confirm_frames = int(confirm_frames)
        self.training: dict[str, Any] = {}
        """How the head was trained (method, time, data counts); saved in ``classifier.json``."""
        self._text_cache: dict[str, torch.Tensor] = {}

    # ---- tasks
    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names this classifier judges."""
        return tuple(self.task_texts)

    def _check_task(self, task: str) -> None:
        if task not in self.task_texts:
            raise ClassifierInputError(
                f"unknown task {task!r}; this classifier knows: {', '.join(self.tasks)}"
            )

    @torch.inference_mode()
    def text_embedding(self, text: str) -> torch.Tensor:
        """L2-normalised embedding of ``text`` (cached)."""
        if text not in self._text_cache:
            self._text_cache[text] = self.backbone.encode_texts([text])[0]
        return self._text_cache[text]

    def task_embedding(self, task: str) -> torch.Tensor:
        """The conditioning vector of ``task``: the embedding of its instruction text (cached)."""
        self._check_task(task)
        return self.text_embedding(self.task_texts[task])

    # ---- inference
    @staticmethod
    def check_frames(frames: Any) -> np.ndarray:
        """Validate frames and return them as uint8 (N, H, W, 3); :class:`ClassifierInputError` otherwise."""
        if not isinstance(frames, np.ndarray):
            raise ClassifierInputError(f"frames must be a numpy uint8 array, got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            raise ClassifierInputError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ClassifierInputError(
                f"frames must be (H, W, 3) or (N, H, W, 3) RGB, got shape {frames.shape}"
            )
        if min(frames.shape[1:3]) < _MIN_FRAME_SIDE:
            raise ClassifierInputError(f"frames of {frames.shape[1]}x{frames.shape[2]} px are too small")
        return frames

    @torch.inference_mode()
    def image_features(self, frames: np.ndarray) -> torch.Tensor:
        """L2-normalised (N, D) image embeddings of validated frames, computed in chunks."""
        frames = self.check_frames(frames)
        out = [
            self.backbone.encode_images(torch.from_numpy(np.ascontiguousarray(frames[i : i + _CHUNK])))
            for i in range(0, frames.shape[0], _CHUNK)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.backbone.embed_dim, device=self.device)

    @torch.inference_mode()
    def logits_from_features(self, features: torch.Tensor, task: str) -> torch.Tensor:
        """(N,) logits for ``task`` from (N, D) image embeddings."""
        self._check_task(task)
        features = features.to(self.device)
        if isinstance(self.head, ZeroShotHead):
            return self.head(features, self.tasks.index(task))
        text = self.task_embedding(task).expand(features.shape[0], -1)
        return self.head(features, text)

    def predict_proba(self, frames: np.ndarray, task: str) -> np.ndarray:
        """Success probability of ``task`` for uint8 RGB frames (H, W, 3) or (N, H, W, 3); returns (N,)."""
        self._check_task(task)
        frames = self.check_frames(frames)
        if frames.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        logits = self.logits_from_features(self.image_features(frames), task)
        return torch.sigmoid(logits).float().cpu().numpy()

    def threshold(self, task: str) -> float:
        """Probability at or above which a frame counts as ``task`` done."""
        self._check_task(task)
        return self.thresholds[task]

    def set_threshold(self, task: str, value: float) -> None:
        """Set the decision threshold of ``task`` (a probability in [0, 1])."""
        self._check_task(task)
        if not 0.0 <= float(value) <= 1.0:
            raise ClassifierInputError(f"threshold must be within [0, 1], got {value}")
        self.thresholds[task] = float(value)

    def is_success(self, frames: np.ndarray, task: str) -> np.ndarray:
        """Boolean (N,) verdicts: probability >= :meth:`threshold`."""
        return self.predict_proba(frames, task) >= self.threshold(task)

    def calibrate(
        self, task: str, frames: np.ndarray, labels: np.ndarray, target_precision: float = 0.95
    ) -> ThresholdChoice:
        """Set ``task``'s threshold to the lowest reaching ``target_precision`` on these labelled frames."""
        labels = np.asarray(labels, dtype=bool).reshape(-1)
        scores = self.predict_proba(frames, task)
        if scores.shape != labels.shape:
            raise ClassifierInputError(f"{scores.shape[0]} frames but {labels.shape[0]} labels")
        choice = select_threshold(scores, labels, target_precision)
        self.thresholds[task] = choice.threshold
        return choice

    # ---- zero-shot
    @classmethod
    def zero_shot(
        cls,
        backbone_cfg: BackboneConfig,
        prompts: dict[str, tuple[list[str], list[str]]] | None = None,
        *,
        backbone: VisionLanguageBackbone | None = None,
        temperature: float | None = None,
        device: str | torch.device = "cpu",
    ) -> SuccessClassifier:
        """A classifier from prompts alone (default: :func:`default_prompts`), threshold 0.5."""
        prompts = prompts if prompts is not None else default_prompts()
        if not prompts:
            raise ClassifierInputError("zero-shot prompts must name at least one task")
        for task, pair in prompts.items():
            if not (
                isinstance(pair, tuple | list)
                and len(pair) == 2
                and all(
                    isinstance(p, list | tuple) and p and all(isinstance(s, str) and s for s in p)
                    for p in pair
                )
            ):
                raise ClassifierInputError(
                    f"prompts for task {task!r} must be (positive texts, negative texts)"
                )
        backbone = backbone if backbone is not None else load_backbone(backbone_cfg)
        backbone = backbone.to(device).eval()
        temp = float(temperature) if temperature is not None else backbone.logit_scale
        head = ZeroShotHead(backbone.embed_dim, len(prompts), temp)
        with torch.inference_mode():
            for i, (pos, neg) in enumerate(prompts.values()):
                head.positive[i] = nn.functional.normalize(
                    backbone.encode_texts(list(pos)).mean(0), dim=0
                ).cpu()
                head.negative[i] = nn.functional.normalize(
                    backbone.encode_texts(list(neg)).mean(0), dim=0
                ).cpu()
        texts = default_task_texts()
        task_texts = {task: texts.get(task, prompts[task][0][0]) for task in prompts}
        head_config = {
            "type": "zero_shot",
            "temperature": temp,
            "prompts": {t: [list(p[0]), list(p[1])] for t, p in prompts.items()},
        }
        return cls(
            backbone, head, head_config, task_texts, {t: 0.5 for t in prompts}, backbone_cfg, device=device
        )

    # ---- persistence
    def save(self, folder: str | os.PathLike[str]) -> str:
        """Write the checkpoint folder (head, tuned backbone if any, ``classifier.json`` last); return it."""
        folder = ensure_writable_dir(os.fspath(folder), "classifier folder")
        backbone_cfg = self.backbone_config.to_dict()
        if self.backbone_tuned:
            save_backbone(self.backbone, os.path.join(folder, BACKBONE_SUBDIR))
            backbone_cfg["path"] = BACKBONE_SUBDIR
        elif backbone_cfg.get("path"):
            backbone_cfg["path"] = os.path.abspath(backbone_cfg["path"])
        backbone_cfg["image_size"] = self.backbone.image_size
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.head.state_dict().items()}
        raw = safetensors.torch.save(state)
        with atomic_writer(os.path.join(folder, HEAD_FILE)) as f:
            f.write(raw)
        meta = {
            "format": CLASSIFIER_FORMAT,
            "version": CLASSIFIER_VERSION,
            "backbone": backbone_cfg,
            "backbone_tuned": self.backbone_tuned,
            "backbone_model": {
                "backend": self.backbone.backend,
                "model": self.backbone.model_name,
                "embed_dim": self.backbone.embed_dim,
                **self.backbone.fingerprint(),
            },
            "head": self.head_config,
            "tasks": list(self.tasks),
            "task_texts": self.task_texts,
            "thresholds": self.thresholds,
            "confirm_frames": self.confirm_frames,
            "metrics": self.metrics,
            "training": self.training,
            "files": {HEAD_FILE: hashlib.sha256(raw).hexdigest()},
        }
        write_json_atomic(os.path.join(folder, CLASSIFIER_JSON), meta)
        return folder

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        backbone: BackboneConfig | VisionLanguageBackbone | None = None,
    ) -> SuccessClassifier:
        """Load a checkpoint folder. ``backbone`` overrides where the (frozen) backbone comes from.

        Raises :class:`ClassifierCheckpointError` (one line) for a damaged or incomplete folder or a
        backbone of another architecture or other weights than the checkpoint was made for.
        """
        folder = os.fspath(folder)
        meta = read_classifier_meta(folder)
        where = os.path.join(folder, CLASSIFIER_JSON)
        try:
            bcfg_dict = dict(meta["backbone"])
            if meta["backbone_tuned"] and bcfg_dict.get("path") and not os.path.isabs(bcfg_dict["path"]):
                bcfg_dict["path"] = os.path.join(folder, bcfg_dict["path"])
            backbone_cfg = BackboneConfig.from_dict(bcfg_dict)
            expected = meta["backbone_model"]
            head_cfg = dict(meta["head"])
            task_texts = {str(t): str(meta["task_texts"][t]) for t in meta["tasks"]}  # order = head rows
            thresholds = {str(k): float(v) for k, v in meta["thresholds"].items()}
            head_sha = meta["files"][HEAD_FILE]
            confirm = int(meta.get("confirm_frames", 1))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ClassifierCheckpointError(f"{where}: missing or malformed field ({exc})") from None
        if isinstance(backbone, VisionLanguageBackbone):
            model = backbone
        else:
            if isinstance(backbone, BackboneConfig):
                backbone_cfg = backbone
            try:
                model = (
                    load_backbone_folder(backbone_cfg.path, backbone_cfg.image_size)
                    if backbone_cfg.path
                    else load_backbone(backbone_cfg)
                )
            except BackboneUnavailableError:
                if meta["backbone_tuned"] and backbone is None:
                    raise ClassifierCheckpointError(
                        f"{folder}: the tuned backbone folder is missing"
                    ) from None
                raise
            except BackboneError as exc:
                raise ClassifierCheckpointError(f"{folder}: cannot load its backbone: {exc}") from None
        _check_backbone(folder, expected, model)
        state = _read_head(folder, head_sha)
        head = _build_head(head_cfg, model.embed_dim, len(task_texts), folder)
        try:
            head.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = " ".join(str(exc).strip().splitlines()[:2])[:240]
            raise ClassifierCheckpointError(
                f"{folder}: head weights do not fit (another backbone?): {first}"
            ) from None
        clf = cls(
            model,
            head,
            head_cfg,
            task_texts,
            thresholds,
            backbone_cfg,
            backbone_tuned=meta["backbone_tuned"],
            metrics=meta.get("metrics") or {},
            confirm_frames=confirm,
            device=device,
        )
        clf.training = dict(meta.get("training") or {})
        return clf


def read_classifier_meta(folder: str) -> dict[str, Any]:
    """Parsed ``classifier.json`` of a checkpoint; :class:`ClassifierCheckpointError` if absent or damaged."""
    where = os.path.join(folder, CLASSIFIER_JSON)
    if not os.path.isfile(where):
        raise ClassifierCheckpointError(f"{folder} is not a classifier checkpoint (no {CLASSIFIER_JSON})")
    try:
        with open(where, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifierCheckpointError(f"{where}: unreadable or corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CLASSIFIER_FORMAT:
        raise ClassifierCheckpointError(f"{where}: not a {CLASSIFIER_FORMAT} file")
    if meta.get("version") != CLASSIFIER_VERSION:
        raise ClassifierCheckpointError(f"{where}: checkpoint version {meta.get('version')} is not supported")
    return meta


def _check_backbone(folder: str, expected: dict[str, Any], model: VisionLanguageBackbone) -> None:
    got = {
        "backend": model.backend,
        "model": model.model_name,
        "embed_dim": model.embed_dim,
        **model.fingerprint(),
    }
    made_for = f"{expected.get('backend')} {expected.get('model')}"
    if (
        got["backend"] != expected.get("backend")
        or got["embed_dim"] != expected.get("embed_dim")
        or (got["arch"] != expected.get("arch"))
    ):
        raise ClassifierCheckpointError(
            f"{folder} was made for backbone {made_for} (dim {expected.get('embed_dim')}), not for "
            f"{got['backend']} {got['model']} (dim {got['embed_dim']}): architectures differ"
        )
    if got["weights"] != expected.get("weights"):
        raise ClassifierCheckpointError(
            f"{folder} was made for other weights of backbone {made_for} than the ones loaded; "
            "pass the backbone it was trained with"
        )


def _read_head(folder: str, sha256: str) -> dict[str, torch.Tensor]:
    try:
        return read_safetensors(os.path.join(folder, HEAD_FILE), sha256, folder)
    except BackboneError as exc:
        raise ClassifierCheckpointError(str(exc)) from None


def _build_head(cfg: dict[str, Any], embed_dim: int, num_tasks: int, folder: str) -> nn.Module:
    kind = cfg.get("type")
    try:
        if kind == "zero_shot":
            return ZeroShotHead(embed_dim, num_tasks, float(cfg["temperature"]))
        if kind == "mlp":
            return TaskConditionedHead(
                embed_dim, int(cfg["hidden"]), int(cfg["layers"]), float(cfg.get("dropout", 0.1))
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassifierCheckpointError(f"{folder}: malformed head config ({exc})") from None
    raise ClassifierCheckpointError(f"{folder}: unknown head type {kind!r}")


# ------------------------------------------------------------------------------------- confirmation
class SuccessConfirmation:
    """Confirm success only after ``k`` consecutive positive frames; an unknown verdict (None) resets."""

    def __init__(self, k: int = 1) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"confirmation needs k >= 1 consecutive frames, got {k!r}")
        self.k = k
        self._run = 0

    def update(self, success: bool | None) -> bool:
        """Feed the newest verdict; True once the last ``k`` verdicts were all success."""
        self._run = self._run + 1 if success is True else 0
        return self._run >= self.k

    def reset(self) -> None:
        """Forget the run (e.g. when the task or episode changes)."""
        self._run = 0

    @property
    def run_length(self) -> int:
        """Consecutive positive verdicts so far."""
        return self._run


def confirm_sequence(verdicts: Sequence[bool], k: int) -> np.ndarray:
    """Apply :class:`SuccessConfirmation` to a frame sequence; returns the confirmed (N,) verdicts."""
    conf = SuccessConfirmation(k)
    return np.array([conf.update(bool(v)) for v in verdicts], dtype=bool)
