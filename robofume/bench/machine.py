"""Describe the machine a benchmark ran on, so figures are quoted with their context."""

from __future__ import annotations

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


def machine_info() -> dict[str, str | int]:
    """CPU model, core count, OS, Python version and, where torch sees one, the GPU."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, str | int] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    gpu = gpu_name()
    if gpu:
        info["gpu"] = gpu
    return info
