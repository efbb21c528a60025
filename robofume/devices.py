"""Which torch device a component runs on: one resolution rule for the learner, the policy server,
the classifier and the benchmarks."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` or ``cuda:N`` otherwise.

    An unknown name, or CUDA asked for on a machine without it, is a one-line ``ValueError``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu or cuda")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    return resolved
