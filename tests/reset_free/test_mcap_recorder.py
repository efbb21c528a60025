"""MCAP recording without rosbag2: full ros2msg definitions, round trip through mcap_ros2, file
splitting, what a killed writer leaves and how it is recovered, and the non-blocking queue (drops,
decimation, write errors)."""

from __future__ import annotations

import array
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages not installed")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from reset_free import mcap_recorder as mr

SEP = "=" * 80
REPO = Path(__file__).resolve().parents[2]


def nested_types(cls: type) -> set[str]:
    """Every non-primitive type reachable from a generated message class, as ``pkg/Type``."""
    import importlib

    found: set[str] = set()
    stack = [cls]
    while stack:
        for field_type in stack.pop().get_fields_and_field_types().values():
            inner = field_type.split("<", 1)[1].rstrip(">").split(",")[0] if "<" in field_type else field_type
            inner = inner.split("[", 1)[0]
            if "/" not in inner or inner in found:
                continue
            found.add(inner)
            package, name = inner.split("/")
            stack.append(getattr(importlib.import_module(f"{package}.msg"), name))
    return found


@pytest.mark.parametrize("cls", [Image, DiagnosticArray, MarkerArray])
def test_definition_has_every_nested_type_once(cls: type) -> None:
    type_name = f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"
    text = mr.message_definition(type_name)
    blocks = text.split(f"\n{SEP}\nMSG: ")
    own = mr.interface_file(type_name).read_text()
    assert blocks[0] == own  # the type's own .msg text first, verbatim (comments kept, as rosbag2 does)
    names = [b.split("\n", 1)[0] for b in blocks[1:]]
    assert len(names) == len(set(names))
    assert set(names) == nested_types(cls)
    for block in blocks[1:]:
        name, body = block.split("\n", 1)
        package, msg = name.split("/")
        assert body.startswith(mr.interface_file(f"{package}/msg/{msg}").read_text())
    assert "MSG: builtin_interfaces/Time" in text


def test_definition_rules_on_a_custom_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    msg_dir = tmp_path / "share" / "rf_test_defs" / "msg"
    msg_dir.mkdir(parents=True)
    (msg_dir / "Outer.msg").write_text(
        "# comment: Inner is not a type here\n"
        "uint8 MODE_A=1\n"
        'string<=8 name "abc"\n'
        "int32[3] fixed [1, 2, 3]\n"
        "Inner[<=4] bounded  # same-package type\n"
        "rf_test_defs/Inner[] more\n"
        "std_msgs/Header header\n"
    )
    (msg_dir / "Inner.msg").write_text("float64 x 0.5\nwstring w\nbuiltin_interfaces/Duration d\n")
    (msg_dir / "Loop.msg").write_text("Loop2 other\n")
    (msg_dir / "Loop2.msg").write_text("Loop other\n")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    text = mr.message_definition("rf_test_defs/msg/Outer")
    names = [line[5:] for line in text.splitlines() if line.startswith("MSG: ")]
    # rosbag2 order: sorted dependencies, each followed by its own not-yet-seen ones.
    assert names == [
        "rf_test_defs/Inner",
        "builtin_interfaces/Duration",
        "std_msgs/Header",
        "builtin_interfaces/Time",
    ]
    assert text.startswith((msg_dir / "Outer.msg").read_text())
    # A cycle is written once per type (rosbag2 skips seen dependencies), not forever.
    assert mr.message_definition("rf_test_defs/msg/Loop").count("MSG: ") == 2
    with pytest.raises(mr.MessageDefinitionError, match="NoSuch"):
        mr.message_definition("rf_test_defs/msg/NoSuch")
    with pytest.raises(mr.MessageDefinitionError, match="not a ROS message type name"):
        mr.message_definition("not a type")


def test_topic_specs_and_config_errors() -> None:
    assert mr.parse_topic_spec("/diagnostics:diagnostic_msgs/msg/DiagnosticArray") == (
        "/diagnostics",
        "diagnostic_msgs/msg/DiagnosticArray",
    )
    assert mr.parse_topic_spec(" a/b : std_msgs/String") == ("a/b", "std_msgs/msg/String")
    assert all(mr.parse_topic_spec(s) for s in mr.SESSION_TOPICS)
    for bad in ("no_type", ":std_msgs/msg/String", "t:std_srvs/srv/Trigger", "t:bad type"):
        with pytest.raises(mr.McapRecorderError):
            mr.parse_topic_spec(bad)
    with pytest.raises(mr.McapRecorderError):
        mr.McapFileConfig(compression="gzip")
    with pytest.raises(mr.McapRecorderError):
        mr.RecorderConfig(image_every_n=0)
    with pytest.raises(mr.McapRecorderError):
        mr.RecorderConfig(session="../x")
    assert mr.available_compression("lz4") in ("lz4", "zstd", "none")


