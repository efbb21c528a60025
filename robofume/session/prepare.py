"""The session's preparation stages, each done once and cached in the session folder.

1. data: scripted demos, failures and prior data on the mock (``robofume data generate``);
2. labels: on the mock, auto-labels from the scripted data stand in for the user's, written to the
   same label file the labeling tool writes (``robofume label``);
3. classifier: the success classifier trained from the data's flags plus those labels;
4. pretrain: offline Cal-QL pre-training, which publishes weight version 1 for the policy server.

A stage is skipped when its marker ``<out>/.stages/<stage>.json`` holds the same settings as now;
changing a setting redoes that stage and the ones after it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np

from robofume.atomic_io import write_json_atomic
from robofume.session.config import SessionConfig, SessionConfigError, mock_scene_seed

Log = Callable[[str], None]


def _marker(cfg: SessionConfig, stage: str) -> str:
    return os.path.join(cfg.out, ".stages", f"{stage}.json")


_PATH_KEYS = ("data", "labels")
"""Stage settings that are paths: kept relative to the session folder when inside it."""


def _portable(cfg: SessionConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with paths inside the session folder made relative to it, so that a session
    folder copied or moved elsewhere keeps its cached stages (markers written before this held
    absolute paths; one inside the same folder still matches)."""
    out = os.path.abspath(cfg.out)
    result = json.loads(json.dumps(settings))
    for key in _PATH_KEYS:
        value = result.get(key)
        if isinstance(value, str) and value:
            full = os.path.abspath(os.path.join(out, value))
            if os.path.commonpath([full, out]) == out:
                result[key] = os.path.relpath(full, out)
    return result


