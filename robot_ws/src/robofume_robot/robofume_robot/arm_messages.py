"""Standard-message encodings of policy actions and gated arm targets.

Both travel as ``sensor_msgs/JointState`` (stamped, named, standard): ``policy/action`` carries the
normalized action ``dx, dy, dz, dyaw, gripper`` in ``position`` with ``header.stamp`` = the stamp of
the camera frame it was computed from; ``arm/command`` carries the absolute target
``x, y, z, yaw, gripper`` (metres, radians, closure 0..1) after the safety gate.
"""

from __future__ import annotations

from collections.abc import Sequence

from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState

from robofume_robot.ros_image import stamp_to_sec
from robofume_robot.safety_gate import ArmTarget

ACTION_FIELDS: tuple[str, ...] = ("dx", "dy", "dz", "dyaw", "gripper")
TARGET_FIELDS: tuple[str, ...] = ("x", "y", "z", "yaw", "gripper")


def action_msg(values: Sequence[float], frame_stamp: Time, frame_id: str = "policy") -> JointState:
    """A ``policy/action`` message for a normalized action computed from the frame stamped ``frame_stamp``."""
    msg = JointState()
    msg.header.stamp = frame_stamp
    msg.header.frame_id = frame_id
    msg.name = list(ACTION_FIELDS)
    msg.position = [float(v) for v in values]
    return msg


def parse_action(msg: JointState) -> tuple[object, float]:
    """(action values in ACTION_FIELDS order, frame stamp in s). Values are returned raw so that the
    safety gate, not this parser, decides what is malformed; unknown or missing names give ``None``."""
    values: object = list(msg.position)
    if msg.name and list(msg.name) != list(ACTION_FIELDS):
        if sorted(msg.name) != sorted(ACTION_FIELDS) or len(msg.name) != len(msg.position):
            values = None
        else:
            by_name = dict(zip(msg.name, msg.position, strict=True))
            values = [by_name[n] for n in ACTION_FIELDS]
    return values, stamp_to_sec(msg.header.stamp)


def target_msg(target: ArmTarget, stamp: Time, frame_id: str = "world") -> JointState:
    """An ``arm/command`` message for a gated absolute target."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.name = list(TARGET_FIELDS)
    msg.position = [target.x, target.y, target.z, target.yaw, target.gripper]
    return msg


def parse_target(msg: JointState) -> ArmTarget | None:
    """The target in an ``arm/command`` message, or ``None`` if the message is not one."""
    if list(msg.name) != list(TARGET_FIELDS) or len(msg.position) != len(TARGET_FIELDS):
        return None
    return ArmTarget(*(float(v) for v in msg.position))
