"""Real-time scheduling for the nodes on the per-step control path (camera → policy → gate → arm).

A node that declares the ``realtime_priority`` parameter (1–99) asks for Linux's ``SCHED_FIFO``
class for all of its threads once it is built, as ros2_control's controller manager does: a
FIFO thread runs as soon as its timer or message is due, ahead of every normal process (the
learner, the classifier, the recorder). Without the privilege (``CAP_SYS_NICE``, an ``rtprio``
limit, or Docker's ``cap_add: [SYS_NICE]``) the node keeps normal scheduling and says so once.
Plain Python: no ROS import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

REALTIME_PARAM = "realtime_priority"
"""Node parameter: SCHED_FIFO priority (1–99), 0 for normal scheduling."""

MAX_PRIORITY = 99


@dataclass(frozen=True)
class RealtimeResult:
    """What :func:`request_fifo` did: ``applied`` and a one-line ``message`` for the node's log."""

    applied: bool
    message: str


def check_priority(priority: int) -> int:
    """``priority`` as an int in 0..99; a ``ValueError`` (one line) otherwise."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(
            f"{REALTIME_PARAM} must be an integer in 0..{MAX_PRIORITY} (0: off), got {priority!r}"
        )
    return priority


def _thread_ids(task_dir: str) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(task_dir))
    except OSError:
        return [0]  # no /proc: the calling thread only (threads it starts later inherit the class)


def request_fifo(priority: int, task_dir: str = "/proc/self/task") -> RealtimeResult:
    """Move every thread of this process (those in ``task_dir``) to ``SCHED_FIFO`` at ``priority``;
    threads started later inherit it. 0 leaves scheduling alone. A missing privilege is not an
    error: the result says so and the process keeps its normal class."""
    priority = check_priority(priority)
    if priority == 0:
        return RealtimeResult(False, f"{REALTIME_PARAM} 0: normal scheduling")
    if not hasattr(os, "sched_setscheduler"):
        return RealtimeResult(False, "SCHED_FIFO is not available on this OS: normal scheduling")
    param = os.sched_param(priority)
    done = 0
    for tid in _thread_ids(task_dir):
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, param)
            done += 1
        except ProcessLookupError:
            continue  # the thread ended meanwhile
        except PermissionError:
            if done:
                return RealtimeResult(True, f"SCHED_FIFO {priority} for {done} thread(s); the rest refused")
            return RealtimeResult(
                False,
                f"SCHED_FIFO {priority} refused (needs CAP_SYS_NICE or an rtprio limit, e.g. Docker's "
                f"cap_add: [SYS_NICE]); running with normal scheduling",
            )
    return RealtimeResult(True, f"SCHED_FIFO priority {priority} for {done} thread(s)")


def describe_scheduling(pid: int) -> str:
    """How process ``pid``'s main thread is scheduled, for reports: ``FIFO 50``, ``nice 5``,
    ``normal``, ``idle``, ``batch``; ``gone`` when it has ended, ``unknown`` when it cannot be read."""
    try:
        policy = os.sched_getscheduler(pid)
        if policy in (os.SCHED_FIFO, os.SCHED_RR):
            name = "FIFO" if policy == os.SCHED_FIFO else "RR"
            return f"{name} {os.sched_getparam(pid).sched_priority}"
        if policy == getattr(os, "SCHED_IDLE", None):
            return "idle"
        if policy == getattr(os, "SCHED_BATCH", None):
            return "batch"
        nice = os.getpriority(os.PRIO_PROCESS, pid)
    except ProcessLookupError:
        return "gone"
    except (PermissionError, AttributeError):  # not ours to read, or no sched_* functions on this OS
        return "unknown"
    return f"nice {nice}" if nice else "normal"
