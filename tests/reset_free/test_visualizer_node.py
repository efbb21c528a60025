"""The visualizer node and the RViz2 config: every topic robofume.rviz displays is published, with the
type its display expects, and messages arrive with the QoS the display subscribes with."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from ros_test_utils import ros_context, spin_until

from robofume_robot.config_paths import config_dir

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from reset_free.controller_node import PHASE_QOS  # noqa: E402
from reset_free.visualizer_node import VisualizerNode  # noqa: E402
from robofume_robot.arm_messages import target_msg  # noqa: E402
from robofume_robot.mock_arm_node import MockArmNode  # noqa: E402
from robofume_robot.ros_image import from_image_msg  # noqa: E402
from robofume_robot.safety_gate import ArmTarget  # noqa: E402

RVIZ_CONFIG = config_dir().parent / "rviz" / "robofume.rviz"
NAMESPACE = "robot1"
DISPLAY_TYPES: dict[str, str | None] = {
    "rviz_default_plugins/Grid": None,
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/Camera": "sensor_msgs/msg/Image",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
    "rviz_default_plugins/Marker": "visualization_msgs/msg/Marker",
    "rviz_default_plugins/Pose": "geometry_msgs/msg/PoseStamped",
    "rviz_default_plugins/Path": "nav_msgs/msg/Path",
    "rviz_default_plugins/PointStamped": "geometry_msgs/msg/PointStamped",
}
"""RViz2 display class -> the message type it subscribes to (``None``: no topic)."""
_RELIABILITY = {"Reliable": ReliabilityPolicy.RELIABLE, "Best Effort": ReliabilityPolicy.BEST_EFFORT}
_DURABILITY = {"Volatile": DurabilityPolicy.VOLATILE, "Transient Local": DurabilityPolicy.TRANSIENT_LOCAL}


def rviz_displays(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every display of an RViz2 config, groups flattened."""
    out: list[dict[str, Any]] = []
    todo = list(config["Visualization Manager"]["Displays"])
    while todo:
        display = todo.pop(0)
        if display["Class"] == "rviz_common/Group":
            todo += display.get("Displays", [])
        else:
            out.append(display)
    return out


def rviz_topics(path: Path = RVIZ_CONFIG) -> dict[str, tuple[str, QoSProfile, str]]:
    """Topic -> (message type, the display's subscription QoS, display name) of every enabled display."""
    config = yaml.safe_load(path.read_text())
    topics: dict[str, tuple[str, QoSProfile, str]] = {}
    for display in rviz_displays(config):
        name, cls = display["Name"], display["Class"]
        assert cls in DISPLAY_TYPES, f"{path.name}: display {name!r} has class {cls}; add it to DISPLAY_TYPES"
        msg_type = DISPLAY_TYPES[cls]
        old_style = [k for k in display if k.endswith(" Topic")]
        assert not old_style, f"{path.name}: display {name!r} uses ROS 1 keys {old_style}; use Topic: Value:"
        if msg_type is None:
            assert "Topic" not in display, f"{path.name}: {name!r} ({cls}) has a topic"
            continue
        assert display.get("Enabled", True), f"{path.name}: display {name!r} is disabled"
        topic = display["Topic"]
        value = str(topic["Value"])
        assert value and not value.startswith("/"), (
            f"{path.name}: display {name!r} topic {value!r} must be relative (namespaces)"
        )
        qos = QoSProfile(
            depth=int(topic.get("Depth", 5)),
            history=HistoryPolicy.KEEP_LAST,
            reliability=_RELIABILITY[topic.get("Reliability Policy", "Reliable")],
            durability=_DURABILITY[topic.get("Durability Policy", "Volatile")],
        )
        assert value not in topics or topics[value][0] == msg_type, f"{value}: two displays, two types"
        topics[value] = (msg_type, qos, name)
    return topics


def message_class(type_name: str) -> type:
    """``sensor_msgs/msg/Image`` -> the Python message class."""
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def status_msg(node, phase: str) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    values = {
        "phase": phase,
        "reason": "",
        "task": "forward",
        "episode": "3",
        "episode_step": "17",
        "episodes": '{"backward": 2, "forward": 2}',
        "successes": '{"backward": 1, "forward": 1}',
    }
    msg.status.append(
        DiagnosticStatus(
            name=f"{NAMESPACE}/reset_free", values=[KeyValue(key=k, value=v) for k, v in values.items()]
        )
    )
    return msg


def verdict_msg(node) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    values = {"task": "forward", "probability": "0.75", "confirmed": "false", "reason": ""}
    msg.status.append(
        DiagnosticStatus(
            name="reward", message="success", values=[KeyValue(key=k, value=v) for k, v in values.items()]
        )
    )
    return msg


def test_rviz_config_shape() -> None:
    config = yaml.safe_load(RVIZ_CONFIG.read_text())
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "world"
    topics = rviz_topics()
    assert {t: v[0] for t, v in topics.items()} == {
        "camera/color/image_raw": "sensor_msgs/msg/Image",
        "camera/annotated": "sensor_msgs/msg/Image",
        "visualization": "visualization_msgs/msg/MarkerArray",
        "arm/ee_pose": "geometry_msgs/msg/PoseStamped",
    }


