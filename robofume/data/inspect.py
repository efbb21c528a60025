"""Summarise a dataset folder and check that every episode loads."""

from __future__ import annotations

import os
from collections import Counter

from robofume.data.episode_format import EpisodeFormatError, list_episodes, load_episode


def dataset_info(path: str) -> dict:
    """Counts per kind/task, success rates, steps, and the list of corrupt files (never deleted)."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no dataset folder at {path}")
    counts: Counter[str] = Counter()
    successes: Counter[str] = Counter()
    steps = 0
    corrupt: list[str] = []
    files = list_episodes(path)
    for f in files:
        try:
            ep = load_episode(f)
        except EpisodeFormatError as exc:
            corrupt.append(str(exc))
            continue
        key = f"{ep.metadata.get('kind', os.path.basename(os.path.dirname(f)))}/{ep.task}"
        counts[key] += 1
        successes[key] += int(ep.succeeded)
        steps += ep.num_steps
    return {
        "path": path,
        "episodes": len(files) - len(corrupt),
        "transitions": steps,
        "by_kind_task": {
            k: {"episodes": n, "success_rate": round(successes[k] / n, 3)} for k, n in sorted(counts.items())
        },
        "corrupt": corrupt,
    }