def image(i: int, h: int = 8, w: int = 6) -> Image:
    msg = Image(height=h, width=w, encoding="rgb8", step=w * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 100 + i, 7 * i, "cam"
    msg.data = array.array("B", bytes((i + k) % 256 for k in range(h * w * 3)))
    return msg


def diag(i: int) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp.sec = i
    msg.status.append(
        DiagnosticStatus(
            level=b"\x01", name=f"s{i}", message="ünïcode", values=[KeyValue(key="k", value=str(i))]
        )
    )
    return msg


def read_all(path: Path) -> list[tuple[str, str, int, int, object]]:
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert summary is not None
        assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        return [
            (c.topic, s.name, m.log_time, m.publish_time, d)
            for s, c, m, d in reader.iter_decoded_messages(log_time_order=False)
        ]


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_written_file_decodes_to_what_was_written(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "run.mcap"
    writer = mr.McapTopicWriter(mr.McapFileConfig(compression=compression, chunk_size=2048))
    writer.open(path)
    assert writer.partial_path is not None and writer.partial_path.exists() and not path.exists()
    for i in range(5):
        t = 1_000_000_000 * (i + 1)
        writer.add("/camera/color/image_raw", "sensor_msgs/msg/Image", serialize_message(image(i)), t, t - 5)
        writer.add(
            "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", serialize_message(diag(i)), t + 1, t
        )
        writer.add(
            "/reset_free/phase", "std_msgs/msg/String", serialize_message(String(data=f"p{i}")), t + 2, t
        )
        writer.add("/reward/success", "std_msgs/Header", serialize_message(Header(frame_id="ok")), t + 3, t)
    assert writer.close() == path and path.exists() and not writer.partial_path.exists()
    got = read_all(path)
    assert len(got) == 20
    images = [d for topic, _, _, _, d in got if topic == "/camera/color/image_raw"]
    for i, decoded in enumerate(images):
        expected = image(i)
        assert bytes(decoded.data) == bytes(expected.data)
        assert (decoded.height, decoded.width, decoded.encoding, decoded.step) == (8, 6, "rgb8", 18)
        assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (100 + i, 7 * i)
        assert decoded.header.frame_id == "cam"
    diags = [d for topic, _, _, _, d in got if topic == "/diagnostics"]
    assert [d.status[0].name for d in diags] == [f"s{i}" for i in range(5)]
    assert diags[3].status[0].message == "ünïcode" and diags[3].status[0].values[0].value == "3"
    assert [d.data for t, _, _, _, d in got if t == "/reset_free/phase"] == [f"p{i}" for i in range(5)]
    assert {name for _, name, _, _, _ in got} >= {"std_msgs/msg/Header", "sensor_msgs/msg/Image"}
    first = got[0]
    assert (first[2], first[3]) == (1_000_000_000, 1_000_000_000 - 5)
    with pytest.raises(mr.McapRecorderError, match="already exists"):
        mr.McapTopicWriter().open(path)


def test_zstd_level_is_applied(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    gradient = np.linspace(60, 200, 64 * 64 * 3).reshape(64, 64, 3)
    frames = [
        np.clip(gradient + rng.normal(0, 2, gradient.shape), 0, 255).astype(np.uint8) for _ in range(20)
    ]
    sizes = {}
    for level in (1, 9):
        path = tmp_path / f"l{level}.mcap"
        writer = mr.McapTopicWriter(mr.McapFileConfig(compression="zstd", zstd_level=level))
        writer.open(path)
        for i, frame in enumerate(frames):
            msg = Image(
                height=64, width=64, encoding="rgb8", step=192, data=array.array("B", frame.tobytes())
            )
            writer.add("/img", "sensor_msgs/msg/Image", serialize_message(msg), i, i)
        writer.close()
        sizes[level] = path.stat().st_size
        assert bytes(read_all(path)[-1][4].data) == frames[-1].tobytes()
    assert sizes[9] < sizes[1] * 0.98, sizes
    with pytest.raises(mr.McapRecorderError, match="zstd_level"):
        mr.McapFileConfig(zstd_level=30)


def test_split_by_size_and_duration(tmp_path: Path) -> None:
    data = serialize_message(image(1, 32, 32))  # ~3 kB, incompressible enough with compression off
    config = mr.SplitConfig(
        max_file_mb=20_000 / 2**20, file=mr.McapFileConfig(compression="none", chunk_size=4096)
    )
    split = mr.McapSplitWriter(tmp_path / "sess", config)
    for i in range(30):
        split.add("/img", "sensor_msgs/msg/Image", data, i, i)
    files = split.close()
    assert [f.name for f in files] == [f"sess_{i}.mcap" for i in range(len(files))]
    assert len(files) >= 3
    assert sum(len(read_all(f)) for f in files) == 30
    assert all(f.stat().st_size < 20_000 + 2 * 4096 + 8192 for f in files)
    assert not list((tmp_path / "sess").glob("*.partial"))

    # By log-time duration; a second writer on the same folder continues the numbering.
    split = mr.McapSplitWriter(tmp_path / "sess", mr.SplitConfig(max_file_mb=0, max_file_duration_s=1.0))
    for i in range(10):
        split.add("/p", "std_msgs/msg/String", serialize_message(String(data=str(i))), i * 400_000_000, 0)
    more = split.close()
    assert [f.name for f in more] == [f"sess_{i}.mcap" for i in range(len(files), len(files) + 4)]
    assert [len(read_all(f)) for f in more] == [3, 3, 3, 1]  # 0-0.8 s, 1.2-2.0 s, 2.4-3.2 s, 3.6 s


def test_killed_writer_leaves_a_partial_whose_complete_chunks_are_recovered(tmp_path: Path) -> None:
    path = tmp_path / "crash.mcap"
    script = textwrap.dedent(
        f"""
        import os, signal
        from rclpy.serialization import serialize_message
        from std_msgs.msg import String
        from reset_free.mcap_recorder import McapFileConfig, McapTopicWriter
        w = McapTopicWriter(McapFileConfig(chunk_size=1 << 20, flush_interval_s=0))
        w.open({str(path)!r})
        for i in range(25):
            w.add("/p", "std_msgs/msg/String", serialize_message(String(data=str(i))), i + 1, i)
            if i in (9, 19):
                w.flush()  # complete chunks: messages 0-9, 10-19
        os.kill(os.getpid(), signal.SIGKILL)  # 20-24 are in the chunk in progress
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    partial = tmp_path / "crash.mcap.partial"
    assert partial.exists() and not path.exists()

    # No footer/summary: the seeking reader (make_reader on a file) cannot open it as is...
    with open(partial, "rb") as f, pytest.raises(McapError):  # it reads garbage where the footer should be
        list(make_reader(f).iter_messages())
    # ...but every complete chunk streams out, and recover_partial rewrites them as a finished file.
    records = list(mr.iter_complete_records(partial))
    assert records[-1] == "EndOfFile"
    result = mr.recover_partial(partial)
    assert (result.output, result.messages, result.complete) == (path, 20, False)
    assert not partial.exists()
    assert [d.data for *_, d in read_all(path)] == [str(i) for i in range(20)]


def test_recover_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writer = mr.McapTopicWriter(mr.McapFileConfig(flush_interval_s=0))
    (tmp_path / "s").mkdir()
    writer.open(tmp_path / "s" / "s_0.mcap")
    for i in range(3):
        writer.add("/p", "std_msgs/msg/String", serialize_message(String(data=str(i))), i + 1, 0)
    writer.flush()
    writer.abandon()
    assert mr.main(["recover", str(tmp_path)]) == 0
    assert "3 messages on 1 topics recovered" in capsys.readouterr().out
    assert [d.data for *_, d in read_all(tmp_path / "s" / "s_0.mcap")] == ["0", "1", "2"]
    assert mr.main(["recover", str(tmp_path)]) == 0 and "nothing to recover" in capsys.readouterr().out
    assert mr.main(["recover", str(tmp_path / "missing.mcap.partial")]) == 2
    assert capsys.readouterr().err.strip().startswith("robofume: error: no such file")


def test_torn_last_chunk_is_skipped(tmp_path: Path) -> None:
    writer = mr.McapTopicWriter(mr.McapFileConfig(chunk_size=1 << 20, flush_interval_s=0))
    writer.open(tmp_path / "torn.mcap")
    ends = []
    for i in range(30):
        writer.add("/img", "sensor_msgs/msg/Image", serialize_message(image(i, 16, 16)), i + 1, 0)
        if i % 10 == 9:
            writer.flush()
            ends.append(writer.bytes_on_disk)
    writer.abandon()
    full = (tmp_path / "torn.mcap.partial").read_bytes()
    assert len(full) == ends[-1]
    for cut in (ends[1] + 20, (ends[1] + ends[2]) // 2, ends[2] - 1):  # inside the third chunk or its index
        torn = tmp_path / f"cut{cut}.mcap.partial"
        torn.write_bytes(full[:cut])
        result = mr.recover_partial(torn)
        expected = 20 if cut < ends[2] - 200 else 30  # chunk 3 whole once only its message index is cut
        assert result.messages == expected and not result.complete
        decoded = [bytes(d.data) for *_, d in read_all(result.output)]
        assert decoded == [bytes(image(i, 16, 16).data) for i in range(expected)]
    with pytest.raises(mr.McapRecorderError, match="already exists"):
        mr.recover_partial(tmp_path / "torn.mcap.partial", result.output)


def test_periodic_flush_bounds_what_a_crash_loses(tmp_path: Path) -> None:
    writer = mr.McapTopicWriter(mr.McapFileConfig(chunk_size=1 << 20, flush_interval_s=0.05, fsync=False))
    writer.open(tmp_path / "slow.mcap")
    writer.add("/p", "std_msgs/msg/String", serialize_message(String(data="a")), 1, 0)
    assert not writer.maybe_flush()
    assert writer.maybe_flush(now=time.monotonic() + 1.0)
    writer.abandon()
    records = list(mr.iter_complete_records(tmp_path / "slow.mcap.partial"))
    assert sum(1 for r in records if not isinstance(r, str)) == 3  # schema, channel, message


def test_recorder_decimates_drops_when_full_and_never_blocks(tmp_path: Path) -> None:
    recorder = mr.McapRecorder(
        mr.RecorderConfig(output=str(tmp_path), session="q", max_queue_mb=0.01, image_every_n=3)
    )
    gate = threading.Event()
    real_add = recorder._split.add

    def slow_add(*args) -> None:
        gate.wait(10)
        real_add(*args)

    recorder._split.add = slow_add  # the disk "stalls"
    img = serialize_message(image(0, 32, 32))  # ~3 kB: the 10 kB queue holds 3
    t0 = time.monotonic()
    accepted = [recorder.submit("/cam", "sensor_msgs/msg/Image", img, i + 1, 0) for i in range(60)]
    assert time.monotonic() - t0 < 1.0  # submit never waited for the stalled writer
    gate.set()
    files = recorder.close()
    stats = recorder.stats()
    cam = stats.topics["/cam"]
    assert cam.received == 60 and cam.decimated == 40
    assert cam.written == sum(accepted) and cam.written + cam.dropped == 20
    assert 1 <= cam.written <= 5 and stats.dropped == cam.dropped >= 15
    assert [f.name for f in files] == ["q_0.mcap"]
    assert [m[2] for m in read_all(files[0])] == [i + 1 for i, ok in enumerate(accepted) if ok]
    assert stats.files == [str(files[0])] and stats.bytes_written == files[0].stat().st_size


def test_recorder_write_error_stops_recording_and_counts_drops(tmp_path: Path) -> None:
    recorder = mr.McapRecorder(mr.RecorderConfig(output=str(tmp_path), session="err"))

    def full_disk(*_args) -> None:
        raise OSError(28, "No space left on device")

    recorder._split.add = full_disk
    assert recorder.submit("/p", "std_msgs/msg/String", b"\x00\x01\x00\x00\x01\x00\x00\x00\x00", 1, 0)
    deadline = time.monotonic() + 5
    while not recorder.stats().error and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "No space left" in recorder.stats().error
    assert not recorder.submit("/p", "std_msgs/msg/String", b"x", 2, 0)
    recorder.close()
    stats = recorder.stats()
    assert stats.topics["/p"].dropped == 2 and stats.topics["/p"].written == 0
