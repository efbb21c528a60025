"""The ``robofume`` command line: one entry point, verbs for each job.

Examples::

    robofume demo --out outputs/demo
    robofume data generate --out data/mock --demos 20 --failures 10 --prior 300
    robofume data info data/mock
    robofume bench sim --json
    robofume bench transport --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tqdm import tqdm

from robofume import __version__

if TYPE_CHECKING:
    from policy_server.learner import LearnerConfig

EXAMPLES = """examples:
  robofume session --duration 10                   # the whole loop on the MuJoCo mock, report in runs/session
  robofume label --data data/mock                  # label frames in the browser, train the classifier
  robofume reward train --data data/mock --out runs/classifier --backbone-path backbones/vit-b-32
  robofume reward export-backbone --out backbones/vit-b-32   # online, once: weights for offline use
  robofume demo --out outputs/demo                 # expert does forward+backward, video + strip
  robofume data generate --out data/mock           # demos, failures and prior data (progress bar)
  robofume data info data/mock                     # counts and integrity check
  robofume bench sim --json                        # env steps/s and render ms/frame
  robofume bench transport --json                  # ROS 2 frame and command latency across processes
  robofume robot --robot mock                      # mock arm + camera + safety gate as ROS 2 nodes
  robofume pretrain --data data/mock --run runs/mock  # offline Cal-QL pre-training, publishes weights
  robofume learner --run runs/mock --recipe calql  # async online learner on the run's replay buffer
  robofume bench learner --json                    # learner updates/s (also: policy, buffer)
  robofume bench learning --preset medium --json   # success vs env steps, main method and baselines
  robofume bench classifier --preset quick --json  # classifier P/R vs user labels + latency per frame
