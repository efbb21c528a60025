"""``robofume session``: prepare once, then fine-tune autonomously over ROS 2 and write a report.

Stages (cached, see :mod:`robofume.session.prepare`): data -> labels -> classifier -> pre-training.
Then every node starts as its own process on localhost through robofume's launcher (the robot's
nodes plus the policy server, the reward node, the reset-free controller and the recorder; the MCAP
recorder with ``record_mcap``), the learner runs as ``robofume learner``, and this process watches
the topics (:class:`~robofume.session.monitor_node.SessionMonitorNode`), shows progress, restarts a
node that died, and at the end writes ``<out>/report``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from robofume.session.config import SessionConfig, mock_scene_seed, save_config
from robofume.session.evaluation import evaluate_session
from robofume.session.prepare import (
    check_classifier,
    check_session_folder,
    ensure_classifier,
    ensure_data,
    ensure_labels,
    ensure_pretrained,
    weak_classifier_tasks,
)
from robofume.session.report import write_report
from robofume.session.session_log import SessionLog

Log = Callable[[str], None]

MAX_RESTARTS_PER_NODE = 5


def _stderr(message: str) -> None:
    print(f"robofume session: {message}", file=sys.stderr, flush=True)


def node_overrides(cfg: SessionConfig) -> dict[str, dict[str, Any]]:
    """Per-node parameters the session sets on top of the parameter files."""
    o = cfg.online
    overrides: dict[str, dict[str, Any]] = {
        "policy_server": {
            "weights_dir": os.path.abspath(os.path.join(cfg.run_dir, "weights")),
            "image_size": cfg.data_stage.image_size,
            "device": cfg.device,
            "explore_std_scale": float(o.explore_std_scale),
        },
        "reward": {"source": cfg.reward, "confirm_frames": cfg.classifier.confirm_frames},
        "reset_free_controller": {
            "control_hz": o.control_hz,
            "max_episode_steps": o.max_episode_steps,
            "stuck_after": o.stuck_after,
            "already_done_steps": o.already_done_steps,
        },
        "recorder": {"buffer_dir": os.path.abspath(os.path.join(cfg.run_dir, "buffer"))},
        "mcap_recorder": {
            "output": os.path.abspath(os.path.join(cfg.out, "mcap")),
            "image_every_n": o.mcap_image_every_n,
        },
    }
    if cfg.reward == "classifier":
        overrides["reward"]["classifier_path"] = os.path.abspath(cfg.classifier_dir)
    if cfg.robot == "real":
        limits = os.path.abspath(str(cfg.limits_file))
        overrides["visualizer"] = {"limits_file": limits}
        overrides["safety_gate"] = {"limits_file": limits}
        overrides["camera"] = {"output_size": cfg.data_stage.image_size}
        overrides["reset_free_controller"].update({"limits_file": limits, "homing": o.home is not None})
    if o.home is not None:
        home = [float(v) for v in o.home]
        overrides["reset_free_controller"].update(
            {"home_xyz": home[:3], "home_yaw": home[3] if len(home) > 3 else 0.0}
        )
    if cfg.robot == "mock":
        # A scene seed the data and the classifier never saw (the demos share its layout).
        overrides["arm"] = {
            "seed": mock_scene_seed(cfg),
            "control_hz": o.control_hz,
            "camera_hz": o.control_hz,
            "image_size": cfg.data_stage.image_size,
        }
    return overrides


def learner_command(cfg: SessionConfig) -> list[str]:
    """The learner process: ``robofume learner`` on the session's run folder."""
    return [
        sys.executable,
        "-m",
        "robofume.cli",
        "learner",
        "--run",
        cfg.run_dir,
        "--recipe",
        cfg.online.recipe,
        "--device",
        cfg.device,
        "--policy-average-tau",
        str(cfg.online.policy_average_tau),
        "--actor-objective",
        cfg.online.actor_objective,
        "--crr-beta",
        str(cfg.online.crr_beta),
    ]