def _is_done(cfg: SessionConfig, stage: str, settings: dict[str, Any]) -> bool:
    try:
        with open(_marker(cfg, stage), encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(stored, dict) and _portable(cfg, stored) == _portable(cfg, settings)


def _mark_done(cfg: SessionConfig, stage: str, settings: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(_marker(cfg, stage)), exist_ok=True)
    write_json_atomic(_marker(cfg, stage), _portable(cfg, settings))


def _forget(cfg: SessionConfig, *stages: str) -> None:
    for stage in stages:
        if os.path.exists(_marker(cfg, stage)):
            os.unlink(_marker(cfg, stage))


def check_session_folder(out: str) -> None:
    """Refuse an ``out`` that holds other files: the stages delete its ``data/`` and ``run/`` and write
    over its ``labels.json``. A new or empty folder, or one an earlier session made, is fine."""
    if not os.path.isdir(out) or not os.listdir(out):
        return
    if any(os.path.exists(os.path.join(out, name)) for name in ("session_config.json", ".stages")):
        return
    raise SessionConfigError(
        f"--out {out} holds files but is not a session folder (no session_config.json); "
        "choose a new or empty folder"
    )


# --- 1. data ---------------------------------------------------------------------------------------


def ensure_data(cfg: SessionConfig, log: Log = print) -> str:
    """Generate the mock dataset once (resuming an interrupted one); a given ``--data`` is used as is."""
    from robofume.data.episode_format import list_episodes
    from robofume.data.generate import (
        GenerateConfig,
        changed_settings,
        generate_dataset,
        mock_env_settings,
        read_env_settings,
    )

    if cfg.data:
        if not list_episodes(cfg.data):
            raise FileNotFoundError(f"no episode files under {cfg.data}")
        return cfg.data
    env_settings = mock_env_settings()
    settings = {**dataclasses.asdict(cfg.data_stage), "mock_env": env_settings}
    if not cfg.data_stage.recovery_demos:  # data cached before the setting existed stays valid
        del settings["recovery_demos"], settings["recovery_region"]  # (no recovery demos: no region)
    elif cfg.data_stage.recovery_region == "between":  # likewise: the region's first and default value
        del settings["recovery_region"]
    if _is_done(cfg, "data", settings):
        log(f"data: cached in {cfg.data_dir}")
        return cfg.data_dir
    _forget(cfg, "data", "labels", "classifier", "pretrain")
    d = cfg.data_stage
    gen = GenerateConfig(
        out=cfg.data_dir,
        demos_per_task=d.demos_per_task,
        failures_per_task=d.failures_per_task,
        prior=d.prior,
        image_size=d.image_size,
        max_episode_steps=d.max_episode_steps,
        seed=d.seed,
        layout_seed=mock_scene_seed(cfg) if d.at_workstation else None,
        recovery_demos=d.recovery_demos,
        recovery_region=d.recovery_region,
        workers=d.workers,
    )
    made_with = read_env_settings(cfg.data_dir)
    changed = changed_settings(cfg.data_dir, gen)
    if made_with is not None and made_with != env_settings:
        # the live mock arm would look, or start its scenes, differently from the data the policy learnt on
        log(
            f"data: {cfg.data_dir} was made with {made_with}, the mock arm now uses {env_settings}; "
            "generating it again"
        )
        shutil.rmtree(cfg.data_dir)
    elif changed:  # the session's own cache: episodes of other settings must not mix with new ones
        made = ", ".join(f"{k} {v}" for k, v in changed.items())
        log(f"data: {cfg.data_dir} was made with {made}; generating it again")
        shutil.rmtree(cfg.data_dir)
    resume = os.path.exists(os.path.join(cfg.data_dir, "dataset.json"))
    if os.path.isdir(cfg.data_dir) and not resume:
        shutil.rmtree(cfg.data_dir)  # an aborted first attempt left no manifest: nothing to keep
    log(f"data: generating scripted episodes into {cfg.data_dir}")
    generate_dataset(dataclasses.replace(gen, resume=resume))
    _mark_done(cfg, "data", settings)
    return cfg.data_dir


# --- 2. labels -------------------------------------------------------------------------------------


def auto_labels(data_dir: str, positives_per_task: int, seed: int = 0) -> list[Any]:
    """Stand-in user labels from scripted demos: ``positives_per_task`` success frames per task, and
    twice as many failure frames (early frames of demos and frames of failed attempts)."""
    from reward_vlm.labels import FrameLabel
    from robofume.data.episode_format import list_episodes, load_episode

    rng = np.random.default_rng(seed)
    labels: list[FrameLabel] = []
    for kind in ("demos", "failures"):
        for path in list_episodes(data_dir, kind):
            episode = load_episode(path)
            rel = os.path.relpath(path, data_dir).replace(os.sep, "/")
            success = np.asarray(episode.success)
            for i in np.flatnonzero(success)[-2:]:  # the last success frames of each demo
                labels.append(FrameLabel(rel, int(i), episode.task, True))
            failures = np.flatnonzero(~success)
            for i in rng.choice(failures, size=min(4, len(failures)), replace=False):
                labels.append(FrameLabel(rel, int(i), episode.task, False))
    out: list[FrameLabel] = []
    for task in ("forward", "backward"):
        pos = [x for x in labels if x.task == task and x.success]
        neg = [x for x in labels if x.task == task and not x.success]
        rng.shuffle(pos)  # type: ignore[arg-type]
        rng.shuffle(neg)  # type: ignore[arg-type]
        out += pos[:positives_per_task] + neg[: 2 * positives_per_task]
    return out


def ensure_labels(cfg: SessionConfig, data_dir: str, log: Log = print) -> str:
    """The label file: the user's (``--labels``), or auto-labels on the mock, saved once."""
    from reward_vlm.labels import (
        check_labels_against,
        label_counts,
        load_labels,
        require_label_file,
        save_labels,
    )

    if cfg.labels:
        labels = load_labels(require_label_file(cfg.labels))
        check_labels_against(data_dir, labels)
        log(f"labels: {label_counts(labels)} from {cfg.labels}")
        return cfg.labels
    settings = {"positives": cfg.classifier.auto_label_positives, "seed": cfg.seed}
    if _is_done(cfg, "labels", settings) and os.path.exists(cfg.labels_path):
        return cfg.labels_path
    _forget(cfg, "labels", "classifier")
    labels = auto_labels(data_dir, cfg.classifier.auto_label_positives, cfg.seed)
    save_labels(cfg.labels_path, labels)
    log(f"labels: auto-labelled {label_counts(labels)} -> {cfg.labels_path}")
    _mark_done(cfg, "labels", settings)
    return cfg.labels_path


# --- 3. classifier ---------------------------------------------------------------------------------


def _backbone_config(cfg: SessionConfig) -> Any:
    from reward_vlm.backbones import BackboneConfig, build_tiny_backbone

    c = cfg.classifier
    path = c.backbone_path
    if path is None and cfg.robot == "mock" and c.offline_tiny_backbone:
        path = os.path.join(cfg.out, "tiny_backbone", c.backend)
        if not os.path.exists(os.path.join(path, "backbone.json")):
            build_tiny_backbone(c.backend, path, seed=cfg.seed)
    return BackboneConfig(
        backend=c.backend, model=c.model, pretrained=c.pretrained, path=path, image_size=c.image_size
    )


def ensure_classifier(
    cfg: SessionConfig, data_dir: str, labels_path: str, log: Log = print
) -> dict[str, Any]:
    """Train the success classifier once; returns its held-out metrics per task."""
    from reward_vlm.training import ClassifierTrainConfig, train_classifier

    c = cfg.classifier
    settings = {**dataclasses.asdict(c), "data": data_dir, "labels": labels_path, "seed": cfg.seed}
    metrics_path = os.path.join(cfg.classifier_dir, "metrics.json")
    if _is_done(cfg, "classifier", settings) and os.path.exists(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
            return json.load(f)
    _forget(cfg, "classifier")
    train_cfg = ClassifierTrainConfig(
        data=[data_dir],
        out=cfg.classifier_dir,
        labels=labels_path,
        labels_root=data_dir,
        backbone=_backbone_config(cfg),
        method=c.method,
        epochs=c.epochs,
        target_precision=c.target_precision,
        confirm_frames=c.confirm_frames,
        seed=cfg.seed,
        device="cpu" if cfg.device == "auto" else cfg.device,
    )
    log(f"classifier: training ({c.method}, {c.backend}) into {cfg.classifier_dir}")
    metrics = train_classifier(train_cfg)
    write_json_atomic(metrics_path, metrics)
    _mark_done(cfg, "classifier", settings)
    return metrics


def weak_classifier_tasks(cfg: SessionConfig, metrics: dict[str, Any]) -> dict[str, float]:
    """Tasks whose held-out precision (at the chosen threshold) is below ``classifier.min_precision``,
    with that precision; a task without a measured precision counts as weak (precision 0)."""
    weak = {}
    for task, m in sorted(metrics.items()):
        if not isinstance(m, dict):
            continue
        precision = m.get("precision")
        value = float(precision) if isinstance(precision, (int, float)) else 0.0
        if value < cfg.classifier.min_precision:
            weak[task] = value
    return weak


def check_classifier(cfg: SessionConfig, metrics: dict[str, Any], log: Log = print) -> str:
    """Refuse (real robot) or warn (mock) when the classifier is too weak to reward from.

    Returns the warning ("" when the classifier passes); raises :class:`SessionConfigError` with one
    line on a real robot unless ``classifier.allow_weak`` is set."""
    weak = weak_classifier_tasks(cfg, metrics)
    if not weak:
        return ""
    found = ", ".join(f"{task} {value:.3f}" for task, value in weak.items())
    message = (
        f"the success classifier's held-out precision ({found}) is below min_precision "
        f"{cfg.classifier.min_precision}: most of its successes would be false, and the policy would "
        "learn from wrong rewards"
    )
    if cfg.robot == "real" and not cfg.classifier.allow_weak:
        raise SessionConfigError(
            f"{message}; label more successes and failures (robofume label), use a pretrained backbone, "
            "or pass --allow-weak-classifier"
        )
    hint = (
        ""
        if cfg.robot == "real"
        else "; on the mock, --reward ground-truth shows the RL with a perfect reward"
    )
    warning = f"WARNING: {message}{hint}"
    log(warning)
    return warning


# --- 4. pre-training -------------------------------------------------------------------------------


def ensure_pretrained(cfg: SessionConfig, data_dir: str, log: Log = print) -> dict[str, Any]:
    """Offline pre-training once: the run folder's buffer holds the offline data, weights v1 published."""
    from policy_server.learner import Learner, LearnerConfig, write_resolved_config
    from policy_server.networks import NetworkConfig
    from policy_server.replay_buffer import BufferSpec, ReplayBuffer
    from robofume.data.episode_format import list_episodes, load_episode

    p = cfg.pretrain
    settings = {**dataclasses.asdict(p), "data": data_dir, "recipe": cfg.online.recipe, "seed": cfg.seed}
    settings["warmup"] = cfg.online.wsrl_warmup_transitions
    if _is_done(cfg, "pretrain", settings):
        log(f"pretrain: cached in {cfg.run_dir}")
        with open(os.path.join(cfg.run_dir, "pretrain.json"), encoding="utf-8") as f:
            return json.load(f)
    if os.path.isdir(cfg.run_dir):
        shutil.rmtree(cfg.run_dir)  # settings changed or an earlier attempt died: start the run afresh
    files = list_episodes(data_dir)
    first = load_episode(files[0])
    learner_cfg = LearnerConfig(
        recipe=cfg.online.recipe,
        batch_size=p.batch_size,
        pretrain_steps=p.steps,
        bc_warmup_steps=p.bc_steps,
        bc_average_tau=p.bc_average_tau,
        wsrl_warmup_transitions=cfg.online.wsrl_warmup_transitions,
        seed=cfg.seed,
        network=NetworkConfig(image_size=p.image_size),
    )
    spec = BufferSpec(
        first.frames.shape[1:3], first.proprio.shape[1], first.actions.shape[1], learner_cfg.agent.gamma
    )
    buffer = ReplayBuffer(os.path.join(cfg.run_dir, "buffer"), spec)
    try:
        from tqdm import tqdm

        for path in tqdm(files, desc="loading episodes", unit="ep"):
            buffer.add_episode_file(path)
        buffer.flush()
        write_resolved_config(cfg.run_dir, learner_cfg)
        learner = Learner(learner_cfg, cfg.run_dir, buffer, device=cfg.device)
        log(f"pretrain: {p.bc_steps} BC warm-up + {p.steps} Cal-QL steps into {cfg.run_dir}")
        metrics = learner.pretrain(p.steps, bc_steps=p.bc_steps)
        learner.close()
    finally:
        buffer.close()
    result = {"counters": learner.counters, "last_metrics": metrics}
    write_json_atomic(
        os.path.join(cfg.run_dir, "pretrain.json"), json.loads(json.dumps(result, default=float))
    )
    _mark_done(cfg, "pretrain", settings)
    return result
