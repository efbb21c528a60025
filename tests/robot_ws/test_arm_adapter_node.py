"""The real-arm adapter against a fake driver that subscribes like MoveIt Servo and a ros2_control
gripper controller would."""

from __future__ import annotations

import pytest
from ros_test_utils import ros_context, spin_until

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from robofume_robot.arm_adapter_node import ArmAdapterNode  # noqa: E402
from robofume_robot.arm_messages import target_msg  # noqa: E402
from robofume_robot.safety_gate import ArmTarget  # noqa: E402


def test_adapter_streams_bounded_twists_then_stops_and_maps_gripper() -> None:
    with ros_context() as context:
        adapter = ArmAdapterNode(
            context=context,
            namespace="wx",
            parameter_overrides=[
                Parameter("servo_topic", value="servo_node/delta_twist_cmds"),
                Parameter("twist_frame", value="wx250s/base_link"),
                Parameter("gripper_topic", value="gripper_controller/commands"),
                Parameter("gripper_joints", value=2),
                Parameter("command_timeout", value=0.3),
            ],
        )
        driver = rclpy.create_node("fake_driver", context=context, namespace="wx")
        twists: list[TwistStamped] = []
        grippers: list[Float64MultiArray] = []
        driver.create_subscription(TwistStamped, "servo_node/delta_twist_cmds", twists.append, 100)
        driver.create_subscription(Float64MultiArray, "gripper_controller/commands", grippers.append, 10)
        pose_pub = driver.create_publisher(PoseStamped, "arm/ee_pose", 10)
        command_pub = driver.create_publisher(JointState, "arm/command", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(adapter)
        executor.add_node(driver)
        pose = PoseStamped()
        pose.pose.position.x, pose.pose.position.z = 0.3, 0.2
        pose.pose.orientation.x = 1.0  # gripper pointing down, yaw 0
        try:
            assert spin_until(executor, lambda: command_pub.get_subscription_count() > 0, 10)
            pose_pub.publish(pose)
            command_pub.publish(
                target_msg(ArmTarget(0.5, 0.0, 0.2, 0.0, 1.0), driver.get_clock().now().to_msg())
            )
            assert spin_until(executor, lambda: any(t.twist.linear.x > 0 for t in twists), 5)
            moving = [t for t in twists if t.twist.linear.x > 0]
            assert all(abs(t.twist.linear.x) <= 0.2 + 1e-9 for t in twists)
            assert moving[0].header.frame_id == "wx250s/base_link"
            assert spin_until(executor, lambda: bool(grippers), 5)
            assert list(grippers[-1].data) == pytest.approx([0.015, 0.015])
            # No new target: after the timeout the adapter commands zero velocity.
            count = len(twists)
            spin_until(executor, lambda: False, 0.6)
            assert len(twists) > count and twists[-1].twist.linear.x == 0.0
        finally:
            executor.shutdown()
            adapter.destroy_node()
            driver.destroy_node()
