"""``robofume reward ...``: train, export and evaluate the success classifier.

Examples::

    robofume reward export-backbone --out backbones/vit-b-32          # online, once: weights to a folder
    robofume reward train --data data/mock --labels data/mock/labels.json \\
        --backbone-path backbones/vit-b-32 --out runs/classifier    # progress bar, TensorBoard in out/tb
    robofume reward eval --classifier runs/classifier --data data/heldout --json

Wire into a parent parser with :func:`register_cli` (``robofume/cli.py`` does).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from reward_vlm.backbones import BackboneConfig

DEFAULT_MODELS = {
    "open_clip": ("ViT-B-32", "laion2b_s34b_b79k"),
    "transformers": ("openai/clip-vit-base-patch32", None),
}

EXAMPLES = """examples:
  robofume reward export-backbone --out backbones/vit-b-32     # download once (online), save to a folder
  robofume reward train --data data/mock --out runs/classifier --backbone-path backbones/vit-b-32
  robofume reward train --data data/mock --labels data/mock/labels.json --method lora --out runs/clf
  robofume reward eval --classifier runs/classifier --data data/heldout --json
"""


def _add_backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=["open_clip", "transformers"],
        default=None,
        help="backbone library (default: open_clip)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="open_clip model or Hugging Face repo id (default ViT-B-32 / openai/clip-vit-base-patch32)",
    )
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag (default: laion2b_s34b_b79k)")
    p.add_argument(
        "--backbone-path", default=None, help="backbone folder from `robofume reward export-backbone`"
    )
    p.add_argument("--image-size", type=int, default=None, help="image side the backbone sees (default: 128)")
    p.add_argument(
        "--offline", action="store_true", help="never download; use --backbone-path or the local cache"
    )


def backbone_config_from_args(args: argparse.Namespace, base: BackboneConfig | None = None) -> BackboneConfig:
    """A backbone config from CLI arguments on top of ``base`` (defaults per backend for model/tag)."""
    values: dict[str, Any] = (base or BackboneConfig()).to_dict()
    if args.backend is not None and args.backend != values["backend"]:
        values["backend"] = args.backend
        values["model"], values["pretrained"] = DEFAULT_MODELS[args.backend]
    for key, arg in (
        ("model", args.model),
        ("pretrained", args.pretrained),
        ("path", args.backbone_path),
        ("image_size", args.image_size),
    ):
        if arg is not None:
            values[key] = arg
    if getattr(args, "offline", False):
        values["allow_download"] = False
    if values["backend"] == "transformers":
        values["pretrained"] = None
    return BackboneConfig.from_dict(values)


def _cmd_train(args: argparse.Namespace) -> int:
    from reward_vlm.labels import require_label_file
    from reward_vlm.training import ClassifierTrainConfig, load_train_config, train_classifier

    if args.labels:
        require_label_file(args.labels)
    base = load_train_config(args.config).to_dict() if args.config else {}
    backbone = backbone_config_from_args(args, BackboneConfig.from_dict(base["backbone"]) if base else None)
    overrides = {
        "data": args.data,
        "labels": args.labels,
        "labels_root": args.labels_root,
        "out": args.out,
        "method": args.method,
        "epochs": args.epochs,
        "target_precision": args.target_precision,
        "confirm_frames": args.confirm_frames,
        "seed": args.seed,
        "device": args.device,
        "tune_blocks": args.tune_blocks,
        "max_frames_per_episode": args.max_frames,
    }
    values = {**base, **{k: v for k, v in overrides.items() if v is not None}, "backbone": backbone}
    if "data" not in values and values.get("labels"):
        values["data"] = []
    if "out" not in values:
        raise ValueError("give --out (the checkpoint folder)")
    cfg = ClassifierTrainConfig.from_dict(values)
    metrics = train_classifier(cfg)
    print(json.dumps({"out": cfg.out, "method": cfg.method, "metrics": metrics}))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from reward_vlm.backbones import load_backbone, save_backbone

    cfg = backbone_config_from_args(args)
    if cfg.path:
        raise ValueError(
            "export-backbone loads by --model/--pretrained; --backbone-path is where it would read from"
        )
    backbone = load_backbone(cfg, native_size=args.image_size is None)  # lossless unless a size is asked for
    folder = save_backbone(backbone, args.out)
    print(
        json.dumps(
            {
                "out": folder,
                "backend": cfg.backend,
                "model": cfg.model,
                "pretrained": cfg.pretrained,
                "image_size": backbone.image_size,
                "embed_dim": backbone.embed_dim,
            }
        )
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from reward_vlm.classifier import SuccessClassifier
    from reward_vlm.training import evaluate_classifier, resolve_device
    from robofume.data.episode_format import list_episodes

    if args.tolerance_frames < 0:
        raise ValueError(f"--tolerance-frames must be >= 0, got {args.tolerance_frames}")
    classifier = SuccessClassifier.load(args.classifier, device=resolve_device(args.device))
    paths: list[str] = []
    for folder in args.data:
        if not os.path.isdir(folder):
            raise ValueError(f"data folder {folder} does not exist")
        paths.extend(list_episodes(folder))
    if not paths:
        raise ValueError(f"no episode files under {', '.join(args.data)}")
    result = evaluate_classifier(classifier, paths, tolerance_frames=args.tolerance_frames)
    if args.json:
        print(json.dumps(result))
    else:
        for task, m in result.items():
            print(
                f"{task}: precision {m['precision']:.3f} recall {m['recall']:.3f} "
                f"accuracy {m['accuracy']:.3f} (threshold {m['threshold']:.3f}, "
                f"{m['positives']} positive / {m['negatives']} negative frames)"
            )
    return 0


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reward`` verb (train, export-backbone, eval) to an ``add_subparsers()`` object."""
    reward = subparsers.add_parser(
        "reward",
        help="train, export and evaluate the success classifier",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = reward.add_subparsers(dest="reward_verb", metavar="ACTION", required=True)

    train = verbs.add_parser(
        "train",
        help="fine-tune the classifier on episodes and labels (progress bar, TensorBoard)",
        epilog="examples:\n  robofume reward train --data data/mock --out runs/classifier --backbone-path "
        "backbones/vit-b-32\n  robofume reward train --data data/mock --labels data/mock/labels.json "
        "--method lora --out runs/clf",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--data", action="append", default=None, help="episode folder (repeatable)")
    train.add_argument("--labels", default=None, help="labels.json (or its folder) from `robofume label`")
    train.add_argument(
        "--labels-root",
        default=None,
        help="folder the label episode paths are relative to (default: first --data)",
    )
    train.add_argument("--out", default=None, help="checkpoint folder")
    train.add_argument(
        "--config", default=None, help="training config JSON (e.g. a previous run's config.json)"
    )
    train.add_argument(
        "--method",
        choices=["probe", "last_blocks", "lora", "full"],
        default=None,
        help="probe (frozen backbone, default), last_blocks, lora, or full",
    )
    train.add_argument(
        "--tune-blocks", type=int, default=None, help="last_blocks/lora: blocks that adapt (default 2)"
    )
    train.add_argument("--epochs", type=int, default=None, help="training epochs (default 30)")
    train.add_argument("--max-frames", type=int, default=None, help="frames per episode (default 24)")
    train.add_argument(
        "--target-precision", type=float, default=None, help="held-out precision target (default 0.95)"
    )
    train.add_argument(
        "--confirm-frames", type=int, default=None, help="consecutive frames to confirm success (default 2)"
    )
    train.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    train.add_argument("--device", default=None, help="auto (CUDA if present), cpu or cuda")
    _add_backbone_args(train)
    train.set_defaults(func=_cmd_train)

    export = verbs.add_parser(
        "export-backbone",
        help="load a backbone by name (downloads while online) and save it to a folder",
        epilog="example: robofume reward export-backbone --out backbones/vit-b-32   # online, once",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument(
        "--out", required=True, help="folder to write (backbone.json, model.safetensors, tokenizer)"
    )
    _add_backbone_args(export)
    export.set_defaults(func=_cmd_export)

    ev = verbs.add_parser(
        "eval",
        help="precision/recall/accuracy of a classifier on episodes with ground truth",
        epilog="example: robofume reward eval --classifier runs/classifier --data data/heldout --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--classifier", required=True, help="checkpoint folder from `robofume reward train`")
    ev.add_argument("--data", action="append", required=True, help="episode folder (repeatable)")
    ev.add_argument("--device", default="cpu", help="cpu or cuda")
    ev.add_argument(
        "--tolerance-frames",
        type=int,
        default=0,
        help="episode metrics: a confirmed success this many frames before the true onset still counts",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_cmd_eval)
    return reward
