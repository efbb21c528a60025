"""ROS 2 node that draws the session for RViz2: an annotated camera image and a MarkerArray.

The drawing and the marker geometry live in :mod:`reset_free.visualization` (no ROS); this node feeds
it from topics and publishes the results. It only reads: it never commands the arm.

Topics (relative names, so one namespace per robot):
  sub ``camera/color/image_raw``  Image (rgb8, sensor QoS)  the newest frame is annotated
  sub ``arm/ee_pose``             PoseStamped               end-effector trail
  sub ``reset_free/phase``        String (transient local)  forward | backward | paused | help_needed | estop
  sub ``reset_free/status``       DiagnosticArray           reason, task, episode, step, counters
  sub ``reward/verdict``          DiagnosticArray           success probability and verdict
  pub ``camera/annotated``        Image (rgb8, sensor QoS)  the frame, upscaled, with phase, task,
                                                            episode/step, successes, p(success) bar
                                                            and HELP NEEDED / PAUSED banners
  pub ``visualization``           MarkerArray               end-effector trail (LINE_STRIP, coloured by
                                                            phase), safety workspace box (LINE_LIST),
                                                            status text (TEXT_VIEW_FACING)

The annotated image is rendered only when a new frame came, at most ``annotated_hz`` times a second,
from the newest frame only (median 3.6 ms per 384 px frame, 8 ms with a banner, on the loaded
2-core dev machine).

Run: ``python -m reset_free.visualizer_node --ros-args -r __ns:=/robot1 -p annotated_size:=384``
and view it with ``rviz2 -d robot_ws/src/robofume_robot/rviz/robofume.rviz --ros-args -r __ns:=/robot1``.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point as PointMsg
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, String
from visualization_msgs.msg import Marker, MarkerArray

from reset_free.controller_node import PHASE_QOS, verdict_from_msg
from reset_free.visualization import MarkerSpec, SessionMonitor, build_markers, render_overlay
from robofume_robot.config_paths import resolve_config_path
from robofume_robot.node_main import run_node
from robofume_robot.ros_image import from_image_msg, to_image_msg
from robofume_robot.safety_gate import load_limits

_MARKER_TYPES = {
    "line_strip": Marker.LINE_STRIP,
    "line_list": Marker.LINE_LIST,
    "text": Marker.TEXT_VIEW_FACING,
}


def _color(c: tuple[float, float, float, float]) -> ColorRGBA:
    return ColorRGBA(r=c[0], g=c[1], b=c[2], a=c[3])


def marker_msg(spec: MarkerSpec, frame_id: str, stamp) -> Marker:
    """A ``visualization_msgs/Marker`` (action ADD, no lifetime) from a :class:`MarkerSpec`."""
    m = Marker()
    m.header.frame_id = frame_id
    m.header.stamp = stamp
    m.ns, m.id = spec.ns, spec.marker_id
    m.type = _MARKER_TYPES[spec.kind]
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.pose.position.x, m.pose.position.y, m.pose.position.z = spec.position
    if spec.kind == "text":
        m.scale.z = spec.scale
        m.text = spec.text
    else:
        m.scale.x = spec.scale
        m.points = [PointMsg(x=p[0], y=p[1], z=p[2]) for p in spec.points]
        m.colors = [_color(c) for c in spec.colors]
    m.color = _color(spec.color)
    return m


class VisualizerNode(Node):
    """Publishes ``camera/annotated`` and ``visualization`` from the session's topics."""

    def __init__(self, **kwargs) -> None:
        super().__init__("visualizer", **kwargs)
        self.declare_parameter("frame_id", "world")
        self.declare_parameter("limits_file", "safety_limits_mock.yaml")
        self.declare_parameter("annotated_size", 384)
        self.declare_parameter("annotated_hz", 10.0)
        self.declare_parameter("marker_hz", 5.0)
        self.declare_parameter("trail_length", 200)
        self.declare_parameter("stale_after_s", 3.0)
        self.frame_id = str(self.get_parameter("frame_id").value).strip()
        if not self.frame_id:
            raise ValueError("visualizer: frame_id must not be empty (the frame of arm/ee_pose, e.g. world)")
        self.size = int(self.get_parameter("annotated_size").value)
        if not 64 <= self.size <= 2048:
            raise ValueError(f"visualizer: annotated_size must be in [64, 2048] px, got {self.size}")
        rates = {name: float(self.get_parameter(name).value) for name in ("annotated_hz", "marker_hz")}
        for name, hz in rates.items():
            if not 0 < hz <= 60:
                raise ValueError(f"visualizer: {name} must be in (0, 60], got {hz}")
        trail_length = int(self.get_parameter("trail_length").value)
        if not 2 <= trail_length <= 100_000:
            raise ValueError(f"visualizer: trail_length must be in [2, 100000] poses, got {trail_length}")
        stale = float(self.get_parameter("stale_after_s").value)
        if not stale > 0:
            raise ValueError(f"visualizer: stale_after_s must be > 0, got {stale}")
        limits_file = str(self.get_parameter("limits_file").value).strip()
        self.workspace = None
        if limits_file:  # empty: no workspace box
            limits = load_limits(resolve_config_path(limits_file))  # SafetyConfigError is a ValueError
            self.workspace = (limits.workspace_low, limits.workspace_high)

        self.monitor = SessionMonitor(trail_length=trail_length, stale_after_s=stale)
        self._frame: Image | None = None
        self._frame_new = False
        self._cleared = False
        self.frames_annotated = 0
        self.frames_rejected = 0
        self.image_pub = self.create_publisher(Image, "camera/annotated", qos_profile_sensor_data)
        self.marker_pub = self.create_publisher(MarkerArray, "visualization", 10)
        self.create_subscription(Image, "camera/color/image_raw", self._on_frame, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "arm/ee_pose", self._on_pose, 10)
        self.create_subscription(String, "reset_free/phase", self._on_phase, PHASE_QOS)
        self.create_subscription(DiagnosticArray, "reset_free/status", self._on_status, 10)
        self.create_subscription(DiagnosticArray, "reward/verdict", self._on_verdict, 10)
        self.create_timer(1.0 / rates["annotated_hz"], self._render)
        self.create_timer(1.0 / rates["marker_hz"], self._publish_markers)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_frame(self, msg: Image) -> None:
        self._frame, self._frame_new = msg, True  # decoded only if it is still the newest at render time

    def _on_pose(self, msg: PoseStamped) -> None:
        if msg.header.frame_id and msg.header.frame_id != self.frame_id:
            self.get_logger().warning(
                f"arm/ee_pose is in frame {msg.header.frame_id!r}, markers in {self.frame_id!r}: "
                "set the frame_id parameter to match",
                throttle_duration_sec=30,
            )
        p = msg.pose.position
        self.monitor.on_pose((p.x, p.y, p.z))

    def _on_phase(self, msg: String) -> None:
        self.monitor.on_phase(msg.data, self._now())

    def _on_status(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "phase" in values:
                self.monitor.on_status(values, self._now())
                return

    def _on_verdict(self, msg: DiagnosticArray) -> None:
        verdict = verdict_from_msg(msg)
        if verdict is not None:
            self.monitor.on_verdict(
                verdict.status, verdict.probability, verdict.confirmed, verdict.reason, self._now()
            )

    def _render(self) -> None:
        if not self._frame_new or self._frame is None:
            return
        msg, self._frame_new = self._frame, False
        try:
            frame = from_image_msg(msg)
            annotated = render_overlay(frame, self.monitor.snapshot(self._now()), self.size)
        except ValueError as exc:  # includes VisualizationError
            self.frames_rejected += 1
            self.get_logger().warning(f"camera frame not annotated: {exc}", throttle_duration_sec=10)
            return
        self.image_pub.publish(to_image_msg(annotated, msg.header.stamp, msg.header.frame_id))
        self.frames_annotated += 1

    def _publish_markers(self) -> None:
        stamp = self.get_clock().now().to_msg()
        state = self.monitor.snapshot(self._now())
        array = MarkerArray()
        if not self._cleared:  # drop markers a previous run left in RViz
            array.markers.append(Marker(action=Marker.DELETEALL))
            self._cleared = True
        array.markers += [
            marker_msg(spec, self.frame_id, stamp)
            for spec in build_markers(state, self.monitor.trail, self.workspace)
        ]
        self.marker_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """Entry point: ``python -m reset_free.visualizer_node``."""
    return run_node(VisualizerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
