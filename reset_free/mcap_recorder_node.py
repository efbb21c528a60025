"""ROS 2 node around :class:`reset_free.mcap_recorder.McapRecorder`: records topics to MCAP files.

Subscribes to each ``topic:type`` in ``topics`` with ``raw=True`` (messages stay CDR bytes: no
deserialize/serialize cost), sensor-data QoS for camera types (Image, CompressedImage, CameraInfo) and
reliable QoS otherwise; a writer thread writes ``<output>/<session>/<session>_<i>.mcap`` (split by
``max_file_mb`` / ``max_file_duration_s``). Executor callbacks never wait for the disk: past
``max_queue_mb`` of backlog messages are dropped and counted. Publishes only a DiagnosticArray status on
``/diagnostics`` (files, bytes, messages per topic, dropped). Files are finished (renamed from
``.mcap.partial``) when the node is destroyed, i.e. on Ctrl-C / SIGTERM / SIGINT.

Parameters: ``topics`` (string list, default :data:`reset_free.mcap_recorder.SESSION_TOPICS`), ``output``
(folder, default ``recordings``), ``session`` (folder name, default ``session_<time>``), ``max_file_mb``
(1024), ``max_file_duration_s`` (0 = off), ``image_every_n`` (1), ``compression`` (zstd | lz4 | none),
``zstd_level`` (1), ``chunk_mb`` (1), ``flush_interval_s`` (2), ``max_queue_mb`` (256), ``status_hz`` (1).

Run: ``python -m reset_free.mcap_recorder_node --ros-args -p output:=recordings -p image_every_n:=3``
"""

from __future__ import annotations

import importlib
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from reset_free.mcap_recorder import (
    SESSION_TOPICS,
    McapFileConfig,
    McapRecorder,
    McapRecorderError,
    RecorderConfig,
    SplitConfig,
    message_definition,
    parse_topic_spec,
    split_type_name,
)
from robofume_robot.node_main import run_node

