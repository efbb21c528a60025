"""The MCAP recorder as a ROS 2 node: records what a publisher sends (raw CDR, camera decimation), reports on
/diagnostics, and finishes its file (``.partial`` -> ``.mcap``) when destroyed."""

from __future__ import annotations

import array
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ros_test_utils import ros_context, spin_until

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from mcap.reader import make_reader  # noqa: E402
from mcap_ros2.decoder import DecoderFactory  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from reset_free.mcap_recorder import McapRecorderError  # noqa: E402
from reset_free.mcap_recorder_node import McapRecorderNode  # noqa: E402
from robofume_robot.launcher import ros_environment  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def frame(i: int) -> Image:
    msg = Image(height=4, width=5, encoding="rgb8", step=15)
    msg.header.stamp.sec, msg.header.frame_id = 1000 + i, "cam"
    msg.data = array.array("B", bytes([i % 256]) * 60)
    return msg


def test_node_records_published_topics_and_finishes_the_file(tmp_path: Path) -> None:
    with ros_context() as context:
        recorder = McapRecorderNode(
            context=context,
            parameter_overrides=[
                Parameter(
                    "topics",
                    value=[
                        "camera/color/image_raw:sensor_msgs/msg/Image",
                        "reset_free/phase:std_msgs/msg/String",
                        "/diagnostics:diagnostic_msgs/msg/DiagnosticArray",
                    ],
                ),
                Parameter("output", value=str(tmp_path)),
                Parameter("session", value="s1"),
                Parameter("image_every_n", value=2),
                Parameter("status_hz", value=10.0),
            ],
        )
        peer = rclpy.create_node("peer", context=context)
        image_pub = peer.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
        phase_pub = peer.create_publisher(String, "reset_free/phase", 10)
        diags: list[DiagnosticArray] = []
        peer.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            lambda m: diags.append(m) if m.status and m.status[0].name == "mcap_recorder" else None,
            10,
        )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(recorder)
        executor.add_node(peer)
        folder = tmp_path / "s1"
        destroyed = False

        def counts(topic: str) -> tuple[int, int]:
            stats = recorder.recorder.stats().topics.get(topic)
            return (0, 0) if stats is None else (stats.received, stats.written)

        try:
            assert spin_until(
                executor,
                lambda: image_pub.get_subscription_count() > 0 and phase_pub.get_subscription_count() > 0,
                10,
            )
            for i in range(10):
                image_pub.publish(frame(i))
                phase_pub.publish(String(data=f"phase{i}"))
                spin_until(executor, lambda: False, 0.03)
            assert spin_until(
                executor,
                lambda: (
                    counts("/camera/color/image_raw") == (10, 5) and counts("/reset_free/phase") == (10, 10)
                ),
                10,
            )
            assert (folder / "s1_0.mcap.partial").exists()
            assert spin_until(
                executor,
                lambda: any(
                    "decimated=5"
                    in {kv.key: kv.value for kv in d.status[0].values}.get(
                        "topic /camera/color/image_raw", ""
                    )
                    for d in diags
                ),
                5,
            )
            values = {kv.key: kv.value for kv in diags[-1].status[0].values}
            assert values["folder"] == str(folder) and values["dropped"] == "0"
            assert values["topic /camera/color/image_raw"].startswith("written=5 dropped=0 decimated=5")
            assert diags[-1].status[0].message == "recording"
            recorder.destroy_node()
            destroyed = True
        finally:
            executor.shutdown()
            peer.destroy_node()
            if not destroyed:
                recorder.destroy_node()

    assert not (folder / "s1_0.mcap.partial").exists()
    with open(folder / "s1_0.mcap", "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        got = [(c.topic, m, d) for _, c, m, d in reader.iter_decoded_messages()]
    images = [(m, d) for topic, m, d in got if topic == "/camera/color/image_raw"]
    assert [d.header.stamp.sec for _, d in images] == [1000, 1002, 1004, 1006, 1008]
    assert bytes(images[1][1].data) == bytes([2]) * 60 and images[1][1].header.frame_id == "cam"
    assert all(m.log_time > 0 and m.publish_time > 0 for m, _ in images)
    phases = [d.data for topic, _, d in got if topic == "/reset_free/phase"]
    assert phases == [f"phase{i}" for i in range(10)]
    assert any(topic == "/diagnostics" for topic, _, _ in got)  # its own status is recorded too


def test_node_rejects_bad_topics(tmp_path: Path) -> None:
    with ros_context() as context:
        for topics, match in (
            (["camera:sensor_msgs/msg/NoSuchType"], "NoSuchType"),
            (["no_type_here"], "topic:pkg/msg/Type"),
            (["a:std_msgs/msg/String", "/a:std_msgs/msg/Header"], "two types"),
        ):
            with pytest.raises(McapRecorderError, match=match):
                McapRecorderNode(
                    context=context,
                    parameter_overrides=[
                        Parameter("topics", value=topics),
                        Parameter("output", value=str(tmp_path)),
                    ],
                )
    assert not any(tmp_path.iterdir())  # nothing created for a refused configuration


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_node_process_finishes_its_file_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    paths = [str(REPO), str(REPO / "robot_ws" / "src" / "robofume_robot"), os.environ.get("PYTHONPATH", "")]
    env = ros_environment(dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1"))
    cmd = [sys.executable, "-m", "reset_free.mcap_recorder_node", "--ros-args"]
    cmd += ["-p", f"output:={tmp_path}", "-p", "session:=p", "-p", "status_hz:=20.0"]
    cmd += ["-p", "topics:=['/diagnostics:diagnostic_msgs/msg/DiagnosticArray']"]  # records its own status
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    partial, final = tmp_path / "p" / "p_0.mcap.partial", tmp_path / "p" / "p_0.mcap"
    try:
        deadline = time.monotonic() + 30
        while not partial.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert partial.exists(), proc.communicate(timeout=10)[0].decode()[-2000:]
        time.sleep(0.3)
        proc.send_signal(sig)
        output = proc.communicate(timeout=20)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output[-2000:]
    assert final.exists() and not partial.exists(), output[-2000:]
    with open(final, "rb") as f:
        statuses = [
            d for _, _, _, d in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
        ]
    assert statuses and statuses[0].status[0].name == "mcap_recorder"
