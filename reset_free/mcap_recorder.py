"""Record ROS 2 topics to MCAP files without rosbag2 (pip-installed ROS 2 has no rosbag2).

The files follow the rosbag2 MCAP storage plugin's conventions, so Foxglove opens them and
``ros2 bag play`` (on a full ROS 2 install) replays them:

- profile ``ros2``; one schema per message type, named like ``sensor_msgs/msg/Image``, encoding
  ``ros2msg``, holding the complete message definition: the type's own ``.msg`` text, then every type it
  depends on (recursively, each once, in rosbag2's order) after a line of 80 ``=`` and a ``MSG: pkg/Type``
  line (:func:`message_definition`);
- one channel per topic (the fully resolved name, e.g. ``/camera/color/image_raw``), message encoding
  ``cdr``; messages are the CDR bytes exactly as they came off the wire; log time = receive time,
  publish time = the publisher's source timestamp.

Durability: a file is written as ``<name>.mcap.partial`` and renamed to ``<name>.mcap`` when closed. Chunks
are written whole and the chunk in progress is cut at least every ``flush_interval_s`` (then fsync'd), so
a killed recorder leaves a ``.partial`` file whose every *complete chunk* is intact: the messages of the
chunk being written when the process died (at most ``flush_interval_s`` or one chunk) are lost, the file
has no summary/footer, and readers that need the footer (``mcap.reader.SeekingReader`` / ``make_reader``
on a seekable file) reject it. :func:`recover_partial` streams the complete chunks into a finished
``.mcap`` file. Long sessions are split into ``<session>_<i>.mcap`` files by size and/or duration
(:class:`McapSplitWriter`), the rosbag2 naming, so ``ros2 bag reindex <folder> -s mcap`` can index them.

:class:`McapRecorder` puts a bounded queue and a writer thread in front of the split writer: the caller
(a ROS executor callback) never blocks on disk; when the queue is full the message is dropped and counted.
This module has no ROS runtime dependency; the node is ``reset_free.mcap_recorder_node``.

Recover what a killed recorder left: ``python -m reset_free.mcap_recorder recover <folder or .partial>...``

Example::

    from reset_free.mcap_recorder import McapTopicWriter
    w = McapTopicWriter()
    w.open("run.mcap")
    w.add("/chatter", "std_msgs/msg/String", cdr_bytes, log_time_ns, publish_time_ns)
    w.close()  # run.mcap.partial -> run.mcap
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

from robofume.atomic_io import fsync_dir

PROFILE = "ros2"
"""MCAP profile written in the header (the rosbag2 MCAP plugin's)."""
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
PARTIAL_SUFFIX = ".partial"
DEFINITION_SEPARATOR = "=" * 80
LIBRARY = "robofume-mcap-recorder"

SESSION_TOPICS: tuple[str, ...] = (
    "camera/color/image_raw:sensor_msgs/msg/Image",
    "camera/color/camera_info:sensor_msgs/msg/CameraInfo",
    "arm/joint_states:sensor_msgs/msg/JointState",
    "arm/ee_pose:geometry_msgs/msg/PoseStamped",
    "policy/action:sensor_msgs/msg/JointState",
    "arm/command:sensor_msgs/msg/JointState",
    "reward/success_prob:std_msgs/msg/Float32",
    "reward/verdict:diagnostic_msgs/msg/DiagnosticArray",
    "reward/success:std_msgs/msg/Header",
    "reset_free/phase:std_msgs/msg/String",
    "reset_free/events:std_msgs/msg/String",
    "reset_free/status:diagnostic_msgs/msg/DiagnosticArray",
    "/diagnostics:diagnostic_msgs/msg/DiagnosticArray",
    "visualization:visualization_msgs/msg/MarkerArray",
)
"""The fine-tuning session's topics as ``topic:type`` (relative names resolve in the node's namespace)."""

IMAGE_TYPES = frozenset({"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"})
"""Types decimated by ``image_every_n``."""


class McapRecorderError(ValueError):
    """Bad recorder input: an unknown message type, a malformed topic spec, a bad config value."""


class MessageDefinitionError(McapRecorderError):
    """A message type's ``.msg`` file (or one it depends on) cannot be found or understood."""


# ---------------------------------------------------------------------------------------------------------
# Message definitions
# ---------------------------------------------------------------------------------------------------------

# The rosbag2 rules (rosbag2_cpp LocalMessageDefinitionSource): a dependency is the first word of a line
# that is not a primitive type, qualified with the current package when it has no "/". (wstring counts as
# primitive here; rosbag2 would look for a "pkg/wstring" type.)
_FIELD_TYPE = re.compile(r"(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:\[[^\]]*\])?\s+")
_PRIMITIVES = frozenset(
    {"bool", "byte", "char", "float32", "float64", "string", "wstring"}
    | {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}
)
_TYPE_NAME = re.compile(r"^([a-zA-Z][a-zA-Z0-9_]*)/(?:([a-zA-Z][a-zA-Z0-9_]*)/)?([a-zA-Z][a-zA-Z0-9_]*)$")


def split_type_name(type_name: str) -> tuple[str, str, str]:
    """``"sensor_msgs/msg/Image"`` or ``"sensor_msgs/Image"`` -> ``("sensor_msgs", "msg", "Image")``."""
    match = _TYPE_NAME.match(type_name.strip())
    if match is None:
        raise MessageDefinitionError(f"not a ROS message type name: {type_name!r} (expected pkg/msg/Type)")
    package, namespace, name = match.groups()
    return package, namespace or "msg", name


def _share_dirs(package: str) -> list[Path]:
    """Candidate ``share/<package>`` folders: the ament index first, then next to the Python package."""
    candidates: list[Path] = []
    with contextlib.suppress(Exception):  # no AMENT_PREFIX_PATH (pip wheels), or package not indexed
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(package)))
    # Pip wheels: <prefix>/lib/pythonX.Y/site-packages/<package>/ and <prefix>/share/<package>/msg/*.msg.
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                for parent in Path(location).resolve().parents:
                    candidates.append(parent / "share" / package)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / package)
    candidates.append(Path(sys.prefix) / "share" / package)
    return candidates


