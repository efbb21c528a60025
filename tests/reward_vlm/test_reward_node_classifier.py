"""The reward node with a real (tiny, locally built) success classifier checkpoint, loaded by the node
itself from ``classifier_path``: probabilities over ROS match the classifier's own output, the
checkpoint's thresholds and ``confirm_frames`` apply. The node runs in the test process (one torch and
open_clip import instead of two); the cross-process path is covered with the stand-in classifier."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")
pytest.importorskip("reward_vlm.classifier")
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "robot_ws"))
from rclpy.parameter import Parameter  # noqa: E402
from reward_ros_utils import RewardRig  # noqa: E402
from ros_test_utils import ros_context  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from reward_vlm.backbones import BackboneConfig, build_tiny_backbone, load_backbone_folder  # noqa: E402
from reward_vlm.classifier import SuccessClassifier  # noqa: E402
from reward_vlm.reward_node import RewardNode  # noqa: E402
from robofume_robot.ros_image import stamp_to_sec  # noqa: E402


def tiny_checkpoint(root: Path) -> Path:
    """A zero-shot classifier on a tiny random backbone, saved: forward threshold 0 (every frame a
    success), backward threshold 1 (none), confirmation over 2 frames."""
    backbone = build_tiny_backbone("open_clip", root / "backbone", seed=3)
    clf = SuccessClassifier.zero_shot(BackboneConfig(path=backbone), backbone=load_backbone_folder(backbone))
    clf.set_threshold("forward", 0.0)
    clf.set_threshold("backward", 1.0)
    clf.confirm_frames = 2
    return Path(clf.save(root / "classifier"))


def test_node_serves_a_saved_classifier(tmp_path: Path) -> None:
    folder = tiny_checkpoint(tmp_path)
    expected_clf = SuccessClassifier.load(folder)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(4)]
    expected = expected_clf.predict_proba(np.stack(frames), "forward")
    with ros_context() as context:
        node = RewardNode(
            context=context,
            parameter_overrides=[
                Parameter("classifier_path", value=str(folder)),
                Parameter("confirm_frames", value=0),
            ],
        )
        rig = RewardRig(context, in_process=node)
        try:
            assert node.judge.confirm_frames == 2, "confirm_frames 0 takes the checkpoint's k"
            rig.phase_pub.publish(String(data="forward"))
            assert rig.wait_for_task("forward", 30)
            assert rig.wait(lambda: rig.image_pub.get_subscription_count() > 0, 10)
            start = time.time()
            stamps = rig.publish_frames(frames, hz=5)
            rig.spin(0.5)
            judged = [v for v in rig.judged(start) if v[2]["frame_stamp"] != "none"]
            rig.phase_pub.publish(String(data="backward"))
            assert rig.wait_for_task("backward", 5)
            switched = time.time()
            rig.publish_frames(frames[:2], hz=5)
            rig.spin(0.5)
            back = [v for v in rig.judged(switched) if v[2]["frame_stamp"] != "none"]
        finally:
            rig.close()
            node.destroy_node()
    assert [v[3] for v in judged] == stamps, "every frame judged once, in order"
    assert [v[1].message for v in judged] == ["success"] * 4
    np.testing.assert_allclose([float(v[2]["probability"]) for v in judged], expected, atol=2e-3)
    assert [v[2]["confirmed"] for v in judged] == ["false", "true", "true", "true"]
    assert len(rig.events) == 1 and stamp_to_sec(rig.events[0].stamp) == stamps[1]
    assert [(v[1].message, v[2]["threshold"]) for v in back] == [("failure", "1.000")] * 2
    assert all(0 < float(v[2]["latency_ms"]) < 1000 for v in judged + back)
