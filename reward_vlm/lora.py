"""Low-rank adapters (LoRA) for the linear layers of a vision transformer, without extra dependencies.

An adapter is a weight parametrization ``W + (B @ A) * alpha / rank`` (``B`` starts at zero, so the
adapted model starts as the original). It wraps the *weight*, not the module, so it also reaches
weights that a module reads directly, such as ``nn.MultiheadAttention.in_proj_weight``. After training,
:func:`merge_lora` folds the adapters into plain weights, so a saved backbone is an ordinary one.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize


class LoRAWeight(nn.Module):
    """Parametrization ``W -> W + B A * scale`` for a 2-D weight of shape (out, in)."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.A = nn.Parameter(torch.randn(rank, in_features) / math.sqrt(in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = float(alpha) / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The adapted weight."""
        return weight + (self.B @ self.A).to(weight.dtype) * self.scale


def _targets(module: nn.Module) -> list[tuple[nn.Module, str]]:
    found: list[tuple[nn.Module, str]] = []
    for sub in module.modules():
        if isinstance(sub, nn.MultiheadAttention) and sub.in_proj_weight is not None:
            found.append((sub, "in_proj_weight"))
        if isinstance(sub, nn.Linear):
            found.append((sub, "weight"))
    return found


def add_lora(module: nn.Module, rank: int = 8, alpha: float = 16.0) -> list[nn.Parameter]:
    """Freeze ``module``, adapt every linear/attention weight in it, return the adapter parameters."""
    for p in module.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    for sub, name in _targets(module):
        weight = getattr(sub, name)
        lora = LoRAWeight(weight.shape[0], weight.shape[1], rank, alpha).to(weight.device)
        parametrize.register_parametrization(sub, name, lora)
        params.extend([lora.A, lora.B])
    if not params:
        raise ValueError("no linear or attention weights to adapt")
    return params


def merge_lora(module: nn.Module) -> int:
    """Fold every adapter in ``module`` into its weight (in place); return how many were merged."""
    merged = 0
    for sub in list(module.modules()):
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations.keys()):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
                merged += 1
    return merged
