"""Scripted data for pre-training: target-task demos, failures and Bridge-style prior data.

``robofume data generate --out data/mock`` writes::

    data/mock/dataset.json                 manifest (format, counts, settings)
    data/mock/demos/<task>_000000.npz      successful scripted demos of the target tasks
    data/mock/failures/<task>_000000.npz   failed attempts at the target tasks (labelled by ground truth)
    data/mock/prior/<task>_000000.npz      related tasks: other objects, targets and placements

Every episode is written atomically; an interrupted run is continued with ``--resume``, which
regenerates exactly the missing episodes (each episode's seed depends only on its name).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from typing import Any

import numpy as np
from tqdm import tqdm

from robofume.atomic_io import ensure_writable_dir, write_json_atomic
from robofume.data.episode_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    EpisodeFormatError,
    load_episode,
    save_episode,
)
from robofume.data.rollout import record_episode
from robofume.sim.mock_arm_env import LEGACY_OBJECT_SPREAD, LEGACY_TRAY_HEIGHT, MockArmConfig, MockArmEnv
from robofume.sim.scene import SceneVariant
from robofume.sim.scripted_expert import FAILURE_MODES, ScriptedExpert
from robofume.sim.tasks import TASK_NAMES, instruction

KINDS: tuple[str, ...] = ("demos", "failures", "prior")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
_RECOVERY_CODE = len(KINDS)  # recovery demos draw their seeds apart from every kind
_MAX_ATTEMPTS = 6

COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.15, 0.15, 1.0),
    "yellow": (0.9, 0.8, 0.1, 1.0),
    "purple": (0.55, 0.2, 0.7, 1.0),
    "orange": (0.95, 0.5, 0.1, 1.0),
    "blue": (0.15, 0.35, 0.85, 1.0),
    "gray": (0.5, 0.5, 0.52, 1.0),
    "pink": (0.95, 0.55, 0.7, 1.0),
}

TARGET_VARIANT = SceneVariant()
"""The scene of the target task: a red cube and a blue bin."""


@dataclass(frozen=True)
class PriorScene:
    """One related-but-different scene of the prior data, with its wording."""

    object_color: str
    object_shape: str
    object_half_size: float
    target_color: str
    target_kind: str

    def variant(self) -> SceneVariant:
        """The scene variant this prior scene compiles to."""
        return SceneVariant(
            object_shape=self.object_shape,
            object_half_size=self.object_half_size,
            object_rgba=COLORS[self.object_color],
            target_kind=self.target_kind,
            target_rgba=COLORS[self.target_color],
        )

    def words(self) -> tuple[str, str]:
        """Object and target descriptions for the instruction text."""
        size = "small " if self.object_half_size < 0.02 else ("big " if self.object_half_size > 0.02 else "")
        return f"{size}{self.object_color} {self.object_shape}", f"{self.target_color} {self.target_kind}"


PRIOR_SCENES: tuple[PriorScene, ...] = (
    PriorScene("yellow", "cube", 0.02, "gray", "bin"),
    PriorScene("purple", "cylinder", 0.02, "blue", "bin"),
    PriorScene("orange", "cube", 0.017, "pink", "plate"),
    PriorScene("red", "cylinder", 0.018, "gray", "plate"),
    PriorScene("yellow", "cylinder", 0.022, "pink", "bin"),
    PriorScene("purple", "cube", 0.024, "blue", "plate"),
    PriorScene("orange", "cylinder", 0.02, "blue", "bin"),
    PriorScene("red", "cube", 0.02, "pink", "plate"),
)
"""Eight scenes that differ from the target scene in object, target or both."""


RECOVERY_REGIONS: tuple[str, ...] = ("between", "table")
"""Where recovery demos can start (``GenerateConfig.recovery_region``)."""


@dataclass(frozen=True)
class GenerateConfig:
    """What ``robofume data generate`` writes."""

    out: str
    demos_per_task: int = 20
    failures_per_task: int = 10
    prior: int = 300
    image_size: int = 128
    max_episode_steps: int = 100
    demo_noise: float = 0.1
    prior_noise_max: float = 0.3
    seed: int = 0
    layout_seed: int | None = None
    """Target-scene episodes (demos, failures) all in the workstation layout of this seed (see the
    mock's ``layout_seed`` reset option), as a user records demos at the robot's own workstation;
    None: each episode draws its own layout. Prior episodes always draw their own."""
    recovery_demos: int = 0
    """Extra demos per task that start with the object on the table outside the start square and the
    bin (where ``recovery_region`` says: the mock's ``object_in``), where failed grasps and drops
    leave it in a reset-free stream, and finish the task from there (forward: into the bin; backward:
    back to the square); files ``demos/<task>_recovery_*.npz``."""
    recovery_region: str = "between"
    """Where recovery demos start (the mock's ``object_in``): ``between`` (the strip from the start
    square to the bin, ±``BETWEEN_ACROSS`` to its sides) or ``table`` (anywhere on the table the
    gripper reaches, outside the square and the bin)."""
    workers: int = 2
    resume: bool = False

    def __post_init__(self) -> None:
        for name in ("demos_per_task", "failures_per_task", "prior", "recovery_demos"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.recovery_region not in RECOVERY_REGIONS:
            raise ValueError(
                f"recovery_region must be one of {', '.join(RECOVERY_REGIONS)}, got {self.recovery_region!r}"
            )
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not self.demo_noise >= 0:
            raise ValueError(f"demo_noise must be >= 0, got {self.demo_noise}")
        if self.layout_seed is not None and self.layout_seed < 0:
            raise ValueError(f"layout_seed must be >= 0, got {self.layout_seed}")
        MockArmConfig(image_size=self.image_size, max_episode_steps=self.max_episode_steps)


@dataclass(frozen=True)
class EpisodeJob:
    """One episode to make: everything a worker needs, so that results do not depend on scheduling."""

    kind: str
    task: str
    index: int
    path: str
    seed: int
    scene: int  # index into PRIOR_SCENES, or -1 for the target scene
    swap_sides: bool
    noise: float
    failure_mode: str | None
    layout_seed: int | None = None
    object_in: str | None = None
    """Where a fresh scene puts the object (the mock's ``object_in`` reset option); None: where the
    task starts."""


def plan_jobs(cfg: GenerateConfig) -> list[EpisodeJob]:
    """All episodes of a dataset, each with its own seed derived from (seed, kind, task, index)."""
    jobs: list[EpisodeJob] = []

    def seed_of(kind: str, task: str, index: int) -> int:
        return int(
            np.random.SeedSequence(
                [cfg.seed, _KIND_CODE[kind], TASK_NAMES.index(task), index]
            ).generate_state(1)[0]
        )

    for task in TASK_NAMES:
        for i in range(cfg.demos_per_task):
            s = seed_of("demos", task, i)
            jobs.append(
                EpisodeJob(
                    "demos",
                    task,
                    i,
                    _path(cfg.out, "demos", task, i),
                    s,
                    -1,
                    False,
                    cfg.demo_noise,
                    None,
                    cfg.layout_seed,
                )
            )
        for i in range(cfg.failures_per_task):
            s = seed_of("failures", task, i)
            jobs.append(
                EpisodeJob(
                    "failures",
                    task,
                    i,
                    _path(cfg.out, "failures", task, i),
                    s,
                    -1,
                    False,
                    cfg.demo_noise,
                    FAILURE_MODES[i % len(FAILURE_MODES)],
                    cfg.layout_seed,
                )
            )
    for task in TASK_NAMES:
        for i in range(cfg.recovery_demos):
            seq = np.random.SeedSequence([cfg.seed, _RECOVERY_CODE, TASK_NAMES.index(task), i])
            path = os.path.join(cfg.out, "demos", f"{task}_recovery_{i:06d}.npz")
            jobs.append(EpisodeJob("demos", task, i, path, int(seq.generate_state(1)[0]), -1, False,
                                   cfg.demo_noise, None, cfg.layout_seed, cfg.recovery_region))  # fmt: skip
    for i in range(cfg.prior):
        task = TASK_NAMES[i % 2]
        s = seed_of("prior", task, i)
        rng = np.random.default_rng(s)
        jobs.append(
            EpisodeJob(
                "prior",
                task,
                i,
                _path(cfg.out, "prior", task, i),
                s,
                int(rng.integers(len(PRIOR_SCENES))),
                bool(rng.random() < 0.5),
                float(rng.uniform(0.0, cfg.prior_noise_max)),
                None,
            )
        )
    return jobs


def _path(out: str, kind: str, task: str, index: int) -> str:
    return os.path.join(out, kind, f"{task}_{index:06d}.npz")


def _is_complete(path: str) -> bool:
    """True for a loadable episode; a damaged one is moved aside (kept, never deleted) and redone."""
    if not os.path.exists(path):
        return False
    try:
        load_episode(path)
    except EpisodeFormatError as exc:
        aside = f"{path}.corrupt-{time.strftime('%Y%m%d%H%M%S')}"
        os.replace(path, aside)
        print(f"robofume: {exc}; kept as {aside} and regenerating", file=sys.stderr)
        return False
    return True


_ENV_CACHE: dict[tuple, MockArmEnv] = {}


def close_cached_envs() -> None:
    """Close the envs this process keeps between jobs (frees their GL contexts before exit)."""
    for env in _ENV_CACHE.values():
        env.close()
    _ENV_CACHE.clear()


def _env_for(job: EpisodeJob, image_size: int, max_steps: int) -> MockArmEnv:
    key = (job.scene, job.swap_sides, image_size, max_steps)
    if key not in _ENV_CACHE:
        close_cached_envs()
        variant = TARGET_VARIANT if job.scene < 0 else PRIOR_SCENES[job.scene].variant()
        cfg = MockArmConfig(image_size=image_size, max_episode_steps=max_steps, variant=variant)
        if job.swap_sides:
            cfg = replace(
                cfg,
                target_xy_low=cfg.start_xy_low,
                target_xy_high=cfg.start_xy_high,
                start_xy_low=cfg.target_xy_low,
                start_xy_high=cfg.target_xy_high,
            )
        _ENV_CACHE[key] = MockArmEnv(cfg)
    return _ENV_CACHE[key]


def run_job(job: EpisodeJob, image_size: int, max_steps: int) -> dict:
    """Make one episode and write it; demos retry until they succeed, failures until they fail."""
    env = _env_for(job, image_size, max_steps)
    if job.scene < 0:
        obj_desc, target_desc = "red cube", "blue bin"
    else:
        obj_desc, target_desc = PRIOR_SCENES[job.scene].words()
    episode = None
    for attempt in range(_MAX_ATTEMPTS):
        seed = job.seed + attempt
        rng = np.random.default_rng(seed)
        options: dict = {"task": job.task}
        if job.layout_seed is not None:
            options["layout_seed"] = job.layout_seed
        if job.object_in is not None:
            options["object_in"] = job.object_in
        env.reset(seed=seed, options=options)
        expert = ScriptedExpert(env, noise_std=job.noise, failure_mode=job.failure_mode, rng=rng)  # type: ignore[arg-type]
        episode = record_episode(
            env,
            lambda _obs, e=expert: e.act(),
            job.task,
            keep_scene=True,
            metadata={
                "kind": job.kind,
                "seed": seed,
                "instruction": instruction(job.task, obj_desc, target_desc),
                "expert": {"noise_std": job.noise, "failure_mode": job.failure_mode},
                "scene": "target" if job.scene < 0 else asdict(PRIOR_SCENES[job.scene]),
                "swap_sides": job.swap_sides,
                "layout_seed": job.layout_seed,
                **({"object_in": job.object_in} if job.object_in else {}),
            },
        )
        wanted = {"demos": True, "failures": False}.get(job.kind)
        if wanted is None or episode.succeeded == wanted:
            break
    assert episode is not None
    save_episode(job.path, episode)
    return {"kind": job.kind, "task": job.task, "success": episode.succeeded, "steps": episode.num_steps}


def _run_all(jobs: list[EpisodeJob], cfg: GenerateConfig) -> Iterator[dict]:
    if cfg.workers == 1 or len(jobs) <= 1:
        try:
            for job in jobs:
                yield run_job(job, cfg.image_size, cfg.max_episode_steps)
        finally:
            close_cached_envs()
        return
    # Group by scene so that each worker compiles few models; spawn keeps EGL contexts per process.
    ordered = sorted(jobs, key=lambda j: (j.scene, j.swap_sides))
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, j, cfg.image_size, cfg.max_episode_steps) for j in ordered]
        for fut in as_completed(futures):
            yield fut.result()


def mock_env_settings() -> dict[str, float]:
    """How the mock arm renders and draws fresh scenes, recorded in the manifest: a dataset's frames
    must all match the camera the policy will see, and its starts the scenes the policy will meet."""
    cfg = MockArmConfig()
    return {
        "visual_max_faces": cfg.visual_max_faces,
        "start_spread": cfg.start_spread,
        "target_spread": cfg.target_spread,
        "tray_height": cfg.tray_height,
    }


def _read_manifest(out: str) -> dict[str, Any] | None:
    """``out``'s manifest, or None when it is missing, unreadable or not a JSON object."""
    try:
        with open(os.path.join(out, "dataset.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def read_env_settings(out: str) -> dict[str, float] | None:
    """The mock arm settings in ``out``'s manifest; None without a readable manifest. Manifests from
    before they were recorded rendered the original meshes (``visual_max_faces`` 0) and drew objects
    within ``LEGACY_OBJECT_SPREAD`` of each centre; those from before 2026-12-02 had no tray
    (``LEGACY_TRAY_HEIGHT``)."""
    manifest = _read_manifest(out)
    if manifest is None:
        return None
    camera = manifest.get("mock_camera", {"visual_max_faces": 0})
    legacy = {
        "start_spread": LEGACY_OBJECT_SPREAD,
        "target_spread": LEGACY_OBJECT_SPREAD,
        "tray_height": LEGACY_TRAY_HEIGHT,
    }
    return {**camera, **legacy, **manifest.get("mock_scene", {})}


EPISODE_SETTINGS: tuple[str, ...] = (
    "image_size",
    "max_episode_steps",
    "demo_noise",
    "prior_noise_max",
    "seed",
    "layout_seed",
    "recovery_region",
)
"""Settings that shape every episode: a resumed dataset must keep them (the counts may grow)."""


def changed_settings(out: str, cfg: GenerateConfig) -> dict[str, object]:
    """Episode settings in ``out``'s manifest that differ from ``cfg``, with their recorded values;
    empty without a readable manifest."""
    made = (_read_manifest(out) or {}).get("settings", {})
    if not isinstance(made, dict):
        return {}
    if made.get("recovery_demos"):  # recovery demos made before the setting existed started "between"
        made = {"recovery_region": "between", **made}
    else:  # none made yet: any region may be added
        made = {k: v for k, v in made.items() if k != "recovery_region"}
    return {k: made[k] for k in EPISODE_SETTINGS if k in made and made[k] != getattr(cfg, k)}


def generate_dataset(cfg: GenerateConfig, progress: bool = True) -> dict:
    """Write the dataset described by ``cfg``; return the manifest. Never overwrites a finished episode."""
    ensure_writable_dir(cfg.out)
    manifest_path = os.path.join(cfg.out, "dataset.json")
    jobs = plan_jobs(cfg)
    existing = [j for j in jobs if os.path.exists(j.path)]
    if existing and not cfg.resume:
        raise FileExistsError(
            f"{cfg.out} already holds {len(existing)} episodes; "
            "pass --resume to complete it or choose a new --out"
        )
    for kind in KINDS:
        ensure_writable_dir(os.path.join(cfg.out, kind))
    env_settings = mock_env_settings()
    if existing:
        previous = read_env_settings(cfg.out)
        if previous is not None and previous != env_settings:
            raise ValueError(
                f"{cfg.out} was made with mock arm settings {previous}, not {env_settings}; "
                "generate into a new --out so that every episode comes from the same scenes and camera"
            )
        changed = changed_settings(cfg.out, cfg)
        if changed:
            made = ", ".join(f"{k} {v}" for k, v in changed.items())
            raise ValueError(
                f"{cfg.out} was made with {made}; resume with the same settings or choose a new --out"
            )
    todo = [j for j in jobs if not _is_complete(j.path)]
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": asdict(cfg),
        "mock_camera": {"visual_max_faces": env_settings["visual_max_faces"]},
        "mock_scene": {k: env_settings[k] for k in ("start_spread", "target_spread", "tray_height")},
        "target_scene": asdict(TARGET_VARIANT),
        "prior_scenes": [asdict(s) for s in PRIOR_SCENES],
        "complete": False,
    }
    write_json_atomic(manifest_path, manifest)
    stats: dict[str, dict[str, int]] = {k: {"episodes": 0, "successes": 0, "steps": 0} for k in KINDS}
    bar = tqdm(total=len(todo), desc="episodes", unit="ep", disable=not progress)
    for result in _run_all(todo, cfg):
        s = stats[result["kind"]]
        s["episodes"] += 1
        s["successes"] += int(result["success"])
        s["steps"] += result["steps"]
        bar.update(1)
        bar.set_postfix(kind=result["kind"], ok=result["success"])
    bar.close()
    manifest.update(
        complete=True,
        generated_now=stats,
        episodes={kind: len([j for j in jobs if j.kind == kind]) for kind in KINDS},
    )
    write_json_atomic(manifest_path, manifest)
    return manifest