def test_rviz_checker_catches_problems(tmp_path: Path) -> None:
    config = yaml.safe_load(RVIZ_CONFIG.read_text())
    displays = config["Visualization Manager"]["Displays"]
    image = next(d for d in displays if d["Class"] == "rviz_default_plugins/Image")
    image["Topic"]["Value"] = "/camera/annotated"
    bad = tmp_path / "bad.rviz"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(AssertionError, match="must be relative"):
        rviz_topics(bad)
    image["Topic"]["Value"] = "camera/annotated"
    displays.append({"Class": "rviz_default_plugins/LaserScan", "Name": "scan", "Topic": {"Value": "scan"}})
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(AssertionError, match="add it to DISPLAY_TYPES"):
        rviz_topics(bad)


def test_visualizer_rejects_bad_parameters() -> None:
    with ros_context() as context:
        for name, value, match in (
            ("annotated_size", 8, "annotated_size"),
            ("trail_length", 1, "trail_length"),
            ("marker_hz", 0.0, "marker_hz"),
            ("frame_id", " ", "frame_id"),
            ("limits_file", "no_such_limits.yaml", "cannot read file"),
        ):
            with pytest.raises(ValueError, match=match):
                VisualizerNode(context=context, parameter_overrides=[Parameter(name, value=value)])


def test_every_rviz_topic_is_published_with_its_type() -> None:
    """The "RViz topics" test: mock arm + visualizer + a fake controller and classifier in namespace robot1;
    RViz's subscriptions (type and QoS from robofume.rviz) all get messages."""
    topics = rviz_topics()
    with ros_context() as context:
        arm = MockArmNode(
            context=context,
            namespace=NAMESPACE,
            parameter_overrides=[Parameter("image_size", value=64), Parameter("camera_hz", value=10.0)],
        )
        viz = VisualizerNode(
            context=context,
            namespace=NAMESPACE,
            parameter_overrides=[Parameter("annotated_size", value=192), Parameter("marker_hz", value=10.0)],
        )
        fake = rclpy.create_node("fake_session", context=context, namespace=NAMESPACE)
        phase_pub = fake.create_publisher(String, "reset_free/phase", PHASE_QOS)
        status_pub = fake.create_publisher(DiagnosticArray, "reset_free/status", 10)
        verdict_pub = fake.create_publisher(DiagnosticArray, "reward/verdict", 10)
        command_pub = fake.create_publisher(JointState, "arm/command", 10)  # moves the arm: a trail
        phase_pub.publish(String(data="forward"))
        probe = rclpy.create_node("rviz_probe", context=context, namespace=NAMESPACE)
        received: dict[str, list[Any]] = {topic: [] for topic in topics}
        for topic, (msg_type, qos, _name) in topics.items():
            probe.create_subscription(message_class(msg_type), topic, received[topic].append, qos)
        executor = SingleThreadedExecutor(context=context)
        for node in (arm, viz, fake, probe):
            executor.add_node(node)

        def feed() -> None:
            status_pub.publish(status_msg(fake, "forward"))
            verdict_pub.publish(verdict_msg(fake))
            y = 0.08 if (fed[0] // 40) % 2 else -0.08
            command_pub.publish(target_msg(ArmTarget(0.5, y, 0.2, 0.0, 0.0), fake.get_clock().now().to_msg()))

        fed = [0]

        def check() -> None:
            fed[0] += 1
            if fed[0] % 4 == 0:
                feed()

        def annotated_after_status() -> bool:
            """A marker text showing the fake status, and an annotated frame rendered after it."""
            last = received["visualization"][-1].markers if received["visualization"] else []
            texts = [m.text for m in last if m.type == Marker.TEXT_VIEW_FACING]
            trail = [m for m in last if m.ns == "ee_trail" and len(m.points) >= 5]
            return any("episode 3" in t for t in texts) and bool(trail) and viz.frames_annotated >= 3

        try:
            done = spin_until(
                executor,
                lambda: all(received.values()) and annotated_after_status(),
                timeout=45,
                check=check,
            )
            names_and_types = dict(probe.get_topic_names_and_types())
        finally:
            executor.shutdown()
            for node in (arm, viz, fake, probe):
                node.destroy_node()
    missing = sorted(t for t, msgs in received.items() if not msgs)
    assert done, f"no message on {missing} (RViz displays {[topics[t][2] for t in missing]})"
    for topic, (msg_type, _qos, name) in topics.items():
        full = f"/{NAMESPACE}/{topic}"
        assert names_and_types.get(full) == [msg_type], (
            f"display {name!r}: {full} has types {names_and_types.get(full)}, RViz expects [{msg_type}]"
        )
    annotated = received["camera/annotated"][-1]
    assert (annotated.encoding, annotated.height, annotated.width) == ("rgb8", 192, 192)
    image = from_image_msg(annotated)
    assert image.std() > 5  # a rendered frame with an overlay, not a blank
    markers: list[MarkerArray] = received["visualization"]
    assert markers[0].markers[0].action == Marker.DELETEALL
    last = {m.ns: m for m in markers[-1].markers}
    assert {"workspace", "status", "ee_trail"} <= set(last)
    assert last["workspace"].type == Marker.LINE_LIST and len(last["workspace"].points) == 24
    assert last["workspace"].header.frame_id == "world"
    trail = last["ee_trail"]
    assert trail.type == Marker.LINE_STRIP and len(trail.points) == len(trail.colors) >= 5
    assert "FORWARD" in last["status"].text and "forward: 1/2 successes" in last["status"].text
    pose = received["arm/ee_pose"][-1]
    assert pose.header.frame_id == "world" and np.isfinite(pose.pose.position.z)
