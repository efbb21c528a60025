"""Describe the machine a benchmark ran on, so figures are quoted with their context."""

from __future__ import annotations

import os
import platform


def machine_info() -> dict[str, str | int]:
    """CPU model, core count, OS and Python version."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
