"""ROS 2 adapter from gated targets to a real arm's standard interfaces.

  sub ``arm/command``     sensor_msgs/JointState   gated target x, y, z, yaw, gripper (from the safety gate)
  sub ``ee_pose_topic``   geometry_msgs/PoseStamped  the arm's current end-effector pose
  pub ``servo_topic``     geometry_msgs/TwistStamped  Cartesian velocity for MoveIt Servo, at ``rate_hz``
  pub ``gripper_topic``   std_msgs/Float64MultiArray  position command for a ros2_control
                          forward_command_controller driving the gripper joint(s)

It never bypasses the gate: it only follows targets the gate published, and it commands zero
velocity when they stop (``command_timeout``) or when the pose is unknown. Settings for a WidowX
(Interbotix) and a Franka (franka_ros2) are in docs/real_robot.md.
"""

from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from robofume_robot.arm_messages import parse_target
from robofume_robot.cartesian_servo import ServoSettings, gripper_position, twist_toward
from robofume_robot.node_main import run_node
from robofume_robot.realtime import REALTIME_PARAM
from robofume_robot.safety_gate import ArmTarget
from robofume_robot.safety_gate_node import yaw_from_quaternion


class ArmAdapterNode(Node):
    """Streams servo twists toward the newest gated target and forwards gripper commands."""

    def __init__(self, **kwargs) -> None:
        super().__init__("arm_adapter", **kwargs)
        params = {
            "servo_topic": "/servo_node/delta_twist_cmds",
            "twist_frame": "base_link",
            "ee_pose_topic": "arm/ee_pose",
            "gripper_topic": "/gripper_controller/commands",
            "gripper_open": 0.037,
            "gripper_closed": 0.015,
            "gripper_joints": 1,
            "rate_hz": 50.0,
            "gain": 2.0,
            "max_linear_speed": 0.2,
            "max_angular_speed": 1.0,
            "command_timeout": 0.3,
        }
        for name, default in params.items():
            self.declare_parameter(name, default)
        self.declare_parameter(REALTIME_PARAM, 0)  # on the control path: SCHED_FIFO when > 0
        p = {name: self.get_parameter(name).value for name in params}
        self.settings = ServoSettings(
            gain=float(p["gain"]),
            max_linear_speed=float(p["max_linear_speed"]),
            max_angular_speed=float(p["max_angular_speed"]),
            command_timeout=float(p["command_timeout"]),
        )
        if int(p["gripper_joints"]) < 1:
            raise ValueError(f"gripper_joints must be >= 1, got {p['gripper_joints']}")
        self.twist_frame = str(p["twist_frame"])
        self.gripper_open, self.gripper_closed = float(p["gripper_open"]), float(p["gripper_closed"])
        self.gripper_joints = int(p["gripper_joints"])
        self._target: ArmTarget | None = None
        self._target_time = -1e9
        self._ee: tuple[np.ndarray, float] | None = None
        self._last_gripper: float | None = None
        self.twist_pub = self.create_publisher(TwistStamped, str(p["servo_topic"]), 10)
        self.gripper_pub = self.create_publisher(Float64MultiArray, str(p["gripper_topic"]), 10)
        self.create_subscription(JointState, "arm/command", self._on_command, 10)
        self.create_subscription(PoseStamped, str(p["ee_pose_topic"]), self._on_pose, 10)
        self.create_timer(1.0 / float(p["rate_hz"]), self._on_timer)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, msg: PoseStamped) -> None:
        q = msg.pose.orientation
        pos = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])
        self._ee = (pos, yaw_from_quaternion(q.w, q.x, q.y, q.z))

    def _on_command(self, msg: JointState) -> None:
        target = parse_target(msg)
        if target is None:
            self.get_logger().warning(
                "ignoring arm/command that is not x, y, z, yaw, gripper", throttle_duration_sec=5
            )
            return
        self._target, self._target_time = target, self._now()
        if self._last_gripper is None or abs(target.gripper - self._last_gripper) > 1e-3:
            position = gripper_position(target.gripper, self.gripper_open, self.gripper_closed)
            self.gripper_pub.publish(Float64MultiArray(data=[position] * self.gripper_joints))
            self._last_gripper = target.gripper

    def _on_timer(self) -> None:
        twist = TwistStamped()
        twist.header.stamp = self.get_clock().now().to_msg()
        twist.header.frame_id = self.twist_frame
        fresh = self._target is not None and self._now() - self._target_time <= self.settings.command_timeout
        if fresh and self._ee is not None and self._target is not None:
            t = self._target
            linear, yaw_rate = twist_toward(
                np.array(t.position), t.yaw, self._ee[0], self._ee[1], self.settings
            )
            twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = map(float, linear)
            twist.twist.angular.z = yaw_rate
        self.twist_pub.publish(twist)


def main(args: list[str] | None = None) -> None:
    """Entry point: spin the arm adapter until interrupted."""
    sys.exit(run_node(ArmAdapterNode, args))


if __name__ == "__main__":
    main()
