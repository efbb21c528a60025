"""Learning benchmark: does online fine-tuning after Cal-QL pre-training beat its baselines?

Training, acting and evaluation run in this process, synchronously (no ROS, no learner or actor
processes), deterministic per seed; only dataset generation may use ``data_workers`` worker
processes (1: in-process). :func:`run_learning_bench`:

1. **Data**: scripted demos, failures and prior episodes (``robofume.data.generate``) in
   ``out_dir/data``, generated once and reused by later runs with the same data settings.
2. **Methods**, each in a fresh run folder ``out_dir/<method>__seed<seed>`` with its own replay
   buffer, then the same online harness (``online_steps`` env steps):

   * ``calql_finetune`` (the main method): pre-training (``bc_warmup_steps`` BC updates of encoder
     and actor on the demos, then ``pretrain_steps`` Cal-QL updates of the critic on all offline
     data: prior, demos, failures), then online fine-tuning with ``recipe``
     (``calql``/``wsrl``/``rlpd``); online, the pre-trained encoder stays frozen unless
     ``freeze_encoder_online=False`` (learner setting);
   * ``bc_finetune``: the control that isolates RL: everything as ``calql_finetune`` (the same
     pre-trained weights, data, stream, updates and published average), but the actor's loss is
     its BC term alone (``actor_q_weight=0``: filtered BC of the demos and the stream's successes),
     so the critic never moves the policy; the gap between the two is what the RL term adds;
   * ``crr_finetune``: everything as ``calql_finetune``, but the actor follows critic-regularised
     regression (``AgentConfig.actor_objective="crr"``, filter ``crr_beta``): it imitates the data
     actions of the demos, the scripted failures and the whole stream, each weighted by whether
     (or how much) the critic prefers it to the policy's own action; against ``bc_finetune`` it
     shows whether letting the critic choose what to imitate helps;
   * ``pretrained_only``: the same pre-trained policy (pre-trained once per benchmark and copied, so
     both start from identical weights), no online updates; it still acts for the same env steps
     and fills its buffer;
   * ``bc_only``: behaviour cloning on the target demos only, the same BC as the main method's
     warm-up (``Agent.bc_update``, ``bc_warmup_steps`` steps, ``batch_size``; with the same seed the
     same draws, so the same weights the main method's Cal-QL stage starts from); the critics are
     unused; no online updates;
   * ``sac_scratch``: no offline data, no pre-training; SAC (``cql_alpha=0``, encoder trained) from
     an empty buffer with the same update-to-data ratio.

   Online, ONE training env runs reset-free: ``reset(seed)`` once, then forward and backward
   alternate with ``reset(options={"task": ..., "keep_scene": True})`` after every episode (success
   terminates, the time limit truncates); the scene is never reset. The policy samples its actions
   (exploration); transitions go to the buffer with the ground-truth reward ``info["success"]``
   (the success classifier replaces it in the full pipeline); after each env step the learner does
   the updates its update-to-data budget allows.
3. **Evaluation** at env step 0, every ``eval_every`` steps and at the end: forward-task success
   with the ground-truth checker, deterministic actions, on held-out scenes ``reset(seed=s)`` for s in
   ``eval_seeds`` (10_000 + i by default). The training env is seeded with ``seed`` (< 10_000) and
   the data episodes' seeds are checked to avoid the evaluation seeds, so no evaluation scene is
   ever trained on. ``eval_layout="train"`` (default) puts every held-out scene in the training
   scene's workstation layout (``layout_seed=seed``: the target and start-region positions; the
   object's pose comes from the held-out seed): what a reset-free robot is fine-tuned for.
   ``"new"`` gives each held-out seed its own layout (generalisation to unseen workstations; the
   demos and prior data come from many layouts, the online stream from one). With
   ``eval_other_layout`` the other layout is also measured at the first and the last evaluation.
   Evaluation is deterministic, so weights already evaluated (a frozen policy, the shared
   pre-trained weights) reuse their result instead of replaying the episodes.

Output: ``out_dir/learning.json`` (see :func:`run_learning_bench`) and ``out_dir/learning.png``.
The full-size defaults need hours on a 2-core CPU (BC updates train the conv encoder, about 45 ms
each at batch 64 and several times that at 256; about 45 ms per env step with the camera);
:meth:`LearningBenchConfig.quick` is a smoke test (about 30 s) and :meth:`LearningBenchConfig.medium`
the recorded CPU run (about 35 min for the main method on one core; split the methods between
processes).
``robofume bench learning --set KEY=VALUE`` overrides any setting, and ``--merge`` combines runs
that split the methods between processes (one per core).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch
from tqdm import tqdm

from policy_server.calql import Agent, AgentConfig
from policy_server.learner import (
    RECIPES,
    BCAverage,
    Learner,
    LearnerConfig,
    batch_to_torch,
    draw_bc_batch,
    resolve_device,
)
from policy_server.networks import ENCODER_HEADS, AgentNetworks, NetworkConfig
from policy_server.replay_buffer import BufferSpec, ReplayBuffer, payload_sha256
from policy_server.weights import WeightStore, load_into
from reset_free.controller import ControllerConfig
from robofume.atomic_io import ensure_writable_dir, write_json_atomic, write_with
from robofume.bench.machine import machine_info
from robofume.data.generate import (
    KINDS,
    RECOVERY_REGIONS,
    EpisodeJob,
    GenerateConfig,
    generate_dataset,
    plan_jobs,
)
from robofume.sim.mock_arm_env import (
    ACTION_NAMES,
    OBJECT_PLACE_NAMES,
    PROPRIO_NAMES,
    MockArmConfig,
    MockArmEnv,
)
from robofume.sim.tasks import other_task

METHODS: tuple[str, ...] = (
    "calql_finetune",
    "bc_finetune",
    "crr_finetune",
    "pretrained_only",
    "bc_only",
    "sac_scratch",
)
"""Benchmarked methods; ``calql_finetune`` is the main one, the others are baselines."""
FINETUNED_METHODS: tuple[str, ...] = ("calql_finetune", "bc_finetune", "crr_finetune")
"""Methods that start from the shared Cal-QL pre-training and update online."""
MAIN_METHOD = "calql_finetune"
OFFLINE_KINDS: dict[str, tuple[str, ...]] = {
    "calql_finetune": KINDS,
    "bc_finetune": KINDS,
    "crr_finetune": KINDS,
    "pretrained_only": KINDS,
    "bc_only": ("demos",),
    "sac_scratch": (),
}
"""Offline data kinds loaded into each method's buffer."""
PRESETS: tuple[str, ...] = ("quick", "medium", "full")


