"""ROS 2 node of the MuJoCo mock arm and its camera, running in real time.

Like a real robot, the world does not wait for the policy: every control period the node applies
the newest gated target from ``arm/command`` (or holds), steps physics, and publishes state. When
``camera_hz`` equals ``control_hz`` (the default) the camera frame is rendered in the same tick,
after the step; its stamp is the capture time.

Topics (relative, so a namespace per robot works):
  sub ``arm/command``               sensor_msgs/JointState   gated target x, y, z, yaw, gripper
  pub ``arm/joint_states``          sensor_msgs/JointState   joint1..joint7 (rad) + gripper (closure 0..1)
  pub ``arm/ee_pose``               geometry_msgs/PoseStamped
  pub ``camera/color/image_raw``    sensor_msgs/Image (rgb8), sensor QoS
  pub ``camera/color/camera_info``  sensor_msgs/CameraInfo
  pub ``sim/ground_truth``          std_msgs/String (JSON; simulation only: evaluation, scripted policy)
Service ``sim/reset_scene`` (std_srvs/Trigger): re-randomizes the scene. For tests and evaluation
only; the reset-free loop never calls it.

Run: ``python -m robofume_robot.mock_arm_node --ros-args -p image_size:=128 -p control_hz:=10.0``
"""

from __future__ import annotations

import json
import sys

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from robofume.sim.mock_arm_env import MockArmConfig, MockArmEnv
from robofume_robot.arm_messages import parse_target
from robofume_robot.node_main import run_node
from robofume_robot.realtime import REALTIME_PARAM
from robofume_robot.ros_image import camera_info, to_image_msg
from robofume_robot.safety_gate import ArmTarget

JOINT_NAMES: tuple[str, ...] = (*(f"joint{i}" for i in range(1, 8)), "gripper")


class MockArmNode(Node):
    """The mock arm: executes gated targets, publishes joint state, end-effector pose and camera frames."""

    def __init__(self, **kwargs) -> None:
        super().__init__("arm", **kwargs)
        self.declare_parameter("image_size", 128)
        self.declare_parameter("control_hz", 10.0)
        self.declare_parameter("camera_hz", 10.0)
        self.declare_parameter("seed", 0)
        self.declare_parameter("task", "forward")
        self.declare_parameter("world_frame", "world")
        self.declare_parameter("camera_frame", "camera_color_optical_frame")
        self.declare_parameter(REALTIME_PARAM, 0)  # on the control path: SCHED_FIFO when > 0
        self.image_size = int(self.get_parameter("image_size").value)
        control_hz = float(self.get_parameter("control_hz").value)
        camera_hz = float(self.get_parameter("camera_hz").value)
        if not 0 < camera_hz <= 60:
            raise ValueError(f"camera_hz must be in (0, 60], got {camera_hz}")
        self.world_frame = str(self.get_parameter("world_frame").value)
        self.camera_frame = str(self.get_parameter("camera_frame").value)
        # The camera is rendered by this node at camera_hz; the env itself runs state-only.
        self.env = MockArmEnv(MockArmConfig(image_size=0, control_hz=control_hz))
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be between 32 and 1024, got {self.image_size}")
        self._seed = int(self.get_parameter("seed").value)
        # the workstation layout (target and start region) comes from the seed too, explicitly, so that
        # demos recorded with `robofume data generate --layout-seed <seed>` are at this workstation
        task = str(self.get_parameter("task").value)
        self.env.reset(seed=self._seed, options={"task": task, "layout_seed": self._seed})
        self._pending: ArmTarget | None = None
        self.commands_received = 0
        self.commands_invalid = 0
        self.steps = 0

        self.create_subscription(JointState, "arm/command", self._on_command, 10)
        self.joint_pub = self.create_publisher(JointState, "arm/joint_states", 10)
        self.pose_pub = self.create_publisher(PoseStamped, "arm/ee_pose", 10)
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", qos_profile_sensor_data)
        self.truth_pub = self.create_publisher(String, "sim/ground_truth", 10)
        self.create_service(Trigger, "sim/reset_scene", self._on_reset_scene)
        # At the control rate the frame is rendered in the control tick, right after the physics
        # step, so every frame shows the state the last action led to (two timers of one period
        # would leave their order to the executor). Any other camera rate runs its own timer.
        self.camera_in_control_tick = abs(camera_hz - control_hz) < 1e-9
        self.create_timer(1.0 / control_hz, self._on_control)
        if not self.camera_in_control_tick:
            self.create_timer(1.0 / camera_hz, self._on_camera)
        self._publish_state()

    def _on_command(self, msg: JointState) -> None:
        target = parse_target(msg)
        if target is None:
            self.commands_invalid += 1
            self.get_logger().warning(
                "ignoring arm/command that is not x, y, z, yaw, gripper", throttle_duration_sec=5
            )
            return
        self.commands_received += 1
        self._pending = target

    def _on_control(self) -> None:
        target, self._pending = self._pending, None
        if target is None:
            pos, yaw, gripper = self.env.commanded_target()
        else:
            pos, yaw, gripper = [target.x, target.y, target.z], target.yaw, target.gripper
        self.env.apply_target(pos, yaw, gripper)
        self.steps += 1
        self._publish_state()
        if self.camera_in_control_tick:
            self._on_camera()

    def _publish_state(self) -> None:
        stamp = self.get_clock().now().to_msg()
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = list(JOINT_NAMES)
        joints.position = [*map(float, self.env.joint_positions()), self.env.gripper_closed()]
        self.joint_pub.publish(joints)
        pose = PoseStamped()
        pose.header.stamp = stamp
        pose.header.frame_id = self.world_frame
        x, y, z = map(float, self.env.ee_pos())
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = x, y, z
        w, qx, qy, qz = map(float, self.env.ee_quat())
        pose.pose.orientation.w, pose.pose.orientation.x = w, qx
        pose.pose.orientation.y, pose.pose.orientation.z = qy, qz
        self.pose_pub.publish(pose)
        self.truth_pub.publish(String(data=json.dumps(self.env.ground_truth())))

    def _on_camera(self) -> None:
        stamp = self.get_clock().now().to_msg()  # capture time, as a real camera stamps exposure
        frame = self.env.camera_frame(self.image_size)
        self.image_pub.publish(to_image_msg(frame, stamp, self.camera_frame))
        fx, fy, cx, cy = self.env.camera_intrinsics(self.image_size)
        self.info_pub.publish(
            camera_info(self.image_size, self.image_size, fx, fy, cx, cy, stamp, self.camera_frame)
        )

    def _on_reset_scene(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._seed += 1
        self.env.reset(seed=self._seed, options={"task": self.env.task})
        self._pending = None
        self._publish_state()
        response.success = True
        response.message = f"scene re-randomized with seed {self._seed} (tests/evaluation only)"
        self.get_logger().info(response.message)
        return response

    def destroy_node(self) -> None:
        """Free the renderer, then the node."""
        self.env.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point: spin the node until interrupted."""
    sys.exit(run_node(MockArmNode, args))


if __name__ == "__main__":
    main()
