"""The simulator's ground truth in the classifier's place: 1/0 from the newest ``sim/ground_truth``
message, NaN ("unknown") when none is fresh, one-line errors for a malformed message; and the reward node
with ``source:=ground_truth`` judging frames from it over ROS 2."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reward_vlm.ground_truth_reward import GroundTruthSuccess
from reward_vlm.reward_core import RewardJudge, RewardNodeConfig


def truth_message(forward: bool, backward: bool = False) -> str:
    """A ``sim/ground_truth`` payload as the mock arm node sends it (only the fields read here)."""
    return json.dumps({"task": "forward", "success": {"forward": forward, "backward": backward}})


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_answers_from_the_newest_message_and_unknown_when_stale() -> None:
    clock = FakeClock()
    truth = GroundTruthSuccess(max_age_s=0.5, clock=clock)
    frame = np.zeros((8, 8, 3), np.uint8)
    assert math.isnan(truth.predict_proba(frame, "forward")[0]), "no message yet: unknown"
    truth.update(truth_message(True, False))
    assert truth.predict_proba(frame, "forward").tolist() == [1.0]
    assert truth.predict_proba(np.stack([frame] * 3), "backward").tolist() == [0.0] * 3
    truth.update(truth_message(False, True))
    assert truth.predict_proba(frame, "forward").tolist() == [0.0]
    clock.t += 0.6
    assert math.isnan(truth.predict_proba(frame, "backward")[0]), "stale ground truth: unknown"
    assert truth.threshold("forward") == 0.5 and truth.messages == 2


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "success flags"),
        ('{"success": {"forward": true}}', "success flags"),
        ('{"success": {"forward": 1, "backward": 0}}', "success flags"),
    ],
)
def test_malformed_messages_are_one_line_errors_and_keep_the_last_truth(message: str, error: str) -> None:
    truth = GroundTruthSuccess()
    truth.update(truth_message(True))
    with pytest.raises(ValueError, match=error) as info:
        truth.update(message)
    assert "\n" not in str(info.value)
    assert truth.predict_proba(np.zeros((4, 4, 3), np.uint8), "forward").tolist() == [1.0]


def test_unknown_task_and_bad_age_are_errors() -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        GroundTruthSuccess(max_age_s=0.0)
    truth = GroundTruthSuccess()
    with pytest.raises(ValueError, match="unknown task"):
        truth.predict_proba(np.zeros((4, 4, 3), np.uint8), "pour")
    with pytest.raises(ValueError, match="unknown task"):
        truth.threshold("pour")


def test_judge_confirms_ground_truth_successes_like_classifier_ones() -> None:
    clock = FakeClock()
    truth = GroundTruthSuccess(clock=clock)
    judge = RewardJudge(truth, RewardNodeConfig(confirm_frames=2), clock=clock)
    judge.set_task("forward")
    frame = np.zeros((8, 8, 3), np.uint8)
    statuses = []
    for success in (False, True, True, True):
        truth.update(truth_message(success))
        clock.t += 0.1
        judge.submit(frame, clock.t)
        verdict = judge.step()
        assert verdict is not None
        statuses.append((verdict.status, verdict.confirmed, verdict.event))
    assert statuses == [
        ("failure", False, False),
        ("success", False, False),
        ("success", True, True),
        ("success", True, False),
    ]


def test_reward_node_judges_from_sim_ground_truth(tmp_path: Path) -> None:
    pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")
    sys.path.insert(0, str(Path(__file__).parent))
    sys.path.insert(0, str(Path(__file__).parents[1] / "robot_ws"))
    from rclpy.parameter import Parameter
    from reward_ros_utils import RewardRig
    from ros_test_utils import ros_context
    from std_msgs.msg import String

    from reward_vlm.reward_node import RewardNode

    frame = np.zeros((32, 32, 3), np.uint8)
    with ros_context() as context:
        node = RewardNode(
            context=context,
            parameter_overrides=[
                Parameter("source", value="ground_truth"),
                Parameter("confirm_frames", value=2),
            ],
        )
        rig = RewardRig(context, in_process=node)
        truth_pub = rig.node.create_publisher(String, "sim/ground_truth", 10)
        try:
            rig.phase_pub.publish(String(data="forward"))
            assert rig.wait_for_task("forward", 30)
            assert rig.wait(lambda: truth_pub.get_subscription_count() > 0, 10)
            start = time.time()
            for success in (False, True, True, True):
                truth_pub.publish(String(data=truth_message(success)))
                rig.wait(lambda n=node.truth.messages: node.truth.messages > n, 5)  # type: ignore[union-attr]
                rig.publish_frames([frame], hz=5)
            truth_pub.publish(String(data="garbage"))
            rig.spin(0.5)
            judged = [v for v in rig.judged(start) if v[2]["frame_stamp"] != "none"]
        finally:
            rig.close()
            node.destroy_node()
    assert [v[1].message for v in judged] == ["failure", "success", "success", "success"], judged
    assert [v[2]["confirmed"] for v in judged] == ["false", "false", "true", "true"]
    assert len(rig.events) == 1 and rig.events[0].frame_id == "forward"