"""


def _cmd_demo(args: argparse.Namespace) -> int:
    from robofume.demo import DemoConfig, run_demo

    run_demo(
        DemoConfig(
            out=args.out,
            cycles=args.cycles,
            video_size=args.video_size,
            seed=args.seed,
            dataset=not args.no_dataset,
        )
    )
    return 0


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from robofume.data.generate import GenerateConfig, generate_dataset

    cfg = GenerateConfig(
        out=args.out,
        demos_per_task=args.demos,
        failures_per_task=args.failures,
        prior=args.prior,
        image_size=args.image_size,
        max_episode_steps=args.max_steps,
        demo_noise=args.noise,
        seed=args.seed,
        layout_seed=args.layout_seed,
        recovery_demos=args.recovery_demos,
        recovery_region=args.recovery_region,
        workers=args.workers,
        resume=args.resume,
    )
    manifest = generate_dataset(cfg)
    print(
        json.dumps(
            {"out": args.out, "episodes": manifest["episodes"], "generated_now": manifest["generated_now"]}
        )
    )
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from robofume.data.inspect import dataset_info

    info = dataset_info(args.path)
    print(json.dumps(info, indent=2))
    if not info["episodes"] and not info["corrupt"]:
        print(f"robofume: error: no episode files under {args.path}", file=sys.stderr)
    return 0 if info["episodes"] and not info["corrupt"] else 1


LEARNING_BENCH_OUT = "outputs/bench_learning"


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_sizes and min(args.batch_sizes) < 1:
        raise ValueError(f"--batch-sizes must all be >= 1, got {args.batch_sizes}")
    if args.name == "learning":
        from policy_server.learning_bench import (
            LearningBenchConfig,
            merge_results,
            parse_overrides,
            run_learning_bench,
        )

        if args.merge:
            result = merge_results(args.merge, args.out)
        else:
            cfg = LearningBenchConfig.preset(args.preset, **parse_overrides(args.set))
            result = run_learning_bench(cfg, args.out)
    elif args.name == "classifier":
        from reward_vlm.classifier_bench import ClassifierBenchConfig, run_classifier_bench

        if args.preset not in ("quick", "full"):
            raise ValueError(f"bench classifier has presets quick and full, not {args.preset!r}")
        out = "outputs/bench_classifier" if args.out == LEARNING_BENCH_OUT else args.out
        from reward_vlm.classifier_bench import markdown_tables

        overrides: dict[str, object] = {"data": args.data, "backbone_path": args.backbone_path}
        if args.device is not None:
            overrides["latency_device"] = args.device  # "auto" is resolved where the rows are timed
        preset = ClassifierBenchConfig.preset(args.preset, **overrides)
        if args.latency_only:
            from reward_vlm.classifier_bench import run_classifier_latency_bench

            if args.batch_sizes:
                preset = dataclasses.replace(preset, latency_batches=tuple(args.batch_sizes))
            result = run_classifier_latency_bench(preset, out)
        else:
            result = run_classifier_bench(preset, out)
            if not args.json:
                print(markdown_tables(result))
                return 0
    elif args.name in ("learner", "policy", "buffer"):
        from policy_server import speed_bench

        device = args.device or "auto"
        if args.name == "learner":
            result = speed_bench.run_learner_bench(updates=args.steps or 20, device=device)
        elif args.name == "policy":
            result = speed_bench.run_policy_latency_bench(
                camera_size=args.image_size,
                device=device,
                batches=tuple(args.batch_sizes or (1, 4)),
                policy_image_size=args.policy_image_size,
            )
        else:
            result = speed_bench.run_replay_bench(image_size=args.image_size)
    elif args.name == "reward-node":
        from reward_vlm.node_bench import RewardBenchError, RewardNodeBenchConfig, run_reward_node_bench

        try:
            result = run_reward_node_bench(
                RewardNodeBenchConfig(
                    classifier=args.classifier or "stand-in", seconds=args.seconds, image_size=args.image_size
                )
            )
        except RewardBenchError as exc:
            print(f"robofume: error: {exc}", file=sys.stderr)
            return 1
    elif args.name == "transport":
        from robofume_robot.transport_bench import TransportBenchError, run_transport_bench

        try:
            result = run_transport_bench(seconds=args.seconds)
        except TransportBenchError as exc:
            print(f"robofume: error: {exc}", file=sys.stderr)
            return 1
    else:
        from robofume.bench.sim_bench import run_sim_bench

        result = run_sim_bench(image_size=args.image_size, steps=args.steps or 200)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def _learner_config(args: argparse.Namespace) -> LearnerConfig:
    from policy_server.learner import LearnerConfig, load_config_file
    from policy_server.networks import NetworkConfig

    cfg = load_config_file(args.config) if args.config else LearnerConfig(network=NetworkConfig())
    if args.image_size is not None:  # a flag overrides the config file, as --recipe and --batch-size do
        cfg = dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, image_size=args.image_size))
    overrides = {k: v for k, v in (("recipe", args.recipe), ("batch_size", args.batch_size)) if v is not None}
    return dataclasses.replace(cfg, **overrides)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from policy_server.learner import Learner, write_resolved_config
    from policy_server.replay_buffer import BufferSpec, ReplayBuffer
    from robofume.data.episode_format import list_episodes, load_episode
    from robofume.devices import resolve_device

    for flag, value in (("--steps", args.steps), ("--bc-steps", args.bc_steps)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    resolve_device(args.device)  # a bad --device fails now, not after the episodes are loaded
    files = list_episodes(args.data)
    if not files:
        raise ValueError(f"no episode files under {args.data}; make them with: robofume data generate")
    cfg = _learner_config(args)
    first = load_episode(files[0])
    size = first.frames.shape[1:3]
    spec = BufferSpec(size, first.proprio.shape[1], first.actions.shape[1], cfg.agent.gamma)
    buffer = ReplayBuffer(f"{args.run}/buffer", spec)
    if len(buffer) == 0:
        for path in tqdm(files, desc="loading episodes", unit="ep"):
            buffer.add_episode_file(path)
        buffer.flush()
    write_resolved_config(args.run, cfg)
    learner = Learner(cfg, args.run, buffer, device=args.device)
    metrics = learner.pretrain(args.steps, bc_steps=args.bc_steps)
    learner.close()
    buffer.close()
    print(json.dumps({"run": args.run, "counters": learner.counters, "last_metrics": metrics}))
    return 0


def _online_learner_config(args: argparse.Namespace) -> LearnerConfig:
    """The run's ``config.json`` with the ``robofume learner`` flags applied."""
    from policy_server.learner import load_config_file

    cfg = load_config_file(f"{args.run}/config.json")
    if args.recipe:
        cfg = dataclasses.replace(cfg, recipe=args.recipe)
    if args.policy_average_tau is not None:
        cfg = dataclasses.replace(cfg, policy_average_tau=args.policy_average_tau)
    agent = cfg.agent
    if args.actor_objective:
        agent = dataclasses.replace(agent, actor_objective=args.actor_objective)
    if args.crr_beta is not None:
        agent = dataclasses.replace(agent, crr_beta=args.crr_beta)
    return dataclasses.replace(cfg, agent=agent)


