"""Networks of the robofume agent: image encoder, task conditioning, tanh-Gaussian actor, Q ensemble.

Inputs are the robot's observation (camera frame as uint8 HxWx3, proprioception vector) and the
active task (forward/backward). Task conditioning is a fixed embedding table saved with the
weights: either one-hot, or text embeddings of the task instructions (RoboFuME embeds them with
CLIP's text tower and found one-hot clearly worse), computed once per task and cached.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

ENCODER_HEADS: tuple[str, ...] = ("flatten", "spatial_softmax")
"""The image encoder's heads (``NetworkConfig.encoder_head``)."""


@dataclass(frozen=True)
class NetworkConfig:
    """Shapes and sizes of the agent's networks."""

    image_size: int = 64
    """Side of the square image the encoder sees; camera frames of another size are resized."""
    proprio_dim: int = 9
    action_dim: int = 5
    num_tasks: int = 2
    task_embed_dim: int = 0
    """0: one-hot task ids; > 0: a (num_tasks, task_embed_dim) text-embedding table."""
    encoder_channels: int = 32
    encoder_head: str = "flatten"
    """How the encoder turns its conv maps into features: ``flatten`` (a linear layer over the
    flattened 5x5 maps, DrQ/SERL style) or ``spatial_softmax`` (conv strides 2, 2, 1, 1 keep an 11x11
    map at 64 px; each channel becomes the expected image x-y of its softmax, a keypoint, as in
    Levine et al. 2016 and robomimic; built for locating an object wherever it lies)."""
    feature_dim: int = 64
    hidden_dim: int = 128
    """Width of the actor's and each critic's two hidden layers. 128, not the 256 of SERL/RLPD: the
    heads see a 75-d state (frozen-encoder features, proprio, task), and at batch 256 on one CPU
    core an online update costs 7.6 ms at 128 against 13.0 ms at 256 (docs/benchmarks.md)."""
    num_critics: int = 2
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        if not 32 <= self.image_size <= 256:
            raise ValueError(f"image_size must be between 32 and 256, got {self.image_size}")
        for name in ("proprio_dim", "action_dim", "num_tasks", "feature_dim", "hidden_dim", "num_critics"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.encoder_head not in ENCODER_HEADS:
            heads = ", ".join(ENCODER_HEADS)
            raise ValueError(f"encoder_head must be one of {heads}, got {self.encoder_head!r}")

    @property
    def task_dim(self) -> int:
        """Width of the task conditioning vector."""
        return self.task_embed_dim or self.num_tasks


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) maps -> (B, 2C): per channel, the expected x-y (in [-1, 1]) under a softmax over
    its map, with a learned temperature (a keypoint per channel)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij"
        )
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], dim=1))
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Keypoint coordinates of a batch of conv maps."""
        attention = torch.softmax(maps.flatten(2) / self.log_temperature.exp(), dim=-1)
        return (attention @ self.grid).flatten(1)


class ImageEncoder(nn.Module):
    """uint8 (B, H, W, 3) frames -> (B, feature_dim) features: a small CNN (DrQ/SERL style) with a
    flatten or a spatial-softmax head (``NetworkConfig.encoder_head``)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        c = cfg.encoder_channels
        self.image_size = cfg.image_size
        keypoints = cfg.encoder_head == "spatial_softmax"
        strides = (2, 2, 1, 1) if keypoints else (2, 2, 2, 1)
        layers: list[nn.Module] = []
        for i, stride in enumerate(strides):
            layers += [nn.Conv2d(3 if i == 0 else c, c, 3, stride=stride), nn.ReLU()]
        if keypoints:  # the softmax needs the raw maps: no ReLU after the last conv
            layers.pop()
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            maps = self.convs(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
        if keypoints:
            self.pool: nn.Module = SpatialSoftmax(maps.shape[-2], maps.shape[-1])
            flat = 2 * c
        else:
            self.pool = nn.Flatten(1)
            flat = maps.numel()
        self.head = nn.Sequential(nn.Linear(flat, cfg.feature_dim), nn.LayerNorm(cfg.feature_dim), nn.Tanh())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode a batch of uint8 HWC frames."""
        x = images.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="area")
        return self.head(self.pool(self.convs(x)))


class TaskEmbedding(nn.Module):
    """Fixed per-task conditioning vectors (one-hot, or cached instruction text embeddings)."""

    def __init__(self, cfg: NetworkConfig, text_embeddings: torch.Tensor | None = None) -> None:
        super().__init__()
        if cfg.task_embed_dim:
            if text_embeddings is None:
                text_embeddings = torch.zeros(cfg.num_tasks, cfg.task_embed_dim)
            expected = (cfg.num_tasks, cfg.task_embed_dim)
            if tuple(text_embeddings.shape) != expected:
                raise ValueError(f"text embeddings must be {expected}, got {tuple(text_embeddings.shape)}")
            table = F.normalize(text_embeddings.float(), dim=-1)
        else:
            table = torch.eye(cfg.num_tasks)
        self.register_buffer("table", table)

    def forward(self, task: torch.Tensor) -> torch.Tensor:
        """Conditioning vectors for integer task ids."""
        return self.table[task.long()]


def mlp(inp: int, hidden: int, out: int, layer_norm: bool = False) -> nn.Sequential:
    """Two hidden layers with ReLU (and LayerNorm after each when ``layer_norm``)."""
    layers: list[nn.Module] = []
    for i, o in ((inp, hidden), (hidden, hidden)):
        layers += [nn.Linear(i, o), *([nn.LayerNorm(o)] if layer_norm else []), nn.ReLU()]
    layers.append(nn.Linear(hidden, out))
    return nn.Sequential(*layers)


class TanhGaussianActor(nn.Module):
    """pi(a | s): a Gaussian squashed by tanh into [-1, 1]^action_dim."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = mlp(cfg.feature_dim + cfg.proprio_dim + cfg.task_dim, cfg.hidden_dim, 2 * cfg.action_dim)

    def distribution(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, clamped log std) of the Gaussian before the tanh."""
        mean, log_std = self.net(state).chunk(2, dim=-1)
        return mean, log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)

    def mean_and_spread(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, clamped log std) for behaviour cloning: the log std is computed from the detached
        hidden layer, so fitting the spread trains only the output layer's log-std rows and never
        disturbs the trunk and the encoder (which cut BC's success from 40 % to 0 % when it did)."""
        hidden = self.net[:-1](state)
        mean = self.net[-1](hidden).chunk(2, dim=-1)[0]
        log_std = self.net[-1](hidden.detach()).chunk(2, dim=-1)[1]
        return mean, log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)

    def forward(self, state: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log-probability) for a state vector; the mean action when ``deterministic``."""
        mean, log_std = self.distribution(state)
        if deterministic:
            return torch.tanh(mean), torch.zeros(state.shape[0], device=state.device)
        noise = torch.randn_like(mean)
        pre = mean + log_std.exp() * noise
        action = torch.tanh(pre)
        # log N(pre; mean, std) with (pre - mean) / std = noise, minus log|d tanh(pre)/d pre|
        # = 2 (log 2 - pre - softplus(-2 pre)); the constants are summed over the action dims.
        per_dim = -0.5 * noise.square() - log_std + 2 * (pre + F.softplus(-2 * pre))
        const = mean.shape[-1] * (0.5 * math.log(2 * math.pi) + 2 * math.log(2))
        return action, per_dim.sum(-1) - const

    def sample(self, state: torch.Tensor, std_scale: float = 1.0) -> torch.Tensor:
        """An action drawn from pi(. | s) like ``forward`` (same random draw), without computing its
        log-probability (the TD target needs only the action). ``std_scale`` multiplies the spread
        (acting-time exploration: 1 is the policy's own, 0 its mean)."""
        mean, log_std = self.distribution(state)
        return torch.tanh(mean + std_scale * log_std.exp() * torch.randn_like(mean))


class CriticEnsemble(nn.Module):
    """``num_critics`` independent Q(s, a) MLPs with LayerNorm; returns (num_critics, B)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        inp = cfg.feature_dim + cfg.proprio_dim + cfg.task_dim + cfg.action_dim
        self.qs = nn.ModuleList(mlp(inp, cfg.hidden_dim, 1, layer_norm=True) for _ in range(cfg.num_critics))

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q values of every critic."""
        x = torch.cat([state, action], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.qs])


