"""Task names, ids and instructions shared by the env, the data format and the policy."""

from __future__ import annotations

TASK_NAMES: tuple[str, ...] = ("forward", "backward")
"""Forward puts the object in the target; backward takes it out and back to the start region."""


def task_id(name: str) -> int:
    """Return the integer id of task ``name``; raise ``ValueError`` with the valid names otherwise."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; expected one of: {', '.join(TASK_NAMES)}")
    return TASK_NAMES.index(name)


def task_name(task: int | str) -> str:
    """Return the task name for an id or a name, validating either."""
    if isinstance(task, str):
        task_id(task)
        return task
    if not 0 <= int(task) < len(TASK_NAMES):
        raise ValueError(f"unknown task id {task}; expected 0..{len(TASK_NAMES) - 1}")
    return TASK_NAMES[int(task)]


def other_task(name: str) -> str:
    """The task that undoes ``name`` (forward <-> backward)."""
    return TASK_NAMES[1 - task_id(name)]


def instruction(name: str, object_desc: str = "red cube", target_desc: str = "blue bin") -> str:
    """Natural-language instruction for a task, used for text conditioning and VLM prompts."""
    if task_id(name) == 0:
        return f"put the {object_desc} in the {target_desc}"
    return f"take the {object_desc} out of the {target_desc} and put it on the green square"
