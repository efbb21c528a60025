"""Cal-QL / SAC updates for :class:`policy_server.networks.AgentNetworks`.

One update step on a batch (from ``policy_server.replay_buffer``):

* critic: TD error to ``r + gamma * (1 - terminal) * min_i Q_target_i(s', a')``, ``a' ~ pi(s')``.
  Only terminal transitions cut the bootstrap; time-limit truncations bootstrap.
* CQL regulariser (``cql_alpha > 0``): push down ``logsumexp`` of Q over random and policy
  actions, push up Q of the data actions. **Cal-QL**: the policy-action Q values in the push-down
  term are floored by the Monte-Carlo return of the data (``calql_lower_bound``), so the learned
  Q stays calibrated (never pushed below the return the data actually achieved) and online
  fine-tuning does not start with a collapse.
* actor: SAC's ``alpha * log pi - Q`` (times ``actor_q_weight``) plus a BC term scaled to the RL loss
  (TD3+BC style: the MSE to the data action times the mean |Q|), so ``bc_weight`` means the same at
  any reward scale. Or (``actor_objective="crr"``) critic-regularised regression: the same MSE to
  the data action, over every transition but prior data (failed attempts too), each weighted by
  how much the critic prefers the data action to the policy's (``crr_weights``).
* temperature: SAC's automatic entropy tuning toward ``-action_dim``.

A batch may carry ``features``/``next_features`` instead of frames: the encoder is then frozen
(features computed once per stored frame, see ``policy_server.feature_cache``) and only the heads
train, which is what makes online updates fast on a CPU.

``cql_alpha = 0`` gives plain SAC (used by WSRL after its warm-up and by SAC from scratch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from policy_server.augment import random_shift
from policy_server.networks import AgentNetworks
from policy_server.replay_buffer import Source

ACTOR_OBJECTIVES: tuple[str, ...] = ("sac_bc", "crr")
"""Actor losses (``AgentConfig.actor_objective``)."""
CRR_MAX_WEIGHT = 20.0
"""Cap of CRR's exponential weights (CRR's own value)."""
BATCH_KEYS = ("frames", "proprio", "actions", "rewards", "next_frames", "next_proprio", "terminals", "tasks")


@dataclass(frozen=True)
class AgentConfig:
    """Hyper-parameters of the update rule (defaults follow RoboFuME / Cal-QL / SERL)."""

    gamma: float = 0.97
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_temperature: float = 0.1
    cql_alpha: float = 1.0
    """Weight of the CQL regulariser; 0 turns it off (SAC). 1, not Cal-QL's 5: with 0/1 rewards and
    5, the data-action Q values of the mock arm drifted to 3.4 and the TD error to 4-20 within 1,500
    pre-training updates; at 1 the TD error stayed near 1 (docs/benchmarks.md)."""
    cql_num_actions: int = 4
    calql: bool = True
    """Floor the policy-action Q values of the CQL term by the Monte-Carlo return (Cal-QL)."""
    bc_weight: float = 100.0
    """Weight of the behaviour-cloning term, relative to the actor's RL loss (TD3+BC's alpha = 2.5
    is 0.4 here). 100: at 2.5 the Q gradient pulled the precise grasp apart within 2k online
    updates (docs/benchmarks.md). BC imitates transitions of successful episodes only (Monte-Carlo
    return > 0), never prior data (``imitation_returns``): the demos, and online the policy's own
    successes."""
    actor_q_weight: float = 1.0
    """Weight of the actor's RL loss (SAC's ``alpha * log pi - Q``); 0: the actor only imitates
    (the BC term), as in the learning bench's ``bc_finetune`` control, which isolates what the RL
    term adds."""
    actor_objective: str = "sac_bc"
    """``sac_bc``: SAC's RL loss (times ``actor_q_weight``) plus the success-filtered BC term.
    ``crr``: critic-regularised regression (CRR, Wang et al. 2020): the actor's mean action regresses
    onto the data actions of every transition except prior data, failed attempts included, each
    weighted by ``crr_weights`` of its advantage ``Q(s, a_data) - mean_a' Q(s, a')`` (``a' ~ pi``,
    ``cql_num_actions`` draws). The critic then chooses what is imitated instead of pulling the
    actions along its gradient; ``actor_q_weight`` and ``bc_weight`` are not used."""
    crr_beta: float = 0.0
    """CRR's filter: 0 keeps the transitions whose advantage is positive (weight 1, the "binary"
    filter, free of the reward's scale); > 0 weighs each by ``exp(advantage / crr_beta)``, capped
    at ``CRR_MAX_WEIGHT``."""
    encoder_bc_weight: float = 0.0
    """Updates from frames: weight of an auxiliary BC loss (MSE of the actor's mean action to the
    data action, successful episodes only) whose gradient trains the encoder beside the critic's.
    With few updates the critic alone barely shapes the encoder; this makes it see the object."""
    bc_std: float = 0.1
    """BC warm-up: the actor's (pre-tanh) standard deviation is trained toward this value; 0.1 is
    the action noise of the scripted demos. Online, SAC's entropy tuning takes over."""
    entropy_per_action_dim: float = -2.0
    """Entropy target of the temperature tuning, per action dimension (SAC's is -1). -2: about the
    entropy the BC warm-up leaves the actor at (spread ``bc_std``, tanh included; -9.9 measured for
    the mock arm's 5 dimensions), so online exploration stays on the demonstrator's scale. At -1
    the tuning raised the spread from 0.10 to 0.30 within 5k online updates (docs/benchmarks.md)."""
    aug_pad: int = 4
    """Updates from frames: DrQ random shift of up to this many pixels (0: off); see
    ``policy_server.augment``."""
    grad_clip: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if min(self.cql_alpha, self.bc_weight, self.encoder_bc_weight, self.actor_q_weight) < 0:
            raise ValueError("cql_alpha, bc_weight, encoder_bc_weight and actor_q_weight must be >= 0")
        if self.actor_objective not in ACTOR_OBJECTIVES:
            raise ValueError(
                f"actor_objective must be one of {', '.join(ACTOR_OBJECTIVES)}, got {self.actor_objective!r}"
            )
        if self.crr_beta < 0:
            raise ValueError(f"crr_beta must be >= 0, got {self.crr_beta}")
        if self.actor_objective == "sac_bc" and self.actor_q_weight == 0 and self.bc_weight == 0:
            raise ValueError("the actor needs a loss: actor_q_weight and bc_weight cannot both be 0")
        if not 0.0 < self.bc_std <= 1.0:
            raise ValueError(f"bc_std must be in (0, 1], got {self.bc_std}")
        if self.aug_pad < 0:
            raise ValueError(f"aug_pad must be >= 0, got {self.aug_pad}")
        if self.cql_num_actions < 1:
            raise ValueError(f"cql_num_actions must be >= 1, got {self.cql_num_actions}")


