"""Replay buffer: episode boundaries, terminal/truncated, MC returns, durability across kill -9, readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from policy_server.replay_buffer import (
    BUFFER_JSON,
    BufferSpec,
    ReplayBuffer,
    Source,
    chunk_name,
    episode_to_rewards,
    run_buffer_bench,
)
from robofume.data.episode_format import Episode, save_episode

SIZE = 8
SPEC = BufferSpec((SIZE, SIZE), proprio_dim=3, action_dim=2, gamma=0.9)
_BASE = (np.arange(SIZE * SIZE * 3).reshape(SIZE, SIZE, 3) * 7) % 251


# ------------------------------------------------------------------ patterns: (uid, step) -> data
def frames_of(uid: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Frames whose every pixel depends on (uid, step), for arrays of ids and steps."""
    uid, step = np.asarray(uid, np.int64).reshape(-1), np.asarray(step, np.int64).reshape(-1)
    f = ((_BASE[None] + (uid * 31 + step * 17)[:, None, None, None]) % 251).astype(np.uint8)
    f[:, 0, 0] = np.stack([uid % 256, uid // 256 % 256, step % 256], axis=1)
    return f


def frame(uid: int, step: int) -> np.ndarray:
    """The frame of step ``step`` of episode ``uid``."""
    return frames_of(uid, step)[0]


def prop(uid: int, step: int) -> np.ndarray:
    """Proprioception encoding (uid, step)."""
    return np.array([uid, step, 0.5], np.float32)


def action(uid: int, step: int) -> np.ndarray:
    """Action a_step of episode uid."""
    return np.array([uid, step], np.float32) / 1000.0


def write_episode(
    buf: ReplayBuffer, uid: int, steps: int, terminated: bool, rewards: list[float] | None = None
):
    """An online episode of ``steps`` steps: terminated or truncated at its end."""
    buf.begin_episode(frame(uid, 0), prop(uid, 0), task=uid % 2)
    for s in range(1, steps + 1):
        end = s == steps
        r = rewards[s - 1] if rewards else float(end and terminated)
        buf.add_step(
            action(uid, s - 1), r, frame(uid, s), prop(uid, s), end and terminated, end and not terminated
        )


def check_batch(batch) -> tuple[np.ndarray, np.ndarray]:
    """Assert every transition pairs o_t with o_{t+1} of the same episode, all pixels intact."""
    uid = batch.proprio[:, 0].astype(np.int64)
    step = batch.proprio[:, 1].astype(np.int64)
    np.testing.assert_array_equal(batch.next_proprio[:, 0], batch.proprio[:, 0])
    np.testing.assert_array_equal(batch.next_proprio[:, 1].astype(np.int64), step + 1)
    np.testing.assert_array_equal(batch.frames, frames_of(uid, step))
    np.testing.assert_array_equal(batch.next_frames, frames_of(uid, step + 1))
    np.testing.assert_array_equal(batch.actions, np.stack([uid, step], axis=1).astype(np.float32) / 1000.0)
    np.testing.assert_array_equal(batch.tasks, uid % 2)
    return uid, step


def all_transitions(buf: ReplayBuffer):
    """Every stored transition, checked, with its (uid, step)."""
    batch = buf.gather(buf.valid_indices())
    uid, step = check_batch(batch)
    return batch, uid, step


def assert_whole_episodes(uid: np.ndarray, step: np.ndarray) -> None:
    """Each stored episode has every step 0..k (nothing lost in the middle)."""
    for u in np.unique(uid):
        np.testing.assert_array_equal(np.sort(step[uid == u]), np.arange(np.count_nonzero(uid == u)))


# ------------------------------------------------------------------ writer process
class _SlowFile:
    """A file whose writes take a while, like a slow disk: a kill lands mid-write more often."""

    def __init__(self, f) -> None:
        self._f = f

    def write(self, data) -> int:
        time.sleep(0.005)
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def _slow_disk() -> None:
    """Make this process's ``.npz`` writes slow and announce each one with a ``writing`` line."""
    real = np.savez

    def slow_savez(file, *args, **kwargs):
        print("writing", flush=True)
        return real(_SlowFile(file), *args, **kwargs)

    np.savez = slow_savez


def _writer_main(argv: list[str]) -> None:
    """Append episodes (forever, or ``limit`` steps), printing the committed count after each commit."""
    root, first_uid, limit, delay = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    if limit < 0:
        _slow_disk()
    buf = ReplayBuffer(root, SPEC, flush_interval_s=0.05)
    print(f"open {buf.committed}", flush=True)
    last, uid, total = buf.committed, first_uid, 0
    rng = np.random.default_rng(first_uid)
    while limit < 0 or total < limit:
        steps = int(rng.integers(2, 15)) if limit < 0 else min(int(rng.integers(2, 15)), limit - total)
        buf.begin_episode(frame(uid, 0), prop(uid, 0), task=uid % 2)
        for s in range(1, steps + 1):
            term = s == steps and uid % 3 == 0
            trunc = s == steps and not term
            buf.add_step(action(uid, s - 1), float(term), frame(uid, s), prop(uid, s), term, trunc)
            total += 1
            if buf.committed != last:
                last = buf.committed
                print(last, flush=True)
            if delay:
                time.sleep(delay)
        uid += 1
    print(buf.flush(), flush=True)
    buf.close()
    print("done", flush=True)


def start_writer(
    root, first_uid: int, limit: int = -1, delay: float = 0.0
) -> tuple[subprocess.Popen, list[str]]:
    """Run :func:`_writer_main` in a fresh interpreter; its stdout lines are collected in the list."""
    code = (
        "import importlib.util, sys; "
        "s = importlib.util.spec_from_file_location('rb_test_writer', sys.argv[1]); "
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); m._writer_main(sys.argv[2:])"
    )
    args = [sys.executable, "-c", code, __file__, str(root), str(first_uid), str(limit), str(delay)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def wait_for(cond, timeout: float = 30.0) -> None:
    """Poll ``cond`` until true, failing after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def reported(lines: list[str]) -> list[int]:
    """Committed counts the writer printed on complete lines."""
    return [int(x) for x in (line.strip() for line in list(lines) if line.endswith("\n")) if x.isdigit()]


# ------------------------------------------------------------------ tests
def test_sampling_never_crosses_episode_boundaries_even_across_the_ring_wrap(tmp_path) -> None:
    rng = np.random.default_rng(0)
    with ReplayBuffer(tmp_path / "b", SPEC, capacity=37) as buf:
        lengths = [3, 7, 1, 5, 9, 2, 6, 4, 8, 3, 5, 7, 2, 6]
        for uid, n in enumerate(lengths):
            write_episode(buf, uid, n, terminated=uid % 2 == 0)
            if uid == 3:  # an open episode is sampled too: only pairs whose o_{t+1} is stored
                buf.begin_episode(frame(99, 0), prop(99, 0), task=1)
                buf.add_step(action(99, 0), 0.0, frame(99, 1), prop(99, 1), False, False)
                for b in (buf.sample(64, rng) for _ in range(20)):
                    uid_b, step_b = check_batch(b)
                    assert not (uid_b == 99).any() or step_b[uid_b == 99].max() == 0
                buf.add_step(action(99, 1), 0.0, frame(99, 2), prop(99, 2), False, True)
        seen = set()
        for _ in range(100):
            uid_b, step_b = check_batch(buf.sample(128, rng))
            seen.update(uid_b.tolist())
        assert buf._tail > 0 and len(buf) <= 37  # the ring wrapped: sampled pairs straddle slot 0
        assert seen == set(np.unique(all_transitions(buf)[1]).tolist())


def test_terminal_truncated_and_mc_returns(tmp_path) -> None:
    root = tmp_path / "b"
    with ReplayBuffer(root, SPEC) as buf:
        write_episode(buf, 1, 3, terminated=True, rewards=[0.0, 0.5, 1.0])
        write_episode(buf, 2, 3, terminated=False, rewards=[1.0, 0.0, 2.0])
        buf.begin_episode(frame(3, 0), prop(3, 0), task=1)  # left open: the writer "dies" here
        buf.add_step(action(3, 0), 0.25, frame(3, 1), prop(3, 1), False, False)
        buf.add_step(action(3, 1), 1.0, frame(3, 2), prop(3, 2), False, False)
        live = {k: v.copy() for k, v in vars(all_transitions(buf)[0]).items()}

    def expect(batch, uid, step) -> None:
        by = {(int(u), int(s)): i for i, (u, s) in enumerate(zip(uid, step, strict=True))}
        rows = lambda u: [by[(u, s)] for s in range(3 if u < 3 else 2)]  # noqa: E731
        np.testing.assert_array_equal(batch.terminals[rows(1)], [0, 0, 1])
        np.testing.assert_array_equal(batch.terminals[rows(2)], [0, 0, 0])
        np.testing.assert_array_equal(batch.truncated[rows(1)], [False] * 3)
        np.testing.assert_array_equal(batch.truncated[rows(2)], [True] * 3)
        # gamma 0.9: terminated 0, .5, 1 -> 1.26, 1.4, 1; truncated 1, 0, 2 -> 2.62, 1.8, 2 (no bootstrap)
        np.testing.assert_allclose(batch.mc_returns[rows(1)], [1.26, 1.4, 1.0], rtol=1e-6)
        np.testing.assert_allclose(batch.mc_returns[rows(2)], [2.62, 1.8, 2.0], rtol=1e-6)
        np.testing.assert_allclose(batch.mc_returns[rows(3)], [0.25 + 0.9, 1.0], rtol=1e-6)
        np.testing.assert_array_equal(batch.terminals[rows(3)], [0, 0])
        np.testing.assert_allclose(batch.rewards[rows(1)], [0.0, 0.5, 1.0])
        assert batch.terminals.dtype == np.float32 and batch.tasks.dtype == np.int64
        assert batch.sources.dtype == np.int8 and (batch.sources == Source.ONLINE).all()

    expect(*all_transitions(buf))
    assert not live["truncated"][live["proprio"][:, 0] == 3].any()  # still open while the writer lived
    reopened = ReplayBuffer(root, SPEC)  # a new writer closes the dead writer's episode as truncated
    batch, uid, step = all_transitions(reopened)
    expect(batch, uid, step)
    assert batch.truncated[uid == 3].all()
    reopened.begin_episode(frame(4, 0), prop(4, 0), task=0)  # new episode ids continue after the old ones
    reopened.add_step(action(4, 0), 0.0, frame(4, 1), prop(4, 1), True, False)
    reopened.close()
    batch, uid, step = all_transitions(ReplayBuffer(root, readonly=True))
    assert sorted(set(uid.tolist())) == [1, 2, 3, 4] and batch.terminals[uid == 4].tolist() == [1.0]
    assert sorted(os.listdir(root)) == [BUFFER_JSON, "buffer.lock", chunk_name(1), chunk_name(2)]


def test_writer_killed_repeatedly_keeps_every_committed_transition(tmp_path) -> None:
    root = tmp_path / "b"
    ReplayBuffer(root, SPEC).close()
    rng = np.random.default_rng(1)
    committed, killed_mid_write = 0, 0
    for round_ in range(6):
        before = set(os.listdir(root))
        proc, lines = start_writer(root, first_uid=1000 * (round_ + 1))
        try:
            wait_for(lambda lines=lines: len(reported(lines)) >= 2)  # opened and committed at least once
            if round_ % 2:  # right after a chunk write started (each takes > 0.1 s on the slow disk)
                n = len(lines)
                wait_for(lambda lines=lines, n=n: "writing\n" in lines[n:])
                time.sleep(float(rng.uniform(0.0, 0.01)))
            else:
                time.sleep(float(rng.uniform(0.0, 0.4)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        err = proc.stderr.read()
        assert "Traceback" not in err and "damaged" not in err, err
        opened = int(next(line for line in lines if line.startswith("open")).split()[1])
        assert opened >= committed, "the reopened writer lost transitions committed before the last kill"
        committed = max(reported(lines))
        after = set(os.listdir(root))
        killed_mid_write += any(n.startswith(".chunk_") for n in after)  # the temp file of the cut write
        for name in (n for n in before if not n.startswith(".")):  # committed files are never deleted
            assert name in after or name + ".corrupt" in after
        reader = ReplayBuffer.open(root, readonly=True)
        assert len(reader) >= committed and reader.committed == len(reader)
        _, uid, step = all_transitions(reader)
        assert_whole_episodes(uid, step)
        assert not [n for n in after if "corrupt" in n]  # atomic commits: a kill never damages a chunk
    assert committed > 0 and killed_mid_write >= 2
    ReplayBuffer(root, SPEC).close()  # the next writer removes the dead writers' temp files
    assert not [n for n in os.listdir(root) if n.startswith(".")]


def _three_chunks(root) -> list[int]:
    """A closed buffer with 3 chunks of 2 episodes each; returns transitions per chunk."""
    sizes = []
    with ReplayBuffer(root, SPEC) as buf:
        for c in range(3):
            before = buf.committed
            write_episode(buf, 2 * c, 3, terminated=True)
            write_episode(buf, 2 * c + 1, 4, terminated=False)
            buf.flush()
            sizes.append(buf.committed - before)
    return sizes


def test_flipped_bytes_move_the_chunk_and_later_ones_aside(tmp_path, capfd) -> None:
    root = tmp_path / "b"
    sizes = _three_chunks(root)
    path = root / chunk_name(2)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(255 - b for b in data[mid : mid + 8])
    path.write_bytes(bytes(data))
    reader = ReplayBuffer(root, readonly=True)  # a reader warns and loads the good prefix, renames nothing
    assert len(reader) == sizes[0]
    assert "damaged" in capfd.readouterr().err and path.exists()
    buf = ReplayBuffer(root, SPEC)
    err = capfd.readouterr().err
    assert f"{chunk_name(2)} is damaged" in err and f"{chunk_name(3)} follows a damaged chunk" in err
    assert len(err.strip().splitlines()) == 2
    assert len(buf) == sizes[0]
    names = set(os.listdir(root))
    assert {chunk_name(1), chunk_name(2) + ".corrupt", chunk_name(3) + ".corrupt"} <= names
    assert chunk_name(2) not in names and chunk_name(3) not in names
    write_episode(buf, 50, 2, terminated=True)
    buf.close()
    assert (root / chunk_name(2)).exists()  # the writer continues with the next free number
    assert reader.refresh() == 2  # the reader picks up the new chunk 2
    _, uid, step = all_transitions(ReplayBuffer(root, readonly=True))
    assert sorted(set(uid.tolist())) == [0, 1, 50]
    assert_whole_episodes(uid, step)


def test_truncated_last_chunk_is_moved_aside(tmp_path, capfd) -> None:
    root = tmp_path / "b"
    sizes = _three_chunks(root)
    path = root / chunk_name(3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    buf = ReplayBuffer.open(root)
    assert len(buf) == sizes[0] + sizes[1]
    assert (root / (chunk_name(3) + ".corrupt")).exists() and "damaged" in capfd.readouterr().err
    buf.close()


def test_checksum_catches_a_well_formed_but_altered_chunk(tmp_path, capfd) -> None:
    root = tmp_path / "b"
    sizes = _three_chunks(root)
    path = root / chunk_name(2)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["frames"][3, 2, 2, 0] ^= 1  # one bit, in a valid zip with a valid header
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert zipfile.ZipFile(path).testzip() is None
    buf = ReplayBuffer(root, SPEC)
    assert len(buf) == sizes[0] and "SHA-256 mismatch" in capfd.readouterr().err
    buf.close()


def test_reader_refresh_sees_another_process_append(tmp_path) -> None:
    root = tmp_path / "b"
    ReplayBuffer(root, SPEC).close()
    reader = ReplayBuffer(root, readonly=True)
    assert len(reader) == 0 and reader.refresh() == 0
    proc, lines = start_writer(root, first_uid=7, limit=300, delay=0.002)
    try:
        sizes = []
        while proc.poll() is None:
            added = reader.refresh()
            if added:
                sizes.append(len(reader))
            time.sleep(0.02)
        assert proc.wait() == 0, proc.stderr.read()
    finally:
        proc.kill()
    wait_for(lambda: any(line.startswith("done") for line in lines))
    reader.refresh()
    assert len(sizes) >= 3 and sizes == sorted(sizes)  # grew several times while the writer ran
    assert len(reader) == 300 == reported(lines)[-1]
    _, uid, step = all_transitions(reader)
    assert_whole_episodes(uid, step)


def _offline_episode(uid: int, steps: int, success_at: int | None, kind: str) -> Episode:
    success = np.zeros(steps + 1, bool)
    if success_at is not None:
        success[success_at:] = True
    return Episode(
        frames=np.stack([frame(uid, s) for s in range(steps + 1)]),
        proprio=np.stack([prop(uid, s) for s in range(steps + 1)]),
        actions=np.stack([action(uid, s) for s in range(steps)]),
        success=success,
        task="forward" if uid % 2 == 0 else "backward",
        metadata={"kind": kind, "terminated": success_at is not None, "truncated": success_at is None},
    )


def test_offline_episode_files_rewards_terminals_and_source_filter(tmp_path) -> None:
    assert episode_to_rewards(np.array([False, False, True, True])).tolist() == [0.0, 1.0, 0.0]
    save_episode(tmp_path / "demo.npz", _offline_episode(10, 4, success_at=4, kind="demos"))
    save_episode(tmp_path / "fail.npz", _offline_episode(11, 5, success_at=None, kind="failures"))
    save_episode(tmp_path / "prior.npz", _offline_episode(12, 3, success_at=3, kind="prior"))
    rng = np.random.default_rng(0)
    with ReplayBuffer(tmp_path / "b", SPEC) as buf:
        assert buf.add_episode_file(tmp_path / "demo.npz") == 4
        assert buf.add_episode_file(tmp_path / "fail.npz") == 5
        assert buf.add_episode_file(tmp_path / "prior.npz", source="offline") == 3
        write_episode(buf, 13, 2, terminated=False)
        batch, uid, step = all_transitions(buf)
        np.testing.assert_array_equal(batch.rewards[uid == 10], [0, 0, 0, 1])
        np.testing.assert_array_equal(batch.terminals[uid == 10][np.argsort(step[uid == 10])], [0, 0, 0, 1])
        assert batch.rewards[uid == 11].sum() == 0 and batch.terminals[uid == 11].sum() == 0
        assert batch.truncated[uid == 11].all() and not batch.truncated[uid == 10].any()
        np.testing.assert_allclose(np.sort(batch.mc_returns[uid == 10]), [0.729, 0.81, 0.9, 1.0], rtol=1e-6)
        expected = {10: Source.DEMOS, 11: Source.FAILURES, 12: Source.OFFLINE, 13: Source.ONLINE}
        for u, src in expected.items():
            assert (batch.sources[uid == u] == src).all()
        for source, uids in [
            ("offline", {10, 11, 12}),
            ("online", {13}),
            ("demos", {10}),
            ("failures", {11}),
        ]:
            got = set()
            for _ in range(20):
                got.update(check_batch(buf.sample(32, rng, source=source))[0].tolist())
            assert got == uids, source
        with pytest.raises(ValueError, match="no prior transitions"):
            buf.sample(4, rng, source="prior")
        with pytest.raises(ValueError, match="unknown replay source"):
            buf.sample(4, rng, source="demo")
    reader = ReplayBuffer(tmp_path / "b", readonly=True)  # sources survive the disk round trip
    assert (reader.sample(64, rng, source="online").sources == Source.ONLINE).all()


def test_capacity_evicts_whole_oldest_episodes_and_grows_lazily(tmp_path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "b"
    with ReplayBuffer(root, SPEC, capacity=50) as buf:
        for uid in range(10):
            write_episode(buf, uid, 10, terminated=True)
        assert buf.num_episodes == 4 and len(buf) == 40 and buf.allocated_slots == 50
        for _ in range(50):
            assert set(check_batch(buf.sample(64, rng))[0].tolist()) <= {6, 7, 8, 9}
        _, uid, step = all_transitions(buf)
        assert sorted(set(uid.tolist())) == [6, 7, 8, 9]
        assert_whole_episodes(uid, step)
    small = ReplayBuffer(root, readonly=True, capacity=50)  # disk keeps all; memory keeps the newest
    assert small.committed == 100 and len(small) == 40
    assert ReplayBuffer(root, readonly=True).num_episodes == 10
    big = ReplayBuffer(tmp_path / "c", SPEC)  # the default capacity (1M) allocates on demand only
    write_episode(big, 0, 10, terminated=True)
    assert big.allocated_slots <= 256 and big.bytes_per_transition() == pytest.approx(big.slot_bytes() * 1.1)
    assert big.slot_bytes() < SIZE * SIZE * 3 + 64
    big.close()
    with ReplayBuffer(tmp_path / "d", SPEC, capacity=5) as tiny, pytest.raises(ValueError, match="capacity"):
        write_episode(tiny, 0, 5, terminated=True)


def test_errors_are_one_line_and_name_the_folder(tmp_path) -> None:
    rng = np.random.default_rng(0)
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    for call in (lambda: ReplayBuffer(missing, readonly=True), lambda: ReplayBuffer.open(missing)):
        with pytest.raises(FileNotFoundError, match="missing"):
            call()
    with pytest.raises(ValueError, match=r"empty is not a replay buffer") as exc:
        ReplayBuffer(empty, readonly=True)
    assert "\n" not in str(exc.value) and os.listdir(empty) == []
    root = tmp_path / "b"
    buf = ReplayBuffer(root, SPEC)
    with pytest.raises(ValueError, match="cannot sample"):
        buf.sample(8, rng)
    with pytest.raises(RuntimeError, match="begin_episode first"):
        buf.add_step(action(0, 0), 0.0, frame(0, 1), prop(0, 1), False, False)
    with pytest.raises(ValueError, match="frame must be uint8"):
        buf.begin_episode(frame(0, 0).astype(np.float32), prop(0, 0), task=0)
    with pytest.raises(ValueError, match="frame must be uint8"):
        buf.begin_episode(np.zeros((SIZE + 1, SIZE, 3), np.uint8), prop(0, 0), task=0)
    with pytest.raises(ValueError, match="proprio must be float"):
        buf.begin_episode(frame(0, 0), np.zeros(4, np.float32), task=0)
    buf.begin_episode(frame(0, 0), prop(0, 0), task=0)
    with pytest.raises(ValueError, match="action must be float"):
        buf.add_step(np.zeros(3, np.float32), 0.0, frame(0, 1), prop(0, 1), False, False)
    with pytest.raises(ValueError, match="NaN"):
        buf.add_step(action(0, 0), float("nan"), frame(0, 1), prop(0, 1), False, False)
    with pytest.raises(RuntimeError, match="still open"):
        buf.begin_episode(frame(0, 0), prop(0, 0), task=0)
    with pytest.raises(RuntimeError, match="already has a writer"):
        ReplayBuffer(root, SPEC)
    buf.close()
    other = BufferSpec((SIZE, SIZE * 2), proprio_dim=3, action_dim=2, gamma=0.9)
    with pytest.raises(ValueError, match=r"frame_shape \[8, 8, 3\] \(asked for \[8, 16, 3\]\)") as exc:
        ReplayBuffer(root, other)
    assert "\n" not in str(exc.value)
    with pytest.raises(RuntimeError, match="read-only"):
        ReplayBuffer(root, readonly=True).begin_episode(frame(0, 0), prop(0, 0), task=0)
    meta = json.loads((root / BUFFER_JSON).read_text())
    (root / BUFFER_JSON).write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        ReplayBuffer(root, readonly=True)


def test_bench_runs_and_reports(tmp_path) -> None:
    result = run_buffer_bench(str(tmp_path / "bench"), image_size=32, transitions=600, batch_size=64)
    assert result["transitions"] == 600 and result["chunks"] >= 1
    assert result["bytes_per_transition_memory"] < 1.1 * 32 * 32 * 3
    assert result["insert_per_s"] > 0 and 0 < result["sample_ms_median"] <= result["sample_ms_p99"]
    with pytest.raises(ValueError, match="already holds a replay buffer"):
        run_buffer_bench(str(tmp_path / "bench"))


def test_write_stamps_change_on_overwrite_and_frames_can_be_left_out(tmp_path) -> None:
    """The feature cache's contract: (slot, stamp) names one observation; lean batches skip frames."""
    rng = np.random.default_rng(2)
    with ReplayBuffer(tmp_path / "b", BufferSpec((8, 8), 2, 1, 0.9), capacity=10) as buf:

        def add(n: int) -> None:
            frames = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
            buf.add_episode(
                frames, np.zeros((n, 2)), np.zeros((n - 1, 1)), np.zeros(n - 1), 0, True, "online"
            )

        add(6)
        slots = np.arange(6)
        before = buf.slot_stamps(slots)
        assert len(set(before.tolist())) == 6 and (before > 0).all()
        add(6)  # evicts the first episode: slots 0..1 are reused
        after = buf.slot_stamps(slots)
        assert (after[:2] != before[:2]).all() and (after[:2] > before.max()).all()
        idx = buf.valid_indices()
        lean, full = buf.gather(idx, frames=False), buf.gather(idx)
        assert lean.frames is None and lean.next_frames is None
        np.testing.assert_array_equal(lean.next_proprio, full.next_proprio)
        obs = buf.observation_slots(idx)
        np.testing.assert_array_equal(buf.frames_at(obs), np.concatenate([full.frames, full.next_frames]))