class AgentNetworks(nn.Module):
    """Encoder, task embedding, actor, critics and target critics of one agent.

    The critic's gradients train the encoder; the actor sees detached features (DrQ/SERL).
    ``act`` is the policy server's contract: uint8 images, proprio, task ids -> actions in [-1, 1].
    """

    def __init__(self, cfg: NetworkConfig, text_embeddings: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg)
        self.task_embedding = TaskEmbedding(cfg, text_embeddings)
        self.actor = TanhGaussianActor(cfg)
        self.critic = CriticEnsemble(cfg)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def state(
        self, images: torch.Tensor, proprio: torch.Tensor, task: torch.Tensor, target: bool = False
    ) -> torch.Tensor:
        """Concatenated (image features, proprio, task conditioning)."""
        encoder = self.target_encoder if target else self.encoder
        return self.state_from_features(encoder(images), proprio, task)

    def state_from_features(
        self, features: torch.Tensor, proprio: torch.Tensor, task: torch.Tensor
    ) -> torch.Tensor:
        """The state vector from precomputed image features (frozen-encoder training)."""
        return torch.cat([features.float(), proprio.float(), self.task_embedding(task)], dim=-1)

    @torch.no_grad()
    def act(
        self,
        images: torch.Tensor,
        proprio: torch.Tensor,
        task: torch.Tensor,
        deterministic: bool = True,
        std_scale: float = 1.0,
    ) -> torch.Tensor:
        """Actions for a batch of observations (the policy server's entry point): the mean action when
        ``deterministic``, else a draw with the policy's spread times ``std_scale``."""
        state = self.state(images, proprio, task)
        if deterministic or std_scale == 0.0:
            return torch.tanh(self.actor.distribution(state)[0])
        return self.actor.sample(state, std_scale)

    @torch.no_grad()
    def soft_update_targets(self, tau: float) -> None:
        """Polyak-average the target encoder and critics toward the online ones."""
        online = [*self.encoder.parameters(), *self.critic.parameters()]
        target = [*self.target_encoder.parameters(), *self.target_critic.parameters()]
        torch._foreach_lerp_(target, online, tau)  # one call instead of one lerp_ per tensor


def network_config_from_dict(config: dict) -> NetworkConfig:
    """``NetworkConfig`` from a resolved config (its ``"network"`` section, or the dict itself);
    unknown keys are an error so that a typo never silently falls back to a default."""
    section = config.get("network", config)
    known = {f.name for f in dataclasses.fields(NetworkConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"unknown network config key(s): {', '.join(unknown)}")
    return NetworkConfig(**section)


def build_policy_from_config(config: dict) -> AgentNetworks:
    """A fresh ``AgentNetworks`` for the config saved beside a weight file (the policy server's factory).
    The task embedding table is a buffer, so loading the weights restores it."""
    return AgentNetworks(network_config_from_dict(config))
