"""The fine-tuning session's settings: one typed dataclass, saved resolved beside the session's outputs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from reward_vlm.reward_core import REWARD_SOURCES
from robofume.atomic_io import write_json_atomic
from robofume.config_types import scalar_type_error

ROBOT_FLAVOURS: tuple[str, ...] = ("mock", "real")


class SessionConfigError(ValueError):
    """A session setting is invalid or a session config file has unknown keys."""


@dataclass
class DataStage:
    """Scripted offline data for the mock arm (``robofume data generate``); made once, then reused."""

    demos_per_task: int = 20
    failures_per_task: int = 10
    prior: int = 100
    image_size: int = 128
    max_episode_steps: int = 100
    seed: int = 0
    workers: int = 2
    at_workstation: bool = True
    """Record the demos and failures at the mock arm's workstation layout (its scene seed), as a
    user records demos at the robot; prior data spans many layouts and scenes either way."""
    recovery_demos: int = 0
    """Extra demos per task from the object lying on the table outside the start square and the bin
    (see ``recovery_region``), where a reset-free stream's failed grasps leave it (``robofume data
    generate --recovery-demos``)."""
    recovery_region: str = "between"
    """Where recovery demos start: ``between`` (the strip from the square to the bin) or ``table``
    (anywhere within reach); ``robofume data generate --recovery-region``."""


@dataclass
class ClassifierStage:
    """The success classifier trained from the data's flags plus the label file (auto-labels on the mock)."""

    backend: str = "open_clip"
    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    backbone_path: str | None = None
    """A local backbone folder; on the offline mock the session builds a tiny one when this is unset."""
    offline_tiny_backbone: bool = True
    """Mock only: build and use a tiny local backbone instead of downloading pretrained weights."""
    method: str = "probe"
    epochs: int = 10
    image_size: int = 128
    target_precision: float = 0.95
    min_precision: float = 0.5
    """Held-out precision below which the classifier counts as too weak to reward from: a real-robot
    session then refuses to start (its false successes would train the policy on wrong rewards), a
    mock session warns. ``allow_weak`` overrides the refusal."""
    allow_weak: bool = False
    confirm_frames: int = 2
    auto_label_positives: int = 20
    """Mock only: success frames per task taken from the scripted demos as stand-in user labels."""


@dataclass
class PretrainStage:
    """Offline Cal-QL pre-training (``robofume pretrain``)."""

    bc_steps: int = 12_000
    """BC warm-up updates of encoder + actor on the demos (the CNN trains end to end here: the slow
    stage on a CPU, about 45 ms per update at batch 64 on one core, 9 min for 12k; on the mock arm
    2k gave a 0 % policy and 12k a 76 % one; docs/learning.md)."""
    steps: int = 5000
    """Cal-QL updates after the warm-up, on the BC encoder's cached features (fast)."""
    bc_average_tau: float = 0.0
    """The warm-up ends with a Polyak average of its iterates moved this fraction per update
    (``LearnerConfig.bc_average_tau``); 0: the last iterate."""
    image_size: int = 64
    batch_size: int = 64


@dataclass
class OnlineStage:
    """The autonomous fine-tuning itself."""

    duration_s: float = 600.0
    """Autonomous fine-tuning time (``--duration`` is in minutes)."""
    recipe: str = "calql"
    """Online recipe of the learner: ``calql`` (offline and online data, the demos' BC term kept;
    what the learning benchmark measures, docs/benchmarks.md), ``wsrl`` or ``rlpd``."""
    wsrl_warmup_transitions: int = 500
    explore_std_scale: float = 0.0
    """The policy server acts with the policy's spread times this; 0, the default, is the mean action.
    On the mock (seed 1, docs/benchmarks.md) sampled actions (1) made the reset-free stream fail far
    more often (5 forward successes in 41 attempts, against 20 in 39 with the mean action), which
    starves the classifier reward and can trip stuck detection, for no clear gain on held-out scenes."""
    control_hz: float = 10.0
    max_episode_steps: int = 100
    stuck_after: int = 20
    """Failed attempts in a row in both directions before the arm is held and help requested."""
    home: list[float] | None = None
    """End-effector home ``[x, y, z]`` or ``[x, y, z, yaw]`` (world frame, m, rad) the controller
    drives the arm to, gripper open, before every attempt. None: the mock's home on the mock (from
    session.yaml); no homing on a real robot (attempts start where the last one ended)."""
    already_done_steps: int = 5
    """A success confirmed within this many steps of an attempt's start counts as already done."""
    record_mcap: bool = False
    mcap_image_every_n: int = 5
    learner_threads: int = 1
    policy_average_tau: float = 0.001
    """The learner publishes, and the policy server acts with, a Polyak average of the policy moved
    this fraction toward the trained one per actor update (about one per transition); 0 serves the
    trained policy itself. On the learning bench the trained policy's held-out success swung by
    12-42 points between evaluations, the average's by at most 16 (docs/benchmarks.md)."""
    actor_objective: str = "sac_bc"
    """The learner's actor loss online: ``sac_bc`` (SAC + the success-filtered BC term) or ``crr``
    (critic-regularised regression: the critic chooses which data actions are imitated; see
    docs/learning.md and the learning bench's ``crr_finetune``)."""
    crr_beta: float = 0.0
    """``crr``: 0 imitates the data actions the critic rates above the policy's own; > 0 weighs
    each by ``exp(advantage / crr_beta)``."""
    eval_episodes: int = 20
    """Mock only: after the session, forward and backward success of the pre-trained policy,
    milestones and the final weights on this many held-out scenes per task, with ground truth
    (0: no evaluation)."""
    eval_points: int = 4
    """Policies evaluated after the session: the pre-trained one, evenly spaced milestones and the
    final weights (at least 2)."""
    learner_nice: int = 10
    """Scheduling niceness added to the learner process (0-19): the control loop's nodes get the CPU
    first, the learner what is left. 0 shares the CPU equally."""