@lru_cache(maxsize=512)
def interface_file(type_name: str, extension: str = ".msg") -> Path:
    """The installed ``.msg`` file of ``type_name`` (e.g. ``share/sensor_msgs/msg/Image.msg``)."""
    package, namespace, name = split_type_name(type_name)
    for share in _share_dirs(package):
        path = share / namespace / f"{name}{extension}"
        if path.is_file():
            return path
    raise MessageDefinitionError(
        f"no {namespace}/{name}{extension} found for {type_name} (is the '{package}' package installed?)"
    )


def _dependencies(text: str, package: str) -> list[str]:
    deps: set[str] = set()
    for match in _FIELD_TYPE.finditer(text):
        word = match.group(1)
        if word in _PRIMITIVES:
            continue
        deps.add(word if "/" in word else f"{package}/{word}")
    return sorted(deps)


@lru_cache(maxsize=256)
def message_definition(type_name: str) -> str:
    """The complete ``ros2msg`` definition of ``type_name`` as rosbag2 stores it in an MCAP schema.

    The type's ``.msg`` text verbatim (comments, constants and defaults kept), then for each dependency not
    seen yet, depth first in sorted order: a newline, 80 ``=``, ``MSG: <pkg/Type as written>`` and its text.
    """
    seen: set[str] = set()

    def append(name: str, depth: int) -> str:
        if depth <= 0:
            raise MessageDefinitionError(f"message definition of {type_name} nests too deep (a cycle?)")
        package, _, _ = split_type_name(name)
        try:
            text = interface_file(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise MessageDefinitionError(f"cannot read the definition of {name}: {exc.strerror}") from None
        out = text
        for dep in _dependencies(text, package):
            key = "/".join(split_type_name(dep))
            if key in seen:
                continue
            seen.add(key)
            out += f"\n{DEFINITION_SEPARATOR}\nMSG: {dep}\n" + append(dep, depth - 1)
        return out

    return append(type_name, 50)


def parse_topic_spec(spec: str) -> tuple[str, str]:
    """``"camera/color/image_raw:sensor_msgs/msg/Image"`` -> ``(topic, type)``; the type must be known."""
    topic, sep, type_name = spec.strip().rpartition(":")
    if not sep or not topic or not type_name:
        raise McapRecorderError(f"topic spec {spec!r} is not 'topic:pkg/msg/Type'")
    package, namespace, name = split_type_name(type_name)
    if namespace != "msg":
        raise McapRecorderError(f"topic spec {spec!r}: {type_name} is not a message type")
    return topic.strip(), f"{package}/msg/{name}"


# ---------------------------------------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------------------------------------

_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
_zstd_level = threading.local()


class _LevelledZstd:
    """Stands in for the ``zstandard`` module inside ``mcap.writer``, whose chunks are compressed with a
    fixed level 3: ``compress`` uses the level the calling thread's :class:`McapTopicWriter` set (zstandard's
    default, 3, for any other writer). Level 1 is ~7x faster on noisy camera frames for ~5 % more bytes."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def compress(self, data: bytes, level: int | None = None) -> bytes:
        """``zstandard.compress`` at this thread's level."""
        return self._module.compress(data, getattr(_zstd_level, "level", 3) if level is None else level)


def _install_zstd_level() -> None:
    import mcap.writer

    module = getattr(mcap.writer, "zstandard", None)
    if module is not None and not isinstance(module, _LevelledZstd):
        mcap.writer.zstandard = _LevelledZstd(module)


def available_compression(preferred: str = "zstd") -> str:
    """``preferred`` if its library is installed, else the next of zstd, lz4, none that is."""
    if preferred not in _COMPRESSION:
        raise McapRecorderError(f"compression must be one of {sorted(_COMPRESSION)}, got {preferred!r}")
    order = [preferred] + [c for c in ("zstd", "lz4", "none") if c != preferred]
    for name in order:
        module = {"zstd": "zstandard", "lz4": "lz4.frame", "none": None}[name]
        if module is None or importlib.util.find_spec(module.split(".")[0]) is not None:
            return name
    return "none"


@dataclass
class McapFileConfig:
    """How each MCAP file is written."""

    compression: str = "zstd"
    """``zstd`` | ``lz4`` | ``none``; falls back to what is installed."""
    zstd_level: int = 1
    """zstd level (1 = fast, like rosbag2's ``zstd_fast`` preset; 3 = zstandard's default; up to 22)."""
    chunk_size: int = 1024 * 1024
    """Bytes of (uncompressed) records per chunk; a chunk is the unit a crash can lose."""
    flush_interval_s: float = 2.0
    """Cut the chunk in progress and fsync at least this often (bounds what a crash loses); 0 = never."""
    fsync: bool = True
    """fsync on those periodic flushes and on close (survives power loss, not just a killed process)."""

    def __post_init__(self) -> None:
        if self.compression not in _COMPRESSION:
            raise McapRecorderError(f"compression must be one of {sorted(_COMPRESSION)}")
        if not -7 <= self.zstd_level <= 22:
            raise McapRecorderError(f"zstd_level must be in -7..22, got {self.zstd_level}")
        if self.chunk_size < 1024:
            raise McapRecorderError(f"chunk_size must be >= 1024 bytes, got {self.chunk_size}")
        if self.flush_interval_s < 0:
            raise McapRecorderError("flush_interval_s must be >= 0")


class McapTopicWriter:
    """Writes one ROS 2 MCAP file from already serialized (CDR) messages: ``open``, ``add``..., ``close``.

    The file is ``<path>.partial`` while open and renamed to ``path`` by :meth:`close`.
    Not thread-safe: one thread writes.
    """

    def __init__(self, config: McapFileConfig | None = None) -> None:
        self.config = config or McapFileConfig()
        self._compression = _COMPRESSION[available_compression(self.config.compression)]
        if self._compression == CompressionType.ZSTD:
            _install_zstd_level()
        self._file: IO[bytes] | None = None
        self._writer: Writer | None = None
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence: dict[int, int] = {}
        self._last_flush = 0.0
        self.path: Path | None = None
        self.message_count = 0
        self.payload_bytes = 0
        self.first_log_time_ns: int | None = None
        self.last_log_time_ns: int | None = None

    @property
    def partial_path(self) -> Path | None:
        """Where the file is while it is open."""
        return None if self.path is None else self.path.with_name(self.path.name + PARTIAL_SUFFIX)

    @property
    def channel_count(self) -> int:
        """Channels (topics) registered in the current or last file."""
        return len(self._channels)

    @property
    def is_open(self) -> bool:
        """Whether a file is open."""
        return self._writer is not None

    @property
    def bytes_on_disk(self) -> int:
        """Bytes written to the file so far (the chunk in progress not included)."""
        return 0 if self._file is None else self._file.tell()

    def open(self, path: str | os.PathLike[str]) -> None:
        """Start writing ``path`` (as ``path.partial``); the folder must exist."""
        if self._writer is not None:
            raise McapRecorderError(f"already writing {self.path}")
        self.path = Path(path)
        partial = self.partial_path
        assert partial is not None
        if self.path.exists():
            raise McapRecorderError(f"{self.path} already exists; not overwriting a recording")
        try:
            self._file = open(partial, "xb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise OSError(f"cannot create {partial}: {exc.strerror}") from None
        self._writer = Writer(self._file, chunk_size=self.config.chunk_size, compression=self._compression)
        from mcap import __version__ as mcap_version

        self._writer.start(profile=PROFILE, library=f"{LIBRARY}; mcap-python {mcap_version}")
        self._schemas.clear()
        self._channels.clear()
        self._sequence.clear()
        self.message_count = self.payload_bytes = 0
        self.first_log_time_ns = self.last_log_time_ns = None
        self._last_flush = time.monotonic()

    def add_channel(self, topic: str, type_name: str) -> int:
        """Register ``topic`` (schema included) if needed; its channel id."""
        if self._writer is None:
            raise McapRecorderError("add() before open()")
        channel_id = self._channels.get(topic)
        if channel_id is not None:
            return channel_id
        package, _, name = split_type_name(type_name)
        full_type = f"{package}/msg/{name}"
        schema_id = self._schemas.get(full_type)
        if schema_id is None:
            definition = message_definition(full_type).encode()
            schema_id = self._writer.register_schema(full_type, SCHEMA_ENCODING, definition)
            self._schemas[full_type] = schema_id
        channel_id = self._writer.register_channel(topic, MESSAGE_ENCODING, schema_id)
        self._channels[topic] = channel_id
        return channel_id

    def add(self, topic: str, type_name: str, data: bytes, log_time_ns: int, publish_time_ns: int) -> None:
        """Append one CDR-serialized message of ``type_name`` on ``topic``."""
        channel_id = self.add_channel(topic, type_name)
        assert self._writer is not None
        sequence = self._sequence.get(channel_id, 0)
        self._sequence[channel_id] = sequence + 1
        _zstd_level.level = self.config.zstd_level
        self._writer.add_message(channel_id, log_time_ns, bytes(data), publish_time_ns, sequence)
        self.message_count += 1
        self.payload_bytes += len(data)
        if self.first_log_time_ns is None:
            self.first_log_time_ns = log_time_ns
        self.last_log_time_ns = (
            log_time_ns if self.last_log_time_ns is None else max(self.last_log_time_ns, log_time_ns)
        )
        self.maybe_flush()

    def maybe_flush(self, now: float | None = None) -> bool:
        """Cut the chunk in progress if ``flush_interval_s`` has passed since the last cut; whether it did."""
        interval = self.config.flush_interval_s
        now = time.monotonic() if now is None else now
        if self._writer is None or interval <= 0 or now - self._last_flush < interval:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Write the chunk in progress as a complete chunk (and fsync if configured)."""
        if self._writer is None or self._file is None:
            return
        _zstd_level.level = self.config.zstd_level
        self._writer.flush()
        if self.config.fsync:
            os.fsync(self._file.fileno())
        self._last_flush = time.monotonic()

    def close(self) -> Path | None:
        """Write the summary and footer, close and rename ``.partial`` to the final name; that path."""
        if self._writer is None or self._file is None:
            return None
        try:
            _zstd_level.level = self.config.zstd_level
            self._writer.finish()
            self._file.flush()
            if self.config.fsync:
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._writer = None
            self._file = None
        assert self.path is not None and self.partial_path is not None
        os.replace(self.partial_path, self.path)
        if self.config.fsync:
            fsync_dir(str(self.path.parent.resolve()))
        return self.path

    def abandon(self) -> None:
        """Close the file without finishing it (leaves the ``.partial``, as a crash would)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._writer = None
        self._file = None


# ---------------------------------------------------------------------------------------------------------
# A session split into files
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SplitConfig:
    """When to start the next file of a session."""

    max_file_mb: float = 1024.0
    """Start a new file once the current one reaches this many MiB on disk; 0 = no size limit."""
    max_file_duration_s: float = 0.0
    """Start a new file once the current one spans this many seconds of log time; 0 = no limit."""
    file: McapFileConfig = field(default_factory=McapFileConfig)

    def __post_init__(self) -> None:
        if self.max_file_mb < 0 or self.max_file_duration_s < 0:
            raise McapRecorderError("max_file_mb and max_file_duration_s must be >= 0")


def session_name(now: float | None = None) -> str:
    """A rosbag2-style folder name from local time: ``session_2025_01_31-14_05_09``."""
    return time.strftime("session_%Y_%m_%d-%H_%M_%S", time.localtime(time.time() if now is None else now))


class McapSplitWriter:
    """Writes a session as ``<folder>/<name>_<i>.mcap``, starting a new file by size or duration.

    Files already present are never overwritten: numbering continues after the highest index found.
    """

    def __init__(self, folder: str | os.PathLike[str], config: SplitConfig | None = None) -> None:
        self.folder = Path(folder)
        self.config = config or SplitConfig()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create recording folder {self.folder}: {exc.strerror}") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise OSError(f"recording folder {self.folder} is not writable")
        self.name = self.folder.name
        self._writer = McapTopicWriter(self.config.file)
        self._index = self._next_index()
        self.closed_files: list[Path] = []
        self.bytes_closed = 0
        self.message_count = 0

    def _next_index(self) -> int:
        pattern = re.compile(rf"^{re.escape(self.name)}_(\d+)\.mcap(?:{re.escape(PARTIAL_SUFFIX)})?$")
        found = [int(m.group(1)) for p in self.folder.iterdir() if (m := pattern.match(p.name))]
        return max(found) + 1 if found else 0

    @property
    def current_path(self) -> Path | None:
        """The file being written (its final name), if any."""
        return self._writer.path if self._writer.is_open else None

    @property
    def files(self) -> list[Path]:
        """Finished files, then the one in progress (final names)."""
        current = self.current_path
        return self.closed_files + ([current] if current is not None else [])

    @property
    def bytes_written(self) -> int:
        """Bytes on disk over all files of this writer."""
        return self.bytes_closed + self._writer.bytes_on_disk

    def _should_split(self, log_time_ns: int) -> bool:
        w = self._writer
        limit = self.config.max_file_mb * 1024 * 1024
        if limit > 0 and w.bytes_on_disk >= limit:
            return True
        duration = self.config.max_file_duration_s
        return (
            duration > 0
            and w.first_log_time_ns is not None
            and (log_time_ns - w.first_log_time_ns >= duration * 1e9)
        )

    def add(self, topic: str, type_name: str, data: bytes, log_time_ns: int, publish_time_ns: int) -> None:
        """Append one message, rolling to the next file first when the current one is full."""
        if self._writer.is_open and self._should_split(log_time_ns):
            self._close_current()
        if not self._writer.is_open:
            self._writer.open(self.folder / f"{self.name}_{self._index}.mcap")
            self._index += 1
        self._writer.add(topic, type_name, data, log_time_ns, publish_time_ns)
        self.message_count += 1

    def maybe_flush(self) -> None:
        """Cut the chunk in progress if the flush interval has passed (call when idle)."""
        self._writer.maybe_flush()

    def _close_current(self) -> None:
        size = self._writer.bytes_on_disk
        path = self._writer.close()
        if path is not None:
            self.closed_files.append(path)
            self.bytes_closed += path.stat().st_size if path.exists() else size

    def close(self) -> list[Path]:
        """Finish the file in progress; every finished file of this writer."""
        if self._writer.is_open:
            self._close_current()
        return list(self.closed_files)

    def abandon(self) -> None:
        """Stop without finishing the current file (tests: what a crash leaves)."""
        self._writer.abandon()


# ---------------------------------------------------------------------------------------------------------
# Recovery of a killed recorder's file
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RecoveryResult:
    """What :func:`recover_partial` salvaged."""

    source: Path
    output: Path
    messages: int
    channels: int
    complete: bool
    """The source had its footer (it was a finished file after all)."""
    stopped_by: str
    """Why reading stopped early (``""`` when the file was complete), e.g. ``EndOfFile``."""


def iter_complete_records(path: str | os.PathLike[str]) -> Iterable[Schema | Channel | Message | str]:
    """Schemas, channels and messages of every complete chunk of an MCAP file, finished or not.

    Yields a final string naming why reading stopped (``""`` at the footer). Chunk CRCs are checked, so a
    chunk that was only partly written is not returned.
    """
    with open(path, "rb") as f:
        reader = StreamReader(f, validate_crcs=True)
        try:
            for record in reader.records:
                if isinstance(record, Schema | Channel | Message):
                    yield record
        except Exception as exc:
            yield type(exc).__name__
            return
        yield ""


def recover_partial(
    path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None
) -> RecoveryResult:
    """Rewrite a ``.mcap.partial`` left by a killed recorder as a finished ``.mcap`` (complete chunks only).

    ``output`` defaults to ``path`` without ``.partial``; the source is removed once the output is in place.
    """
    source = Path(path)
    if not source.is_file():
        raise McapRecorderError(f"no such file: {source}")
    if output is None:
        if not source.name.endswith(PARTIAL_SUFFIX):
            raise McapRecorderError(f"{source} is not a {PARTIAL_SUFFIX} file; pass an output path")
        output = source.with_name(source.name[: -len(PARTIAL_SUFFIX)])
    out_path = Path(output)
    if out_path.exists():
        raise McapRecorderError(f"{out_path} already exists")
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    writer = McapTopicWriter(McapFileConfig(flush_interval_s=0.0))
    staging = out_path.with_name(out_path.name + ".recovering")  # its own .partial while written
    writer.open(staging)
    stopped_by = "EndOfFile"
    messages = 0
    try:
        for record in iter_complete_records(source):
            if isinstance(record, str):
                stopped_by = record
            elif isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                channels[record.id] = record
            else:
                channel = channels.get(record.channel_id)
                schema = schemas.get(channel.schema_id) if channel is not None else None
                if channel is None or schema is None:
                    continue
                writer.add(channel.topic, schema.name, record.data, record.log_time, record.publish_time)
                messages += 1
    except BaseException:
        writer.abandon()
        with contextlib.suppress(OSError):
            os.unlink(str(writer.partial_path))
        raise
    writer.close()
    os.replace(staging, out_path)
    fsync_dir(str(out_path.parent.resolve()))
    if source.name.endswith(PARTIAL_SUFFIX):
        source.unlink()
    return RecoveryResult(
        source=source,
        output=out_path,
        messages=messages,
        channels=writer.channel_count,
        complete=stopped_by == "",
        stopped_by=stopped_by,
    )


# ---------------------------------------------------------------------------------------------------------
# Queue + writer thread
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RecorderConfig:
    """The recorder: where, how files split, and how much may wait for the disk."""

    output: str = "recordings"
    """Parent folder; the session goes to ``<output>/<session>/``. Empty = ``recordings``."""
    session: str = ""
    """Session folder name; empty = ``session_<local time>``."""
    split: SplitConfig = field(default_factory=SplitConfig)
    max_queue_mb: float = 256.0
    """Bytes allowed to wait for the writer thread; beyond it messages are dropped (and counted)."""
    image_every_n: int = 1
    """Keep one camera frame in N (types in :data:`IMAGE_TYPES`)."""

    def __post_init__(self) -> None:
        self.output = self.output or "recordings"
        if self.max_queue_mb <= 0:
            raise McapRecorderError(f"max_queue_mb must be > 0, got {self.max_queue_mb}")
        if self.image_every_n < 1:
            raise McapRecorderError(f"image_every_n must be >= 1, got {self.image_every_n}")
        if "/" in self.session or self.session in (".", ".."):
            raise McapRecorderError(f"session must be a plain folder name, got {self.session!r}")


@dataclass
class TopicStats:
    """Per-topic counters."""

    received: int = 0
    written: int = 0
    decimated: int = 0
    dropped: int = 0
    bytes: int = 0


@dataclass
class RecorderStats:
    """A snapshot of the recorder's counters."""

    folder: str
    files: list[str]
    bytes_written: int
    messages_written: int
    dropped: int
    queued: int
    queued_bytes: int
    error: str
    topics: dict[str, TopicStats]


class McapRecorder:
    """Accepts messages from any thread without blocking; a writer thread writes them to a split MCAP session.

    :meth:`submit` returns ``False`` when the message is decimated or dropped (queue full, writer failed).
    A write error (disk full...) stops writing: later messages are dropped and :attr:`error` says why.
    """

    def __init__(self, config: RecorderConfig | None = None) -> None:
        self.config = config or RecorderConfig()
        self.folder = Path(self.config.output) / (self.config.session or session_name())
        self._split = McapSplitWriter(self.folder, self.config.split)
        self._queue: collections.deque[tuple[str, str, bytes, int, int]] = collections.deque()
        self._cond = threading.Condition()
        self._queued_bytes = 0
        self._max_bytes = int(self.config.max_queue_mb * 1024 * 1024)
        self._stopping = False
        self._topics: dict[str, TopicStats] = {}
        self._dropped = 0
        self._files: list[str] = []
        self._bytes_written = 0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="mcap-writer", daemon=True)
        self._thread.start()

    def _stats_for(self, topic: str) -> TopicStats:
        stats = self._topics.get(topic)
        if stats is None:
            stats = self._topics[topic] = TopicStats()
        return stats

    def submit(self, topic: str, type_name: str, data: bytes, log_time_ns: int, publish_time_ns: int) -> bool:
        """Queue one serialized message; ``False`` if decimated or dropped. Never blocks on the disk."""
        size = len(data)
        with self._cond:
            stats = self._stats_for(topic)
            stats.received += 1
            n = self.config.image_every_n
            if n > 1 and type_name in IMAGE_TYPES and (stats.received - 1) % n:
                stats.decimated += 1
                return False
            if self._stopping or self.error or self._queued_bytes + size > self._max_bytes:
                stats.dropped += 1
                self._dropped += 1
                return False
            self._queue.append((topic, type_name, data, log_time_ns, publish_time_ns))
            self._queued_bytes += size
            self._cond.notify()
        return True

    def _run(self) -> None:
        idle_wait = max(0.05, min(0.5, self.config.split.file.flush_interval_s or 0.5))
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    if not self._cond.wait(timeout=idle_wait):
                        break
                if not self._queue:
                    if self._stopping:
                        return
                    item = None
                else:
                    item = self._queue.popleft()
                    self._queued_bytes -= len(item[2])
            if self.error:
                continue
            try:
                if item is None:
                    self._split.maybe_flush()
                else:
                    self._split.add(*item)
            except (OSError, McapError, ValueError) as exc:
                with self._cond:
                    self.error = f"{type(exc).__name__}: {exc}"
                    self._dropped += 1 + len(self._queue)
                    if item is not None:
                        self._stats_for(item[0]).dropped += 1
                    for queued in self._queue:
                        self._stats_for(queued[0]).dropped += 1
                    self._queue.clear()
                    self._queued_bytes = 0
                continue
            with self._cond:
                self._snapshot()
                if item is not None:
                    stats = self._stats_for(item[0])
                    stats.written += 1
                    stats.bytes += len(item[2])

    def _snapshot(self) -> None:
        # Called by the writer thread under the lock: stats() never touches the file from another thread.
        self._files = [str(p) for p in self._split.files]
        self._bytes_written = self._split.bytes_written

    def stats(self) -> RecorderStats:
        """Counters now (thread-safe)."""
        with self._cond:
            return RecorderStats(
                folder=str(self.folder),
                files=list(self._files),
                bytes_written=self._bytes_written,
                messages_written=self._split.message_count,
                dropped=self._dropped,
                queued=len(self._queue),
                queued_bytes=self._queued_bytes,
                error=self.error,
                topics={k: TopicStats(**vars(v)) for k, v in self._topics.items()},
            )

    def close(self, timeout: float = 30.0) -> list[Path]:
        """Write what is queued (up to ``timeout`` s), finish the current file; the finished files."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():  # the disk is stuck: leave the .partial rather than hang shutdown
            self.error = self.error or f"writer did not finish within {timeout} s"
            return list(self._split.closed_files)
        try:
            files = self._split.close()
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            files = list(self._split.closed_files)
        with self._cond:
            self._snapshot()
        return files


def main(argv: list[str] | None = None) -> int:
    """``recover PATH...``: finish every ``.mcap.partial`` given (or found in a given folder)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m reset_free.mcap_recorder", description="MCAP recordings left by a killed recorder"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    recover = sub.add_parser("recover", help="rewrite .mcap.partial files as finished .mcap files")
    recover.add_argument("paths", nargs="+", help=".mcap.partial files or folders holding them")
    args = parser.parse_args(argv)
    partials: list[Path] = []
    for name in args.paths:
        path = Path(name)
        partials += sorted(path.rglob(f"*.mcap{PARTIAL_SUFFIX}")) if path.is_dir() else [path]
    if not partials:
        print("robofume: nothing to recover (no .mcap.partial files)")
        return 0
    status = 0
    for path in partials:
        try:
            r = recover_partial(path)
        except (McapRecorderError, OSError) as exc:
            print(f"robofume: error: {exc}", file=sys.stderr)
            status = 2
            continue
        how = "was complete" if r.complete else f"stopped at a torn chunk ({r.stopped_by})"
        print(f"{r.output}: {r.messages} messages on {r.channels} topics recovered; the file {how}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
