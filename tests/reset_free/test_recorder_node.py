"""The recorder node: topics in, committed replay-buffer transitions out (read back by a reader)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ros_test_utils import ros_context, spin_until

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from policy_server.replay_buffer import BufferSpec, ReplayBuffer  # noqa: E402
from reset_free.recorder_node import RecorderNode  # noqa: E402
from robofume_robot.arm_messages import action_msg  # noqa: E402
from robofume_robot.ros_image import sec_to_stamp, to_image_msg  # noqa: E402


def test_recorder_node_writes_transitions_with_classifier_reward(tmp_path) -> None:
    root = tmp_path / "buffer"
    ReplayBuffer(root, BufferSpec((16, 16), 9, 5, gamma=0.9)).close()
    with ros_context() as context:
        node = RecorderNode(
            context=context,
            parameter_overrides=[
                Parameter("buffer_dir", value=str(root)),
                Parameter("flush_interval_s", value=0.2),
            ],
        )
        peer = rclpy.create_node("peer", context=context)
        img_pub = peer.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
        pose_pub = peer.create_publisher(PoseStamped, "arm/ee_pose", 10)
        joint_pub = peer.create_publisher(JointState, "arm/joint_states", 10)
        act_pub = peer.create_publisher(JointState, "policy/action", 50)
        ev_pub = peer.create_publisher(String, "reset_free/events", 100)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(peer)
        spin = lambda t: spin_until(executor, lambda: False, t)  # noqa: E731
        try:
            assert spin_until(executor, lambda: img_pub.get_subscription_count() > 0, 5)
            assert spin_until(executor, lambda: ev_pub.get_subscription_count() > 0, 5)
            joints = JointState(name=["gripper"], position=[0.0])
            joint_pub.publish(joints)
            ev_pub.publish(String(data=json.dumps({"kind": "episode_start", "task": "forward"})))
            spin(0.2)
            t0 = 100.0
            for i in range(6):
                stamp = sec_to_stamp(t0 + 0.1 * i)
                pose = PoseStamped()
                pose.header.stamp = stamp
                pose.pose.position.x = 0.4 + 0.01 * i
                pose.pose.orientation.x = 1.0
                pose_pub.publish(pose)
                spin(0.03)
                img_pub.publish(to_image_msg(np.full((16, 16, 3), 10 * i, np.uint8), stamp))
                spin(0.05)
                if i < 5:
                    act_pub.publish(action_msg([0.1 * i, 0, 0, 0, -1], stamp))
                spin(0.05)
            end = {"kind": "episode_end", "task": "forward", "outcome": "success", "frame_stamp": t0 + 0.5}
            ev_pub.publish(String(data=json.dumps(end)))
            assert spin_until(executor, lambda: node.recorder.stats.episodes == 1, 5)
            assert spin_until(executor, lambda: node.buffer.committed == 5, 3)
            reader = ReplayBuffer.open(root, readonly=True)
            batch = reader.gather(np.sort(reader.valid_indices("online")))
            order = np.argsort(batch.actions[:, 0])
            np.testing.assert_allclose(batch.actions[order, 0], [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)
            np.testing.assert_array_equal(batch.rewards[order], [0, 0, 0, 0, 1])
            np.testing.assert_array_equal(batch.terminals[order], [0, 0, 0, 0, 1])
            assert batch.next_frames[order][-1].mean() == 50  # the frame judged a success
            np.testing.assert_allclose(batch.proprio[order, 0], [0.40, 0.41, 0.42, 0.43, 0.44], atol=1e-6)
            reader.close()
        finally:
            node.destroy_node()
            peer.destroy_node()
    with pytest.raises(ValueError, match="buffer_dir"), ros_context() as context:
        RecorderNode(context=context)