@dataclass
class SessionConfig:
    """Everything that defines a session; ``out`` holds data, run, classifier, logs and the report."""

    out: str = "runs/session"
    robot: str = "mock"
    namespace: str = ""
    data: str | None = None
    """An existing episode folder to use instead of generating one (required with ``robot=real``)."""
    labels: str | None = None
    """A label file from ``robofume label``; on the mock, auto-labels are written when unset."""
    limits_file: str | None = None
    """Safety limits YAML of the real arm (required with ``robot=real``; the mock uses its own)."""
    seed: int = 0
    device: str = "auto"
    reward: str = "classifier"
    """Where the reward comes from: ``classifier`` (the success classifier, as on a real robot) or,
    on the mock only, ``ground_truth`` (the simulator's own checker through the same reward node: a
    perfect reward, to tell classifier problems from RL problems; no classifier is trained)."""
    data_stage: DataStage = field(default_factory=DataStage)
    classifier: ClassifierStage = field(default_factory=ClassifierStage)
    pretrain: PretrainStage = field(default_factory=PretrainStage)
    online: OnlineStage = field(default_factory=OnlineStage)

    def check_robot_side(self) -> SessionConfig:
        """Check the limits file and the namespace (:class:`SessionConfigError`, one line); the CLI
        calls it before the long preparation stages, not only when the nodes start. Returns self."""
        from robofume_robot.launcher import check_namespace
        from robofume_robot.safety_gate import SafetyConfigError, load_limits

        try:
            check_namespace(self.namespace)
        except ValueError as exc:
            raise SessionConfigError(str(exc)) from None
        if self.limits_file:
            try:
                load_limits(self.limits_file)
            except SafetyConfigError as exc:
                raise SessionConfigError(str(exc)) from None
        return self

    def validate(self) -> SessionConfig:
        """Raise :class:`SessionConfigError` with one line for an invalid value; return self."""
        if self.robot not in ROBOT_FLAVOURS:
            raise SessionConfigError(f"robot must be one of {', '.join(ROBOT_FLAVOURS)}, got {self.robot!r}")
        if self.robot == "real" and not self.data:
            raise SessionConfigError(
                "--robot real needs --data: an episode folder of your robot (demos, prior data)"
            )
        if self.robot == "real" and not self.labels:
            raise SessionConfigError("--robot real needs --labels: a label file made with `robofume label`")
        if self.robot == "real" and not self.limits_file:
            raise SessionConfigError("--robot real needs --limits-file: the safety limits YAML of your arm")
        if self.reward not in REWARD_SOURCES:
            raise SessionConfigError(
                f"reward must be one of {', '.join(REWARD_SOURCES)}, got {self.reward!r}"
            )
        if self.reward == "ground_truth" and self.robot != "mock":
            raise SessionConfigError(
                "reward ground_truth exists only in simulation: use it with --robot mock"
            )
        if not 0 <= self.classifier.min_precision <= 1:
            raise SessionConfigError(f"min_precision must be in [0, 1], got {self.classifier.min_precision}")
        d = self.data_stage
        if d.recovery_demos < 0 or d.recovery_region not in ("between", "table"):
            raise SessionConfigError(
                "recovery_demos must be >= 0 and recovery_region between or table, got "
                f"{d.recovery_demos} and {d.recovery_region!r}"
            )
        if not self.online.duration_s > 0:
            raise SessionConfigError(f"duration must be > 0 s, got {self.online.duration_s}")
        scale = self.online.explore_std_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale < float("inf"):
            raise SessionConfigError(f"explore_std_scale must be a number >= 0, got {scale!r}")
        if self.online.recipe not in ("calql", "wsrl", "rlpd"):
            raise SessionConfigError(f"recipe must be calql, wsrl or rlpd, got {self.online.recipe!r}")
        if self.pretrain.steps < 0 or self.pretrain.bc_steps < 0:
            p = self.pretrain
            raise SessionConfigError(f"pretrain steps and bc_steps must be >= 0, got {p.steps}, {p.bc_steps}")
        tau = self.pretrain.bc_average_tau
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 <= tau <= 1:
            raise SessionConfigError(f"pretrain bc_average_tau must be a number in [0, 1], got {tau!r}")
        home = self.online.home
        if home is not None:
            numeric = isinstance(home, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in home
            )
            if not numeric or len(home) not in (3, 4):
                raise SessionConfigError(
                    f"home must be [x, y, z] or [x, y, z, yaw] in m and rad, got {home!r}"
                )
        if self.online.already_done_steps < 0:
            raise SessionConfigError(f"already_done_steps must be >= 0, got {self.online.already_done_steps}")
        if self.online.eval_episodes < 0 or self.online.eval_points < 2:
            raise SessionConfigError(
                f"eval_episodes must be >= 0 and eval_points >= 2, got "
                f"{self.online.eval_episodes} and {self.online.eval_points}"
            )
        nice = self.online.learner_nice
        if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
            raise SessionConfigError(f"learner_nice must be an integer in [0, 19], got {nice!r}")
        if not 0.0 <= self.online.policy_average_tau <= 1.0:
            raise SessionConfigError(
                f"policy_average_tau must be in [0, 1], got {self.online.policy_average_tau}"
            )
        if self.online.actor_objective not in ("sac_bc", "crr"):
            raise SessionConfigError(
                f"actor_objective must be sac_bc or crr, got {self.online.actor_objective!r}"
            )
        if not self.online.crr_beta >= 0:
            raise SessionConfigError(f"crr_beta must be >= 0, got {self.online.crr_beta}")
        if not self.online.control_hz > 0:
            raise SessionConfigError(f"control_hz must be > 0, got {self.online.control_hz}")
        return self

    # --- folders -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> str:
        """Episode folder: ``--data`` or ``<out>/data``."""
        return self.data or os.path.join(self.out, "data")

    @property
    def labels_path(self) -> str:
        """Label file: ``--labels`` or ``<out>/labels.json`` (auto-labels on the mock)."""
        return self.labels or os.path.join(self.out, "labels.json")

    @property
    def run_dir(self) -> str:
        """Learner run folder: buffer, weights, checkpoints, config."""
        return os.path.join(self.out, "run")

    @property
    def classifier_dir(self) -> str:
        """Trained success classifier."""
        return os.path.join(self.out, "classifier")

    @property
    def report_dir(self) -> str:
        """``report.md``, plots and JSON of the last session."""
        return os.path.join(self.out, "report")

    @property
    def log_dir(self) -> str:
        """One log file per node and process."""
        return os.path.join(self.out, "logs")

    @property
    def tensorboard_dir(self) -> str:
        """TensorBoard event files of the session monitor (``tensorboard --logdir <out>/tb``)."""
        return os.path.join(self.out, "tb")


