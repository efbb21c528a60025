"""The labeling tool's JSON API over real HTTP: episodes, PNG frames, labels, undo, training, bad input."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest

from reward_vlm.label_server import (
    MAX_BODY_BYTES,
    LabelServer,
    LabelServerConfig,
    LabelServerError,
    check_bind_host,
    downscale,
    encode_png,
)
from reward_vlm.labels import FrameLabel, LabelError, load_labels, save_labels, update_labels
from robofume.data.episode_format import load_episode

FWD = "demos/forward_000000.npz"
BWD = "demos/backward_000000.npz"


class Client:
    """A tiny HTTP client that returns (status, decoded body) and never raises for 4xx/5xx."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        res = conn.getresponse()
        payload = res.read()
        conn.close()
        if res.getheader("Content-Type", "").startswith("application/json"):
            return res.status, json.loads(payload)
        return res.status, payload

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, body=body, **kw)


def _frame_path(episode: str, frame: int | str) -> str:
    return f"/api/episodes/{urllib.parse.quote(episode, safe='')}/frames/{frame}.png"


def _change(episode: str, frame: int, task: str, success: bool | None) -> dict[str, Any]:
    return {"episode": episode, "frame": frame, "task": task, "success": success}


@pytest.fixture
def server(label_data: tuple[Path, dict[str, int]], fake_trainer: Any) -> Iterator[LabelServer]:
    root, _ = label_data
    with LabelServer(LabelServerConfig(data=str(root), port=0), trainer=fake_trainer()) as srv:
        srv.start()
        yield srv


@pytest.fixture
def client(server: LabelServer) -> Client:
    return Client(server.port)


def test_episode_list_flags_damaged_files(client: Client, label_data: tuple[Path, dict[str, int]]) -> None:
    _, frames = label_data
    status, data = client.get("/api/episodes")
    assert status == 200
    by_id = {ep["id"]: ep for ep in data["episodes"]}
    assert set(by_id) == {*frames, "failures/backward_000000.npz", "failures/backward_000001.npz"}
    assert data["damaged"] == 2
    for rel, n in frames.items():
        assert by_id[rel]["frames"] == n and by_id[rel]["damaged"] is None
        assert by_id[rel]["height"] == by_id[rel]["width"] == 32
    assert by_id[FWD]["task"] == "forward" and by_id[BWD]["task"] == "backward"
    assert by_id[FWD]["kind"] == "demos" and "cube" in by_id[FWD]["instruction"]
    assert "corrupt" in by_id["failures/backward_000000.npz"]["damaged"]
    assert by_id["failures/backward_000001.npz"]["damaged"]


def test_frames_are_served_as_png(client: Client, label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data
    episode = load_episode(root / FWD)
    status, png = client.get(_frame_path(FWD, 5))
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(iio.imread(io.BytesIO(png)), episode.frames[5])
    status, png_full = client.get(_frame_path(FWD, 5) + "?full=1")
    assert status == 200
    np.testing.assert_array_equal(iio.imread(io.BytesIO(png_full)), episode.frames[5])
    # unencoded slashes in the id work too
    status, _ = client.get(f"/api/episodes/{FWD}/frames/0.png")
    assert status == 200


def test_thumbnails_are_downscaled_and_cached(label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data
    with LabelServer(LabelServerConfig(data=str(root), port=0, thumb_side=10)) as srv:
        srv.start()
        client = Client(srv.port)
        status, png = client.get(_frame_path(FWD, 1))
        assert status == 200 and iio.imread(io.BytesIO(png)).shape == (8, 8, 3)  # 32 px / 4
        status, full = client.get(_frame_path(FWD, 1) + "?full=1")
        assert iio.imread(io.BytesIO(full)).shape == (32, 32, 3)
        assert len(srv.app.catalog._episodes) == 1
        t0 = time.perf_counter()
        for _ in range(20):
            client.get(_frame_path(FWD, 1))
        assert (time.perf_counter() - t0) / 20 < 0.05, "cached thumbnails are cheap"


def test_encode_png_and_downscale_round_trip() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(iio.imread(io.BytesIO(encode_png(rgb))), rgb)
    grey = rng.integers(0, 256, (4, 9), dtype=np.uint8)
    np.testing.assert_array_equal(iio.imread(io.BytesIO(encode_png(grey))), grey)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(rgb.astype(np.float32))
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2, :2] = 200
    assert downscale(image, 2).tolist() == [[[200] * 3, [0] * 3], [[0] * 3, [0] * 3]]
    assert downscale(image, 4) is image


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (_frame_path("demos/forward_000099.npz", 0), 404, "unknown episode"),
        (_frame_path(FWD, 8), 400, "out of range"),
        (_frame_path(FWD, "-1"), 400, "non-negative integer"),
        (_frame_path(FWD, "abc"), 400, "non-negative integer"),
        (_frame_path("../../etc/passwd", 0), 404, "unknown episode"),
        (_frame_path("failures/backward_000000.npz", 0), 422, "damaged"),
        ("/api/nothing", 404, "no such API endpoint"),
    ],
)
def test_bad_frame_requests(client: Client, path: str, status: int, message: str) -> None:
    got, data = client.get(path)
    assert got == status
    assert message in data["error"]