def _cmd_learner(args: argparse.Namespace) -> int:
    import signal

    from policy_server.learner import Learner
    from policy_server.replay_buffer import ReplayBuffer

    cfg = _online_learner_config(args)
    buffer = ReplayBuffer.open(f"{args.run}/buffer", readonly=True)
    learner = Learner(cfg, args.run, buffer, device=args.device)
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    try:
        learner.train_online(stop=lambda: stopping["now"])
    except KeyboardInterrupt:
        learner.save_checkpoint()
    learner.close()
    print(json.dumps({"run": args.run, "counters": learner.counters}))
    return 0


def _cmd_session(args: argparse.Namespace) -> int:
    from robofume.session.config import SessionConfig, load_config_file
    from robofume.session.runner import prepare, run_session

    cfg = load_config_file(args.config) if args.config else SessionConfig()
    cfg.out = args.out or cfg.out
    cfg.robot = args.robot or cfg.robot
    cfg.namespace = args.namespace if args.namespace is not None else cfg.namespace
    cfg.data = args.data or cfg.data
    cfg.labels = args.labels or cfg.labels
    cfg.limits_file = args.limits_file or cfg.limits_file
    if args.home:
        try:
            cfg.online.home = [float(v) for v in args.home.split(",")]
        except ValueError:
            raise ValueError(f"--home must be X,Y,Z or X,Y,Z,YAW numbers, got {args.home!r}") from None
    cfg.device = args.device or cfg.device
    if args.duration is not None:
        cfg.online.duration_s = 60.0 * args.duration
    if args.recipe:
        cfg.online.recipe = args.recipe
    if args.pretrain_steps is not None:
        cfg.pretrain.steps = args.pretrain_steps
    if args.bc_steps is not None:
        cfg.pretrain.bc_steps = args.bc_steps
    if args.record_mcap:
        cfg.online.record_mcap = True
    if args.backbone_path:
        cfg.classifier.backbone_path = args.backbone_path
    if args.reward:
        cfg.reward = args.reward.replace("-", "_")
    if args.allow_weak_classifier:
        cfg.classifier.allow_weak = True
    cfg.validate().check_robot_side()
    if args.prepare_only:
        metrics = prepare(cfg)
        print(json.dumps({"out": cfg.out, "classifier": metrics}, default=str))
        return 0
    run_session(cfg)
    return 0


def _cmd_robot(args: argparse.Namespace) -> int:
    from robofume_robot.launcher import run_robot

    return run_robot(args.robot, namespace=args.namespace, log_dir=args.log_dir, params=args.param)


