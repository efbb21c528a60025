"""The learner: offline Cal-QL pre-training and online fine-tuning from the durable replay buffer.

It runs in-process (benchmarks, tests) or as its own process (``robofume learner``), reading the
buffer the recorder writes (``ReplayBuffer.refresh``) and publishing versioned weights for the
policy server (``WeightStore``). Online recipes:

* ``calql``: keep Cal-QL, sampling offline and online data alike;
* ``wsrl``: wait for ``wsrl_warmup_transitions`` online transitions (collected by the frozen
  pre-trained policy), then SAC (no CQL) on online data only; offline data is dropped;
* ``rlpd``: SAC on batches that are half offline, half online.

Updates follow the update-to-data ratio: after N online transitions the learner has done at most
``utd_ratio * N`` online updates. An update always trains the critic; online, the actor and the
temperature train on every ``round(utd_ratio)``-th update only (``actor_once_per_transition``, as
RLPD's and SERL's high-UTD updates do). Online, the learner publishes a Polyak average of the encoder
and actor (``policy_average_tau``), not the networks it trains: the average is what the policy
server acts with and what milestones keep. Checkpoints (network weights, optimiser state, counters, the
resolved config) are written atomically as safetensors + JSON; a restarted learner resumes them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from policy_server.calql import Agent, AgentConfig
from policy_server.feature_cache import FeatureCache
from policy_server.networks import AgentNetworks, NetworkConfig
from policy_server.replay_buffer import Batch, ReplayBuffer
from policy_server.weights import WeightFileError, WeightStore, load_into
from robofume.config_types import scalar_type_error
from robofume.devices import resolve_device

RECIPES: tuple[str, ...] = ("calql", "wsrl", "rlpd")


@dataclass(frozen=True)
class LearnerConfig:
    """Everything that defines a learner run; saved beside every checkpoint and weight file."""

    recipe: str = "calql"
    batch_size: int = 256
    utd_ratio: float = 4.0
    """Online updates per online transition."""
    actor_once_per_transition: bool = True
    """Online: every update trains the critic, but only every ``round(utd_ratio)``-th one also trains
    the actor and temperature, i.e. actor UTD 1 (the high-UTD update of RLPD and SERL: ``utd_ratio``
    critic steps, then one actor step). False: the actor trains on every update too."""
    pretrain_steps: int = 20_000
    """Offline Cal-QL updates (after the BC warm-up)."""
    bc_warmup_steps: int = 12_000
    """Pre-training starts with this many behaviour-cloning updates of encoder + actor on the demos
    (random-shift augmented). On the mock arm, Cal-QL alone (critic-trained encoder) reached 0 %
    forward success after 2,000 updates where BC reached 60 % (docs/benchmarks.md). 12k: on the
    learning bench's seed 1, 2k BC updates gave 0 % and 12k gave 76 %, and fine-tuning (critic
    first) takes a good BC policy further, but a 0 % one only to 40 % in 10k steps."""
    bc_prior_fraction: float = 0.0
    """Share of each BC warm-up batch drawn from the successful episodes of the prior data (other
    scenes and layouts: "put the object in the container" elsewhere), the rest from the demos; 0: the
    demos only. The prior data then also trains the encoder to find objects where no demo starts.
    Online, the actor's BC term never imitates prior data, whatever this is."""
    bc_average_tau: float = 0.0
    """BC warm-up: the encoder and actor it ends with are a Polyak average (EMA) of its iterates,
    moved this fraction toward the trained weights after every BC update; 0: the last iterate."""
    freeze_encoder_after_bc: bool = True
    """Cal-QL pre-training after the BC warm-up trains the heads on the BC encoder's cached features
    (about 15x cheaper per update on a CPU) instead of training the encoder end to end."""
    pretrain_trains_actor: bool = False
    """Whether Cal-QL pre-training also updates the actor. Off by default when there is a BC
    warm-up: the Cal-QL pre-training then pre-trains the critic for the BC policy (Cal-QL's
    conservative, calibrated Q), and the actor improves online. Measured on the mock arm: actor
    updates during pre-training took the BC policy from 20 % to 0 % forward success within 1,000
    updates, at BC weights 2.5 and 20 and CQL weights 0.2-5 (docs/benchmarks.md)."""
    wsrl_warmup_transitions: int = 5_000
    online_critic_warmup_updates: int = 2_500
    """Online: the first this many updates train the critic only; the actor and the temperature
    start after them (critic-first). The pre-trained critic is far from calibrated (on the mock arm,
    Q of the data actions between -13 and +2.4 with 0/1 rewards). Measured from a 76 % BC policy:
    actor updates from the first online step took it to 4 % within 2.5k steps; with 2,500
    critic-only updates first it rose to 94 % at 5k (docs/benchmarks.md)."""
    freeze_encoder_online: bool = True
    """Online: keep the pre-trained encoder frozen and train the heads on cached features (fast)."""
    publish_every: int = 50
    """Publish weights every this many updates (HIL-SERL: 50)."""
    keep_weight_versions: int = 20
    """Versions kept in ``weights/`` (the policy server's hot-swap channel); older ones are deleted
    after each publish (0 keeps all). At one version every 50 updates a session publishes about one
    a second, 1.2 MB each on the mock: 1.7 GB in 35 min when nothing was deleted."""
    milestone_every: int = 5_000
    """The version published at the end of pre-training and, online, the first after every this many
    updates are also kept for good in ``milestones/`` (0: only the pre-trained one), for evaluation
    and rollback."""
    policy_average_tau: float = 0.001
    """Online: the published policy (encoder and actor) is a Polyak average of the trained one,
    moved toward it by this fraction after every online update that trains the actor (with
    ``actor_once_per_transition``, once per online transition); 0 publishes the trained networks.
    The critics are always published as trained. Measured on the learning bench
    (docs/benchmarks.md): the trained policy's held-out success swung 12-42 points between
    evaluations 2.5k steps apart; its average at 0.001 rose nearly monotonically on seeds 1-3 and
    moved by up to 16 points on seeds 4 and 5, about the sampling noise of 50 held-out scenes."""
    checkpoint_every_s: float = 60.0
    log_every: int = 100
    seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; expected one of: {', '.join(RECIPES)}")
        if self.batch_size < 2 or self.utd_ratio <= 0 or self.publish_every < 1:
            raise ValueError("batch_size must be >= 2, utd_ratio > 0 and publish_every >= 1")
        if self.keep_weight_versions < 0 or self.milestone_every < 0:
            raise ValueError("keep_weight_versions and milestone_every must be >= 0")
        if self.pretrain_steps < 0 or self.bc_warmup_steps < 0 or self.online_critic_warmup_updates < 0:
            raise ValueError("pretrain_steps, bc_warmup_steps and online_critic_warmup_updates must be >= 0")
        if not 0.0 <= self.bc_prior_fraction < 1.0:
            raise ValueError(f"bc_prior_fraction must be in [0, 1), got {self.bc_prior_fraction}")
        if not 0.0 <= self.bc_average_tau <= 1.0:
            raise ValueError(f"bc_average_tau must be in [0, 1], got {self.bc_average_tau}")
        if not 0.0 <= self.policy_average_tau <= 1.0:
            raise ValueError(f"policy_average_tau must be in [0, 1], got {self.policy_average_tau}")