def prepare(cfg: SessionConfig, log: Log = _stderr) -> dict[str, Any]:
    """Run the cached preparation stages; returns the classifier's held-out metrics (empty with the
    ground-truth reward, which needs no classifier). A classifier below ``min_precision`` stops a
    real-robot session here (:func:`~robofume.session.prepare.check_classifier`) before the pre-training."""
    check_session_folder(cfg.out)
    os.makedirs(cfg.out, exist_ok=True)
    save_config(cfg, os.path.join(cfg.out, "session_config.json"))
    data_dir = ensure_data(cfg, log)
    metrics: dict[str, Any] = {}
    if cfg.reward == "classifier":
        labels = ensure_labels(cfg, data_dir, log)
        metrics = ensure_classifier(cfg, data_dir, labels, log)
        check_classifier(cfg, metrics, log)
    else:
        log("reward: ground truth from the simulator (no classifier trained)")
    ensure_pretrained(cfg, data_dir, log)
    return metrics


def _progress_line(log: SessionLog, monitor: Any, elapsed: float, duration: float) -> str:
    s = log.summary()["tasks"]
    fwd, bwd = s["forward"], s["backward"]
    status = monitor.status
    phase = status.get("phase", "?") + (f" ({status['reason']})" if status.get("reason") else "")
    rate = "n/a" if fwd["success_rate"] is None else f"{100 * fwd['success_rate']:.0f}%"
    return (
        f"[{elapsed / 60:5.1f}/{duration / 60:.1f} min] {phase:<12} episodes fwd {fwd['episodes']} "
        f"bwd {bwd['episodes']}  fwd success {rate}  weights v{monitor.served_version}  "
        f"transitions {log.transitions}"
    )