def _add_learner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="learner config JSON (see the run's config.json)")
    p.add_argument("--recipe", choices=["calql", "wsrl", "rlpd"], default=None, help="online recipe")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: 256)")
    p.add_argument(
        "--image-size", type=int, default=None, help="encoder image side (default: the config's, 64)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all verbs."""
    parser = argparse.ArgumentParser(
        prog="robofume",
        description="A robot arm that improves at a manipulation task by itself.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"robofume {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    demo = verbs.add_parser(
        "demo",
        help="scripted mock-arm demo: forward + backward, reset-free, to video",
        epilog="example: robofume demo --out outputs/demo --cycles 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--cycles", type=int, default=2, help="forward+backward cycles (default: 2)")
    demo.add_argument("--video-size", type=int, default=256, help="video frame side in px (default: 256)")
    demo.add_argument("--seed", type=int, default=0, help="scene seed (default: 0)")
    demo.add_argument("--no-dataset", action="store_true", help="skip writing the small example dataset")
    demo.set_defaults(func=_cmd_demo)

    data = verbs.add_parser(
        "data",
        help="generate and inspect episode datasets",
        epilog="examples:\n  robofume data generate --out data/mock\n  robofume data info data/mock",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_verbs = data.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    gen = data_verbs.add_parser(
        "generate",
        help="write scripted demos, failures and prior data",
        epilog="example: robofume data generate --out data/mock --demos 20 --failures 10 --prior 300",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("--out", required=True, help="output folder (created; never overwritten)")
    gen.add_argument("--demos", type=int, default=20, help="successful demos per task (default: 20)")
    gen.add_argument("--failures", type=int, default=10, help="failed attempts per task (default: 10)")
    gen.add_argument(
        "--recovery-demos",
        type=int,
        default=0,
        help="extra demos per task that start with the object on the table outside the start square "
        "and the bin (see --recovery-region), where a reset-free stream's failed grasps leave it "
        "(default: 0)",
    )
    gen.add_argument(
        "--recovery-region",
        choices=("between", "table"),  # RECOVERY_REGIONS, without importing MuJoCo for --help
        default="between",
        help="where recovery demos start: 'between' the square and the bin (±10 cm to the sides of "
        "the line joining them) or anywhere on the 'table' within reach (default: between)",
    )
    gen.add_argument(
        "--prior", type=int, default=300, help="prior-data episodes of related tasks (default: 300)"
    )
    gen.add_argument("--image-size", type=int, default=128, help="camera image side in px (default: 128)")
    gen.add_argument("--max-steps", type=int, default=100, help="episode time limit in steps (default: 100)")
    gen.add_argument(
        "--noise", type=float, default=0.1, help="expert action noise std for demos (default: 0.1)"
    )
    gen.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    gen.add_argument(
        "--layout-seed",
        type=int,
        default=None,
        help="record demos and failures at one workstation layout (the mock's layout_seed; "
        "default: a new layout per episode)",
    )
    gen.add_argument("--workers", type=int, default=2, help="parallel worker processes (default: 2)")
    gen.add_argument("--resume", action="store_true", help="complete an interrupted dataset in --out")
    gen.set_defaults(func=_cmd_data_generate)
    info = data_verbs.add_parser(
        "info",
        help="count episodes and check every file loads",
        epilog="example: robofume data info data/mock",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("path", help="dataset folder")
    info.set_defaults(func=_cmd_data_info)

    robot = verbs.add_parser(
        "robot",
        help="run a robot's ROS 2 nodes (arm, camera, safety gate) until Ctrl-C",
        epilog="examples:\n  robofume robot --robot mock --namespace robot1\n"
        "  robofume robot --robot real --param safety_gate.limits_file=my_arm_limits.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    robot.add_argument(
        "--robot", default="mock", choices=["mock", "real"], help="robot flavour (default: mock)"
    )
    robot.add_argument("--namespace", default="", help="ROS namespace for this robot (default: none)")
    robot.add_argument("--log-dir", default=None, help="write each node's output to DIR/<node>.log")
    robot.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NODE.NAME=VALUE",
        help="override a node parameter (repeatable), e.g. safety_gate.limits_file=limits.yaml",
    )
    robot.set_defaults(func=_cmd_robot)

    pre = verbs.add_parser(
        "pretrain",
        help="offline Cal-QL pre-training on a dataset; publishes weights and checkpoints",
        epilog="example: robofume pretrain --data data/mock --run runs/mock --bc-steps 12000 --steps 20000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pre.add_argument("--data", required=True, help="dataset folder from `robofume data generate`")
    pre.add_argument("--run", required=True, help="run folder (buffer, weights, checkpoints, tb logs)")
    pre.add_argument("--steps", type=int, default=None, help="Cal-QL updates (default: config, 20000)")
    pre.add_argument(
        "--bc-steps", type=int, default=None, help="BC warm-up updates before Cal-QL (default: config, 12000)"
    )
    _add_learner_args(pre)
    pre.set_defaults(func=_cmd_pretrain)

    from reward_vlm.label_cli import register_cli as register_label_cli
    from reward_vlm.reward_cli import register_cli as register_reward_cli

    register_label_cli(verbs)
    register_reward_cli(verbs)

    ses = verbs.add_parser(
        "session",
        help="the main job: prepare (data, classifier, pre-training; cached), then fine-tune over ROS 2",
        epilog="example: robofume session --duration 10 --out runs/session   # report: runs/session/report/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ses.add_argument("--out", default=None, help="session folder (default: runs/session)")
    ses.add_argument("--robot", choices=["mock", "real"], default=None, help="mock (default) or real")
    ses.add_argument(
        "--duration", type=float, default=None, help="minutes of autonomous fine-tuning (default: 10)"
    )
    ses.add_argument("--config", default=None, help="session config JSON (see <out>/session_config.json)")
    ses.add_argument(
        "--data", default=None, help="episode folder to use instead of generating one (real: required)"
    )
    ses.add_argument("--labels", default=None, help="label file from `robofume label` (real: required)")
    ses.add_argument("--limits-file", default=None, help="safety limits YAML of your arm (real: required)")
    ses.add_argument(
        "--home",
        default=None,
        metavar="X,Y,Z[,YAW]",
        help="end-effector home (world frame, m, rad) the arm returns to, gripper open, before every "
        "attempt (mock: its own home; real: no homing unless set)",
    )
    ses.add_argument(
        "--recipe", choices=["calql", "wsrl", "rlpd"], default=None, help="online recipe (default: calql)"
    )
    ses.add_argument(
        "--pretrain-steps", type=int, default=None, help="offline Cal-QL pre-training steps (default: 5000)"
    )
    ses.add_argument(
        "--bc-steps", type=int, default=None, help="BC warm-up steps before Cal-QL (default: 12000)"
    )
    ses.add_argument("--backbone-path", default=None, help="local classifier backbone folder")
    ses.add_argument(
        "--reward",
        choices=["classifier", "ground-truth"],
        default=None,
        help="reward source: the success classifier (default) or, mock only, the simulator's ground "
        "truth (a perfect reward, to tell classifier problems from RL problems)",
    )
    ses.add_argument(
        "--allow-weak-classifier",
        action="store_true",
        help="start even when the classifier's held-out precision is below min_precision (0.5); "
        "a real-robot session refuses otherwise",
    )
    ses.add_argument("--namespace", default=None, help="robot namespace (default: none)")
    ses.add_argument("--device", default=None, help="auto (CUDA if present), cpu or cuda")
    ses.add_argument(
        "--record-mcap", action="store_true", help="also record the session's topics to <out>/mcap"
    )
    ses.add_argument("--prepare-only", action="store_true", help="only run the cached preparation stages")
    ses.set_defaults(func=_cmd_session)

    lrn = verbs.add_parser(
        "learner",
        help="async online learner: trains from the run's replay buffer while the robot acts",
        epilog="example: robofume learner --run runs/mock --recipe calql",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lrn.add_argument("--run", required=True, help="run folder made by `robofume pretrain`")
    lrn.add_argument("--recipe", choices=["calql", "wsrl", "rlpd"], default=None, help="online recipe")
    lrn.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    lrn.add_argument(
        "--policy-average-tau",
        type=float,
        default=None,
        help="publish a Polyak average of the policy, moved this fraction per actor update "
        "(default: the run's config, 0.001; 0 publishes the trained policy)",
    )
    lrn.add_argument(
        "--actor-objective",
        choices=["sac_bc", "crr"],  # policy_server.calql.ACTOR_OBJECTIVES (not imported: it loads torch)
        default=None,
        help="actor loss online: sac_bc (SAC + filtered BC) or crr (critic-regularised regression; "
        "docs/learning.md); default: the run's config, sac_bc",
    )
    lrn.add_argument(
        "--crr-beta",
        type=float,
        default=None,
        help="crr: 0 imitates the data actions the critic rates above the policy's, > 0 weighs them "
        "by exp(advantage / beta) (default: the run's config, 0)",
    )
    lrn.set_defaults(func=_cmd_learner)

    bench = verbs.add_parser(
        "bench",
        help="benchmarks; print JSON with --json",
        epilog="examples:\n  robofume bench sim --json\n"
        "  robofume bench policy --device cuda --batch-sizes 1 4 16 --json   # on the GPU server\n"
        "  robofume bench policy --policy-image-size 96 --json   # a policy trained on 96 px images",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "name",
        choices=["sim", "transport", "learner", "policy", "buffer", "learning", "reward-node", "classifier"],
        help="which benchmark",
    )
    bench.add_argument(
        "--preset",
        choices=["quick", "medium", "full"],
        default="full",
        help="learning, classifier: size of the run (learning full = 20k + 20k steps; hours on a CPU)",
    )
    bench.add_argument(
        "--out", default=LEARNING_BENCH_OUT, help="learning, classifier: output folder (JSON + PNG)"
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument(
        "--data", default=None, help="classifier: prior/demo dataset to reuse (default: generate)"
    )
    bench.add_argument(
        "--backbone-path",
        default=None,
        help="classifier: exported backbone folder (default: tiny random-init)",
    )
    bench.add_argument(
        "--classifier", default=None, help="reward-node: classifier folder or 'stand-in' (default)"
    )
    bench.add_argument("--image-size", type=int, default=128, help="camera image side (default: 128)")
    bench.add_argument(
        "--policy-image-size",
        type=int,
        default=None,
        help="policy: the network's input side; camera frames are resized to it (default: the network's, 64)",
    )
    bench.add_argument(
        "--device",
        default=None,
        help="learner, policy: auto (default; CUDA if present), cpu or cuda; classifier: the latency "
        "rows' device (default cpu)",
    )
    bench.add_argument(
        "--latency-only",
        action="store_true",
        help="classifier: time the backbones only (no data, no training), e.g. on a GPU server",
    )
    bench.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="policy: robots served per call (default: 1 4); classifier --latency-only: frames per call",
    )
    bench.add_argument(
        "--steps", type=int, default=None, help="sim: env steps to time (200); learner: updates to time (20)"
    )
    bench.add_argument(
        "--seconds", type=float, default=10.0, help="transport, reward-node: seconds measured (default: 10)"
    )
    bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="learning: override a setting of the preset (repeatable), e.g. --set seed=1 "
        "--set methods=calql_finetune,pretrained_only",
    )
    bench.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="DIR",
        help="learning: merge the results of runs that split the methods (same settings) into --out",
    )
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit with status 2."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, OSError, FileExistsError) as exc:
        print(f"robofume: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robofume: interrupted; finished episodes are kept (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