def config_to_dict(cfg: LearnerConfig) -> dict[str, Any]:
    """JSON-able resolved config."""
    return asdict(cfg)


def config_from_dict(data: dict[str, Any]) -> LearnerConfig:
    """Inverse of :func:`config_to_dict`; unknown keys at any level are a one-line ``ValueError``."""

    def build(cls: type, values: dict[str, Any], where: str) -> Any:
        if not isinstance(values, dict):
            raise ValueError(f"the {where} config must be a JSON object, got {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown {where} config key(s): {', '.join(unknown)}")
        for key, value in values.items():
            error = scalar_type_error(known[key], value, f"{where} config: ")
            if error:
                raise ValueError(error)
        kwargs = dict(values)
        for name, sub in (("network", NetworkConfig), ("agent", AgentConfig)):
            if name in kwargs and cls is LearnerConfig:
                kwargs[name] = build(sub, kwargs[name], name)
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a value of the wrong type, e.g. "batch_size": "64"
            raise ValueError(f"a {where} config value has the wrong type ({exc})") from None

    return build(LearnerConfig, data, "learner")


def batch_to_torch(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """Replay batch (numpy) -> tensors on ``device`` (frames only when the batch has them)."""
    keys = ("frames", "proprio", "actions", "rewards", "next_frames", "next_proprio", "terminals", "tasks")
    out = {
        k: torch.from_numpy(np.ascontiguousarray(getattr(batch, k))).to(device)
        for k in keys
        if getattr(batch, k) is not None
    }
    out["mc_returns"] = torch.from_numpy(batch.mc_returns).to(device)
    out["sources"] = torch.from_numpy(batch.sources.astype(np.int64)).to(device)
    return out


def concat_batches(a: Batch, b: Batch) -> Batch:
    """Stack two batches (RLPD's offline + online halves); frames stay ``None`` if either lacks them."""
    values: dict[str, np.ndarray | None] = {}
    for f in dataclasses.fields(Batch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        values[f.name] = None if x is None or y is None else np.concatenate([x, y])
    return Batch(**values)


def draw_bc_batch(
    buffer: ReplayBuffer, rng: np.random.Generator, batch_size: int, prior_fraction: float, source: str
) -> tuple[Batch, bool]:
    """A BC warm-up batch with frames: ``round(batch_size * prior_fraction)`` transitions of successful
    prior episodes, the rest of ``source``; and whether it holds prior transitions (which BC then
    imitates). With no prior share it is exactly ``buffer.sample(batch_size, rng, source)``."""
    n_prior = round(batch_size * prior_fraction)
    if n_prior == 0:
        return buffer.sample(batch_size, rng, source=source), False
    prior = buffer.valid_indices("prior")
    prior = prior[buffer.gather(prior, frames=False).mc_returns > 0]
    if len(prior) == 0:
        raise ValueError(
            f"bc_prior_fraction is {prior_fraction} but the replay buffer {buffer.root} holds no "
            "successful prior episodes"
        )
    rest = buffer.sample(batch_size - n_prior, rng, source=source)
    return concat_batches(rest, buffer.gather(prior[rng.integers(0, len(prior), n_prior)])), True


def policy_parameters(nets: AgentNetworks) -> list[torch.Tensor]:
    """The encoder's and the actor's parameters (detached): what the published policy is made of."""
    return [p.detach() for p in (*nets.encoder.parameters(), *nets.actor.parameters())]


class BCAverage:
    """A Polyak average (EMA) of the encoder and actor over the BC warm-up's iterates
    (``bc_average_tau``); :meth:`apply` makes the networks the average."""

    PREFIX = "bcavg."

    def __init__(self, nets: AgentNetworks, tau: float) -> None:
        self.tau = tau
        self._trained = policy_parameters(nets)
        self._averaged = [p.clone() for p in self._trained]

    def update(self) -> None:
        """Move the average ``tau`` of the way toward the networks (after a BC update)."""
        with torch.no_grad():
            torch._foreach_lerp_(self._averaged, self._trained, self.tau)

    def apply(self) -> None:
        """Copy the average into the networks."""
        with torch.no_grad():
            torch._foreach_copy_(self._trained, self._averaged)

    def state(self) -> dict[str, torch.Tensor]:
        """The average as a flat tensor dict (checkpoints)."""
        return {f"{self.PREFIX}{i}": t.detach().clone() for i, t in enumerate(self._averaged)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state`; a count or shape that does not match is a ``ValueError``."""
        if len(state) != len(self._averaged):
            raise ValueError(f"a BC average of {len(state)} tensors does not fit {len(self._averaged)}")
        with torch.no_grad():
            for i, t in enumerate(self._averaged):
                value = state[f"{self.PREFIX}{i}"]
                if value.shape != t.shape:
                    got, want = tuple(value.shape), tuple(t.shape)
                    raise ValueError(f"BC average tensor {i} has shape {got}, not {want}")
                t.copy_(value)


class Learner:
    """Trains the agent from a replay buffer, publishes weights, checkpoints and resumes."""

    def __init__(
        self,
        cfg: LearnerConfig,
        run_dir: str | os.PathLike[str],
        buffer: ReplayBuffer,
        device: str = "auto",
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.buffer = buffer
        self.device = resolve_device(device)
        self.log = log or (lambda msg: print(f"robofume learner: {msg}", file=sys.stderr))
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.nets = AgentNetworks(cfg.network).to(self.device)
        self.agent = Agent(self.nets, cfg.agent)
        self.features = FeatureCache(self.nets.encoder, self.device)
        # The published policy online: a Polyak average of encoder and actor (policy_average_tau).
        self.average: AgentNetworks | None = None
        self._averaged: list[torch.Tensor] = []
        self._trained: list[torch.Tensor] = []
        if cfg.policy_average_tau > 0:
            self.average = AgentNetworks(cfg.network).to(self.device).requires_grad_(False)
            self._averaged = [*self.average.encoder.parameters(), *self.average.actor.parameters()]
            self._trained = policy_parameters(self.nets)
        self._average_synced = False  # set once the average starts from the trained networks
        self.bc_average: BCAverage | None = None  # during the BC warm-up, with bc_average_tau > 0
        self._features_encoder = -1  # encoder_updates when the cache was filled (the encoder then)
        self._encoder_updates = 0  # updates that trained the encoder since this process started
        self.weights = WeightStore(self.run_dir / "weights")
        self.checkpoints = WeightStore(self.run_dir / "checkpoints")
        self.milestones = WeightStore(self.run_dir / "milestones")
        self.counters: dict[str, int] = {
            "updates": 0,
            "bc_updates": 0,
            "pretrain_updates": 0,
            "online_updates": 0,
            "weight_version": 0,
        }
        self._last_checkpoint = time.monotonic()
        self._tb: Any = None
        self.resumed = self._resume()

    # ------------------------------------------------------------ batches
    def _draw(self, n: int, source: str | None, frames: bool) -> tuple[Batch, np.ndarray]:
        """``n`` uniform transitions of ``source`` and their buffer slots."""
        idx = self.buffer.valid_indices(source)
        if len(idx) == 0:
            which = f"{source} transitions" if source else "transitions"
            raise ValueError(f"cannot sample: the replay buffer {self.buffer.root} holds no {which}")
        slots = idx[self.rng.integers(0, len(idx), n)]
        return self.buffer.gather(slots, frames=frames), slots

    def sample_with_slots(self, phase: str, frames: bool = True) -> tuple[Batch, np.ndarray]:
        """A batch for ``phase`` ("pretrain" or "online") following the recipe, with its slots;
        ``frames=False`` leaves the batch's frames out (``None``)."""
        bs, recipe = self.cfg.batch_size, self.cfg.recipe
        if phase == "pretrain":
            return self._draw(bs, "offline", frames)
        if recipe == "wsrl":
            return self._draw(bs, "online", frames)
        if recipe == "rlpd":
            half = bs // 2
            offline, s1 = self._draw(half, "offline", frames)
            online, s2 = self._draw(bs - half, "online", frames)
            return concat_batches(offline, online), np.concatenate([s1, s2])
        return self._draw(bs, None, frames)

    def uses_cached_features(self, phase: str) -> bool:
        """Whether updates of ``phase`` train on the frozen encoder's cached features."""
        if phase == "pretrain":
            return self.cfg.freeze_encoder_after_bc and self.cfg.bc_warmup_steps > 0
        return phase == "online" and self.cfg.freeze_encoder_online

    def sample(self, phase: str) -> Batch:
        """A batch for ``phase`` following the recipe."""
        return self.sample_with_slots(phase)[0]

    def _tensors(self, phase: str) -> dict[str, torch.Tensor]:
        if not self.uses_cached_features(phase):
            return batch_to_torch(self.sample(phase), self.device)
        # Frozen encoder: only the frames not encoded yet are read from the buffer.
        batch, slots = self.sample_with_slots(phase, frames=False)
        if self._features_encoder != self._encoder_updates:  # the encoder was trained since
            self.features.clear()
            self._features_encoder = self._encoder_updates
        obs_slots = self.buffer.observation_slots(slots)  # o_t then o_{t+1}
        both = self.features.features(obs_slots, self.buffer.slot_stamps(obs_slots), self.buffer.frames_at)
        tensors = batch_to_torch(batch, self.device)
        tensors["features"], tensors["next_features"] = both[: len(slots)], both[len(slots) :]
        return tensors

    def _cql_alpha(self, phase: str) -> float:
        if phase == "pretrain" or self.cfg.recipe == "calql":
            return self.cfg.agent.cql_alpha
        return 0.0

    def _trains_actor(self, phase: str) -> bool:
        """Whether the next update of ``phase`` also trains the actor (see ``actor_once_per_transition``)."""
        if phase == "pretrain":
            return self.cfg.pretrain_trains_actor or self.cfg.bc_warmup_steps == 0
        if phase != "online":
            return True
        if self.counters["online_updates"] < self.cfg.online_critic_warmup_updates:
            return False
        if not self.cfg.actor_once_per_transition:
            return True
        period = max(1, round(self.cfg.utd_ratio))
        return (self.counters["online_updates"] + 1) % period == 0

    def update(self, phase: str) -> dict[str, float]:
        """One gradient update of ``phase``: "bc" (warm-up), "pretrain" or "online"."""
        if phase == "bc":
            batch, with_prior = draw_bc_batch(
                self.buffer, self.rng, self.cfg.batch_size, self.cfg.bc_prior_fraction, self._bc_source()
            )
            if self.cfg.bc_average_tau > 0 and self.bc_average is None:  # the first BC update: from the init
                self.bc_average = BCAverage(self.nets, self.cfg.bc_average_tau)
            metrics = self.agent.bc_update(batch_to_torch(batch, self.device), imitate_prior=with_prior)
            if self.bc_average is not None:
                self.bc_average.update()
            self._encoder_updates += 1
        else:
            cached = self.uses_cached_features(phase)
            trains_actor = self._trains_actor(phase)
            if phase == "online" and not self._average_synced:
                self.sync_average()  # the average starts from the pre-trained policy
            metrics = self.agent.update(
                self._tensors(phase), cql_alpha=self._cql_alpha(phase), update_actor=trains_actor
            )
            self._encoder_updates += int(not cached)
            if phase == "online" and self.average is not None and (trains_actor or not cached):
                with torch.no_grad():
                    torch._foreach_lerp_(self._averaged, self._trained, self.cfg.policy_average_tau)
        self.counters["updates"] += 1
        self.counters[f"{phase}_updates"] += 1
        if self.counters["updates"] % self.cfg.log_every == 0:
            self._log_scalars(metrics)
        if self.counters["updates"] % self.cfg.publish_every == 0:
            self.publish()
        if time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint_every_s:
            self.save_checkpoint()
        return metrics

    # ------------------------------------------------------------ phases
    def _bc_source(self) -> str:
        """The demos, or all offline data (BC keeps successful episodes only) when there are none."""
        return "demos" if len(self.buffer.valid_indices("demos")) else "offline"

    def pretrain(
        self, steps: int | None = None, progress: bool = True, bc_steps: int | None = None
    ) -> dict[str, float]:
        """BC warm-up (``bc_warmup_steps``), then offline Cal-QL on the buffer's offline data
        (``pretrain_steps``); continues where a resumed run stopped."""
        bc_total = self.cfg.bc_warmup_steps if bc_steps is None else bc_steps
        metrics: dict[str, float] = {}
        bc_todo = max(0, bc_total - self.counters["bc_updates"])
        for _ in tqdm(range(bc_todo), desc="bc warm-up", unit="upd", disable=not progress):
            metrics = self.update("bc")
        if self.bc_average is not None:  # the warm-up ends with its average
            self.bc_average.apply()
            self.bc_average = None
            self._encoder_updates += 1  # features cached from the last iterate are stale
        total = self.cfg.pretrain_steps if steps is None else steps
        todo = max(0, total - self.counters["pretrain_updates"])
        for _ in tqdm(range(todo), desc="pretrain", unit="upd", disable=not progress):
            metrics = self.update("pretrain")
        self.publish(milestone=True)
        self.save_checkpoint()
        return metrics

    def online_transitions(self) -> int:
        """Online transitions currently in the buffer."""
        return len(self.buffer.valid_indices("online"))

    def update_budget(self) -> int:
        """Online updates allowed now by the update-to-data ratio (and the WSRL warm-up)."""
        n = self.online_transitions()
        if self.cfg.recipe == "wsrl" and n < self.cfg.wsrl_warmup_transitions:
            return 0
        return max(0, int(self.cfg.utd_ratio * n) - self.counters["online_updates"])

    def train_online(
        self, stop: Callable[[], bool], max_updates: int | None = None, poll_s: float = 0.05
    ) -> int:
        """Train while ``stop()`` is false: refresh the buffer, spend the update budget, publish and
        checkpoint as configured. Returns the number of updates done."""
        done = 0
        while not stop() and (max_updates is None or done < max_updates):
            self.buffer.refresh()
            budget = self.update_budget()
            if max_updates is not None:
                budget = min(budget, max_updates - done)
            if budget <= 0:
                time.sleep(poll_s)
                continue
            for _ in range(budget):
                self.update("online")
                done += 1
                if stop():
                    break
        self.publish()
        self.save_checkpoint()
        return done

    # ------------------------------------------------------------ weights and checkpoints
    def sync_average(self) -> None:
        """Set the averaged policy to the trained networks (at the start of fine-tuning)."""
        if self.average is not None:
            self.average.load_state_dict(self.nets.state_dict())
        self._average_synced = True

    def policy_networks(self) -> AgentNetworks:
        """The networks the published policy acts with: the Polyak average online (once fine-tuning
        has started and ``policy_average_tau`` > 0), else the trained networks."""
        if self.average is not None and self._average_synced:
            return self.average
        return self.nets

    def published_state(self) -> dict[str, torch.Tensor]:
        """The state dict :meth:`publish` writes: the trained networks with encoder and actor taken
        from :meth:`policy_networks`."""
        state = self.nets.state_dict()
        policy = self.policy_networks()
        if policy is not self.nets:
            state.update(
                {k: v for k, v in policy.state_dict().items() if k.startswith(("encoder.", "actor."))}
            )
        return state

    def publish(self, milestone: bool = False) -> int:
        """Publish the current networks as a new weight version for the policy server; copy it to
        ``milestones/`` when ``milestone`` (the end of pre-training) or, online, when it crosses a
        ``milestone_every`` boundary; delete all but the newest ``keep_weight_versions`` versions."""
        state, config, step = self.published_state(), config_to_dict(self.cfg), self.counters["updates"]
        version = self.weights.publish(state, config, step=step)
        self.counters["weight_version"] = version
        last = self.milestones.latest_version()
        last_step = self.milestones.read_meta(last).step if last is not None else None
        every = self.cfg.milestone_every
        if milestone:
            keep = last_step != step  # a resumed pre-training with nothing left to do adds none
        elif self.counters["online_updates"] > 0:
            keep = last_step is None or bool(every and step // every > last_step // every)
        else:
            keep = False
        if keep:
            self.milestones.publish(state, config, step=step)
        if self.cfg.keep_weight_versions:
            self.weights.prune(self.cfg.keep_weight_versions)
        return version

    def save_checkpoint(self, keep: int = 3) -> int:
        """Atomically save networks, optimiser state, counters and config; keep the newest ``keep``."""
        state = {f"nets.{k}": v for k, v in self.nets.state_dict().items()}
        state.update({f"agent.{k}": v for k, v in self.agent.optimizer_state().items()})
        if self.average is not None and self._average_synced:
            state.update({f"avg.{k}": v for k, v in self.average.state_dict().items()})
        if self.bc_average is not None:
            state.update(self.bc_average.state())
        meta = {"learner": config_to_dict(self.cfg), "counters": dict(self.counters)}
        version = self.checkpoints.publish(state, meta, step=self.counters["updates"])
        self.checkpoints.prune(keep)
        self._last_checkpoint = time.monotonic()
        return version

    def _resume(self) -> bool:
        """Load the newest loadable checkpoint; a damaged one is reported and the previous one used."""
        for version in reversed(self.checkpoints.versions()):
            try:
                state, meta = self.checkpoints.load(version)
            except (WeightFileError, FileNotFoundError) as exc:
                self.log(f"skipping checkpoint {version}: {exc}")
                continue
            saved = meta.config.get("learner", {})
            if saved.get("network") != config_to_dict(self.cfg)["network"]:
                raise ValueError(
                    f"checkpoint {version} in {self.checkpoints.root} has another network config; "
                    "use a new run folder or the same settings"
                )
            nets_state = {k[5:]: v for k, v in state.items() if k.startswith("nets.")}
            load_into(self.nets, nets_state)
            avg_state = {k[4:]: v for k, v in state.items() if k.startswith("avg.")}
            if self.average is not None and avg_state:
                load_into(self.average, avg_state)
                self._average_synced = True
            bc_avg_state = {k: v for k, v in state.items() if k.startswith(BCAverage.PREFIX)}
            if bc_avg_state and self.cfg.bc_average_tau > 0:  # stopped mid-warm-up: its average goes on
                self.bc_average = BCAverage(self.nets, self.cfg.bc_average_tau)
                self.bc_average.load(bc_avg_state)
            elif bc_avg_state:
                self.log("bc_average_tau is now 0: the BC warm-up ends with its last iterate")
            self.agent.load_optimizer_state(
                {k[6:]: v.to(self.device) for k, v in state.items() if k.startswith("agent.")}
            )
            saved_counters = {k: int(v) for k, v in meta.config["counters"].items()}
            if "bc_updates" not in saved_counters and saved_counters.get("pretrain_updates", 0) > 0:
                saved_counters["bc_updates"] = self.cfg.bc_warmup_steps  # pre-trained before BC warm-ups
            self.counters.update(saved_counters)
            self.log(f"resumed from checkpoint {version} at update {self.counters['updates']}")
            return True
        return False

    def _log_scalars(self, metrics: dict[str, float]) -> None:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb = False
                return
            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        if self._tb:
            step = self.counters["updates"]
            for key, value in metrics.items():
                self._tb.add_scalar(key, value, step)
            self._tb.add_scalar("charts/weight_version", self.counters["weight_version"], step)

    def close(self) -> None:
        """Flush TensorBoard logs."""
        if self._tb:
            self._tb.close()


def write_resolved_config(run_dir: str | os.PathLike[str], cfg: LearnerConfig) -> None:
    """Save the resolved config as ``config.json`` in the run folder (human reference)."""
    from robofume.atomic_io import write_json_atomic

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(run_dir) / "config.json", config_to_dict(cfg))


def load_config_file(path: str | os.PathLike[str]) -> LearnerConfig:
    """A learner config from JSON; unknown keys, and a file that is not JSON, are a one-line error."""
    with open(path) as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON learner config ({exc})") from None
    return config_from_dict(data)