SENSOR_TYPES = frozenset(
    {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo"}
)
"""Types subscribed with sensor-data (best effort) QoS, which matches best-effort and reliable publishers."""

RELIABLE_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def message_class(type_name: str) -> Any:
    """The Python class of ``pkg/msg/Type``; one-line error if its package is not installed."""
    package, namespace, name = split_type_name(type_name)
    try:
        return getattr(importlib.import_module(f"{package}.{namespace}"), name)
    except (ImportError, AttributeError):
        raise McapRecorderError(f"message type {type_name} is not installed") from None


class McapRecorderNode(Node):
    """Records the configured topics to split MCAP files and reports on ``/diagnostics``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("mcap_recorder", **kwargs)
        self.recorder: McapRecorder | None = None
        file_defaults, split_defaults, defaults = McapFileConfig(), SplitConfig(), RecorderConfig()
        self.declare_parameter("topics", list(SESSION_TOPICS))
        self.declare_parameter("output", defaults.output)
        self.declare_parameter("session", defaults.session)
        self.declare_parameter("max_file_mb", split_defaults.max_file_mb)
        self.declare_parameter("max_file_duration_s", split_defaults.max_file_duration_s)
        self.declare_parameter("image_every_n", defaults.image_every_n)
        self.declare_parameter("compression", file_defaults.compression)
        self.declare_parameter("zstd_level", file_defaults.zstd_level)
        self.declare_parameter("chunk_mb", file_defaults.chunk_size / (1024 * 1024))
        self.declare_parameter("flush_interval_s", file_defaults.flush_interval_s)
        self.declare_parameter("max_queue_mb", defaults.max_queue_mb)
        self.declare_parameter("status_hz", 1.0)

        def param(name: str) -> Any:
            return self.get_parameter(name).value

        topics = [parse_topic_spec(str(spec)) for spec in (param("topics") or [])]
        if not topics:
            raise McapRecorderError("mcap_recorder: the topics parameter is empty")
        status_hz = float(param("status_hz"))
        if not status_hz > 0:
            raise McapRecorderError(f"mcap_recorder: status_hz must be > 0, got {status_hz}")
        config = RecorderConfig(
            output=str(param("output")),
            session=str(param("session")),
            max_queue_mb=float(param("max_queue_mb")),
            image_every_n=int(param("image_every_n")),
            split=SplitConfig(
                max_file_mb=float(param("max_file_mb")),
                max_file_duration_s=float(param("max_file_duration_s")),
                file=McapFileConfig(
                    compression=str(param("compression")),
                    zstd_level=int(param("zstd_level")),
                    chunk_size=int(float(param("chunk_mb")) * 1024 * 1024),
                    flush_interval_s=float(param("flush_interval_s")),
                ),
            ),
        )
        resolved: dict[str, str] = {}
        classes = {}
        for topic, type_name in topics:
            full = self.resolve_topic_name(topic)
            if resolved.get(full, type_name) != type_name:
                raise McapRecorderError(f"mcap_recorder: {full} listed with two types")
            resolved[full] = type_name
            classes[type_name] = message_class(type_name)
            message_definition(type_name)  # fail now, not at the first message
        self.recorder = McapRecorder(config)
        for topic, type_name in resolved.items():
            qos = qos_profile_sensor_data if type_name in SENSOR_TYPES else RELIABLE_QOS
            self.create_subscription(
                classes[type_name], topic, self._callback(topic, type_name), qos, raw=True
            )
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._last_dropped = 0
        self.create_timer(1.0 / status_hz, self._publish_status)
        self.get_logger().info(f"recording {len(resolved)} topics to {self.recorder.folder}")

    def _callback(self, topic: str, type_name: str):
        recorder = self.recorder
        assert recorder is not None
        clock = self.get_clock()

        def on_message(data: bytes, info: dict) -> None:
            recorder.submit(topic, type_name, data, clock.now().nanoseconds, int(info["source_timestamp"]))

        return on_message

    def status_message(self) -> DiagnosticArray:
        """The recorder's counters as one DiagnosticStatus named ``<namespace>/mcap_recorder``."""
        assert self.recorder is not None
        stats = self.recorder.stats()
        new_drops = stats.dropped - self._last_dropped
        self._last_dropped = stats.dropped
        if stats.error:
            level, text = DiagnosticStatus.ERROR, f"not recording: {stats.error}"
        elif new_drops:
            level, text = DiagnosticStatus.WARN, f"dropping: {new_drops} messages since the last status"
        else:
            level, text = DiagnosticStatus.OK, "recording"
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        entry = DiagnosticStatus(
            level=level,
            name=f"{self.get_namespace().rstrip('/')}/mcap_recorder".lstrip("/"),
            message=text,
            hardware_id="mcap_recorder",
        )
        values = {
            "folder": stats.folder,
            "files": str(len(stats.files)),
            "current_file": stats.files[-1] if stats.files else "",
            "bytes_written": str(stats.bytes_written),
            "messages_written": str(stats.messages_written),
            "dropped": str(stats.dropped),
            "queued": str(stats.queued),
            "queued_bytes": str(stats.queued_bytes),
        }
        for topic, t in sorted(stats.topics.items()):
            values[f"topic {topic}"] = (
                f"written={t.written} dropped={t.dropped} decimated={t.decimated} bytes={t.bytes}"
            )
        entry.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg.status.append(entry)
        return msg

    def _publish_status(self) -> None:
        msg = self.status_message()
        if msg.status[0].level == DiagnosticStatus.WARN:
            self.get_logger().warning(msg.status[0].message)
        self.diag_pub.publish(msg)

    def destroy_node(self) -> None:
        """Finish the MCAP files (``.partial`` -> ``.mcap``), then destroy the node."""
        if self.recorder is not None:
            files = self.recorder.close()
            if self.recorder.error:
                self.get_logger().error(f"recording stopped: {self.recorder.error}")
            self.get_logger().info(f"wrote {len(files)} MCAP file(s) to {self.recorder.folder}")
            self.recorder = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point: ``python -m reset_free.mcap_recorder_node``."""
    return run_node(McapRecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