def test_truncated_episode_found_on_load_is_listed_damaged(label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data
    good = (root / BWD).read_bytes()
    # Damage the compressed frames but keep the zip directory readable: caught only when frames are decoded.
    idx = good.index(b"frames.npy") + 200
    (root / "demos" / "broken_000000.npz").write_bytes(good[:idx] + bytes(64) + good[idx + 64 :])
    with LabelServer(LabelServerConfig(data=str(root), port=0)) as srv:
        srv.start()
        client = Client(srv.port)
        status, data = client.get(_frame_path("demos/broken_000000.npz", 0))
        assert status == 422 and "damaged" in data["error"]
        _, listing = client.get("/api/episodes")
        broken = next(ep for ep in listing["episodes"] if ep["id"] == "demos/broken_000000.npz")
        assert broken["damaged"]
        assert client.get(_frame_path(BWD, 0))[0] == 200, "the server keeps serving other episodes"


def test_labels_are_saved_on_every_change_and_undone(client: Client, server: LabelServer) -> None:
    path = server.config.labels_path
    status, data = client.post("/api/labels", {"changes": [_change(FWD, 7, "forward", True)]})
    assert status == 200, data
    assert data["changed"] == [_change(FWD, 7, "forward", True)]
    assert data["counts"]["forward"] == {"success": 1, "failure": 0}
    assert load_labels(path) == [FrameLabel(FWD, 7, "forward", True)]
    # a single change object is accepted too; then a range as one undo step
    assert client.post("/api/labels", _change(FWD, 0, "forward", False))[0] == 200
    status, data = client.post(
        "/api/labels", {"changes": [_change(BWD, i, "backward", True) for i in range(3, 6)]}
    )
    assert data["counts"]["backward"]["success"] == 3 and data["undo_depth"] == 3
    assert len(load_labels(path)) == 5
    status, data = client.post("/api/undo", {})
    assert status == 200 and len(data["changed"]) == 3 and all(c["success"] is None for c in data["changed"])
    assert len(load_labels(path)) == 2
    # relabel and clear, then undo brings the cleared label back
    assert (
        client.post("/api/labels", _change(FWD, 7, "forward", False))[1]["counts"]["forward"]["failure"] == 2
    )
    client.post("/api/labels", _change(FWD, 7, "forward", None))
    assert FrameLabel(FWD, 7, "forward", False) not in load_labels(path)
    client.post("/api/undo", {})
    assert FrameLabel(FWD, 7, "forward", False) in load_labels(path)
    client.post("/api/undo", {})
    assert FrameLabel(FWD, 7, "forward", True) in load_labels(path)
    client.post("/api/undo", {})
    client.post("/api/undo", {})
    assert load_labels(path) == []
    status, data = client.post("/api/undo", {})
    assert status == 409 and "nothing to undo" in data["error"]
    _, data = client.get("/api/labels")
    assert data["labels"] == [] and data["undo_depth"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"changes": [_change(FWD, 1, "sideways", True)]}, "unknown task 'sideways'"),
        ({"changes": [_change(FWD, 8, "forward", True)]}, "out of range"),
        ({"changes": [_change(FWD, -1, "forward", True)]}, "out of range"),
        ({"changes": [_change(FWD, 1.5, "forward", True)]}, "frame must be an integer"),
        ({"changes": [_change(FWD, True, "forward", True)]}, "frame must be an integer"),
        ({"changes": [_change("demos/nope.npz", 0, "forward", True)]}, "unknown episode"),
        ({"changes": [_change("failures/backward_000000.npz", 0, "forward", True)]}, "damaged"),
        ({"changes": [_change(FWD, 1, "forward", "yes")]}, "true, false or null"),
        ({"changes": [{**_change(FWD, 1, "forward", True), "extra": 1}]}, "unknown fields: extra"),
        ({"changes": [{"episode": FWD, "frame": 1}]}, "lacks: success, task"),
        ({"changes": []}, "non-empty list"),
        ({"changes": "all"}, "non-empty list"),
        ([1, 2], "must be an object"),
        ({"changes": [_change(FWD, 1, "forward", True), _change(FWD, 99, "forward", True)]}, "change 1"),
    ],
)
def test_bad_label_requests_are_refused_and_change_nothing(
    client: Client, server: LabelServer, body: Any, message: str
) -> None:
    status, data = client.post("/api/labels", body)
    assert status == 400, data
    assert message in data["error"]
    assert load_labels(server.config.labels_path) == []