def offline_kinds(cfg: LearningBenchConfig, method: str) -> tuple[str, ...]:
    """The offline data kinds ``method`` loads: :data:`OFFLINE_KINDS`, and the prior data for the
    ``bc_only`` baseline when its BC draws from it (``bc_prior_fraction`` > 0)."""
    kinds = OFFLINE_KINDS[method]
    if method == "bc_only" and cfg.bc_prior_fraction > 0:
        return (*kinds, "prior")
    return kinds


EVAL_LAYOUTS: tuple[str, ...] = ("train", "new")
"""Held-out scene layouts: the training scene's workstation layout, or a new one per seed."""
_DATA_SETTINGS = ("image_size", "max_episode_steps", "seed", "layout_seed")
_OFFLINE_DATA_SETTINGS = ("demos_per_task", "failures_per_task", "prior", "data_seed", "demo_layout",
                          "bc_warmup_steps", "recovery_demos", "recovery_region",
                          "bc_prior_fraction", "bc_average_tau")  # fmt: skip
"""Bench settings that only shape the offline data or what is learnt from it (the BC warm-up on the
demos); ignored when merging a run that loads none."""
_PRETRAINED_SETTINGS = ("recipe", "pretrain_steps", "cql_alpha", "cql_num_actions", "bc_weight",
                        "encoder_bc_weight", "wsrl_warmup_transitions", "freeze_encoder_online",
                        "online_critic_warmup_updates", "entropy_per_action_dim", "crr_beta")  # fmt: skip
"""Settings of the Cal-QL pre-training and fine-tuning only (ignored when merging a run of baselines
that use neither: ``bc_only``, ``sac_scratch``)."""
_MAX_DATA_ATTEMPTS = 8  # generate retries an episode with seed, seed + 1, ... (it uses at most 6)
_NEVER = 10**12
EXPLORE_WHEN: tuple[str, ...] = ("always", "after_failure")
STREAMS: tuple[str, ...] = ("reset_free", "episodic")
"""Training streams: ``reset_free`` (the method: the scene is never reset) and ``episodic`` (a
diagnostic, not the method: every episode starts from a fresh scene at the training workstation,
as if a person reset it, so it measures what RL does when the stream never gets stuck)."""
ALREADY_DONE_STEPS = ControllerConfig.already_done_steps
"""A training-stream episode that succeeds within this many steps counts as already done (the
session controller's default), not as a success."""


