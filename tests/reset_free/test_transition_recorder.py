"""Frames + actions + controller verdicts -> replay-buffer transitions with the classifier's reward."""

from __future__ import annotations

import numpy as np
import pytest

from policy_server.replay_buffer import BufferSpec, ReplayBuffer
from reset_free.transition_recorder import TransitionRecorder


def frame(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def feed(rec: TransitionRecorder, stamps: list[float], act_on: list[float] | None = None) -> None:
    """Frames at ``stamps``; an action on each frame in ``act_on`` (default all), valued by its stamp."""
    for s in stamps:
        rec.on_observation(s, frame(int(s * 10) % 256), np.full(9, s, np.float32))
        if act_on is None or s in act_on:
            rec.on_action(s, np.full(5, s, np.float32))


@pytest.fixture
def buffer(tmp_path):
    buf = ReplayBuffer(tmp_path / "buf", BufferSpec((8, 8), 9, 5, gamma=0.9), flush_interval_s=0.0)
    yield buf
    buf.close()


def all_transitions(buf: ReplayBuffer):
    idx = buf.valid_indices(None)
    batch = buf.gather(np.sort(idx))
    order = np.argsort(batch.proprio[:, 0])
    return {
        k: getattr(batch, k)[order]
        for k in ("proprio", "actions", "rewards", "next_proprio", "terminals", "tasks", "truncated")
    }


def test_success_episode_is_terminal_with_reward_one_on_the_judged_frame(buffer) -> None:
    rec = TransitionRecorder(buffer)
    rec.on_episode_start("forward")
    feed(rec, [0.1, 0.2, 0.3, 0.4])
    rec.on_observation(0.5, frame(5), np.full(9, 0.5, np.float32))  # the frame judged a success
    rec.on_observation(0.6, frame(6), np.full(9, 0.6, np.float32))
    rec.on_episode_end("forward", "success", frame_stamp=0.5)
    buffer.flush()
    t = all_transitions(buffer)
    assert len(t["rewards"]) == 4 and rec.stats.transitions == 4
    np.testing.assert_allclose(t["actions"][:, 0], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(t["next_proprio"][:, 0], [0.2, 0.3, 0.4, 0.5])
    np.testing.assert_array_equal(t["rewards"], [0, 0, 0, 1])
    np.testing.assert_array_equal(t["terminals"], [0, 0, 0, 1])
    assert not t["truncated"].any() and (t["tasks"] == 0).all()


def test_already_done_episode_is_stored_like_a_success_but_counted_apart(buffer) -> None:
    rec = TransitionRecorder(buffer)
    rec.on_episode_start("backward")
    feed(rec, [0.1, 0.2])
    rec.on_observation(0.3, frame(3), np.full(9, 0.3, np.float32))
    rec.on_episode_end("backward", "already_done", frame_stamp=0.3)
    buffer.flush()
    t = all_transitions(buffer)
    np.testing.assert_array_equal(t["rewards"], [0, 1])
    np.testing.assert_array_equal(t["terminals"], [0, 1])
    assert rec.stats.already_done == 1 and rec.stats.successes == 0 and rec.stats.episodes == 1


def test_timeout_is_truncated_and_next_task_recorded(buffer) -> None:
    rec = TransitionRecorder(buffer)
    rec.on_episode_start("forward")
    feed(rec, [0.1, 0.2, 0.3])
    rec.on_observation(0.35, frame(9), np.full(9, 0.35, np.float32))
    rec.on_episode_end("forward", "timeout")
    rec.on_episode_start("backward")
    feed(rec, [1.1, 1.2, 1.3])
    rec.on_episode_end("backward", "timeout")
    assert rec.stats.episodes == 1  # waits for the frame after the last action
    rec.on_observation(1.4, frame(14), np.full(9, 1.4, np.float32))
    buffer.flush()
    t = all_transitions(buffer)
    assert buffer.num_episodes == 2 and rec.stats.episodes == 2
    assert (t["rewards"] == 0).all() and (t["terminals"] == 0).all()
    np.testing.assert_array_equal(t["tasks"], [0, 0, 0, 1, 1, 1])
    assert t["next_proprio"][2, 0] == pytest.approx(0.35)  # newest frame closes a time-out
    assert t["truncated"].all()


def test_actions_without_their_frame_or_outside_episodes_are_counted_not_recorded(buffer) -> None:
    rec = TransitionRecorder(buffer, history=4)
    assert not rec.on_action(0.1, np.zeros(5))  # no episode yet
    rec.on_episode_start("forward")
    assert not rec.on_action(0.1, np.zeros(5))  # frame never seen
    feed(rec, [0.1, 0.2])
    assert not rec.on_action(0.2, np.zeros(5))  # same frame again: stale
    feed(rec, [0.3, 0.4, 0.5, 0.6, 0.7], act_on=[])
    assert not rec.on_action(0.1, np.zeros(5))  # fell out of the history
    assert not rec.on_action(0.7, np.zeros(5), task="backward")  # other task
    s = rec.stats
    assert (s.actions_out_of_episode, s.actions_without_frame, s.stale_actions) == (2, 2, 1)


def test_pause_gap_continues_the_same_episode(buffer) -> None:
    rec = TransitionRecorder(buffer)
    rec.on_episode_start("forward")
    feed(rec, [0.1, 0.2])
    feed(rec, [0.3, 0.4, 0.5], act_on=[])  # paused: frames, no actions
    feed(rec, [0.6, 0.7])
    rec.close()  # shutdown mid-episode: closed as truncated on the newest frame
    buffer.flush()
    assert buffer.num_episodes == 1 and rec.stats.transitions == 4 and rec.stats.episodes == 1