def test_bad_bodies(client: Client, server: LabelServer) -> None:
    status, data = client.post("/api/labels", raw=b"{not json")
    assert status == 400 and "not valid JSON" in data["error"]
    status, data = client.post("/api/labels", raw=b"\xff\xfe")
    assert status == 400
    status, data = client.request("POST", "/api/labels")
    assert status == 400 and "got nothing" in data["error"]
    status, data = client.post("/api/labels", raw=b'{"a": 1}', headers={"Content-Type": "text/plain"})
    assert status == 415
    status, data = client.post("/api/labels", raw=b" " * (MAX_BODY_BYTES + 1))
    assert status == 413 and "exceeds" in data["error"]
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:  # huge claimed length
        sock.sendall(
            b"POST /api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n{"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    status, data = client.request("PUT", "/api/labels", body={})
    assert status == 405
    assert load_labels(server.config.labels_path) == []
    assert client.get("/api/labels")[0] == 200, "the server still answers"


def test_foreign_host_and_origin_are_refused(client: Client) -> None:
    status, data = client.get("/api/episodes", headers={"Host": "evil.example:8765"})
    assert status == 403 and "forbidden Host" in data["error"]
    status, data = client.post(
        "/api/labels",
        {"changes": [_change(FWD, 1, "forward", True)]},
        headers={"Origin": "http://evil.example"},
    )
    assert status == 403 and "forbidden Origin" in data["error"]
    assert client.get("/api/episodes", headers={"Host": "localhost:1"})[0] == 200


def test_non_loopback_bind_needs_allow_remote(label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data
    for host in ("0.0.0.0", "192.168.1.5", "example.com", ""):
        with pytest.raises(LabelServerError, match="--allow-remote"):
            check_bind_host(host, allow_remote=False)
        check_bind_host(host, allow_remote=True)
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        check_bind_host(host, allow_remote=False)
    with pytest.raises(LabelServerError, match=r"refusing to listen on 0\.0\.0\.0"):
        LabelServer(LabelServerConfig(data=str(root), host="0.0.0.0", port=0))


def test_port_in_use_and_missing_folder_are_one_line_errors(
    label_data: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    root, _ = label_data
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(LabelServerError, match=r"cannot listen on 127\.0\.0\.1"):
            LabelServer(LabelServerConfig(data=str(root), port=busy.getsockname()[1]))
    with pytest.raises(LabelServerError, match="does not exist"):
        LabelServer(LabelServerConfig(data=str(tmp_path / "nope"), port=0))
    for port in (-1, 70000):
        with pytest.raises(LabelServerError, match="port must be 0-65535"):
            LabelServer(LabelServerConfig(data=str(root), port=port))


def test_corrupt_label_file_refuses_to_start_and_is_not_touched(
    label_data: tuple[Path, dict[str, int]],
) -> None:
    root, _ = label_data
    path = root / "labels.json"
    path.write_text('{"format": "robofume-labels", "version": 1, "labels": [')
    with pytest.raises(LabelError, match=r"unreadable label file.*left as is") as info:
        LabelServer(LabelServerConfig(data=str(root), port=0))
    assert "\n" not in str(info.value)
    assert path.read_text() == '{"format": "robofume-labels", "version": 1, "labels": ['


def test_labels_persist_across_restart_and_orphans_are_kept(label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data
    orphan = FrameLabel("old/deleted_000000.npz", 3, "forward", True)
    save_labels(root / "labels.json", [orphan])
    cfg = LabelServerConfig(data=str(root), port=0)
    with LabelServer(cfg) as srv:
        srv.start()
        _, data = Client(srv.port).get("/api/labels")
        assert data["orphans"] == 1
        Client(srv.port).post("/api/labels", {"changes": [_change(FWD, 2, "backward", False)]})
    with LabelServer(cfg) as srv:
        srv.start()
        _, data = Client(srv.port).get("/api/labels")
    assert {json.dumps(lab, sort_keys=True) for lab in data["labels"]} == {
        json.dumps(_change("old/deleted_000000.npz", 3, "forward", True), sort_keys=True),
        json.dumps(_change(FWD, 2, "backward", False), sort_keys=True),
    }
    assert data["counts"]["backward"]["failure"] == 1


def test_labels_written_by_another_writer_are_kept(client: Client, server: LabelServer) -> None:
    path = server.config.labels_path
    client.post("/api/labels", _change(FWD, 1, "forward", False))
    outside = FrameLabel(BWD, 5, "backward", True)
    update_labels(path, lambda labels: [*labels, outside])  # e.g. the session's auto-labeler
    status, data = client.post("/api/labels", _change(FWD, 2, "forward", False))
    assert status == 200 and data["external_change"] is True
    assert outside in load_labels(path) and len(load_labels(path)) == 3
    _, data = client.get("/api/labels")
    assert len(data["labels"]) == 3


def _wait_training(client: Client, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, status = client.get("/api/train/status")
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError("training did not finish")


def test_training_runs_in_background_with_progress(client: Client, fake_metrics: dict[str, Any]) -> None:
    _, status = client.get("/api/train/status")
    assert status["state"] == "idle" and status["available"] is True
    client.post("/api/labels", _change(FWD, 7, "forward", True))
    code, status = client.post("/api/train", {})
    assert code == 202 and status["state"] == "running"
    assert status["events"][0]["labels"]["forward"]["success"] == 1
    code, again = client.post("/api/train", {})
    assert code == 409 and "already running" in again["error"]
    status = _wait_training(client)
    assert status["state"] == "done", status
    assert status["result"] == fake_metrics
    phases = [e.get("phase") for e in status["events"]]
    assert phases[0] == "start" and phases[-1] == "evaluate" and phases.count("train") == 3
    assert isinstance(status["events"][1]["loss"], float)
    code, _ = client.post("/api/train", {})  # can train again
    assert code == 202
    _wait_training(client)


def test_training_failure_and_missing_trainer(label_data: tuple[Path, dict[str, int]]) -> None:
    root, _ = label_data

    def broken(progress: Any) -> dict[str, Any]:
        progress({"phase": "load"})
        raise ValueError("no backbone weights at /nowhere; pass --backbone-path")

    with LabelServer(LabelServerConfig(data=str(root), port=0), trainer=broken) as srv:
        srv.start()
        client = Client(srv.port)
        client.post("/api/train", {})
        status = _wait_training(client)
        assert status["state"] == "failed" and "no backbone weights" in status["error"]
    with LabelServer(LabelServerConfig(data=str(root), port=0)) as srv:
        srv.start()
        client = Client(srv.port)
        code, data = client.post("/api/train", {})
        assert code == 503 and "not available" in data["error"]
        assert client.get("/api/train/status")[1]["available"] is False


def test_static_page_is_served(client: Client) -> None:
    for path, marker in (("/", b"<title>"), ("/app.js", b"api("), ("/style.css", b".thumb")):
        status, body = client.get(path)
        assert status == 200 and marker in body
    assert client.get("/secret.txt")[0] == 404
