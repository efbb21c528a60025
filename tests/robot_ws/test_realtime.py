"""SCHED_FIFO for the control-path nodes: every thread moves, or the refusal is one clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robofume_robot.realtime import REALTIME_PARAM, check_priority, describe_scheduling, request_fifo

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import json, os, sys, threading
    from robofume_robot.realtime import request_fifo
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(3)]
    for w in workers:
        w.start()
    result = request_fifo(int(sys.argv[1]))
    later = threading.Thread(target=stop.wait)
    later.start()  # started after the request: inherits the class of the thread that started it
    tids = [int(t) for t in os.listdir("/proc/self/task")]
    policies = {t: os.sched_getscheduler(t) for t in tids}
    stop.set()
    print(json.dumps({"applied": result.applied, "message": result.message,
                      "threads": len(tids), "fifo": sum(p == os.SCHED_FIFO for p in policies.values())}))
    """
)


def _probe(priority: int) -> dict:
    paths = [str(REPO / "robot_ws" / "src" / "robofume_robot"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(priority)], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux only")
def test_every_thread_moves_to_fifo_or_the_refusal_says_why() -> None:
    probe = _probe(10)
    if probe["applied"]:
        assert probe["fifo"] == probe["threads"] == 5, probe  # main + 3 workers + 1 started later
        assert "SCHED_FIFO priority 10" in probe["message"]
    else:  # no CAP_SYS_NICE here: nothing changed, and the log line says what to grant
        assert probe["fifo"] == 0 and "CAP_SYS_NICE" in probe["message"], probe


def test_zero_leaves_scheduling_alone() -> None:
    probe = _probe(0)
    assert not probe["applied"] and probe["fifo"] == 0 and "normal scheduling" in probe["message"]
    assert not request_fifo(0).applied


@pytest.mark.parametrize("bad", [-1, 100, 2.5, True, "50"])
def test_bad_priorities_are_one_line_errors(bad: object) -> None:
    with pytest.raises(ValueError, match=REALTIME_PARAM) as info:
        check_priority(bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_control_path_nodes_ask_for_it_in_every_parameter_file() -> None:
    import yaml

    from robofume_robot.config_paths import config_dir

    wanted = {
        "mock_robot.yaml": ("arm", "safety_gate"),
        "real_robot.yaml": ("camera", "arm_adapter", "safety_gate"),
        "session.yaml": ("policy_server",),
    }
    for name, nodes in wanted.items():
        params = yaml.safe_load((config_dir() / name).read_text())
        for key, section in params.items():
            node = key.removeprefix("/**/")
            got = section["ros__parameters"].get(REALTIME_PARAM, 0)
            assert (got > 0) == (node in nodes), f"{name}: {node} has {REALTIME_PARAM} {got}"


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux only")
def test_describe_scheduling_reads_the_class_and_niceness() -> None:
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)  # the child adds 5 to this process's
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    nice = subprocess.Popen(sleeper, preexec_fn=lambda: os.nice(5))
    try:
        assert describe_scheduling(nice.pid) == f"nice {expected}"
        try:
            os.sched_setscheduler(nice.pid, os.SCHED_FIFO, os.sched_param(7))
        except PermissionError:
            pass  # no CAP_SYS_NICE here
        else:
            assert describe_scheduling(nice.pid) == "FIFO 7"
    finally:
        nice.kill()
        nice.wait()
    assert describe_scheduling(nice.pid) == "gone"
