"""``robofume label``: serve the labeling tool for an episode folder on this computer.

Examples::

    robofume label --data data/mock                      # open the printed http://127.0.0.1:8765/
    robofume label --data runs/session1/episodes --port 0 --train-data data/mock/prior
    python -m reward_vlm.label_cli --data data/mock      # the same without the robofume entry point
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server (numpy, the episode format) is imported when the verb runs, not to parse
    from reward_vlm.label_server import ProgressFn, Trainer

DEFAULT_PORT = 8765
DEFAULT_OUT = "runs/classifier"


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``label`` verb to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "label",
        help="label episode frames success/failure in a local web page; train the success classifier",
        epilog="example: robofume label --data data/mock   # then open the printed URL",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="folder of recorded episodes (.npz), searched recursively")
    p.add_argument("--labels", default=None, help="label file (default: DATA/labels.json)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1, this computer)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}, 0: free)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (anyone who reaches the port can change labels)",
    )
    train = p.add_argument_group("training (the page's Train button)")
    train.add_argument("--out", default=DEFAULT_OUT, help=f"classifier output (default: {DEFAULT_OUT})")
    train.add_argument(
        "--train-data",
        action="append",
        default=[],
        metavar="DIR",
        help="more episode folders to train on (prior data, demos); repeatable",
    )
    train.add_argument("--backend", default=None, help="classifier backend: open_clip or transformers")
    train.add_argument("--backbone", default=None, help="backbone model (open_clip name or HF id)")
    train.add_argument("--backbone-path", default=None, help="local backbone folder (no download)")
    train.add_argument("--method", default=None, help="probe, last_blocks, lora or full")
    train.add_argument("--epochs", type=int, default=None, help="training epochs")
    train.add_argument("--device", default=None, help="cpu, cuda or auto")
    p.set_defaults(func=run_label)
    return p


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _pick(cls: type, wanted: dict[str, Any], what: str) -> dict[str, Any]:
    """The entries of ``wanted`` that are set; a set option ``cls`` has no field for is a one-line error."""
    names = _fields(cls)
    chosen = {}
    for name, value in wanted.items():
        if value is None:
            continue
        if name not in names:
            raise ValueError(f"{what} has no setting {name!r} (this robofume's {cls.__name__} lacks it)")
        chosen[name] = value
    return chosen


def build_trainer(args: argparse.Namespace) -> Trainer:
    """The real trainer for the Train button; ``reward_vlm.training`` is imported when training starts."""
    labels_path = args.labels or os.path.join(args.data, "labels.json")

    def train(progress: ProgressFn) -> dict[str, Any]:
        try:
            from reward_vlm.backbones import BackboneConfig
            from reward_vlm.training import ClassifierTrainConfig, train_classifier
        except ImportError as exc:
            raise ImportError(f"classifier training is not available in this install ({exc})") from None
        backbone_fields = _pick(
            BackboneConfig,
            {"backend": args.backend, "model": args.backbone, "path": args.backbone_path},
            "the backbone config",
        )
        cfg_fields = _pick(
            ClassifierTrainConfig,
            {
                "data": [args.data, *args.train_data],
                "labels": labels_path,
                "labels_root": args.data,
                "out": args.out,
                "backbone": BackboneConfig(**backbone_fields),
                "method": args.method,
                "epochs": args.epochs,
                "device": args.device,
            },
            "the training config",
        )
        return train_classifier(ClassifierTrainConfig(**cfg_fields), progress=progress)

    return train


def run_label(args: argparse.Namespace) -> int:
    """Start the server, print its URL, serve until Ctrl-C."""
    from reward_vlm.label_server import LabelServer, LabelServerConfig

    # Started in the background by a non-interactive shell, SIGINT is inherited ignored: Ctrl-C
    # (SIGINT) is how this tool stops, so listen to it.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    config = LabelServerConfig(
        data=args.data, labels=args.labels, host=args.host, port=args.port, allow_remote=args.allow_remote
    )
    server = LabelServer(config, trainer=build_trainer(args))
    infos = server.app.catalog.infos()
    labels, _ = server.app.store.labels()
    damaged = sum(info.damaged is not None for info in infos)
    print(
        f"robofume label: {len(infos)} episodes"
        + (f" ({damaged} damaged, listed but not labelable)" if damaged else "")
        + f", {len(labels)} labels in {config.labels_path}",
        flush=True,
    )
    if config.allow_remote and config.host not in ("127.0.0.1", "localhost", "::1"):
        print("robofume label: warning: listening beyond this computer; the page has no login", flush=True)
    print(f"robofume label: open {server.url}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print(f"robofume label: stopped; labels are saved in {config.labels_path}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reward_vlm.label_cli``: the ``label`` verb on its own; one-line errors, status 2."""
    parser = argparse.ArgumentParser(prog="robofume")
    verbs = parser.add_subparsers(dest="verb", required=True)
    register_cli(verbs)
    args = parser.parse_args(["label", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except (ValueError, OSError) as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
