"""Compare the classifier training methods (probe, last_blocks, lora, full) on one dataset.

Each method trains from the same backbone with the same data, split and seed; the table lists the
held-out precision/recall per task at the threshold picked for ``--target-precision``, and the
training time; then, through the saved checkpoint, the held-out target episodes as whole episodes
(first confirmed success within 0 or 3 frames of the true onset, see ``evaluate_classifier``).
Without pre-trained weights (offline), ``--tiny`` builds a random-initialised tiny
backbone, which shows what tuning can recover from the data alone::

    python -m reward_vlm.method_comparison --data data/mock --tiny --image-size 64 --json
    python -m reward_vlm.method_comparison --data data/mock --backbone-path backbones/vit-b-32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch

from reward_vlm.backbones import BackboneConfig, build_tiny_backbone
from reward_vlm.classifier import SuccessClassifier
from reward_vlm.training import (
    METHODS,
    ClassifierTrainConfig,
    episode_paths,
    evaluate_classifier,
    path_stratum,
    split_episodes,
    train_classifier,
)


def compare_methods(
    data: list[str],
    out: str,
    backbone: BackboneConfig,
    methods: Sequence[str] = METHODS,
    epochs: int = 30,
    target_precision: float = 0.95,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """Train each method into ``out/<method>``; return ``{method: {seconds, meets_target, tasks: {...}}}``."""
    results: dict[str, Any] = {}
    for method in methods:
        cfg = ClassifierTrainConfig(
            data=list(data),
            out=os.path.join(out, method),
            backbone=backbone,
            method=method,
            epochs=epochs,
            target_precision=target_precision,
            seed=seed,
            device="cpu",
            **overrides,
        )
        t0 = time.monotonic()
        metrics = train_classifier(cfg)
        seconds = time.monotonic() - t0
        paths, _root, _labels = episode_paths(cfg)
        held = sorted(
            p for p in split_episodes(paths, cfg.holdout_fraction, seed) if path_stratum(p)[:6] != "prior/"
        )
        classifier = SuccessClassifier.load(cfg.out)
        episodes = {tol: evaluate_classifier(classifier, held, tolerance_frames=tol) for tol in (0, 3)}
        results[method] = {
            "seconds": round(seconds, 1),
            "meets_target": all(m["attainable"] for m in metrics.values()),
            "mean_recall": round(sum(m["recall"] for m in metrics.values()) / max(len(metrics), 1), 3),
            "tasks": metrics,
            "heldout_episodes": {
                task: {
                    "average_precision": round(episodes[0][task]["average_precision"], 3),
                    **{
                        f"{key}_tol{tol}": round(episodes[tol][task][key], 3)
                        for tol in (0, 3)
                        for key in ("episode_precision", "episode_recall")
                    },
                    "outcomes_tol3": episodes[3][task]["episodes"],
                }
                for task in metrics
            },
        }
        print(f"{method}: {json.dumps(results[method])}", file=sys.stderr, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, help="episode folder (repeatable)")
    p.add_argument("--out", default=None, help="where the checkpoints go (default: a temp folder)")
    p.add_argument("--tiny", action="store_true", help="random-initialised tiny open_clip backbone")
    p.add_argument("--backend", default="open_clip", choices=["open_clip", "transformers"])
    p.add_argument("--backbone-path", default=None)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--tune-blocks", type=int, default=2)
    p.add_argument("--backbone-lr", type=float, default=None)
    p.add_argument("--max-frames", type=int, default=24)
    p.add_argument("--holdout", type=float, default=0.25, help="fraction of episodes held out")
    p.add_argument("--target-precision", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or tempfile.mkdtemp(prefix="robofume-methods-")
    path = args.backbone_path
    if args.tiny:
        path = build_tiny_backbone(
            args.backend, os.path.join(out, "tiny-backbone"), seed=args.seed, image_size=args.image_size
        )
    backbone = BackboneConfig(backend=args.backend, path=path, image_size=args.image_size)
    results = compare_methods(
        args.data,
        out,
        backbone,
        [m.strip() for m in args.methods.split(",") if m.strip()],
        args.epochs,
        args.target_precision,
        args.seed,
        tune_blocks=args.tune_blocks,
        backbone_lr=args.backbone_lr,
        max_frames_per_episode=args.max_frames,
        holdout_fraction=args.holdout,
    )
    summary = {
        "backbone": backbone.to_dict(),
        "threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "results": results,
    }
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
