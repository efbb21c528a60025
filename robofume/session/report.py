"""The session report: ``report.md``, PNG plots and ``report.json`` in ``<out>/report``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from robofume.atomic_io import write_json_atomic, write_with
from robofume.session.session_log import SessionLog


def _rolling(values: list[float], window: int) -> np.ndarray:
    out = np.empty(len(values))
    for i in range(len(values)):
        out[i] = float(np.mean(values[max(0, i - window + 1) : i + 1]))
    return out


def _save(fig: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    write_with(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_success(log: SessionLog, path: str, window: int = 10, reward: str = "classifier") -> None:
    """Forward and backward success over time, as the session's reward judged it (``reward``: the
    reward source, ``classifier`` or ``ground_truth``) and by ground truth at each episode's end
    when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judge = "ground-truth reward" if reward == "ground_truth" else "classifier"
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for task, colour in (("forward", "tab:blue"), ("backward", "tab:orange")):
        eps = [e for e in log.episodes if e.task == task and e.outcome != "already_done"]
        if not eps:
            continue
        t = [e.t / 60 for e in eps]
        ax.plot(
            t,
            _rolling([float(e.outcome == "success") for e in eps], window),
            color=colour,
            label=f"{task} ({judge})",
        )
        if all(e.ground_truth is not None for e in eps):
            gt = _rolling([float(bool(e.ground_truth)) for e in eps], window)
            ax.plot(t, gt, color=colour, linestyle="--", label=f"{task} (ground truth at episode end)")
    ax.set_xlabel("session time (min)")
    ax.set_ylabel(f"success rate (last {window} episodes)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no attempt yet: no lines, no legend
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_classifier(log: SessionLog, path: str) -> None:
    """Cumulative precision of the classifier's success events against ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    checked = [(t, gt) for t, _, gt in log.success_events if gt is not None]
    if checked:
        t = [c[0] / 60 for c in checked]
        ok = np.cumsum([float(c[1]) for c in checked]) / np.arange(1, len(checked) + 1)
        ax.plot(t, ok, color="tab:green", marker=".", label="precision of success events")
    else:
        ax.text(
            0.5, 0.5, "no success events checked against ground truth", ha="center", transform=ax.transAxes
        )
    ax.set_xlabel("session time (min)")
    ax.set_ylabel("precision (cumulative)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_system(log: SessionLog, path: str) -> None:
    """Weight versions / learner steps and operator interventions (pauses, help requests) over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    if log.weight_versions:
        t = [w[0] / 60 for w in log.weight_versions]
        ax1.step(t, [w[2] for w in log.weight_versions], where="post", color="tab:purple")
    ax1.set_ylabel("learner step of served weights")
    ax1.grid(alpha=0.3)
    pauses = [p[0] / 60 for p in log.phases if p[1] in ("paused", "help_needed", "estop")]
    ax2.eventplot([pauses], colors="tab:red", lineoffsets=0.5, linelengths=0.8)
    ax2.set_yticks([])
    ax2.set_ylabel("holds")
    ax2.set_xlabel("session time (min)")
    _save(fig, path)


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if pct:
        return f"{100 * value:.0f} %"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _held_text(summary: dict[str, Any]) -> str:
    """ " (the arm held for N min help needed, ...)" for holds of a minute or more, else ""."""
    held = {k: v for k, v in summary.get("held_s", {}).items() if v >= 60}
    if not held:
        return ""
    parts = ", ".join(f"{v / 60:.1f} min {k.replace('_', ' ')}" for k, v in held.items())
    return f" (the arm held for {parts})"


def _reward_lines(context: dict[str, Any]) -> list[str]:
    """The report's lines on where the reward came from, and a warning for a weak classifier."""
    if context.get("reward") == "ground_truth":
        return [
            "**Reward: ground truth from the simulator** (`--reward ground-truth`), not the success "
            "classifier: this run shows the RL with a perfect reward.",
            "",
        ]
    weak = context.get("weak_classifier") or {}
    if not weak:
        return ["Reward: the success classifier.", ""]
    found = ", ".join(f"{task} {value:.3f}" for task, value in weak.items())
    return [
        f"**Warning: weak reward.** The success classifier's held-out precision ({found}) was below "
        f"{context.get('min_precision', '?')} before the session started, so most of its successes are "
        "likely false and the learner trained on them. Judge the run by the ground-truth columns.",
        "",
    ]


def _actor_text(context: dict[str, Any]) -> str:
    """`` with the CRR actor (`online.crr_beta` B)`` when the session's actor objective is CRR, else
    empty."""
    if context.get("actor_objective", "sac_bc") != "crr":
        return ""
    return f" with the CRR actor (`online.crr_beta` {context.get('crr_beta', 0.0):g})"


def _evaluation_lines(evaluation: list[dict[str, Any]], average_tau: float | None = None) -> list[str]:
    """The report's table of held-out forward and backward success per evaluated policy
    (``average_tau``: the learner's ``policy_average_tau``, named when > 0)."""
    if not evaluation:
        return []
    served = (
        f" The milestones and the final policy are what the learner published: a Polyak average of the "
        f"trained policy (`online.policy_average_tau` {average_tau:g})."
        if average_tau
        else ""
    )
    n = evaluation[0]["episodes"]
    rows = []
    for i, p in enumerate(evaluation):
        which = "final" if p["source"] == "weights" else "pre-trained" if i == 0 else "milestone"
        forward, backward = 100 * p["success_rate"], 100 * p["backward_success_rate"]
        edge = p.get("forward_edge_success_rate")
        edge_text = "n/a" if edge is None else f"{100 * edge:.0f} %"
        rows.append(
            f"| {p['step']} | {which} (v{p['version']}) | {forward:.0f} % | {edge_text} | {backward:.0f} % |"
        )
    return [
        "## Held-out evaluation (ground truth)",
        "",
        f"Success on {n} fresh scenes per task at the session's workstation, seeds the data and the "
        "session never used, with the mean action; evaluated after the session. *Forward, edge "
        "starts*: the same scenes with the object 4-5.5 cm from the start square's centre, where a "
        f"backward success can leave it in the reset-free stream but no demo starts.{served}",
        "",
        "| learner step | policy | forward success | forward, edge starts | backward success |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _scheduling_line(scheduling: dict[str, str]) -> list[str]:
    """``- scheduling: arm FIFO 50, ...`` (how each process ran; the control period depends on it)."""
    if not scheduling:
        return []
    return ["- scheduling: " + ", ".join(f"{name} {how}" for name, how in scheduling.items())]


def write_report(
    log: SessionLog,
    folder: str,
    context: dict[str, Any],
    classifier_metrics: dict[str, Any] | None = None,
    evaluation: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``report.md``, ``success.png``, ``classifier.png``, ``system.png`` and ``report.json``
    (``evaluation``: held-out points from :func:`robofume.session.evaluation.evaluate_session`)."""
    os.makedirs(folder, exist_ok=True)
    plot_success(log, os.path.join(folder, "success.png"), reward=str(context.get("reward", "classifier")))
    plot_classifier(log, os.path.join(folder, "classifier.png"))
    plot_system(log, os.path.join(folder, "system.png"))
    summary = log.summary()
    payload = {**log.to_json(), "context": context, "classifier_training": classifier_metrics or {}}
    payload["evaluation"] = evaluation or []
    write_json_atomic(os.path.join(folder, "report.json"), payload)
    rows = []
    for task, s in summary["tasks"].items():
        rows.append(
            f"| {task} | {s['episodes']} | {s.get('already_done', 0)} | {_fmt(s['success_rate'], True)} | "
            f"{_fmt(s['ground_truth_success_rate'], True)} | "
            f"{_fmt(s['ground_truth_success_rate_last_half'], True)} |"
        )
    c, w, ctl = summary["classifier"], summary["weights"], summary["control"]
    lines = [
        f"# robofume session report ({context.get('robot', '?')})",
        "",
        f"Session folder `{context.get('out', '?')}`, "
        f"{summary['duration_s'] / 60:.1f} min of autonomous fine-tuning{_held_text(summary)}, "
        f"recipe `{context.get('recipe', '?')}`{_actor_text(context)}, {summary['transitions']} transitions "
        "recorded.",
        "",
        *_reward_lines(context),
        "| task | attempts | already done | success (reward) | success (ground truth) "
        "| ground truth, last half |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Attempts exclude episodes that were *already done*: the reward confirmed success within "
        "the first steps, because the object already lay where the task wants it (typically after the "
        "other task failed). They are stored as successes for the learner but not counted as any.",
        "",
        "![success](success.png)",
        "",
        *_evaluation_lines(evaluation or [], context.get("policy_average_tau")),
        "## Reward: success events",
        "",
        f"- confirmed success events: {c['success_events']}; precision against ground truth: "
        f"{_fmt(c['event_precision_ground_truth'], True)}",
        f"- per episode: precision {_fmt(c['episode_precision_ground_truth'], True)}, "
        f"recall {_fmt(c['episode_recall_ground_truth'], True)}",
        "",
        "![classifier](classifier.png)",
        "",
        "## System",
        "",
        f"- weight versions served: {w['versions_served']} (last v{_fmt(w['last_version'])}, "
        f"learner step {_fmt(w['last_learner_step'])})",
        f"- control period p50 {_fmt(ctl['p50_ms'])} ms, p99 {_fmt(ctl['p99_ms'])} ms "
        f"over {ctl['periods']} steps; camera cadence p50 {_fmt(ctl.get('camera_period_p50_ms'))} ms, "
        f"p99 {_fmt(ctl.get('camera_period_p99_ms'))} ms; camera stamp to action p50 "
        f"{_fmt(ctl.get('latency_p50_ms'))} ms, p99 {_fmt(ctl.get('latency_p99_ms'))} ms",
        f"- holds (pauses): {summary['pauses']}; help requests: {summary['help_requests']}",
        *_scheduling_line(context.get("scheduling") or {}),
        f"- homing between attempts: {summary['homing'].get('home', 0)} reached home, "
        f"{summary['homing'].get('gave_up', 0)} gave up (median {_fmt(summary['homing']['steps_median'])} "
        "control steps)",
        "",
        "![system](system.png)",
        "",
    ]
    if context.get("robot") == "real":
        lines.append("Ground-truth columns are n/a on a real robot: only the classifier's judgement exists.")
    write_with(os.path.join(folder, "report.md"), lambda f: f.write("\n".join(lines).encode()))
    return summary