def run_session(
    cfg: SessionConfig,
    log: Log = _stderr,
    stop: Callable[[], bool] | None = None,
    fault: Callable[[Any, float, SessionLog], None] | None = None,
) -> dict[str, Any]:
    """Prepare, run every node for ``cfg.online.duration_s`` and write the report; returns its summary.

    ``stop()`` ends the session early; ``fault(launcher, elapsed_s, session_log)`` is called about once a
    second (fault-injection tests kill a node through it and watch the session recover).
    """
    import signal
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from policy_server.weights import WeightStore
    from robofume.session.monitor_node import SessionMonitorNode
    from robofume_robot.launcher import MCAP_NODE, SESSION_NODES, Launcher, lower_priority, ros_environment
    from robofume_robot.realtime import describe_scheduling

    cfg.validate()
    classifier_metrics = prepare(cfg, log)
    os.makedirs(cfg.log_dir, exist_ok=True)
    extra = (*SESSION_NODES, MCAP_NODE) if cfg.online.record_mcap else SESSION_NODES
    env = ros_environment()
    env.setdefault("OMP_NUM_THREADS", "1")
    launcher = Launcher(
        cfg.robot,
        namespace=cfg.namespace,
        overrides={
            k: v for k, v in node_overrides(cfg).items() if k != "mcap_recorder" or cfg.online.record_mcap
        },
        log_dir=cfg.log_dir,
        env=env,
        extra_nodes=extra,
    )
    learner_env = dict(env, OMP_NUM_THREADS=str(cfg.online.learner_threads))
    weights = WeightStore(os.path.join(cfg.run_dir, "weights"))
    tb = None
    try:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(os.path.join(cfg.tensorboard_dir, "session"))
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        pass
    context = rclpy.Context()
    domain = int(env.get("ROS_DOMAIN_ID", "0") or 0)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "RMW_", "FASTDDS_"))})
    # Ctrl-C / SIGTERM end the session in order (nodes stopped, report written); the nodes run in
    # their own process groups, so a terminal's Ctrl-C reaches only this process.
    rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    stopping = {"signal": ""}

    def _on_signal(signum: int, _frame: object) -> None:
        stopping["signal"] = signal.Signals(signum).name

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    session_log = SessionLog(t0=0.0, writer=tb)
    restarts: dict[str, int] = {}
    scheduling: dict[str, str] = {}
    """How each node process and the learner were scheduled at the end (``FIFO 50``, ``nice 5``)."""
    learner_log = open(os.path.join(cfg.log_dir, "learner.log"), "ab")  # noqa: SIM115 - closed below
    learner: subprocess.Popen[bytes] | None = None
    try:
        ns = f"/{cfg.namespace.strip('/')}" if cfg.namespace.strip("/") else None
        monitor = SessionMonitorNode(session_log, context=context, namespace=ns)
        session_log.t0 = monitor.now()
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(monitor)
        launcher.start()
        learner = subprocess.Popen(
            learner_command(cfg),
            env=learner_env,
            stdout=learner_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lower_priority(cfg.online.learner_nice),
        )
        log(
            f"running {len(launcher.nodes)} nodes + learner for {cfg.online.duration_s / 60:.1f} min; "
            f"logs in {cfg.log_dir}"
        )
        start = time.monotonic()
        next_print = next_check = start
        last_version: int | None = None
        while time.monotonic() - start < cfg.online.duration_s and not (stop and stop()):
            executor.spin_once(timeout_sec=0.05)
            if stopping["signal"]:
                log(f"{stopping['signal']}: stopping the nodes and writing the report")
                break
            now = time.monotonic()
            if now >= next_print:
                next_print = now + 5.0
                log(_progress_line(session_log, monitor, now - start, cfg.online.duration_s))
            if now >= next_check:
                next_check = now + 1.0
                if fault is not None:
                    fault(launcher, now - start, session_log)
                for name, code in launcher.exited().items():
                    restarts[name] = restarts.get(name, 0) + 1
                    if restarts[name] > MAX_RESTARTS_PER_NODE:
                        raise RuntimeError(
                            f"node {name} keeps dying (exit {code}); see {cfg.log_dir}/{name}.log"
                        )
                    log(f"node {name} exited with code {code}; restarting it ({restarts[name]})")
                    launcher.restart(name)
                if learner.poll() is not None:
                    raise RuntimeError(
                        f"the learner exited with code {learner.returncode}; see {cfg.log_dir}/learner.log"
                    )
            version = monitor.served_version
            if version is not None and version != last_version:
                last_version = version
                try:
                    step = weights.read_meta(version).step
                except Exception:  # a pruned or damaged version: the step is unknown
                    step = -1
                session_log.on_weights(version, step, monitor.now())
        scheduling = {name: describe_scheduling(proc.pid) for name, proc in launcher.processes.items()}
        scheduling["learner"] = describe_scheduling(learner.pid)
        session_log.on_end(monitor.now())
    finally:
        launcher.stop(timeout=10.0)
        if learner is not None and learner.poll() is None:
            learner.terminate()
            try:
                learner.wait(30)
            except subprocess.TimeoutExpired:
                learner.kill()
        learner_log.close()
        rclpy.try_shutdown(context=context)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if tb is not None:
            tb.close()
    evaluation: list[dict[str, Any]] = []
    if not stopping["signal"]:
        try:
            evaluation = evaluate_session(cfg, log)
        except Exception as exc:  # the session's record matters more than its evaluation
            log(f"held-out evaluation failed, the report has none: {type(exc).__name__}: {exc}")
    if tb is not None and evaluation:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(os.path.join(cfg.tensorboard_dir, "session")) as writer:
            for point in evaluation:
                writer.add_scalar("charts/heldout_forward_success", point["success_rate"], point["step"])
                writer.add_scalar(
                    "charts/heldout_backward_success", point["backward_success_rate"], point["step"]
                )
                writer.add_scalar(
                    "charts/heldout_forward_edge_success", point["forward_edge_success_rate"], point["step"]
                )
    context_info = {
        "robot": cfg.robot,
        "out": cfg.out,
        "recipe": cfg.online.recipe,
        "policy_average_tau": cfg.online.policy_average_tau,
        "actor_objective": cfg.online.actor_objective,
        "crr_beta": cfg.online.crr_beta,
        "duration_s": cfg.online.duration_s,
        "restarts": restarts,
        "scheduling": scheduling,
        "reward": cfg.reward,
        "weak_classifier": weak_classifier_tasks(cfg, classifier_metrics)
        if cfg.reward == "classifier"
        else {},
        "min_precision": cfg.classifier.min_precision,
    }
    summary = write_report(session_log, cfg.report_dir, context_info, classifier_metrics, evaluation)
    log(f"report: {os.path.join(cfg.report_dir, 'report.md')}")
    report = os.path.join(cfg.report_dir, "report.md")
    print(json.dumps({"report": report, "summary": summary, "evaluation": evaluation}, default=str))
    return summary
