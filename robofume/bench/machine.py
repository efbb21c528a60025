"""Describe the machine a benchmark ran on, so figures are quoted with their context."""

from __future__ import annotations

import contextlib
import os
import platform
import sys


def gpu_name() -> str | None:
    """Name of the first CUDA device when torch is already loaded and sees one, else None."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    except Exception:  # a broken driver must not break a benchmark's report
        return None
    return None


_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")
"""CPU features that change which torch kernels run, and so the low bits of float results."""


def machine_info() -> dict[str, str | int]:
    """CPU model and instruction-set features, core count, OS, Python version, the kernel level torch
    picked (where torch is loaded) and, where torch sees one, the GPU. Training results differ in their
    low bits between hosts with other features, and then diverge (docs/benchmarks.md)."""
    model = ""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                if model and flags:
                    break
    except OSError:
        pass
    info: dict[str, str | int] = {
        "cpu": model or platform.processor() or "unknown",
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0,
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_features": " ".join(f for f in _ISA_FLAGS if f in flags) or "unknown",
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):  # an older torch without it must not break a report
            info["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    gpu = gpu_name()
    if gpu:
        info["gpu"] = gpu
    return info
