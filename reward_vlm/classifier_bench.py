"""``robofume bench classifier``: success-classifier accuracy vs. user labels, and latency per frame.

Accuracy. The classifier is trained like ``robofume reward train`` on prior data + target demos and
failures (their ground-truth flags; generated with :mod:`robofume.data.generate` at small counts, or
an existing ``data`` folder) plus ``n`` user-labelled positive frames and ``2 n`` negative frames
per task (``n`` = 0, 5, 10, 20; ``n = 0`` is RoboFuME's setting: the data's own flags only), then
judged on **held-out session clips** whose env seeds never appear in training.

Session clips. On a robot the user labels frames of recorded session episodes, in which the
success state persists for several frames (the reset-free controller waits for ``k`` confirmed
frames before it switches task). Scripted data episodes stop at their first success frame, so the
bench records its own *session-like* clips: the scripted expert runs the forward task to success,
keeps acting (release, retreat) for ``hold_frames`` more frames, then the backward task starts from
that scene (reset-free), and so on; a failed attempt (noisy expert or a scripted failure mode) ends
at ``max_attempt_steps`` and the operator resets the scene. Every frame carries the ground truth
``env.is_success(task)``. Clips are robofume-episode files (``kind`` demos/failures by outcome,
``terminated=False, truncated=True`` since the recorder, not the task, ended them, and a
``bench_clip`` entry saying they are classifier-bench clips of the ``label_pool`` or ``heldout``
split). Label-pool and held-out clips use separate seed streams, checked disjoint from each other
and from the training data's seeds. They are generated once per setting and cached.

User labels are drawn from the label-pool clips, as a user of the labeling tool would mark them:
positives round-robin over the successful clips, negatives alternately from the
``hard_negative_window`` frames just before a success onset (object in the bin, gripper still
touching it) and from all other failure frames. The sets are nested (the 10-label set contains the
5-label set).

Latency: ``SuccessClassifier.predict_proba`` per frame (uint8 camera frames, preprocessing, backbone,
head) on the CPU with 1 and 2 torch threads, batch 1 and 16, median and p90 over repeats, for the
default backbone (open_clip ViT-B-32 at 128 px), ViT-B/32 at its native 224 px and the tiny model.
Random weights (``pretrained=None``, nothing downloaded) time the same as trained ones.

Run::

    robofume bench classifier --preset full --json --out outputs/bench_classifier
    python -m reward_vlm.classifier_bench --preset quick --out /tmp/cb --data data/mock
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from reward_vlm.backbones import (
    BackboneConfig,
    BackboneError,
    build_tiny_backbone,
    load_backbone,
    read_backbone_meta,
)
from reward_vlm.classifier import SuccessClassifier, TaskConditionedHead, default_task_texts, select_threshold
from reward_vlm.labels import FrameLabel, save_labels
from reward_vlm.training import (
    METHODS,
    ClassifierConfigError,
    ClassifierTrainConfig,
    evaluate_classifier,
    subsample_indices,
    train_classifier,
)
from robofume.atomic_io import ensure_writable_dir, write_json_atomic, write_with
from robofume.bench.machine import machine_info
from robofume.data.episode_format import (
    Episode,
    EpisodeFormatError,
    list_episodes,
    load_episode,
    save_episode,
)
from robofume.devices import resolve_device
from robofume.sim.mock_arm_env import ACTION_NAMES, PROPRIO_NAMES, MockArmConfig, MockArmEnv
from robofume.sim.scripted_expert import FAILURE_MODES, ScriptedExpert
from robofume.sim.tasks import TASK_NAMES, instruction, other_task

CLIPS_FORMAT = "robofume-classifier-bench-clips"
CLIPS_MANIFEST = "clips.json"
RESULT_FILE = "classifier_bench.json"
PLOT_FILE = "classifier_bench.png"
SPLITS: tuple[str, ...] = ("label_pool", "heldout")
LATENCY_MODELS: tuple[str, ...] = ("default", "vit-b-32-224", "tiny", "backbone_path")
HOLD_ACTIONS: tuple[str, ...] = ("expert", "still")
ROBOFUME_TABLE2 = {
    "source": "RoboFuME (Yang et al. 2023), Table II, three real-robot tasks",
    "precision": [0.153, 0.920, 0.243],
    "false_negative_rate": [0.809, 0.598, 0.813],
}
_SPLIT_CODE = {"label_pool": 1, "heldout": 2}
_SEED_SALT = 0xC1A55  # keeps the bench's seed streams apart from robofume.data.generate's


class ClassifierBenchError(ValueError):
    """The benchmark cannot run as configured (bad value, too few label frames, seed overlap)."""


@dataclass(frozen=True)
class ClassifierBenchConfig:
    """What ``robofume bench classifier`` measures: ``preset("quick")`` (tests), ``preset("full")``."""

    name: str = "full"
    """Preset name recorded in the result (``quick``, ``full``, or anything for a hand-made config)."""
    positives: tuple[int, ...] = (0, 5, 10, 20)
    """User-labelled positive frames per task, one training run each (0: the data's flags only)."""
    negatives_per_positive: int = 2
    """User-labelled negative frames per positive."""
    methods: tuple[str, ...] = ("probe",)
    """Training methods (``probe``, ``last_blocks``, ``lora``, ``full``); each is run for every count."""
    zero_shot: bool = True
    """Also report the zero-shot classifier, calibrated on the target demos' and failures' flags."""
    data: str | None = None
    """An existing prior/demo dataset (``robofume data generate``); ``None``: generate one (cached)."""
    demos_per_task: int = 10
    failures_per_task: int = 5
    prior: int = 40
    max_episode_steps: int = 100
    """Generated data: episode time limit."""
    image_size: int = 128
    """Camera frame side of generated data and clips (an existing ``data`` folder's own size wins)."""
    label_sessions: int = 4
    """Recorded sessions whose clips the user labels from."""
    test_sessions: int = 5
    """Recorded sessions held out for evaluation (other seeds)."""
    attempts_per_session: int = 6
    """Task attempts (clips) per session."""
    hold_frames: int = 6
    """Frames recorded after the first success frame of an attempt."""
    hold_action: str = "expert"
    """After success: ``expert`` (keeps acting: release, retreat) or ``still`` (no motion, gripper kept)."""
    failure_every: int = 4
    """Every ``failure_every``-th attempt (staggered per session) uses a scripted failure mode; 0: none."""
    max_attempt_steps: int = 70
    """Steps before an attempt that has not succeeded is given up."""
    expert_noise: float = 0.1
    hard_negative_window: int = 3
    """Frames before a success onset that count as hard negatives when drawing user labels."""
    backbone_path: str | None = None
    """A backbone folder (``robofume reward export-backbone``); ``None``: random-init tiny one (offline)."""
    backbone_image_size: int | None = None
    """Side the backbone sees; default 64 for the tiny backbone, 128 for ``backbone_path``."""
    epochs: int = 30
    max_frames_per_episode: int = 24
    target_precision: float = 0.95
    """Threshold selection target, and the precision target of the bench."""
    target_recall: float = 0.80
    max_target_positives: int = 20
    """Targets must be met with at most this many positives per task."""
    confirm_frames: int = 2
    tolerance_frames: int = 3
    """Episode level: a first confirmed success this many frames before the true onset still counts."""
    latency_models: tuple[str, ...] = ("default", "vit-b-32-224", "tiny", "backbone_path")
    """``default`` (ViT-B-32 @ 128), ``vit-b-32-224``, ``tiny``, ``backbone_path`` (if given)."""
    latency_threads: tuple[int, ...] = (1, 2)
    latency_batches: tuple[int, ...] = (1, 16)
    latency_repeats: int = 20
    """Timed calls at batch 1 (batched rows: a quarter of it, at least 3)."""
    latency_warmup: int = 2
    latency_device: str = "cpu"
    """Device of the latency rows: ``cpu`` (threads as ``latency_threads``), ``cuda`` (one row per
    batch; the GPU server's figures) or ``auto``."""
    camera_hz: float = 10.0
    threads: int = 1
    """Torch CPU threads for training and evaluation."""
    seed: int = 0
    workers: int = 1
    """Processes generating the prior/demo data."""

    def __post_init__(self) -> None:
        checks = [
            (bool(self.positives) and all(n >= 0 for n in self.positives), "positives must be counts >= 0"),
            (len(set(self.positives)) == len(self.positives), "positives must not repeat"),
            (self.negatives_per_positive >= 0, "negatives_per_positive must be >= 0"),
            (bool(self.methods) and set(self.methods) <= set(METHODS), f"methods must be among {METHODS}"),
            (min(self.demos_per_task, self.failures_per_task, self.prior) >= 0, "data counts must be >= 0"),
            (
                self.demos_per_task >= 2 or self.data is not None,
                "demos_per_task must be >= 2 (one is held out)",
            ),
            (
                self.label_sessions >= 1 and self.test_sessions >= 1,
                "label_sessions and test_sessions must be >= 1",
            ),
            (self.attempts_per_session >= 1, "attempts_per_session must be >= 1"),
            (self.hold_frames >= 0, "hold_frames must be >= 0"),
            (self.hold_action in HOLD_ACTIONS, f"hold_action must be one of {HOLD_ACTIONS}"),
            (self.failure_every >= 0, "failure_every must be >= 0"),
            (self.max_attempt_steps >= 5, "max_attempt_steps must be >= 5"),
            (self.expert_noise >= 0, "expert_noise must be >= 0"),
            (self.hard_negative_window >= 0, "hard_negative_window must be >= 0"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (0 < self.target_precision <= 1 and 0 < self.target_recall <= 1, "targets must be in (0, 1]"),
            (self.confirm_frames >= 1 and self.tolerance_frames >= 0, "confirm_frames >= 1, tolerance >= 0"),
            (
                set(self.latency_models) <= set(LATENCY_MODELS),
                f"latency_models must be among {LATENCY_MODELS}",
            ),
            (all(t >= 1 for t in self.latency_threads), "latency_threads must be >= 1"),
            (all(b >= 1 for b in self.latency_batches), "latency_batches must be >= 1"),
            (self.latency_repeats >= 1 and self.latency_warmup >= 0, "latency_repeats >= 1, warmup >= 0"),
            (
                self.camera_hz > 0 and self.threads >= 1 and self.workers >= 1,
                "camera_hz, threads, workers > 0",
            ),
            (32 <= self.image_size <= 1024, f"image_size must be in 32..1024, got {self.image_size}"),
            (
                self.backbone_image_size is None or self.backbone_image_size >= 16,
                "backbone_image_size must be >= 16",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ClassifierBenchError(message)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ClassifierBenchConfig:
        """``quick`` (test suite, well under a minute) or ``full`` (documented figures), plus overrides."""
        presets: dict[str, dict[str, Any]] = {
            "quick": {
                "positives": (0, 2),
                "demos_per_task": 2,
                "failures_per_task": 0,
                "prior": 0,
                "max_episode_steps": 60,
                "image_size": 64,
                "label_sessions": 1,
                "test_sessions": 1,
                "attempts_per_session": 3,
                "hold_frames": 4,
                "failure_every": 3,
                "max_attempt_steps": 60,
                "backbone_image_size": 32,
                "epochs": 3,
                "max_frames_per_episode": 8,
                "latency_models": ("tiny",),
                "latency_threads": (1,),
                "latency_batches": (1, 4),
                "latency_repeats": 3,
                "latency_warmup": 1,
            },
            "full": {"methods": ("probe", "lora")},
        }
        if name not in presets:
            raise ClassifierBenchError(f"unknown preset {name!r}; expected one of: {', '.join(presets)}")
        values = {**presets[name], "name": name, **{k: v for k, v in overrides.items() if v is not None}}
        latency_models = tuple(values.get("latency_models", LATENCY_MODELS))
        if (
            values.get("backbone_path")
            and "latency_models" not in overrides
            and "backbone_path" not in latency_models
        ):
            values["latency_models"] = (*latency_models, "backbone_path")  # time the backbone the user gave
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ClassifierBenchError(f"unknown classifier bench setting(s): {', '.join(unknown)}")
        for key in ("positives", "methods", "latency_models", "latency_threads", "latency_batches"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def resolved_backbone_image_size(self) -> int:
        """The side the backbone sees."""
        return self.backbone_image_size or (128 if self.backbone_path else 64)


# ------------------------------------------------------------------------------------------ seeds
def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([_SEED_SALT, *parts]).generate_state(1)[0])


def session_seed(cfg: ClassifierBenchConfig, split: str, session: int) -> int:
    """Env seed of session ``session`` of ``split`` (separate streams for label-pool and held-out clips)."""
    return _seed(cfg.seed, _SPLIT_CODE[split], session)


def _reset_seed(base: int, attempt: int) -> int:
    """Env seed of the operator reset before attempt ``attempt`` of a session."""
    return _seed(base, 1000 + attempt)


def episode_seeds(folder: str) -> set[int]:
    """The env seeds recorded in the metadata of every episode under ``folder`` (reads only ``meta``)."""
    seeds: set[int] = set()
    for path in list_episodes(folder):
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
            raise ClassifierBenchError(f"{path}: unreadable episode ({exc})") from None
        if isinstance(meta.get("seed"), int):
            seeds.add(int(meta["seed"]))
    return seeds


# ---------------------------------------------------------------------------------- session clips
@dataclass
class ClipInfo:
    """One recorded attempt, as listed in the clip manifest."""

    path: str
    """Relative to the split folder (``forward_000003.npz``)."""
    task: str
    session: int
    attempt: int
    seed: int
    """Env seed of the scene the session (or the operator's last reset) started from."""
    failure_mode: str | None
    success: str
    """Per-frame ground truth, ``0``/``1`` characters."""
    onset: int | None
    """First success frame, or ``None``."""

    def flags(self) -> np.ndarray:
        """Per-frame success as a bool array."""
        return np.frombuffer(self.success.encode(), dtype=np.uint8) == ord("1")


def _still_action(env: MockArmEnv) -> np.ndarray:
    _pos, _yaw, grip = env.commanded_target()
    return np.array([0.0, 0.0, 0.0, 0.0, grip * 2.0 - 1.0], dtype=np.float32)


def record_attempt(
    env: MockArmEnv,
    make_expert: Callable[[MockArmEnv], ScriptedExpert],
    task: str,
    *,
    max_steps: int,
    hold_frames: int,
    hold_action: str = "expert",
) -> tuple[Episode, int | None]:
    """Switch ``env`` to ``task`` keeping its scene, run the expert ``make_expert(env)`` plans for it until
    ``hold_frames`` frames after the first success (or ``max_steps`` steps without one); return the clip
    (per-frame ground truth) and the onset frame.

    ``env`` must not terminate on success (``MockArmConfig(terminate_on_success=False)``) and must
    have been reset once (the scene to start from).
    """
    if env.config.terminate_on_success:
        raise ClassifierBenchError("record_attempt needs an env with terminate_on_success=False")
    if hold_action not in HOLD_ACTIONS:
        raise ClassifierBenchError(f"hold_action must be one of {HOLD_ACTIONS}, got {hold_action!r}")
    obs, _info = env.reset(options={"task": task, "keep_scene": True})
    expert = make_expert(env)
    frames, proprio, actions = [obs["image"]], [obs["proprio"]], []
    success = [bool(env.is_success(task))]
    onset: int | None = 0 if success[0] else None
    while True:
        steps = len(actions)
        if onset is None and steps >= max_steps:
            break
        if onset is not None and len(frames) - 1 - onset >= hold_frames:
            break
        if onset is not None and hold_action == "still":
            action = _still_action(env)
        else:
            action = np.asarray(expert.act(), dtype=np.float32)
        obs, _reward, _terminated, _truncated, _info = env.step(action)
        frames.append(obs["image"])
        proprio.append(obs["proprio"])
        actions.append(action)
        success.append(bool(env.is_success(task)))
        if onset is None and success[-1]:
            onset = len(frames) - 1
    episode = Episode(
        frames=np.stack(frames),
        proprio=np.stack(proprio).astype(np.float32),
        actions=np.stack(actions).astype(np.float32)
        if actions
        else np.zeros((0, len(ACTION_NAMES)), np.float32),
        success=np.asarray(success, dtype=bool),
        task=task,
        metadata={
            "kind": "demos" if onset is not None else "failures",
            "terminated": False,
            "truncated": True,
            "keep_scene": True,
            "control_hz": env.config.control_hz,
            "image_size": env.config.image_size,
            "proprio_names": list(PROPRIO_NAMES),
            "action_names": list(ACTION_NAMES),
            "variant": asdict(env.config.variant),
            "scene": "target",
            "instruction": instruction(task),
            "expert": {"noise_std": expert.noise_std, "failure_mode": expert.failure_mode},
        },
    )
    return episode, onset


def _is_failure_attempt(cfg: ClassifierBenchConfig, session: int, attempt: int) -> bool:
    k = cfg.failure_every
    return k > 0 and (attempt + session) % k == k - 1


def record_session(
    env: MockArmEnv,
    cfg: ClassifierBenchConfig,
    split: str,
    session: int,
    folder: str,
    counters: dict[str, int],
) -> list[ClipInfo]:
    """Record one reset-free session (forward, backward, ... attempts) into ``folder``; return its clips."""
    base = session_seed(cfg, split, session)
    env.reset(seed=base, options={"task": TASK_NAMES[0]})
    scene_seed = base
    task = TASK_NAMES[0]
    clips: list[ClipInfo] = []
    for attempt in range(cfg.attempts_per_session):
        failure = None
        if _is_failure_attempt(cfg, session, attempt):
            failure = FAILURE_MODES[(session + attempt) % len(FAILURE_MODES)]
        rng = np.random.default_rng([base, attempt])

        def make_expert(
            e: MockArmEnv, failure: str | None = failure, rng: np.random.Generator = rng
        ) -> ScriptedExpert:
            return ScriptedExpert(e, noise_std=cfg.expert_noise, failure_mode=failure, rng=rng)  # type: ignore[arg-type]

        episode, onset = record_attempt(
            env,
            make_expert,
            task,
            max_steps=cfg.max_attempt_steps,
            hold_frames=cfg.hold_frames,
            hold_action=cfg.hold_action,
        )
        index = counters[task]
        counters[task] += 1
        name = f"{task}_{index:06d}.npz"
        episode.metadata.update(
            seed=scene_seed,
            bench_clip={
                "bench": "classifier",
                "purpose": "evaluation" if split == "heldout" else "user labels",
                "split": split,
                "session": session,
                "attempt": attempt,
                "hold_frames": cfg.hold_frames,
                "hold_action": cfg.hold_action,
                "success_onset": onset,
                "ended_by": "hold_frames" if onset is not None else "max_attempt_steps",
            },
        )
        save_episode(os.path.join(folder, name), episode)
        flags = "".join("1" if s else "0" for s in episode.success)
        clips.append(ClipInfo(name, task, session, attempt, scene_seed, failure, flags, onset))
        if onset is not None:
            task = other_task(task)  # reset-free: the next task starts from this scene
        else:
            scene_seed = _reset_seed(base, attempt)  # the operator resets the scene for a retry
            env.reset(seed=scene_seed, options={"task": task})
    return clips


def _clip_settings(cfg: ClassifierBenchConfig, image_size: int) -> dict[str, Any]:
    keys = (
        "label_sessions", "test_sessions", "attempts_per_session", "hold_frames", "hold_action",
        "failure_every", "max_attempt_steps", "expert_noise", "seed",
    )  # fmt: skip
    return {"image_size": image_size, **{k: getattr(cfg, k) for k in keys}}


def _settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def prepare_clips(
    cfg: ClassifierBenchConfig, root: str, image_size: int, log: Any = None
) -> tuple[str, dict[str, list[ClipInfo]]]:
    """Record (or reuse, when cached with the same settings) the label-pool and held-out session clips.

    Returns the clip folder (``<root>/clips-<key>/{label_pool,heldout}/``) and the clips per split.
    """
    settings = _clip_settings(cfg, image_size)
    folder = os.path.join(root, f"clips-{_settings_key(settings)}")
    manifest_path = os.path.join(folder, CLIPS_MANIFEST)
    if os.path.isfile(manifest_path):
        try:
            with open(manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
            if manifest.get("complete") and manifest.get("settings") == settings:
                clips = {s: [ClipInfo(**c) for c in manifest["clips"][s]] for s in SPLITS}
                if all(os.path.isfile(os.path.join(folder, s, c.path)) for s in SPLITS for c in clips[s]):
                    return folder, clips
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            pass  # damaged or partial cache: record again (clips are deterministic)
    ensure_writable_dir(folder, "clip folder")
    t0 = time.monotonic()
    env = MockArmEnv(
        MockArmConfig(image_size=image_size, max_episode_steps=100_000, terminate_on_success=False)
    )
    clips = {}
    try:
        for split, sessions in (("label_pool", cfg.label_sessions), ("heldout", cfg.test_sessions)):
            split_dir = os.path.join(folder, split)
            if os.path.isdir(split_dir):
                shutil.rmtree(split_dir)
            ensure_writable_dir(split_dir, "clip folder")
            counters = dict.fromkeys(TASK_NAMES, 0)
            clips[split] = []
            for session in range(sessions):
                clips[split].extend(record_session(env, cfg, split, session, split_dir, counters))
                if log:
                    log(f"recorded {split} session {session + 1}/{sessions}")
    finally:
        env.close()
    write_json_atomic(
        manifest_path,
        {
            "format": CLIPS_FORMAT,
            "version": 1,
            "complete": True,
            "settings": settings,
            "seconds": round(time.monotonic() - t0, 1),
            "clips": {s: [asdict(c) for c in clips[s]] for s in SPLITS},
        },
    )
    return folder, clips


def clip_summary(clips: Sequence[ClipInfo]) -> dict[str, Any]:
    """Counts per task: clips, successful clips, success and failure frames, scripted failures."""
    out: dict[str, Any] = {}
    for task in TASK_NAMES:
        own = [c for c in clips if c.task == task]
        flags = [c.flags() for c in own]
        out[task] = {
            "clips": len(own),
            "successful_clips": sum(c.onset is not None for c in own),
            "scripted_failures": sum(c.failure_mode is not None for c in own),
            "success_frames": int(sum(f.sum() for f in flags)),
            "failure_frames": int(sum((~f).sum() for f in flags)),
        }
    return out


# ------------------------------------------------------------------------------------ user labels
def label_orders(
    clips: Sequence[ClipInfo], task: str, hard_window: int, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Orders in which a user would label ``task``'s positives and negatives; prefixes are the label sets.

    Positives go round-robin over the successful clips (each clip's success frames in random order);
    negatives alternate between hard ones (the ``hard_window`` frames before a success onset) and
    the other failure frames of the task's clips.
    """
    rng = np.random.default_rng([seed, TASK_NAMES.index(task)])
    own = [c for c in clips if c.task == task]
    order = [own[i] for i in rng.permutation(len(own))]
    per_clip: list[list[tuple[str, int]]] = []
    hard: list[tuple[str, int]] = []
    easy: list[tuple[str, int]] = []
    for clip in order:
        flags = clip.flags()
        pos = np.flatnonzero(flags)
        if pos.size:
            per_clip.append([(clip.path, int(i)) for i in rng.permutation(pos)])
        near = set()
        if clip.onset is not None:
            near = {i for i in range(max(0, clip.onset - hard_window), clip.onset) if not flags[i]}
        for i in np.flatnonzero(~flags):
            (hard if int(i) in near else easy).append((clip.path, int(i)))
    positives: list[tuple[str, int]] = []
    while any(per_clip):
        for frames in per_clip:
            if frames:
                positives.append(frames.pop(0))
    hard = [hard[i] for i in rng.permutation(len(hard))]
    easy = [easy[i] for i in rng.permutation(len(easy))]
    negatives: list[tuple[str, int]] = []
    while hard or easy:
        for pool in (hard, easy):
            if pool:
                negatives.append(pool.pop(0))
    return positives, negatives


def select_labels(
    clips: Sequence[ClipInfo], positives: int, negatives_per_positive: int, hard_window: int, seed: int
) -> list[FrameLabel]:
    """``positives`` success and ``negatives_per_positive * positives`` failure labels per task."""
    labels: list[FrameLabel] = []
    for task in TASK_NAMES:
        pos, neg = label_orders(clips, task, hard_window, seed)
        n_neg = negatives_per_positive * positives
        if len(pos) < positives or len(neg) < n_neg:
            raise ClassifierBenchError(
                f"the label-pool clips hold {len(pos)} success and {len(neg)} failure frames of {task}; "
                f"{positives} and {n_neg} are needed: raise label_sessions or attempts_per_session"
            )
        labels += [FrameLabel(p, i, task, True) for p, i in pos[:positives]]
        labels += [FrameLabel(p, i, task, False) for p, i in neg[:n_neg]]
    return labels


# ------------------------------------------------------------------------------------------ data
def prepare_training_data(cfg: ClassifierBenchConfig, root: str) -> tuple[str, int]:
    """The prior/demo dataset (``cfg.data``, or generated once into ``root``) and its frame size."""
    if cfg.data is not None:
        if not os.path.isdir(cfg.data) or not list_episodes(cfg.data):
            raise ClassifierBenchError(f"data folder {cfg.data} holds no episodes")
        manifest = os.path.join(cfg.data, "dataset.json")
        size = cfg.image_size
        if os.path.isfile(manifest):
            with open(manifest, encoding="utf-8") as f:
                info = json.load(f)
            if info.get("complete") is False:
                raise ClassifierBenchError(f"{cfg.data} is incomplete (dataset.json says complete: false)")
            size = int(info.get("settings", {}).get("image_size", size))
        else:
            size = int(load_episode(list_episodes(cfg.data)[0]).frames.shape[1])
        return cfg.data, size
    from robofume.data.generate import GenerateConfig, generate_dataset

    gen = GenerateConfig(
        out="",
        demos_per_task=cfg.demos_per_task,
        failures_per_task=cfg.failures_per_task,
        prior=cfg.prior,
        image_size=cfg.image_size,
        max_episode_steps=cfg.max_episode_steps,
        seed=cfg.seed,
        workers=cfg.workers,
        resume=True,
    )
    settings = {k: v for k, v in asdict(gen).items() if k not in ("out", "workers", "resume")}
    out = os.path.join(root, f"data-{_settings_key(settings)}")
    manifest = os.path.join(out, "dataset.json")
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as f:
            if json.load(f).get("complete"):
                return out, cfg.image_size
    generate_dataset(replace(gen, out=out), progress=False)
    return out, cfg.image_size


def _target_frames(data: str, task: str, per_episode: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames and ground-truth flags of ``task``'s target demos and failures (for zero-shot calibration)."""
    frames, flags = [], []
    for kind in ("demos", "failures"):
        folder = os.path.join(data, kind)
        if not os.path.isdir(folder):
            continue
        for path in list_episodes(folder):
            if not os.path.basename(path).startswith(f"{task}_"):
                continue
            episode = load_episode(path)
            idx = subsample_indices(episode.success, per_episode)
            frames.append(episode.frames[idx])
            flags.append(episode.success[idx])
    if not frames:
        raise ClassifierBenchError(f"{data} has no target demos or failures of {task} to calibrate on")
    return np.concatenate(frames), np.concatenate(flags)


# -------------------------------------------------------------------------------------- accuracy
def _row_metrics(evaluation: dict[str, dict[str, Any]], training: dict[str, dict[str, Any]] | None) -> dict:
    tasks: dict[str, Any] = {}
    for task, m in evaluation.items():
        row = {
            key: m.get(key)
            for key in (
                "precision", "recall", "accuracy", "average_precision", "threshold",
                "confirmed_precision", "confirmed_recall", "episode_precision", "episode_recall",
                "positives", "negatives", "tp", "fp", "fn", "tn", "episodes",
            )
        }  # fmt: skip
        row["false_negative_rate"] = 1.0 - m["recall"] if m["positives"] else 0.0
        if training is not None and task in training:
            row["threshold_attainable"] = bool(training[task].get("attainable", False))
            row["threshold_source"] = training[task].get("source")
        tasks[task] = row
    return tasks


def oracle_threshold_metrics(
    classifier: SuccessClassifier, episodes: Sequence[str], target_precision: float
) -> dict[str, dict[str, Any]]:
    """Per task, the best recall at ``target_precision`` on ``episodes`` if the threshold were picked on them
    (0 when no threshold reaches it; ``oracle_precision`` is then the best precision there is).

    The frames and verdicts are those of :func:`reward_vlm.training.evaluate_classifier` (own task on
    every frame, success frames also as negatives of the other task). It separates what the features
    can do from how well the training's held-out frames calibrated the threshold.
    """
    scores: dict[str, list[np.ndarray]] = {t: [] for t in classifier.tasks}
    labels: dict[str, list[np.ndarray]] = {t: [] for t in classifier.tasks}
    for path in episodes:
        episode = load_episode(path)
        if episode.task not in classifier.tasks:
            continue
        feats = classifier.image_features(episode.frames)
        p = torch.sigmoid(classifier.logits_from_features(feats, episode.task)).cpu().numpy()
        scores[episode.task].append(p)
        labels[episode.task].append(episode.success)
        other = other_task(episode.task)
        if other in classifier.tasks and episode.success.any():
            mask = torch.from_numpy(episode.success).to(feats.device)
            q = torch.sigmoid(classifier.logits_from_features(feats[mask], other)).cpu().numpy()
            scores[other].append(q)
            labels[other].append(np.zeros(q.shape[0], dtype=bool))
    out: dict[str, dict[str, Any]] = {}
    for task in classifier.tasks:
        if not scores[task]:
            continue
        choice = select_threshold(
            np.concatenate(scores[task]), np.concatenate(labels[task]), target_precision
        )
        out[task] = {
            "oracle_precision": choice.precision,
            "oracle_recall": choice.recall if choice.attainable else 0.0,
            "oracle_attainable": choice.attainable,
        }
    return out


def _meets(tasks: dict[str, Any], cfg: ClassifierBenchConfig, prefix: str = "") -> bool:
    return all(
        (m[f"{prefix}precision"] or 0.0) >= cfg.target_precision
        and (m[f"{prefix}recall"] or 0.0) >= cfg.target_recall
        for m in tasks.values()
    )


def run_accuracy(
    cfg: ClassifierBenchConfig,
    out_dir: str,
    data: str,
    backbone: BackboneConfig,
    clip_dir: str,
    clips: dict[str, list[ClipInfo]],
    log: Any,
) -> list[dict[str, Any]]:
    """Zero-shot row, then one row per (method, positives): train, evaluate on the held-out clips."""
    pool_dir = os.path.join(clip_dir, "label_pool")
    test_paths = [os.path.join(clip_dir, "heldout", c.path) for c in clips["heldout"]]
    rows: list[dict[str, Any]] = []
    if cfg.zero_shot:
        t0 = time.monotonic()
        clf = SuccessClassifier.zero_shot(backbone)
        clf.confirm_frames = cfg.confirm_frames
        calibration = {}
        for task in clf.tasks:
            frames, flags = _target_frames(data, task, cfg.max_frames_per_episode)
            choice = clf.calibrate(task, frames, flags, cfg.target_precision)
            calibration[task] = {"attainable": choice.attainable, "source": "target demos+failures flags"}
        evaluation = evaluate_classifier(clf, test_paths, tolerance_frames=cfg.tolerance_frames)
        tasks = _row_metrics(evaluation, calibration)
        for task, extra in oracle_threshold_metrics(clf, test_paths, cfg.target_precision).items():
            tasks[task].update(extra)
        rows.append(
            {
                "method": "zero_shot",
                "positives": 0,
                "negatives": 0,
                "seconds": round(time.monotonic() - t0, 1),
                "meets_target": _meets(tasks, cfg),
                "tasks": tasks,
            }
        )
        log(f"zero-shot: {_short(tasks)}")
    for method in cfg.methods:
        for n in cfg.positives:
            run = os.path.join(out_dir, "runs", f"{method}_n{n:02d}")
            labels_path = None
            if n:
                labels = select_labels(
                    clips["label_pool"], n, cfg.negatives_per_positive, cfg.hard_negative_window, cfg.seed
                )
                ensure_writable_dir(run, "run folder")
                labels_path = os.path.join(run, "labels.json")
                save_labels(labels_path, labels)
            train_cfg = ClassifierTrainConfig(
                data=[data],
                out=run,
                labels=labels_path,
                labels_root=pool_dir if n else None,
                backbone=backbone,
                method=method,
                epochs=cfg.epochs,
                target_precision=cfg.target_precision,
                confirm_frames=cfg.confirm_frames,
                max_frames_per_episode=cfg.max_frames_per_episode,
                seed=cfg.seed,
                device="cpu",
            )
            t0 = time.monotonic()
            try:
                training = train_classifier(train_cfg, progress=lambda _info: None)
            except ClassifierConfigError as exc:
                raise ClassifierBenchError(f"{method}, {n} positives: {exc}") from None
            seconds = time.monotonic() - t0
            clf = SuccessClassifier.load(run)
            evaluation = evaluate_classifier(clf, test_paths, tolerance_frames=cfg.tolerance_frames)
            tasks = _row_metrics(evaluation, training)
            for task, extra in oracle_threshold_metrics(clf, test_paths, cfg.target_precision).items():
                tasks[task].update(extra)
            rows.append(
                {
                    "method": method,
                    "positives": n,
                    "negatives": n * cfg.negatives_per_positive,
                    "seconds": round(seconds, 1),
                    "meets_target": _meets(tasks, cfg),
                    "tasks": tasks,
                }
            )
            log(f"{method}, {n} positives/task ({seconds:.0f} s): {_short(tasks)}")
    return rows


def _short(tasks: dict[str, Any]) -> str:
    return "; ".join(
        f"{t} P {m['precision']:.2f} R {m['recall']:.2f} AP {m['average_precision']:.2f} "
        f"oracle R {m.get('oracle_recall', 0.0):.2f}"
        for t, m in tasks.items()
    )


def targets_summary(rows: Sequence[dict[str, Any]], cfg: ClassifierBenchConfig) -> dict[str, Any]:
    """Trained rows with at most ``max_target_positives`` positives that meet both targets on both tasks."""
    eligible = [r for r in rows if r["positives"] <= cfg.max_target_positives]

    def names(prefix: str) -> list[str]:
        return [f"{r['method']}@{r['positives']}" for r in eligible if _meets(r["tasks"], cfg, prefix)]

    frame, confirmed, episode = names(""), names("confirmed_"), names("episode_")
    return {
        "precision": cfg.target_precision,
        "recall": cfg.target_recall,
        "max_positives": cfg.max_target_positives,
        "met": bool(frame),
        "met_by": frame,
        "met_confirmed_by": confirmed,
        "met_episode_level_by": episode,
    }


# --------------------------------------------------------------------------------------- latency
def _latency_backbones(cfg: ClassifierBenchConfig, tiny_path: str | None) -> list[tuple[str, BackboneConfig]]:
    out: list[tuple[str, BackboneConfig]] = []
    for name in cfg.latency_models:
        if name == "default":
            out.append(
                ("open_clip ViT-B-32 @128 (default)", BackboneConfig(pretrained=None, allow_download=False))
            )
        elif name == "vit-b-32-224":
            out.append(
                (
                    "open_clip ViT-B-32 @224 (native)",
                    BackboneConfig(pretrained=None, image_size=224, allow_download=False),
                )
            )
        elif name == "tiny" and tiny_path:
            size = cfg.resolved_backbone_image_size() if not cfg.backbone_path else 64
            out.append(
                (f"tiny (3 blocks, width 96) @{size}", BackboneConfig(path=tiny_path, image_size=size))
            )
        elif name == "backbone_path" and cfg.backbone_path:
            size = cfg.resolved_backbone_image_size()
            out.append(
                (f"{cfg.backbone_path} @{size}", BackboneConfig(path=cfg.backbone_path, image_size=size))
            )
    return out


def time_classifier(
    clf: SuccessClassifier, frames: np.ndarray, batch: int, repeats: int, warmup: int
) -> dict[str, float]:
    """Wall time of ``predict_proba`` on ``batch`` frames: per call and per frame, median and p90 (ms).

    ``median_cpu_ms_per_frame`` is the process CPU time (all threads): on a shared machine it shows
    the compute apart from waiting for a core.
    """
    x = np.ascontiguousarray(frames[:batch])
    if x.shape[0] < batch:
        x = np.concatenate([x] * (batch // max(1, x.shape[0]) + 1))[:batch]
    for _ in range(warmup):
        clf.predict_proba(x, "forward")
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        clf.predict_proba(x, "forward")
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    median, p90 = statistics.median(times), float(np.percentile(times, 90))
    return {
        "median_ms_per_call": round(median, 2),
        "p90_ms_per_call": round(p90, 2),
        "median_ms_per_frame": round(median / batch, 2),
        "p90_ms_per_frame": round(p90 / batch, 2),
        "median_cpu_ms_per_frame": round(statistics.median(cpu) / batch, 2),
        "frames_per_s": round(1e3 * batch / median, 1),
        "repeats": repeats,
    }


def run_latency(
    cfg: ClassifierBenchConfig, tiny_path: str | None, frame_size: int, log: Any
) -> list[dict[str, Any]]:
    """Latency rows for each backbone x threads x batch (untrained head; the cost is the same); on
    CUDA one thread setting only. ``predict_proba`` returns host arrays, so a timed call includes the
    device's work."""
    try:
        device = resolve_device(cfg.latency_device)
    except ValueError as exc:
        raise ClassifierBenchError(f"latency_device: {exc}") from None
    thread_counts = cfg.latency_threads[:1] if device.type == "cuda" else cfg.latency_threads
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(cfg.seed)
    frames = rng.integers(0, 256, (max(cfg.latency_batches), frame_size, frame_size, 3), dtype=np.uint8)
    old_threads = torch.get_num_threads()
    try:
        for label, bcfg in _latency_backbones(cfg, tiny_path):
            try:
                backbone = load_backbone(bcfg)
            except BackboneError as exc:
                rows.append({"backbone": label, "error": str(exc)})
                continue
            head = TaskConditionedHead(backbone.embed_dim)
            clf = SuccessClassifier(
                backbone,
                head,
                {"type": "mlp", "hidden": 256, "layers": 2},
                default_task_texts(),
                {},
                bcfg,
                device=device,
            )
            params = sum(p.numel() for p in backbone.vision_tower().parameters())
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for batch in cfg.latency_batches:
                    repeats = cfg.latency_repeats if batch == 1 else max(3, cfg.latency_repeats // 4)
                    load = os.getloadavg()[0]
                    stats = time_classifier(clf, frames, batch, repeats, cfg.latency_warmup)
                    rows.append(
                        {
                            "backbone": label,
                            "image_size": backbone.image_size,
                            "vision_params_m": round(params / 1e6, 2),
                            "threads": threads,
                            "device": str(device),
                            "batch": batch,
                            "load_avg_1m": round(load, 2),
                            **stats,
                        }
                    )
                    log(
                        f"latency {label}, {threads} thread(s), batch {batch}: "
                        f"{stats['median_ms_per_frame']} ms/frame"
                    )
            del clf, backbone, head
    finally:
        torch.set_num_threads(old_threads)
    return rows


def latency_summary(rows: Sequence[dict[str, Any]], cfg: ClassifierBenchConfig) -> dict[str, Any]:
    """Does the default backbone keep up with the camera on one core (batch-1 p90 under the frame period)?"""
    budget = 1e3 / cfg.camera_hz
    default = [
        r
        for r in rows
        if "(default)" in r.get("backbone", "") and r.get("batch") == 1 and r.get("threads") == 1
    ]
    out: dict[str, Any] = {"camera_hz": cfg.camera_hz, "frame_budget_ms": round(budget, 1)}
    if default:
        out["default_batch1_p90_ms_1thread"] = default[0]["p90_ms_per_frame"]
        out["default_batch1_cpu_ms_1thread"] = default[0].get("median_cpu_ms_per_frame")
        out["load_avg_1m"] = default[0].get("load_avg_1m")
        out["default_keeps_up"] = default[0]["p90_ms_per_frame"] < budget
    else:
        out["default_keeps_up"] = None
    out["note"] = "the reward node runs on its own core (1 torch thread) while the learner uses the other"
    return out


# ----------------------------------------------------------------------------------------- output
def _defined_precision(m: dict[str, Any]) -> float:
    """Frame precision, NaN where the classifier never fired (precision undefined)."""
    return float("nan") if m["tp"] + m["fp"] == 0 else float(m["precision"])


def plot_accuracy(result: dict[str, Any], path: str) -> None:
    """Precision and recall vs. user-labelled positives, one panel per task (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["accuracy"]
    fig, axes = plt.subplots(1, len(TASK_NAMES), figsize=(10, 3.8), sharey=True)
    colours = dict(zip(METHODS, ("tab:blue", "tab:green", "tab:purple", "tab:brown"), strict=True))
    for ax, task in zip(axes, TASK_NAMES, strict=True):
        for method in [m for m in METHODS if any(r["method"] == m for r in rows)]:
            mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["positives"])
            x = [r["positives"] for r in mine]
            c = colours[method]
            precision = [_defined_precision(r["tasks"][task]) for r in mine]
            ax.plot(x, precision, "o-", color=c, label=f"{method} precision")
            ax.plot(x, [r["tasks"][task]["recall"] for r in mine], "s--", color=c, label=f"{method} recall")
            ax.plot(
                x, [r["tasks"][task]["episode_recall"] for r in mine], "^:", color=c, alpha=0.6,
                label=f"{method} episode recall",
            )  # fmt: skip
        for r in rows:
            if r["method"] == "zero_shot":
                ax.axhline(r["tasks"][task]["precision"], color="gray", lw=1, label="zero-shot precision")
        targets = result["targets"]
        ax.axhline(targets["precision"], color="red", lw=0.8, ls=":", label="precision target")
        ax.axhline(targets["recall"], color="orange", lw=0.8, ls=":", label="recall target")
        ax.set_title(f"{task} (held-out session clips)")
        ax.set_xticks(sorted({r["positives"] for r in rows}))
        ax.set_xlabel("user-labelled positives per task")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("frame-level metric")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(
        f"Success classifier vs. user labels ({result['backbone_weights']}); "
        "no precision point where it never fired",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    write_with(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def markdown_tables(result: dict[str, Any]) -> str:
    """The accuracy and latency tables as markdown rows (for docs/benchmarks.md); values in percent."""
    lines = [
        "| method | user labels per task (pos / neg) | forward P / R | backward P / R | FNR fwd / bwd "
        "| AP fwd / bwd | oracle R at target P, fwd / bwd | confirmed P / R, fwd; bwd "
        "| episode P / R, fwd; bwd |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.0f}"

    def pair(m: dict[str, Any], a: str, b: str) -> str:
        if a == "precision" and m["tp"] + m["fp"] == 0:
            return f"n/a / {pct(m.get(b))}"  # it never fired: no false positive, no true one either
        return f"{pct(m.get(a))} / {pct(m.get(b))}"

    for r in result["accuracy"]:
        f, b = r["tasks"]["forward"], r["tasks"]["backward"]
        lines.append(
            f"| {r['method']} | {r['positives']} / {r['negatives']} "
            f"| {pair(f, 'precision', 'recall')} | {pair(b, 'precision', 'recall')} "
            f"| {pct(f['false_negative_rate'])} / {pct(b['false_negative_rate'])} "
            f"| {pct(f['average_precision'])} / {pct(b['average_precision'])} "
            f"| {pct(f.get('oracle_recall'))} / {pct(b.get('oracle_recall'))} "
            f"| {pair(f, 'confirmed_precision', 'confirmed_recall')}; "
            f"{pair(b, 'confirmed_precision', 'confirmed_recall')} "
            f"| {pair(f, 'episode_precision', 'episode_recall')}; "
            f"{pair(b, 'episode_precision', 'episode_recall')} |"
        )
    t2 = ROBOFUME_TABLE2
    lines.append(
        "| RoboFuME Table II, 3 real tasks | – | P "
        + " / ".join(f"{100 * p:.1f}" for p in t2["precision"])
        + " | | FNR "
        + " / ".join(f"{100 * p:.1f}" for p in t2["false_negative_rate"])
        + " | | | | |"
    )
    lines += [
        "",
        "| backbone | threads | batch | median ms/frame | p90 ms/frame | CPU ms/frame | frames/s "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["latency"]:
        if "error" in r:
            lines.append(f"| {r['backbone']} | – | – | {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['backbone']} | {r['threads']} | {r['batch']} | {r['median_ms_per_frame']} "
            f"| {r['p90_ms_per_frame']} | {r.get('median_cpu_ms_per_frame', '–')} | {r['frames_per_s']} "
            f"| {r['load_avg_1m']} |"
        )
    return "\n".join(lines)


LATENCY_RESULT_FILE = "classifier_latency.json"


def run_classifier_latency_bench(cfg: ClassifierBenchConfig, out_dir: str) -> dict[str, Any]:
    """Latency rows only (no data, no training): each of ``cfg.latency_models`` on ``cfg.latency_device``
    at ``cfg.image_size`` camera frames; writes ``classifier_latency.json`` into ``out_dir``."""
    t_start = time.monotonic()
    out_dir = ensure_writable_dir(out_dir, "bench output folder")
    old_threads = torch.get_num_threads()

    def log(message: str) -> None:
        print(
            f"classifier latency [{time.monotonic() - t_start:5.0f} s] {message}", file=sys.stderr, flush=True
        )

    try:
        with tempfile.TemporaryDirectory() as tmp:
            tiny_path = None
            if "tiny" in cfg.latency_models:
                size = cfg.resolved_backbone_image_size() if cfg.backbone_path is None else 64
                tiny_path = os.path.join(tmp, f"tiny-backbone-{size}")
                build_tiny_backbone("open_clip", tiny_path, seed=cfg.seed, image_size=size)
            latency = run_latency(cfg, tiny_path, cfg.image_size, log)
    finally:
        torch.set_num_threads(old_threads)
    result: dict[str, Any] = {
        "bench": "classifier-latency",
        "preset": cfg.name,
        "device": str(resolve_device(cfg.latency_device)),
        "machine": {**machine_info(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "torch": torch.__version__,
        "frame_size": cfg.image_size,
        "latency": latency,
        "latency_summary": latency_summary(latency, cfg),
        "seconds": round(time.monotonic() - t_start, 1),
    }
    write_json_atomic(os.path.join(out_dir, LATENCY_RESULT_FILE), result)
    return result


def run_classifier_bench(cfg: ClassifierBenchConfig, out_dir: str) -> dict[str, Any]:
    """Run the bench, write ``classifier_bench.json`` and ``classifier_bench.png`` into ``out_dir``."""
    t_start = time.monotonic()
    out_dir = ensure_writable_dir(out_dir, "bench output folder")
    bench_data = ensure_writable_dir(os.path.join(out_dir, "bench_data"), "bench data folder")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)

    def log(message: str) -> None:
        print(
            f"classifier bench [{time.monotonic() - t_start:5.0f} s] {message}", file=sys.stderr, flush=True
        )

    try:
        data, frame_size = prepare_training_data(cfg, bench_data)
        log(f"training data: {data} ({frame_size} px)")
        clip_dir, clips = prepare_clips(cfg, bench_data, frame_size, log)
        used = episode_seeds(data)
        pool_seeds = {c.seed for c in clips["label_pool"]}
        test_seeds = {c.seed for c in clips["heldout"]}
        if test_seeds & (used | pool_seeds) or pool_seeds & used:
            raise ClassifierBenchError(
                f"session clip seeds overlap the training data's seeds; choose another seed (now {cfg.seed})"
            )
        tiny_path = None
        if cfg.backbone_path is None or "tiny" in cfg.latency_models:
            size = cfg.resolved_backbone_image_size() if cfg.backbone_path is None else 64
            tiny_path = os.path.join(bench_data, f"tiny-backbone-s{cfg.seed}-{size}")
            if not os.path.isfile(os.path.join(tiny_path, "backbone.json")):
                build_tiny_backbone("open_clip", tiny_path, seed=cfg.seed, image_size=size)
        if cfg.backbone_path is None:
            backbone = BackboneConfig(
                model="tiny-open-clip",
                pretrained=None,
                path=tiny_path,
                image_size=cfg.resolved_backbone_image_size(),
            )
            weights = "random-init tiny (offline)"
        else:
            try:
                meta = read_backbone_meta(cfg.backbone_path)
            except BackboneError as exc:
                raise ClassifierBenchError(str(exc)) from None
            backbone = BackboneConfig(
                backend=meta["backend"],
                model=str(meta.get("model")),
                pretrained=meta.get("pretrained"),
                path=cfg.backbone_path,
                image_size=cfg.resolved_backbone_image_size(),
            )
            weights = f"{meta.get('model')} ({meta.get('pretrained') or 'weights from folder'})"
        rows = run_accuracy(cfg, out_dir, data, backbone, clip_dir, clips, log)
        latency = run_latency(cfg, tiny_path, frame_size, log)
    finally:
        torch.set_num_threads(old_threads)
    result: dict[str, Any] = {
        "bench": "classifier",
        "preset": cfg.name,
        "machine": {**machine_info(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "torch": torch.__version__,
        "config": {**asdict(cfg), "resolved_backbone_image_size": cfg.resolved_backbone_image_size()},
        "backbone": backbone.to_dict(),
        "backbone_weights": weights,
        "data": {
            "training": os.path.abspath(data),
            "frame_size": frame_size,
            "clips": os.path.abspath(clip_dir),
            "label_pool": clip_summary(clips["label_pool"]),
            "heldout": clip_summary(clips["heldout"]),
            "seeds_disjoint": True,
        },
        "accuracy": rows,
        "targets": targets_summary([r for r in rows if r["method"] != "zero_shot"], cfg),
        "latency": latency,
        "latency_summary": latency_summary(latency, cfg),
        "robofume_table2": ROBOFUME_TABLE2,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    plot_path = os.path.join(out_dir, PLOT_FILE)
    plot_accuracy(result, plot_path)
    result["plot"] = os.path.abspath(plot_path)
    write_json_atomic(os.path.join(out_dir, RESULT_FILE), result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``robofume bench classifier`` calls :func:`run_classifier_bench`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["quick", "full"], default="full")
    p.add_argument("--out", default="outputs/bench_classifier")
    p.add_argument("--data", default=None, help="existing prior/demo dataset (default: generate one)")
    p.add_argument("--backbone-path", default=None, help="exported backbone folder (default: tiny random)")
    p.add_argument("--methods", default=None, help="comma-separated, e.g. probe,last_blocks")
    p.add_argument("--markdown", action="store_true", help="also print the markdown tables to stderr")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = ClassifierBenchConfig.preset(
            args.preset,
            data=args.data,
            backbone_path=args.backbone_path,
            methods=tuple(m.strip() for m in args.methods.split(",")) if args.methods else None,
        )
        result = run_classifier_bench(cfg, args.out)
    except (ClassifierBenchError, BackboneError, EpisodeFormatError, OSError) as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        return 1
    if args.markdown:
        print(markdown_tables(result), file=sys.stderr)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ClassifierBenchConfig",
    "ClassifierBenchError",
    "ClipInfo",
    "markdown_tables",
    "prepare_clips",
    "record_attempt",
    "record_session",
    "run_classifier_bench",
    "select_labels",
]
