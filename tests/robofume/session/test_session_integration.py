"""A short session with every node over ROS 2 on localhost, and a policy-server crash in the middle.

It prepares a tiny dataset, classifier (tiny local backbone) and pre-trained policy, then runs the
mock arm, safety gate, policy server, reward node, reset-free controller, recorder, visualizer and
the learner as separate processes, kills the policy server with SIGKILL once episodes flow, and
checks: both tasks alternate, transitions reach the buffer, new weights are hot-swapped, the
controller pauses while the policy server is gone and resumes after the runner restarts it, and the
report is written.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")

import itertools

from policy_server.replay_buffer import ReplayBuffer
from robofume.session.config import config_from_dict
from robofume.session.runner import run_session
from robofume.session.session_log import SessionLog


def test_short_session_alternates_learns_and_survives_a_policy_server_crash(tmp_path) -> None:
    cfg = config_from_dict(
        {
            "out": str(tmp_path / "session"),
            "data_stage": {
                "demos_per_task": 2,
                "failures_per_task": 0,
                "prior": 1,
                "image_size": 64,
                "max_episode_steps": 80,
                "workers": 1,
            },
            "classifier": {"epochs": 2, "image_size": 64, "auto_label_positives": 2},
            "pretrain": {"bc_steps": 4, "steps": 4, "batch_size": 32, "image_size": 64},
            "online": {
                "duration_s": 150.0,
                "max_episode_steps": 15,
                "wsrl_warmup_transitions": 30,
                "stuck_after": 1000,
                "eval_episodes": 1,
                "eval_points": 2,
            },
        }
    )
    killed: dict[str, float] = {}

    def crash_policy_server(launcher, elapsed: float, log: SessionLog) -> None:
        if not killed and len(log.episodes) >= 3:
            launcher.processes["policy_server"].send_signal(signal.SIGKILL)
            killed["t"] = log.episodes[-1].t
            killed["episodes"] = len(log.episodes)

    summary = run_session(cfg, fault=crash_policy_server)

    report = tmp_path / "session" / "report"
    for name in ("report.md", "report.json", "success.png", "classifier.png", "system.png"):
        assert (report / name).stat().st_size > 0, name
    payload = json.loads((report / "report.json").read_text())
    # After the session, the pre-trained policy and the final weights were evaluated on a held-out scene.
    assert [p["source"] for p in payload["evaluation"]] == ["milestones", "weights"]
    assert payload["evaluation"][0]["step"] < payload["evaluation"][1]["step"]
    assert "## Held-out evaluation (ground truth)" in (report / "report.md").read_text()
    tasks = [e["task"] for e in payload["episodes"]]
    assert tasks.count("forward") >= 2 and tasks.count("backward") >= 2
    assert all(a != b for a, b in itertools.pairwise(tasks)), f"tasks must alternate: {tasks}"
    # Between attempts the controller drove the arm home through the safety gate (the scene untouched).
    assert summary["homing"]["home"] >= 2, summary["homing"]
    assert any(p["phase"] == "homing" for p in payload["phases"])

    # Transitions reached the durable buffer and the learner published weights that were swapped in.
    assert summary["transitions"] > 0
    buffer = ReplayBuffer.open(tmp_path / "session" / "run" / "buffer", readonly=True)
    online = buffer.valid_indices("online")
    assert len(online) > 0
    batch = buffer.gather(np.sort(online))
    assert set(np.unique(batch.tasks)) == {0, 1}
    buffer.close()
    assert summary["weights"]["versions_served"] >= 2, summary["weights"]
    # how each process ran: the control path asks for SCHED_FIFO (granted where this runs as root)
    scheduling = payload["context"]["scheduling"]
    assert {"arm", "safety_gate", "policy_server", "reward", "learner"} <= set(scheduling), scheduling
    assert scheduling["reward"].startswith("nice"), scheduling
    assert scheduling["arm"].split()[0] in ("FIFO", "normal", "nice"), scheduling

    # The crash: the controller held the arm (policy server silent) and resumed after the restart.
    assert killed, "the session never reached three episodes"
    assert payload["context"]["restarts"].get("policy_server") == 1
    phases = [p for p in payload["phases"] if p["t"] >= killed["t"]]
    paused = [p for p in phases if p["phase"] == "paused" and "policy server" in p["reason"]]
    assert paused, f"no pause for the silent policy server after the crash: {phases}"
    resumed = [p for p in phases if p["t"] > paused[0]["t"] and p["phase"] in ("forward", "backward")]
    assert resumed, f"no recovery after the crash: {phases}"
    assert len(payload["episodes"]) > killed["episodes"], "no episode finished after the recovery"