@dataclass(frozen=True)
class LearningBenchConfig:
    """Settings of the learning benchmark (defaults: the full-size run; see :meth:`quick`, :meth:`medium`)."""

    seed: int = 0
    """Seed of pre-training, exploration and the training env's one scene (must be < eval_seed_base)."""
    methods: tuple[str, ...] = METHODS
    recipe: str = "calql"
    """Online recipe of ``calql_finetune``: calql, wsrl or rlpd (see policy_server.learner)."""
    online_steps: int = 20_000
    pretrain_steps: int = 20_000
    """Cal-QL pre-training updates after the BC warm-up."""
    bc_warmup_steps: int = 12_000
    """BC updates (encoder + actor, demos) that start pre-training; the bc_only baseline is exactly
    this BC, so the gap to it is what Cal-QL and fine-tuning add."""
    eval_every: int = 2_000
    eval_episodes: int = 50
    eval_seed_base: int = 10_000
    """Held-out evaluation scenes are seeds eval_seed_base .. eval_seed_base + eval_episodes - 1."""
    eval_layout: str = "train"
    """Layout (target and start-region positions) of the held-out scenes: ``train``, the training
    scene's layout (the robot's own workstation; object pose and arm start from the held-out seed),
    or ``new``, each held-out seed draws its own layout (generalisation to unseen workstations)."""
    eval_other_layout: bool = True
    """Also evaluate in the other layout at the first and the last evaluation (``curve_other``)."""
    eval_recovery_episodes: int = 0
    """At the first and the last evaluation, also measure both tasks on this many held-out scenes
    (the first evaluation seeds, training layout) with the object anywhere on the table within
    reach (``object_in="table"``): where a reset-free stream leaves it after a failed attempt, so
    the stream can only go on if the policy succeeds from there (``curve_recovery``). 0: off."""
    image_size: int = 64
    max_episode_steps: int = 100
    utd_ratio: float = 1.0
    """Online updates per env step; 1 (not the learner's 4) to fit CPU budgets."""
    batch_size: int = 256
    demos_per_task: int = 20
    failures_per_task: int = 10
    prior: int = 300
    recovery_demos: int = 0
    """Extra demos per task from the object on the table outside the start square and the bin (where
    ``recovery_region`` says), where failed grasps leave it (``GenerateConfig.recovery_demos``); 0:
    none, as in every run before 2026-12-02."""
    recovery_region: str = "between"
    """Where recovery demos start (``GenerateConfig.recovery_region``): ``between`` or ``table``."""
    data_seed: int = 0
    """Seed of the dataset (with ``demo_layout="new"`` one dataset serves every training seed)."""
    demo_layout: str = "train"
    """Layout of the target-scene demos and failures: ``train``, the training scene's (RoboFuME's
    few demos are recorded at the robot's own workstation; the dataset then belongs to this
    ``seed``), or ``new``, one per episode. Prior data always spans many layouts and scenes."""
    data_workers: int = 2
    hidden_dim: int = 256
    feature_dim: int = 64
    encoder_channels: int = 32
    encoder_head: str = "flatten"
    """The image encoder's head (``NetworkConfig.encoder_head``): ``flatten`` or ``spatial_softmax``."""
    gamma: float = 0.97
    cql_alpha: float = 1.0
    cql_num_actions: int = 4
    bc_weight: float = 100.0
    """BC term of the Cal-QL actor (calql_finetune), times the mean |Q|; bc_only is a separate, pure
    BC baseline. 100 (docs/benchmarks.md): at 2.5 the Q gradient pulled the grasp apart online."""
    bc_prior_fraction: float = 0.0
    """Share of each BC warm-up batch (the main method's and the ``bc_only`` baseline's) from the
    successful prior episodes (``LearnerConfig.bc_prior_fraction``); 0: the demos only."""
    bc_average_tau: float = 0.0
    """The BC warm-up (main method and ``bc_only``) ends with a Polyak average of its iterates
    (``LearnerConfig.bc_average_tau``); 0: the last iterate."""
    crr_beta: float = 0.0
    """crr_finetune: CRR's filter (``AgentConfig.crr_beta``): 0 imitates the transitions the critic
    rates above the policy (binary), > 0 weighs them by ``exp(advantage / crr_beta)``."""
    encoder_bc_weight: float = 0.0
    """Auxiliary BC loss that trains the encoder during Cal-QL updates from frames (see
    ``AgentConfig.encoder_bc_weight``)."""
    home_arm: bool = True
    """Reset-free stream: drive the arm home (gripper open) between episodes, as a real controller
    does; only the arm moves, the scene is never reset."""
    aug_pad: int = 4
    """DrQ random shift (pixels) of every update from frames, BC baseline included."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    wsrl_warmup_transitions: int = 5_000
    online_critic_warmup_updates: int = 2_500
    """calql_finetune online: the first this many updates train the critic only (critic-first; see
    ``LearnerConfig.online_critic_warmup_updates``)."""
    entropy_per_action_dim: float = -2.0
    """calql_finetune: entropy target per action dimension (``AgentConfig.entropy_per_action_dim``;
    sac_scratch keeps SAC's -1)."""
    explore_std_scale: float = 1.0
    """Reset-free stream: act with the policy's spread times this (1: its own; 0: the mean action).
    Evaluation always uses the mean action."""
    explore_when: str = "always"
    """Reset-free stream: ``always`` act with ``explore_std_scale``; ``after_failure`` act with the
    mean action, except in an attempt whose previous attempt of the same task failed (timed out):
    in a reset-free scene the mean action repeats the same failure, sampled actions break grasps
    that the mean action would make."""
    acting_average_tau: float = 0.001
    """The learner's ``policy_average_tau``: > 0, the stream acts and the evaluation judges with the
    Polyak average of the policy (encoder, actor) that the learner publishes, moved toward the
    trained one by this fraction after every online update that trains the actor (here once per env
    step); 0: the trained policy itself. Runs recorded before the afternoon of 2026-12-01 used 0 (the
    default then)."""
    stream: str = "reset_free"
    """Training stream (``STREAMS``): ``reset_free``, the method; ``episodic``, a diagnostic upper
    bound in which every episode starts from a fresh scene (tasks still alternate; the result's
    ``scene_resets`` counts the resets). It does not meet the issue's no-reset condition."""
    freeze_encoder_online: bool = True
    """calql_finetune online: keep the pre-trained encoder frozen (cached features, fast updates).
    sac_scratch always trains its encoder: it has no pre-trained one."""
    log_every: int = 100
    """TensorBoard scalars every this many updates (in each run folder's tb/)."""
    buffer_capacity: int = 1_000_000
    device: str = "auto"
    torch_threads: int = 0
    """Torch CPU threads during the run (0: leave torch's setting); restored afterwards."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if not self.methods or unknown or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be distinct names from {', '.join(METHODS)}; got {self.methods}")
        for name in ("demo_layout", "eval_layout"):
            if getattr(self, name) not in EVAL_LAYOUTS:
                choices = ", ".join(EVAL_LAYOUTS)
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; expected one of: {', '.join(RECIPES)}")
        if self.encoder_head not in ENCODER_HEADS:
            heads = ", ".join(ENCODER_HEADS)
            raise ValueError(f"encoder_head must be one of {heads}, got {self.encoder_head!r}")
        if not 0.0 <= self.acting_average_tau <= 1.0:
            raise ValueError(f"acting_average_tau must be in [0, 1], got {self.acting_average_tau}")
        if self.stream not in STREAMS:
            raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {self.stream!r}")
        if self.explore_when not in EXPLORE_WHEN:
            raise ValueError(
                f"explore_when must be one of {', '.join(EXPLORE_WHEN)}, got {self.explore_when!r}"
            )
        positive = ("online_steps", "eval_every", "eval_episodes", "max_episode_steps", "data_workers",
                    "hidden_dim", "feature_dim", "encoder_channels", "cql_num_actions",
                    "log_every")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "pretrain_steps", "bc_warmup_steps", "demos_per_task", "failures_per_task",
                     "prior", "data_seed", "torch_threads", "online_critic_warmup_updates",
                     "recovery_demos", "eval_recovery_episodes"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.eval_recovery_episodes > self.eval_episodes:
            raise ValueError(
                f"eval_recovery_episodes ({self.eval_recovery_episodes}) must not exceed eval_episodes "
                f"({self.eval_episodes}): it uses the first held-out seeds"
            )
        if self.recovery_region not in RECOVERY_REGIONS:
            regions = ", ".join(RECOVERY_REGIONS)
            raise ValueError(f"recovery_region must be one of {regions}, got {self.recovery_region!r}")
        if self.seed >= self.eval_seed_base:
            raise ValueError(f"seed {self.seed} must be below eval_seed_base {self.eval_seed_base}")
        if not 32 <= self.image_size <= 256:
            raise ValueError(f"image_size must be between 32 and 256, got {self.image_size}")
        if self.utd_ratio <= 0 or self.batch_size < 2 or self.buffer_capacity < 2:
            raise ValueError("utd_ratio must be > 0, batch_size >= 2 and buffer_capacity >= 2")
        if min(self.cql_alpha, self.bc_weight, self.encoder_bc_weight, self.aug_pad, self.crr_beta) < 0:
            raise ValueError("cql_alpha, bc_weight, encoder_bc_weight, aug_pad and crr_beta must be >= 0")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")
        if not 0.0 <= self.bc_average_tau <= 1.0:
            raise ValueError(f"bc_average_tau must be in [0, 1], got {self.bc_average_tau}")
        if not 0.0 <= self.bc_prior_fraction < 1.0:
            raise ValueError(f"bc_prior_fraction must be in [0, 1), got {self.bc_prior_fraction}")
        if self.bc_prior_fraction > 0 and self.prior < 1:
            raise ValueError("bc_prior_fraction > 0 draws BC batches from the prior data: prior must be >= 1")
        if "bc_only" in self.methods and (self.demos_per_task < 1 or self.bc_warmup_steps < 1):
            raise ValueError("bc_only needs demos and BC updates: demos_per_task and bc_warmup_steps >= 1")
        if "bc_finetune" in self.methods and self.bc_weight == 0:
            raise ValueError("bc_finetune imitates through the BC term: bc_weight must be > 0")
        offline = self.demos_per_task + self.failures_per_task + self.prior
        if {*FINETUNED_METHODS, "pretrained_only"} & set(self.methods) and offline < 1:
            raise ValueError(
                "calql_finetune, bc_finetune, crr_finetune and pretrained_only need offline data"
                " (demos/failures/prior)"
            )
        warmup = self.wsrl_warmup_transitions
        if (
            self.recipe == "wsrl"
            and set(FINETUNED_METHODS) & set(self.methods)
            and warmup >= self.online_steps
        ):
            raise ValueError(f"wsrl warm-up ({warmup}) must be below online_steps ({self.online_steps})")

    # ------------------------------------------------------------ presets
    @classmethod
    def quick(cls, **overrides: Any) -> LearningBenchConfig:
        """Smoke-test size: every code path, tiny counts, a small network (about a minute on 2 CPU cores)."""
        base: dict[str, Any] = {
            "online_steps": 30, "pretrain_steps": 20, "bc_warmup_steps": 20, "eval_every": 15,
            "eval_episodes": 2, "eval_recovery_episodes": 1,
            "image_size": 32, "max_episode_steps": 12, "batch_size": 16, "demos_per_task": 1,
            "failures_per_task": 0, "prior": 2, "data_workers": 1, "hidden_dim": 32, "feature_dim": 16,
            "encoder_channels": 8, "cql_num_actions": 2, "device": "cpu", "torch_threads": 1,
            "online_critic_warmup_updates": 10,
        }  # fmt: skip
        return cls(**{**base, **overrides})

    @classmethod
    def medium(cls, **overrides: Any) -> LearningBenchConfig:
        """Recorded CPU run (docs/benchmarks.md, "Latest run", with ``seed=2``): 12k BC + 2k Cal-QL
        pre-training updates, 10k online steps, 50 held-out scenes evaluated every 5k steps; about
        45 min for the main method on one core (30 of them training) (split the methods between processes with
        ``--set methods=...`` and ``--merge`` the results)."""
        base: dict[str, Any] = {
            "online_steps": 10_000, "pretrain_steps": 2_000, "bc_warmup_steps": 12_000, "eval_every": 5_000,
            "eval_episodes": 50, "batch_size": 64, "hidden_dim": 256, "demos_per_task": 20,
            "failures_per_task": 5, "prior": 40, "torch_threads": 1,
        }  # fmt: skip
        return cls(**{**base, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> LearningBenchConfig:
        """``quick``, ``medium`` or ``full`` (the defaults), with field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}")
        return cls(**overrides) if name == "full" else getattr(cls, name)(**overrides)

    # ------------------------------------------------------------ derived settings
    @property
    def eval_seeds(self) -> tuple[int, ...]:
        """Seeds of the held-out evaluation scenes."""
        return tuple(range(self.eval_seed_base, self.eval_seed_base + self.eval_episodes))

    def eval_steps(self) -> list[int]:
        """Online env-step counts at which the policy is evaluated: 0, every eval_every, and the end."""
        return sorted({0, *range(self.eval_every, self.online_steps + 1, self.eval_every), self.online_steps})

    def network_config(self) -> NetworkConfig:
        """The agent's network shapes."""
        return NetworkConfig(
            image_size=self.image_size, proprio_dim=len(PROPRIO_NAMES), action_dim=len(ACTION_NAMES),
            encoder_channels=self.encoder_channels, encoder_head=self.encoder_head,
            feature_dim=self.feature_dim, hidden_dim=self.hidden_dim,
        )  # fmt: skip

    def learner_config(self, method: str) -> LearnerConfig:
        """Learner settings of ``method`` (``sac_scratch``: recipe calql with cql_alpha 0 = plain SAC,
        encoder trained online)."""
        agent = AgentConfig(
            gamma=self.gamma, cql_alpha=self.cql_alpha, cql_num_actions=self.cql_num_actions,
            bc_weight=self.bc_weight, encoder_bc_weight=self.encoder_bc_weight, aug_pad=self.aug_pad,
            actor_lr=self.actor_lr, critic_lr=self.critic_lr,
            entropy_per_action_dim=self.entropy_per_action_dim,
        )  # fmt: skip
        recipe, freeze = self.recipe, self.freeze_encoder_online
        if method == "bc_finetune":  # the actor imitates only: no RL term
            agent = replace(agent, actor_q_weight=0.0)
        if method == "crr_finetune":  # the critic chooses what the actor imitates
            agent = replace(agent, actor_objective="crr", crr_beta=self.crr_beta)
        if method == "sac_scratch":
            # plain SAC, with SAC's own entropy target (-1 per dimension)
            agent = replace(
                agent, cql_alpha=0.0, bc_weight=0.0, encoder_bc_weight=0.0, entropy_per_action_dim=-1.0
            )
            recipe, freeze = "calql", False
        return LearnerConfig(
            recipe=recipe, freeze_encoder_online=freeze, batch_size=self.batch_size, utd_ratio=self.utd_ratio,
            pretrain_steps=self.pretrain_steps, bc_warmup_steps=self.bc_warmup_steps,
            bc_prior_fraction=self.bc_prior_fraction, bc_average_tau=self.bc_average_tau,
            wsrl_warmup_transitions=self.wsrl_warmup_transitions,
            online_critic_warmup_updates=0 if method == "sac_scratch" else self.online_critic_warmup_updates,
            policy_average_tau=self.acting_average_tau, publish_every=_NEVER,
            checkpoint_every_s=float(_NEVER), log_every=self.log_every, seed=self.seed,
            network=self.network_config(), agent=agent,
        )  # fmt: skip

    def generate_config(self, data_dir: str) -> GenerateConfig:
        """The dataset this benchmark trains on."""
        return GenerateConfig(
            out=data_dir, demos_per_task=self.demos_per_task, failures_per_task=self.failures_per_task,
            prior=self.prior, image_size=self.image_size, max_episode_steps=self.max_episode_steps,
            seed=self.data_seed, workers=self.data_workers, resume=True, recovery_demos=self.recovery_demos,
            recovery_region=self.recovery_region,
            layout_seed=self.seed if self.demo_layout == "train" else None,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings."""
        out = asdict(self)
        out["methods"] = list(self.methods)
        return out


# ---------------------------------------------------------------------- data
def prepare_data(cfg: LearningBenchConfig, data_dir: str, progress: bool = True) -> dict[str, Any]:
    """Generate the dataset in ``data_dir``, or reuse it when every episode it needs is already there.

    A dataset made with other image size, episode length or seed is refused (one-line ``ValueError``).
    Returns ``{dir, reused, generate_s, episodes: {kind: count}, jobs}``.
    """
    gen = cfg.generate_config(data_dir)
    jobs = plan_jobs(gen)
    held_out = set(cfg.eval_seeds)
    clash = [j.path for j in jobs if held_out & set(range(j.seed, j.seed + _MAX_DATA_ATTEMPTS))]
    if clash:
        raise ValueError(f"data episode {clash[0]} uses an evaluation seed; change data_seed")
    manifest_path = os.path.join(data_dir, "dataset.json")
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            settings = json.load(f).get("settings", {})
        diff = [f"{k} {settings.get(k)} (asked for {getattr(gen, k)})" for k in _DATA_SETTINGS
                if settings.get(k) != getattr(gen, k)]  # fmt: skip
        if diff:
            raise ValueError(f"{data_dir} holds a dataset with {', '.join(diff)}; use another out_dir")
    reused = all(os.path.exists(j.path) for j in jobs)
    t0 = time.perf_counter()
    if not reused:
        generate_dataset(gen, progress=progress)
    counts = {kind: sum(j.kind == kind for j in jobs) for kind in KINDS}
    return {"dir": data_dir, "reused": reused, "generate_s": time.perf_counter() - t0, "episodes": counts,
            "jobs": jobs}  # fmt: skip


def _load_offline(buffer: ReplayBuffer, jobs: list[EpisodeJob], kinds: tuple[str, ...]) -> int:
    """Add the episode files of ``kinds`` (sources from their kinds); returns the transitions added."""
    return sum(buffer.add_episode_file(j.path) for j in jobs if j.kind in kinds)


# ---------------------------------------------------------------------- envs and policies
def make_env(cfg: LearningBenchConfig, role: str) -> MockArmEnv:
    """A target-scene env for ``role`` ("train": the reset-free stream, "eval": held-out scenes)."""
    del role  # both are the same env; the argument lets tests tell them apart
    return MockArmEnv(MockArmConfig(image_size=cfg.image_size, max_episode_steps=cfg.max_episode_steps))


def count_scene_resets(env: MockArmEnv) -> list[int]:
    """Count ``env``'s scene randomisations from now on; the returned one-element list holds the count."""
    count = [0]
    original = env._randomize_scene

    def counting(*args: Any, **kwargs: Any) -> None:  # whatever the env's own signature is
        count[0] += 1
        original(*args, **kwargs)

    env._randomize_scene = counting  # type: ignore[method-assign]
    return count


def dataset_fingerprint(jobs: list[EpisodeJob]) -> str:
    """SHA-256 of the dataset's arrays (kind, file name, every array by name), not of the ``.npz``
    bytes, whose zip headers carry write times: equal on two machines iff the data are equal."""
    h = hashlib.sha256()
    for job in sorted(jobs, key=lambda j: (j.kind, os.path.basename(j.path))):
        with np.load(job.path, allow_pickle=False) as episode:
            digest = payload_sha256(episode, sorted(episode.files))
        h.update(f"{job.kind}/{os.path.basename(job.path)}|{digest}|".encode())
    return h.hexdigest()


def policy_fingerprint(nets: AgentNetworks) -> str:
    """SHA-256 of the weights the policy acts with (encoder, task embedding, actor)."""
    h = hashlib.sha256()
    for module in (nets.encoder, nets.task_embedding, nets.actor):
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def policy_action(
    nets: AgentNetworks,
    obs: dict[str, Any],
    device: torch.device,
    deterministic: bool,
    std_scale: float = 1.0,
) -> np.ndarray:
    """``nets.act`` on one env observation; a float32 action in [-1, 1]^5 (``std_scale``: see
    ``AgentNetworks.act``)."""
    image = torch.from_numpy(np.ascontiguousarray(obs["image"])[None]).to(device)
    proprio = torch.from_numpy(np.asarray(obs["proprio"], np.float32)[None]).to(device)
    task = torch.tensor([int(obs["task"])], device=device)
    action = nets.act(image, proprio, task, deterministic=deterministic, std_scale=std_scale)
    return action[0].cpu().numpy().astype(np.float32)


def evaluate_forward(
    nets: AgentNetworks,
    env: MockArmEnv,
    seeds: tuple[int, ...],
    device: torch.device,
    layout_seed: int | None = None,
) -> float:
    """Forward-task success rate (ground truth) of the deterministic policy on fresh scenes ``seeds``
    (``layout_seed``: all in that workstation layout; None: each seed draws its own layout)."""
    return evaluate_task(nets, env, seeds, device, layout_seed, "forward")


def evaluate_task(
    nets: AgentNetworks,
    env: MockArmEnv,
    seeds: tuple[int, ...],
    device: torch.device,
    layout_seed: int | None,
    task: str,
    object_band: tuple[float, float] | None = None,
    object_in: str | None = None,
) -> float:
    """Success rate (ground truth) of the deterministic policy at ``task`` on fresh scenes ``seeds``,
    each with the object where the task starts (forward: the start square; backward: the goal);
    ``object_band`` moves it that far from the region's centre, ``object_in`` puts it elsewhere
    (both the env's reset options)."""
    successes = 0
    options: dict[str, Any] = {"task": task}
    if layout_seed is not None:
        options["layout_seed"] = layout_seed
    if object_band is not None:
        options["object_band"] = object_band
    if object_in is not None:
        options["object_in"] = object_in
    for seed in seeds:
        obs, info = env.reset(seed=seed, options=options)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _r, terminated, truncated, info = env.step(policy_action(nets, obs, device, True))
        successes += int(bool(info["success"]))
    return successes / len(seeds)


# ---------------------------------------------------------------------- training phases
def train_bc(
    cfg: LearningBenchConfig, buffer: ReplayBuffer, run_dir: Path, device: torch.device, progress: bool
) -> AgentNetworks:
    """BC baseline: encoder + actor trained end to end on the demos for ``bc_warmup_steps`` updates:
    the very BC warm-up the main method starts from (``Agent.bc_update``)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net_cfg = cfg.network_config()
    nets = AgentNetworks(net_cfg).to(device)
    agent = Agent(nets, cfg.learner_config("bc_only").agent)
    metrics: dict[str, float] = {}
    average = BCAverage(nets, cfg.bc_average_tau) if cfg.bc_average_tau > 0 else None
    for _ in tqdm(range(cfg.bc_warmup_steps), desc="bc", unit="upd", disable=not progress):
        batch, with_prior = draw_bc_batch(buffer, rng, cfg.batch_size, cfg.bc_prior_fraction, "demos")
        metrics = agent.bc_update(batch_to_torch(batch, device), imitate_prior=with_prior)
        if average is not None:
            average.update()
    if average is not None:
        average.apply()
    config = {"network": asdict(net_cfg), "bc": {"steps": cfg.bc_warmup_steps, **metrics}}
    WeightStore(run_dir / "weights").publish(nets.state_dict(), config, step=cfg.bc_warmup_steps)
    return nets


def _pretrain_shared(
    learner: Learner, cfg: LearningBenchConfig, method: str, shared: dict[str, Any], progress: bool
) -> tuple[float, str | None]:
    """Cal-QL pre-training, done once per benchmark and copied into later methods that need it.

    Returns (seconds the pre-training took, the method it was copied from or None)."""
    snap = shared.get("pretrained")
    if snap is None:
        t0 = time.perf_counter()
        learner.pretrain(cfg.pretrain_steps, progress=progress)
        seconds = time.perf_counter() - t0
        shared["pretrained"] = {
            "nets": {k: v.detach().clone() for k, v in learner.nets.state_dict().items()},
            "agent": learner.agent.optimizer_state(),
            "counters": dict(learner.counters),
            "seconds": seconds,
            "method": method,
        }
        return seconds, None
    load_into(learner.nets, snap["nets"])
    learner.agent.load_optimizer_state(snap["agent"])
    learner.counters.update(snap["counters"])
    learner.publish()
    learner.save_checkpoint()
    return float(snap["seconds"]), str(snap["method"])


def _online(
    cfg: LearningBenchConfig,
    method: str,
    nets: AgentNetworks,
    learner: Learner | None,
    buffer: ReplayBuffer,
    eval_env: MockArmEnv,
    device: torch.device,
    shared: dict[str, Any],
    progress: bool,
) -> dict[str, Any]:
    """The reset-free online phase with periodic held-out evaluation; ``learner=None``: no updates.

    An evaluation of weights already evaluated (a frozen policy, or the pre-trained weights a second
    method starts from) reuses that result: evaluation is deterministic, so it would be identical."""
    torch.manual_seed(cfg.seed + 1)  # exploration noise independent of method order and shared pre-training
    if learner is not None:
        learner.rng = np.random.default_rng([cfg.seed, 1])
    env = make_env(cfg, "train")
    scene_resets = count_scene_resets(env)
    times = {"env": 0.0, "act": 0.0, "update": 0.0, "eval": 0.0}
    stats: dict[str, dict[str, Any]] = {
        task: {
            "episodes": 0,
            "successes": 0,
            "already_done": 0,
            "failed_ends": dict.fromkeys(OBJECT_PLACE_NAMES, 0),
            "failed_end_coords": [],  # [along, across m] of each, in the square-to-bin line's frame
        }
        for task in ("forward", "backward")
    }
    stats_explored = {task: {"episodes": 0, "successes": 0} for task in ("forward", "backward")}
    last_failed = {"forward": False, "backward": False}
    explore = cfg.explore_when == "always"  # no attempt has failed yet
    episode_steps = 0
    updates = 0
    eval_at = set(cfg.eval_steps())
    curve: list[list[float]] = []

    curve_other: list[list[float]] = []
    other_layout = next(x for x in EVAL_LAYOUTS if x != cfg.eval_layout)
    evals = shared.setdefault("evals", {})
    cached = 0

    def success_rate(layout: str) -> float:
        nonlocal cached
        key = (policy_fingerprint(nets), layout)  # evaluation is deterministic: same weights, same result
        if key in evals:
            cached += 1
        else:
            layout_seed = cfg.seed if layout == "train" else None
            evals[key] = evaluate_forward(nets, eval_env, cfg.eval_seeds, device, layout_seed)
        return evals[key]

    curve_recovery: list[list[float]] = []

    def recovery_rate(task: str) -> float:
        nonlocal cached
        key = (policy_fingerprint(nets), f"recovery_{task}")
        if key in evals:
            cached += 1
        else:
            seeds = cfg.eval_seeds[: cfg.eval_recovery_episodes]
            evals[key] = evaluate_task(nets, eval_env, seeds, device, cfg.seed, task, object_in="table")
        return evals[key]

    def evaluate(step: int) -> None:
        t = time.perf_counter()
        curve.append([step, success_rate(cfg.eval_layout)])
        if cfg.eval_other_layout and step in (0, cfg.online_steps):
            curve_other.append([step, success_rate(other_layout)])
        if cfg.eval_recovery_episodes and step in (0, cfg.online_steps):
            curve_recovery.append([step, recovery_rate("forward"), recovery_rate("backward")])
        times["eval"] += time.perf_counter() - t

    t_start = time.perf_counter()
    try:
        evaluate(0)
        t = time.perf_counter()
        obs, _info = env.reset(seed=cfg.seed, options={"task": "forward", "layout_seed": cfg.seed})
        times["env"] += time.perf_counter() - t
        buffer.begin_episode(obs["image"], obs["proprio"], int(obs["task"]))
        bar = tqdm(total=cfg.online_steps, desc=method, unit="step", disable=not progress)
        for step in range(1, cfg.online_steps + 1):
            t = time.perf_counter()
            scale = cfg.explore_std_scale if explore else 0.0
            action = policy_action(nets, obs, device, deterministic=False, std_scale=scale)
            t2 = time.perf_counter()
            obs, _r, terminated, truncated, info = env.step(action)
            t3 = time.perf_counter()
            times["act"] += t2 - t
            times["env"] += t3 - t2
            success = bool(info["success"])
            buffer.add_step(action, float(success), obs["image"], obs["proprio"], terminated, truncated)
            if learner is not None:
                for _ in range(learner.update_budget()):
                    learner.update("online")
                    updates += 1
                # the published policy (the learner's Polyak average once online) acts and is evaluated
                nets = learner.policy_networks()
                times["update"] += time.perf_counter() - t3
            episode_steps += 1
            if terminated or truncated:
                # success in the first steps: the object already lay there (the other task failed); as
                # the session's controller does, such episodes count apart, not as successes
                early = success and episode_steps <= ALREADY_DONE_STEPS
                stats[env.task]["episodes"] += 1
                stats[env.task]["successes"] += int(success and not early)
                stats[env.task]["already_done"] += int(early)
                if not success:  # where the failure left the object: the next attempt starts there
                    stats[env.task]["failed_ends"][env.object_place()] += 1
                    coords = [round(v, 3) for v in env.object_line_coords()]
                    stats[env.task]["failed_end_coords"].append(coords)
                stats_explored[env.task]["episodes"] += int(explore and not early)
                stats_explored[env.task]["successes"] += int(explore and success and not early)
                last_failed[env.task] = not success
                episode_steps = 0
                if step < cfg.online_steps:
                    t = time.perf_counter()
                    if cfg.stream == "episodic":  # a fresh scene at the workstation (diagnostic)
                        options = {"task": other_task(env.task), "layout_seed": cfg.seed}
                    else:
                        options = {"task": other_task(env.task), "keep_scene": True, "home_arm": cfg.home_arm}
                    obs, _info = env.reset(options=options)
                    times["env"] += time.perf_counter() - t
                    buffer.begin_episode(obs["image"], obs["proprio"], int(obs["task"]))
                    explore = cfg.explore_when == "always" or last_failed[env.task]
            if step in eval_at:
                evaluate(step)
            bar.update(1)
            if progress:
                fwd, bwd = stats["forward"], stats["backward"]
                bar.set_postfix(eval_fwd=f"{curve[-1][1]:.2f}", fwd=f"{fwd['successes']}/{fwd['episodes']}",
                                bwd=f"{bwd['successes']}/{bwd['episodes']}", upd=updates)  # fmt: skip
        bar.close()
    finally:
        env.close()
    online_s = time.perf_counter() - t_start - times["eval"]
    return {
        "curve": curve,
        "eval_layout": cfg.eval_layout,
        "curve_other": curve_other,
        "other_layout": other_layout,
        "curve_recovery": curve_recovery,
        "updates": updates,
        "env_steps": cfg.online_steps,
        "online_s": online_s,
        "eval_s": times["eval"],
        "ms_per_env_step": 1e3 * times["env"] / cfg.online_steps,
        "ms_per_act": 1e3 * times["act"] / cfg.online_steps,
        "ms_per_update": 1e3 * times["update"] / updates if updates else None,
        "train_episodes": stats,
        "train_episodes_explored": stats_explored,
        "scene_resets": scene_resets[0],
        "evals_reused": cached,
    }


def run_method(
    cfg: LearningBenchConfig,
    method: str,
    out_dir: str,
    data: dict[str, Any],
    eval_env: MockArmEnv,
    shared: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """One method in a fresh ``out_dir/<method>__seed<seed>`` (an older folder of that name is replaced)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
    t0 = time.perf_counter()
    run_dir = Path(out_dir) / f"{method}__seed{cfg.seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    device = resolve_device(cfg.device)
    spec = BufferSpec((cfg.image_size, cfg.image_size), len(PROPRIO_NAMES), len(ACTION_NAMES), cfg.gamma)
    buffer = ReplayBuffer(run_dir / "buffer", spec, capacity=cfg.buffer_capacity)
    learner: Learner | None = None
    try:
        offline = _load_offline(buffer, data["jobs"], offline_kinds(cfg, method))
        buffer.flush()
        pretrain_s, shared_from = 0.0, None
        if method == "bc_only":
            t = time.perf_counter()
            nets = train_bc(cfg, buffer, run_dir, device, progress)
            pretrain_s = time.perf_counter() - t
        else:
            log = (lambda msg: tqdm.write(f"robofume learner: {msg}")) if progress else (lambda _msg: None)
            learner = Learner(cfg.learner_config(method), run_dir, buffer, device=str(device), log=log)
            if method != "sac_scratch":
                pretrain_s, shared_from = _pretrain_shared(learner, cfg, method, shared, progress)
            nets = learner.nets
        start_fingerprint = policy_fingerprint(nets)
        updating = learner if method in (*FINETUNED_METHODS, "sac_scratch") else None
        online = _online(cfg, method, nets, updating, buffer, eval_env, device, shared, progress)
        if learner is not None and updating is not None:
            learner.publish()
            learner.save_checkpoint()
        final_fingerprint = policy_fingerprint(nets)
        buffer.flush()
        online_transitions = len(buffer.valid_indices("online"))
    finally:
        buffer.close()
        if learner is not None:
            learner.close()
    curve = online["curve"]
    return {
        **online,
        "final": curve[-1][1],
        "pre_trained_level": curve[0][1],
        "final_other": online["curve_other"][-1][1] if online["curve_other"] else None,
        "pre_trained_level_other": online["curve_other"][0][1] if online["curve_other"] else None,
        "pre_trained_recovery": online["curve_recovery"][0][1:] if online["curve_recovery"] else None,
        "pretrain_s": pretrain_s,
        "pretrain_shared_from": shared_from,
        "start_fingerprint": start_fingerprint,
        "final_fingerprint": final_fingerprint,
        "pretrain_updates": 0 if method in ("sac_scratch", "bc_only") else cfg.pretrain_steps,
        "bc_updates": 0 if method == "sac_scratch" else cfg.bc_warmup_steps,
        "train_s": pretrain_s + online["online_s"],
        "wall_s": time.perf_counter() - t0,
        "buffer": {"offline_transitions": offline, "online_transitions": online_transitions},
        "offline_kinds": list(offline_kinds(cfg, method)),
        "run_dir": str(run_dir),
    }


# ---------------------------------------------------------------------- results
def learning_targets(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Targets of the main method: final success >= 0.8, >= 30 points above its pre-trained level, and
    <= 60 minutes of training (pre-training + online steps and updates; evaluation and data excluded).
    ``gain_over_bc_finetune`` (when that control ran): the main method's final success minus the
    imitation-only control's, i.e. what the RL term added; ``crr_gain_over_bc_finetune`` the same for
    ``crr_finetune``."""
    main = methods.get(MAIN_METHOD)
    if main is None:
        return {"method": MAIN_METHOD, "final_ge_0.8": None, "gain_ge_30pts": None, "minutes_le_60": None,
                "pass": False, "note": f"{MAIN_METHOD} was not run"}  # fmt: skip
    gain = main["final"] - main["pre_trained_level"]
    minutes = main["train_s"] / 60.0
    checks = {"final_ge_0.8": main["final"] >= 0.8, "gain_ge_30pts": gain >= 0.3 - 1e-9,
              "minutes_le_60": minutes <= 60.0}  # fmt: skip
    return {"method": MAIN_METHOD, **checks, "pass": all(checks.values()), "final": main["final"],
            "gain": gain, "train_minutes": minutes, "eval_layout": main.get("eval_layout", "new"),
            "final_other": main.get("final_other"),
            "pre_trained_level_other": main.get("pre_trained_level_other"),
            "gain_over_bc_finetune": main["final"] - methods["bc_finetune"]["final"]
            if "bc_finetune" in methods else None,
            "crr_gain_over_bc_finetune": methods["crr_finetune"]["final"] - methods["bc_finetune"]["final"]
            if {"crr_finetune", "bc_finetune"} <= set(methods) else None}  # fmt: skip


def plot_learning(result: dict[str, Any], path: str) -> None:
    """PNG of forward success vs online env steps, one line per method (matplotlib, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = ("-", "--", "-.", ":")
    for i, (name, m) in enumerate(result["methods"].items()):
        xs, ys = zip(*m["curve"], strict=True)
        ax.plot(xs, ys, marker="osD^"[i % 4], ms=9 - 1.5 * i, ls=styles[i % 4], label=name,
                lw=2.4 if name == MAIN_METHOD else 1.5)  # fmt: skip
    ax.axhline(0.8, ls="--", lw=1, color="gray", label="target 0.8")
    cfg = result["config"]
    episodic = cfg.get("stream", "reset_free") == "episodic"
    ax.set_xlabel("online env steps (episodic: scene reset every episode, a diagnostic)" if episodic
                  else "online env steps (reset-free)")  # fmt: skip
    where = "training layout" if cfg.get("eval_layout", "new") == "train" else "new layouts"
    ax.set_ylabel(f"forward success, {cfg['eval_episodes']} held-out scenes ({where})")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"robofume learning bench: seed {cfg['seed']}, recipe {cfg['recipe']}, pre-training "
                 f"{cfg.get('bc_warmup_steps', 0)} BC + {cfg['pretrain_steps']} Cal-QL updates")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    write_with(path, lambda f: fig.savefig(f, format="png"))


def run_learning_bench(cfg: LearningBenchConfig, out_dir: str, progress: bool = True) -> dict[str, Any]:
    """Run every method of ``cfg`` in ``out_dir``; write ``learning.json`` and ``learning.png`` there.

    Returns ``{bench: "learning", config, machine, data, eval_seeds, methods: {name: {curve:
    [[env_steps, forward_success], ...], final, pre_trained_level, wall_s, train_s, pretrain_s, online_s,
    eval_s, updates, env_steps, ms_per_env_step, ms_per_act, ms_per_update, train_episodes, scene_resets,
    buffer, ...}}, targets: {final_ge_0.8, gain_ge_30pts, minutes_le_60, pass, ...}, wall_s}``.
    """
    t0 = time.perf_counter()
    ensure_writable_dir(out_dir)
    data = prepare_data(cfg, os.path.join(out_dir, "data"), progress)
    eval_env = make_env(cfg, "eval")
    shared: dict[str, Any] = {}
    methods: dict[str, dict[str, Any]] = {}
    threads = torch.get_num_threads()
    try:
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        for method in cfg.methods:
            if progress:
                tqdm.write(f"robofume bench learning: {method} (seed {cfg.seed})")
            methods[method] = run_method(cfg, method, out_dir, data, eval_env, shared, progress)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
        eval_env.close()
    machine = {**machine_info(), "torch": torch.__version__, "torch_threads": used_threads,
               "mujoco": mujoco.__version__, "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
               "device": str(resolve_device(cfg.device))}  # fmt: skip
    result: dict[str, Any] = {
        "bench": "learning",
        "config": cfg.to_dict(),
        "machine": machine,
        "data": {
            **{k: v for k, v in data.items() if k != "jobs"},
            "fingerprint": dataset_fingerprint(data["jobs"]),
        },
        "eval_seeds": list(cfg.eval_seeds),
        "methods": methods,
        "targets": learning_targets(methods),
        "wall_s": time.perf_counter() - t0,
    }
    write_json_atomic(os.path.join(out_dir, "learning.json"), result)
    plot_learning(result, os.path.join(out_dir, "learning.png"))
    return result


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> typed :class:`LearningBenchConfig` overrides (``methods``: a comma
    list); an unknown key or a value of the wrong type is a one-line ``ValueError``."""
    types = {f.name: f.type for f in fields(LearningBenchConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise ValueError(f"bad override {pair!r}: use KEY=VALUE with KEY one of {', '.join(types)}")
        kind = str(types[key])
        try:
            if key == "methods":
                out[key] = tuple(m.strip() for m in raw.split(",") if m.strip())
            elif kind == "bool":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                out[key] = raw.lower() in ("true", "1")
            elif kind == "int":
                out[key] = int(raw)
            elif kind == "float":
                out[key] = float(raw)
            else:
                out[key] = raw
        except ValueError:
            raise ValueError(f"bad override {pair!r}: {key} takes a {kind}") from None
    return out


def merge_results(paths: list[str], out_dir: str) -> dict[str, Any]:
    """Combine the ``learning.json`` of runs that split the methods between processes into
    ``out_dir/learning.json`` + ``learning.png``. Settings must agree, except that a run of methods
    that load no offline data (``sac_scratch``) may differ in the data settings, and a run without
    the fine-tuned methods (``FINETUNED_METHODS``) and ``pretrained_only`` in the Cal-QL settings. Returns the
    merged result, whose config is that of the main method's run (else of the first run that loads
    offline data)."""
    results = []
    for path in paths:
        file = path if path.endswith(".json") else os.path.join(path, "learning.json")
        with open(file, encoding="utf-8") as f:
            results.append(json.load(f))
    if not results:
        raise ValueError("nothing to merge: give the output folders of the runs")

    # the settings of the offline data cannot matter to a run whose methods load none (sac_scratch)
    def uses(res: dict[str, Any]) -> tuple[bool, bool]:
        """(loads offline data, uses the Cal-QL settings)"""
        methods = res["config"]["methods"]
        calql = bool({*FINETUNED_METHODS, "pretrained_only"} & set(methods))
        return any(OFFLINE_KINDS.get(m) for m in methods), calql

    runs = [(path, res, uses(res)) for path, res in zip(paths, results, strict=True)]
    runs.sort(key=lambda run: (not run[2][1], not run[2][0]))  # the main method's run first: config kept
    results = [res for _path, res, _uses in runs]

    def compared(res: dict[str, Any], used: tuple[bool, bool]) -> dict[str, Any]:
        skip = {"methods", "data_workers"} | (set() if used[0] else set(_OFFLINE_DATA_SETTINGS))
        skip |= set() if used[1] else set(_PRETRAINED_SETTINGS)
        return {k: v for k, v in res["config"].items() if k not in skip}

    for path, res, used in runs:
        base, other = compared(results[0], used), compared(res, used)
        if other != base:
            diff = sorted(
                k
                for k in base.keys() | other.keys()
                if k not in base or k not in other or base[k] != other[k]
            )
            raise ValueError(f"{path} was run with other settings ({', '.join(diff)}); cannot merge")
    methods: dict[str, dict[str, Any]] = {}
    for res in results:
        methods.update(res["methods"])
    merged = {
        **results[0],
        "config": {**results[0]["config"], "methods": list(methods)},
        "methods": methods,
        "targets": learning_targets(methods),
        "wall_s": max(r["wall_s"] for r in results),
        "merged_from": [os.path.abspath(p) for p in paths],
    }
    ensure_writable_dir(out_dir)
    write_json_atomic(os.path.join(out_dir, "learning.json"), merged)
    plot_learning(merged, os.path.join(out_dir, "learning.png"))
    return merged