def td_target(
    rewards: torch.Tensor, terminals: torch.Tensor, next_q: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``r + gamma * (1 - terminal) * next_q``: truncated (non-terminal) transitions bootstrap."""
    return rewards + gamma * (1.0 - terminals) * next_q


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` (L2, foreach) without its per-call grouping overhead: scale
    the gradients of ``params`` (those that have one) so that their total norm is at most ``max_norm``."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def success_weighted_mean(per_sample: torch.Tensor, mc_returns: torch.Tensor) -> torch.Tensor:
    """Mean of per-transition values over the transitions of successful episodes (Monte-Carlo
    return > 0) only; 0 when the batch has none."""
    mask = (mc_returns.reshape(-1) > 0).to(per_sample.dtype)
    return (per_sample * mask).sum() / mask.sum().clamp(min=1.0)


def imitation_returns(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Monte-Carlo returns that decide what BC imitates: zeroed for prior data (other tasks and
    scenes, which the target policy must not copy), so BC sees successful demos and successful
    online episodes only. Measured: with prior data in the BC term, online updates took the
    pre-trained policy from 40 % to 0 % forward success even at BC weight 1,000."""
    mc = batch["mc_returns"]
    if "sources" not in batch:
        return mc
    return torch.where(batch["sources"].reshape(mc.shape) == int(Source.PRIOR), torch.zeros_like(mc), mc)


def success_weighted_mse(pred: torch.Tensor, target: torch.Tensor, mc_returns: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the transitions of successful episodes only: filtered BC, which never
    imitates failed attempts; 0 when the batch has none."""
    return success_weighted_mean((pred - target).square().mean(dim=-1), mc_returns)


def non_prior_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """1.0 for every transition that is not prior data (demos, scripted failures, online), else 0.0;
    shaped like ``rewards``. All ones when the batch carries no ``sources``."""
    rewards = batch["rewards"]
    if "sources" not in batch:
        return torch.ones_like(rewards, dtype=torch.float32)
    return (batch["sources"].reshape(rewards.shape) != int(Source.PRIOR)).float()


def crr_weights(advantages: torch.Tensor, beta: float) -> torch.Tensor:
    """CRR's per-transition imitation weights: ``1[A > 0]`` when ``beta`` is 0 (binary filter), else
    ``min(exp(A / beta), CRR_MAX_WEIGHT)``."""
    if beta == 0:
        return (advantages > 0).to(advantages.dtype)
    return torch.exp(advantages / beta).clamp(max=CRR_MAX_WEIGHT)


def calql_lower_bound(q_values: torch.Tensor, mc_returns: torch.Tensor) -> torch.Tensor:
    """Cal-QL: floor Q values of policy actions by the data's Monte-Carlo return (broadcast over
    leading critic and trailing sample dimensions)."""
    return torch.maximum(q_values, mc_returns.reshape(1, -1, 1).to(q_values.dtype))


class Agent:
    """Owns the networks' optimisers and performs Cal-QL / SAC updates."""

    def __init__(self, nets: AgentNetworks, cfg: AgentConfig) -> None:
        self.nets = nets
        self.cfg = cfg
        self.device = next(nets.parameters()).device
        self.critic_params = [*nets.encoder.parameters(), *nets.critic.parameters()]
        critic_params = self.critic_params
        # Fused Adam (one kernel over every tensor; CPU and CUDA): 0.9 ms instead of 3.1 ms per step
        # for the default heads on one CPU thread. Same update rule and state-dict keys.
        fused = self.device.type in ("cpu", "cuda")
        self.critic_opt = torch.optim.Adam(critic_params, lr=cfg.critic_lr, fused=fused)
        self.actor_params = list(nets.actor.parameters())
        self.actor_opt = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr, fused=fused)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=self.device, requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr, fused=fused)
        # Behaviour-cloning warm-up (Learner.pretrain): encoder and actor trained end to end.
        self.bc_params = [*nets.encoder.parameters(), *nets.actor.parameters()]
        self.bc_opt = torch.optim.Adam(self.bc_params, lr=cfg.actor_lr, fused=fused)
        self.target_entropy = cfg.entropy_per_action_dim * nets.cfg.action_dim
        # Polyak pairs of nets.soft_update_targets, listed once (module.parameters() walks the tree).
        self._targets = [*nets.target_encoder.parameters(), *nets.target_critic.parameters()]
        self._onlines = [*nets.encoder.parameters(), *nets.critic.parameters()]

    def _sample_actions(self, state: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n policy actions per state: (B, n, A) actions and (B, n) log-probs."""
        rep = state.repeat_interleave(n, dim=0)
        actions, log_probs = self.nets.actor(rep)
        return actions.view(state.shape[0], n, -1), log_probs.view(state.shape[0], n)

    def _q_of(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q of (B, n, A) actions: (num_critics, B, n)."""
        b, n, a = actions.shape
        q = self.nets.critic(state.repeat_interleave(n, dim=0), actions.reshape(b * n, a))
        return q.view(-1, b, n)

    def update(
        self, batch: dict[str, torch.Tensor], cql_alpha: float | None = None, update_actor: bool = True
    ) -> dict[str, float]:
        """One gradient step of critic (+ CQL), then (unless ``update_actor`` is false: a critic-only
        step, as in RLPD/SERL's high-UTD updates) actor and temperature; returns scalar metrics."""
        cfg, nets = self.cfg, self.nets
        cql_alpha = cfg.cql_alpha if cql_alpha is None else cql_alpha
        b = {k: v.to(self.device) for k, v in batch.items()}
        alpha = self.log_alpha.exp().detach()
        stats: dict[str, torch.Tensor] = {}  # read back once at the end (one device sync, not one per value)

        if "features" in b:  # frozen encoder: features precomputed per frame, the CNN is not trained
            state = nets.state_from_features(b["features"], b["proprio"], b["tasks"])
            next_state = nets.state_from_features(b["next_features"], b["next_proprio"], b["tasks"])
            target_state = next_state
        else:
            frames, next_frames = (
                random_shift(b["frames"], cfg.aug_pad),
                random_shift(b["next_frames"], cfg.aug_pad),
            )
            state = nets.state(frames, b["proprio"], b["tasks"])
            with torch.no_grad():
                next_state = nets.state(next_frames, b["next_proprio"], b["tasks"])
                target_state = nets.state(next_frames, b["next_proprio"], b["tasks"], target=True)
        with torch.no_grad():
            next_action = nets.actor.sample(next_state)
            next_q = nets.target_critic(target_state, next_action).min(dim=0).values
            target = td_target(b["rewards"].float(), b["terminals"].float(), next_q, cfg.gamma)
        q_data = nets.critic(state, b["actions"].float())
        td_loss = ((q_data - target.unsqueeze(0)) ** 2).mean(dim=1).sum()
        stats["losses/td"], stats["charts/q_data"] = td_loss.detach(), q_data.detach().mean()

        critic_loss = td_loss
        if cql_alpha > 0:
            n = cfg.cql_num_actions
            act_dim = nets.cfg.action_dim
            rand = torch.rand(state.shape[0], n, act_dim, device=self.device) * 2 - 1
            with torch.no_grad():
                pi_a, pi_logp = self._sample_actions(state.detach(), n)
                next_a, next_logp = self._sample_actions(next_state, n)
            q_rand = self._q_of(state, rand) - act_dim * math.log(0.5)
            q_pi = self._q_of(state, pi_a)
            q_next = self._q_of(state, next_a)
            if cfg.calql:
                mc = b["mc_returns"].float()
                stats["charts/calql_bound_rate"] = (q_pi.detach() < mc.reshape(1, -1, 1)).float().mean()
                q_pi, q_next = calql_lower_bound(q_pi, mc), calql_lower_bound(q_next, mc)
            cat = torch.cat([q_rand, q_pi - pi_logp.unsqueeze(0), q_next - next_logp.unsqueeze(0)], dim=-1)
            cql_gap = (torch.logsumexp(cat, dim=-1) - q_data).mean(dim=1).sum()
            critic_loss = critic_loss + cql_alpha * cql_gap
            stats["losses/cql_gap"] = cql_gap.detach()

        if cfg.encoder_bc_weight > 0 and "features" not in b:
            # The actor's weights get gradients here too; _update_actor overwrites them before its step.
            mean_action, _ = nets.actor(state, deterministic=True)
            encoder_bc = success_weighted_mse(mean_action, b["actions"].float(), imitation_returns(b))
            critic_loss = critic_loss + cfg.encoder_bc_weight * encoder_bc
            stats["losses/encoder_bc"] = encoder_bc.detach()

        for p in self.critic_params:  # = critic_opt.zero_grad(set_to_none=True)
            p.grad = None
        critic_loss.backward()
        clip_grad_norm(self.critic_params, cfg.grad_clip)
        self.critic_opt.step()
        stats["losses/critic"] = critic_loss.detach()
        if update_actor:
            if cfg.actor_objective == "crr":
                self._update_actor_crr(state.detach(), b["actions"], non_prior_mask(b), stats)
            else:
                self._update_actor(state.detach(), b["actions"], imitation_returns(b), alpha, stats)
        with torch.no_grad():  # = nets.soft_update_targets(cfg.tau)
            torch._foreach_lerp_(self._targets, self._onlines, cfg.tau)
        stats["charts/alpha"] = alpha
        values = torch.stack([v.float() for v in stats.values()]).tolist()
        return dict(zip(stats, values, strict=True))

    def _update_actor(
        self, actor_state: torch.Tensor, data_actions: torch.Tensor, mc_returns: torch.Tensor,
        alpha: torch.Tensor, stats: dict[str, torch.Tensor],
    ) -> None:  # fmt: skip
        """SAC actor step (+ scaled BC term) and temperature step on detached states."""
        cfg, nets = self.cfg, self.nets
        action, log_prob = nets.actor(actor_state)
        q_pi_actor = nets.critic(actor_state, action).mean(dim=0)
        actor_loss = cfg.actor_q_weight * (alpha * log_prob - q_pi_actor).mean()
        if cfg.bc_weight > 0:
            mean_action, _ = nets.actor(actor_state, deterministic=True)
            bc = success_weighted_mse(mean_action, data_actions.float(), mc_returns)
            # scaled to the RL loss; with no RL loss (actor_q_weight 0) plain BC
            scale = q_pi_actor.abs().mean().detach().clamp(min=1.0) if cfg.actor_q_weight > 0 else 1.0
            actor_loss = actor_loss + cfg.bc_weight * scale * bc
            stats["losses/bc"] = bc.detach()
        self._step_actor(actor_loss, log_prob, stats)

    def _update_actor_crr(
        self, actor_state: torch.Tensor, data_actions: torch.Tensor, keep: torch.Tensor,
        stats: dict[str, torch.Tensor],
    ) -> None:  # fmt: skip
        """CRR actor step: advantage-weighted regression of the mean action onto the data actions of
        the transitions ``keep`` marks (see ``AgentConfig.actor_objective``), then the temperature."""
        cfg, nets = self.cfg, self.nets
        data_actions, keep = data_actions.float(), keep.reshape(-1)
        with torch.no_grad():
            q_data = nets.critic(actor_state, data_actions).mean(dim=0)
            pi_a, _ = self._sample_actions(actor_state, cfg.cql_num_actions)
            value = self._q_of(actor_state, pi_a).mean(dim=(0, 2))
            weights = crr_weights(q_data - value, cfg.crr_beta) * keep
        mean_action, _ = nets.actor(actor_state, deterministic=True)
        mse = (mean_action - data_actions).square().mean(dim=-1)
        kept = keep.sum().clamp(min=1.0)
        actor_loss = (weights * mse).sum() / kept  # a mean over the transitions of the kept sources
        stats["losses/crr_mse"] = mse.detach().mean()
        stats["charts/crr_kept"] = ((weights > 0).float() * keep).sum() / kept
        stats["charts/crr_weight"] = weights.sum() / kept
        with torch.no_grad():
            _, log_prob = nets.actor(actor_state)  # for the temperature only
        self._step_actor(actor_loss, log_prob, stats)

    def _step_actor(
        self, actor_loss: torch.Tensor, log_prob: torch.Tensor, stats: dict[str, torch.Tensor]
    ) -> None:
        """Clipped actor step on ``actor_loss``, then SAC's temperature step from ``log_prob``."""
        cfg = self.cfg
        # Gradients of the actor only: the pass through the critic computes no critic weight gradients
        # (backward() would, and the next critic step would discard them).
        grads = torch.autograd.grad(actor_loss, self.actor_params)
        for p, g in zip(self.actor_params, grads, strict=True):
            p.grad = g
        clip_grad_norm(self.actor_params, cfg.grad_clip)
        self.actor_opt.step()

        # Temperature: the loss -(log_alpha * (log_prob + target_entropy)).mean() has the gradient
        # -(log_prob + target_entropy).mean() with respect to log_alpha; set it without autograd.
        self.log_alpha.grad = -(log_prob.detach() + self.target_entropy).mean()
        self.alpha_opt.step()
        stats["losses/actor"], stats["charts/entropy"] = actor_loss.detach(), -log_prob.detach().mean()

    def bc_update(self, batch: dict[str, torch.Tensor], imitate_prior: bool = False) -> dict[str, float]:
        """One behaviour-cloning step of encoder + actor on frames randomly shifted: MSE of the actor's
        mean action to the data action, plus the spread pulled to ``bc_std``, over the transitions
        :func:`imitation_returns` keeps (with ``imitate_prior``, successful prior episodes too).
        Needs frames."""
        cfg, nets = self.cfg, self.nets
        if "frames" not in batch:
            raise ValueError("a BC update needs frames (the encoder trains end to end)")
        b = {k: v.to(self.device) for k, v in batch.items()}
        frames = random_shift(b["frames"], cfg.aug_pad)
        mean, log_std = nets.actor.mean_and_spread(nets.state(frames, b["proprio"], b["tasks"]))
        actions, mc = b["actions"].float(), b["mc_returns"] if imitate_prior else imitation_returns(b)
        loss = success_weighted_mse(torch.tanh(mean), actions, mc)
        # The spread: pulled to bc_std, so that sampled actions explore around the BC action on the
        # demonstrator's scale (not at the initial std of about 1, which made every sampled forward
        # attempt fail on the mock arm).
        spread = (log_std - math.log(cfg.bc_std)).square().mean(dim=-1)
        loss = loss + success_weighted_mean(spread, mc)
        for p in self.bc_params:
            p.grad = None
        loss.backward()  # no gradient clipping: plain BC trains best unclipped here (measured)
        self.bc_opt.step()
        return {"losses/bc_warmup": float(loss.item()), "charts/bc_log_std": float(log_std.mean().item())}

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict of optimiser states and the temperature, for safetensors checkpoints."""
        out: dict[str, torch.Tensor] = {"log_alpha": self.log_alpha.detach().clone()}
        for name, opt in self._optimizers():
            for idx, st in opt.state_dict()["state"].items():
                for key, value in st.items():
                    out[f"opt.{name}.{idx}.{key}"] = torch.as_tensor(value).detach().clone()
        return out

    def _optimizers(self) -> tuple[tuple[str, torch.optim.Optimizer], ...]:
        return (("critic", self.critic_opt), ("actor", self.actor_opt), ("alpha", self.alpha_opt),
                ("bc", self.bc_opt))  # fmt: skip

    def load_optimizer_state(self, flat: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`optimizer_state` saved (shapes must match)."""
        with torch.no_grad():
            self.log_alpha.copy_(flat["log_alpha"])
        for name, opt in self._optimizers():
            sd = opt.state_dict()
            prefix = f"opt.{name}."
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in flat.items():
                if key.startswith(prefix):
                    idx, field = key[len(prefix) :].split(".", 1)
                    state.setdefault(int(idx), {})[field] = value.clone()
            sd["state"] = state
            opt.load_state_dict(sd)