def mock_scene_seed(cfg: SessionConfig) -> int:
    """Scene seed of the mock arm in a session: one the data's episode seeds and the classifier never
    used; its workstation layout is where the demos are recorded (``data_stage.at_workstation``)."""
    return 10_000 + cfg.seed


def config_to_dict(cfg: SessionConfig) -> dict[str, Any]:
    """The JSON form of a session config."""
    return dataclasses.asdict(cfg)


def _build(cls: type, payload: dict[str, Any], where: str) -> Any:
    if not isinstance(payload, dict):
        raise SessionConfigError(f"{where or 'session config'} must be an object")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(payload) - set(names))
    if unknown:
        raise SessionConfigError(f"unknown key(s) {unknown} in {where or 'session config'}")
    kwargs = {}
    for key, value in payload.items():
        error = scalar_type_error(names[key], value, f"{where}." if where else "")
        if error:
            raise SessionConfigError(error)
        sub = {"data_stage": DataStage, "classifier": ClassifierStage, "pretrain": PretrainStage}
        sub["online"] = OnlineStage
        kwargs[key] = (
            _build(sub[key], value, f"{where}.{key}".strip("."))
            if key in sub and cls is SessionConfig
            else value
        )
    return cls(**kwargs)


def config_from_dict(payload: dict[str, Any]) -> SessionConfig:
    """A session config from JSON; unknown keys are a one-line :class:`SessionConfigError`."""
    return _build(SessionConfig, payload, "").validate()


def load_config_file(path: str) -> SessionConfig:
    """Read a session config JSON file."""
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise SessionConfigError(f"{path}: unreadable session config ({exc})") from None
    return config_from_dict(payload)


def save_config(cfg: SessionConfig, path: str) -> None:
    """Write the resolved config atomically."""
    write_json_atomic(path, config_to_dict(cfg))
