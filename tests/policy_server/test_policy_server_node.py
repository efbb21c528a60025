"""The policy server node: frames of two namespaced robots batched through one stand-in policy, actions
stamped with their frame's stamp, idle phases, wrong-size frames, weight hot swap seen in diagnostics."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

rclpy = pytest.importorskip("rclpy", reason="ROS 2 not installed (./run.sh setup installs it)")
sys.path.insert(0, str(Path(__file__).parents[1] / "robot_ws"))
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from ros_test_utils import ros_context, spin_until  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from policy_server.policy_server_node import PolicyServerNode, PoseSample, proprio_from  # noqa: E402
from policy_server.weights import WeightStore  # noqa: E402
from robofume_robot.arm_messages import ACTION_FIELDS  # noqa: E402
from robofume_robot.ros_image import sec_to_stamp, to_image_msg  # noqa: E402

SIZE = 32


class TinyPolicy(nn.Module):
    """Stand-in with the real network's ``act`` contract; records the batch size of every call."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.img = nn.Linear(3, 8)
        self.prop = nn.Linear(9, 8)
        self.task = nn.Embedding(2, 8)
        self.head = nn.Linear(8, 5)
        self.calls: list[int] = []

    def act(self, images: torch.Tensor, proprio: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        self.calls.append(images.shape[0])
        color = images.float().mean(dim=(1, 2)) / 255.0
        return torch.tanh(self.head(torch.relu(self.img(color) + self.prop(proprio) + self.task(task))))


def _reference(
    weights: dict[str, torch.Tensor], image: np.ndarray, proprio: list[float], task: int
) -> np.ndarray:
    ref = TinyPolicy()
    ref.load_state_dict(weights)
    with torch.no_grad():
        out = ref.act(
            torch.from_numpy(image[None]), torch.tensor([proprio], dtype=torch.float32), torch.tensor([task])
        )
    return out[0].numpy()


def _pose(t: float, x: float, y: float, z: float, yaw: float) -> PoseStamped:
    """A downward-pointing gripper at yaw ``yaw`` (the mock arm's convention)."""
    msg = PoseStamped()
    msg.header.stamp = sec_to_stamp(t)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
    msg.pose.orientation.w, msg.pose.orientation.x = 0.0, math.cos(yaw / 2)
    msg.pose.orientation.y, msg.pose.orientation.z = math.sin(yaw / 2), 0.0
    return msg


def _joints(gripper: float) -> JointState:
    msg = JointState()
    msg.name = [*(f"joint{i}" for i in range(1, 8)), "gripper"]
    msg.position = [0.0] * 7 + [gripper]
    return msg


def test_proprio_from_velocity() -> None:
    prev = PoseSample(1.0, (0.5, 0.0, 0.2), 0.3)
    now = PoseSample(1.5, (0.6, -0.1, 0.2), 0.3)
    np.testing.assert_allclose(
        proprio_from(now, 0.25, prev),
        [0.6, -0.1, 0.2, math.sin(0.3), math.cos(0.3), 0.25, 0.2, -0.2, 0.0],
        rtol=1e-6,
        atol=1e-6,
    )
    assert proprio_from(now, 0.0, None)[6:].tolist() == [0.0, 0.0, 0.0]
    assert proprio_from(prev, 0.0, now)[6:].tolist() == [0.0, 0.0, 0.0]


def test_node_batches_robots_copies_stamps_and_hot_swaps(tmp_path) -> None:
    store = WeightStore(tmp_path / "weights")
    w1, w2 = TinyPolicy(seed=1).state_dict(), TinyPolicy(seed=2).state_dict()
    store.publish(w1, {}, step=1)
    models: list[TinyPolicy] = []

    def factory() -> TinyPolicy:
        models.append(TinyPolicy())
        return models[-1]

    with ros_context() as context:
        server = PolicyServerNode(
            model_factory=factory,
            context=context,
            parameter_overrides=[
                Parameter("weights_dir", value=str(store.root)),
                Parameter("robots", value=["r1", "r2"]),
                Parameter("image_size", value=SIZE),
                Parameter("max_batch_wait_ms", value=300.0),
                Parameter("watch_interval_s", value=0.05),
                Parameter("diagnostics_hz", value=20.0),
                Parameter("device", value="cpu"),
            ],
        )
        fake = rclpy.create_node("fake_robots", context=context)
        pubs = {
            r: {
                "image": fake.create_publisher(Image, f"{r}/camera/color/image_raw", qos_profile_sensor_data),
                "pose": fake.create_publisher(PoseStamped, f"{r}/arm/ee_pose", 10),
                "joints": fake.create_publisher(JointState, f"{r}/arm/joint_states", 10),
                "phase": fake.create_publisher(String, f"{r}/reset_free/phase", 10),
            }
            for r in ("r1", "r2")
        }
        actions: dict[str, list[JointState]] = {"r1": [], "r2": []}
        diags: list[DiagnosticArray] = []
        for r in ("r1", "r2"):
            fake.create_subscription(JointState, f"{r}/policy/action", actions[r].append, 10)
        fake.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        executor = SingleThreadedExecutor(context=context)
        for node in (server, fake):
            executor.add_node(node)

        def diag() -> dict[str, str]:
            return {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}

        try:
            assert spin_until(
                executor,
                lambda: (
                    all(p.get_subscription_count() > 0 for ps in pubs.values() for p in ps.values())
                    and bool(diags)
                ),
                10,
            )
            assert diag()["weight_version"] == "1" and diags[-1].status[0].name == "policy_server"
            pubs["r1"]["phase"].publish(String(data="forward"))
            pubs["r2"]["phase"].publish(String(data="backward"))
            pubs["r1"]["pose"].publish(_pose(100.0, 0.50, 0.0, 0.2, 0.3))
            pubs["r1"]["pose"].publish(_pose(100.1, 0.51, 0.0, 0.2, 0.3))
            pubs["r2"]["pose"].publish(_pose(100.0, 0.40, 0.1, 0.3, -0.5))
            for r, g in (("r1", 0.25), ("r2", 1.0)):
                pubs[r]["joints"].publish(_joints(g))
            states = server._state
            assert spin_until(
                executor,
                lambda: (
                    all(s.gripper is not None and s.task is not None for s in states.values())
                    and states["r1"].previous_pose is not None
                ),
                5,
            )
            rng = np.random.default_rng(0)
            frames = {r: rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for r in ("r1", "r2")}
            stamps = {"r1": sec_to_stamp(100.123456789), "r2": sec_to_stamp(100.2)}
            for r in ("r1", "r2"):
                pubs[r]["image"].publish(to_image_msg(frames[r], stamps[r]))
            assert spin_until(executor, lambda: bool(actions["r1"]) and bool(actions["r2"]), 5)
            assert models[-1].calls == [2], "both robots' frames went through one forward pass"
            for r in ("r1", "r2"):
                msg = actions[r][0]
                assert list(msg.name) == list(ACTION_FIELDS)
                assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (
                    stamps[r].sec,
                    stamps[r].nanosec,
                )
            yaw1 = 0.3
            proprio1 = [0.51, 0.0, 0.2, math.sin(yaw1), math.cos(yaw1), 0.25, 0.1, 0.0, 0.0]
            proprio2 = [0.40, 0.1, 0.3, math.sin(-0.5), math.cos(-0.5), 1.0, 0.0, 0.0, 0.0]
            np.testing.assert_allclose(
                actions["r1"][0].position, _reference(w1, frames["r1"], proprio1, 0), rtol=1e-4, atol=1e-5
            )
            np.testing.assert_allclose(
                actions["r2"][0].position, _reference(w1, frames["r2"], proprio2, 1), rtol=1e-4, atol=1e-5
            )

            # Not acting outside forward/backward; frames of another size are rejected and counted.
            pubs["r1"]["phase"].publish(String(data="done"))
            assert spin_until(executor, lambda: states["r1"].task is None, 5)
            pubs["r1"]["image"].publish(to_image_msg(frames["r1"], stamps["r1"]))
            assert spin_until(executor, lambda: diag().get("frames_idle") == "1", 5)
            pubs["r2"]["image"].publish(to_image_msg(frames["r2"][:16, :16].copy(), stamps["r2"]))
            assert spin_until(executor, lambda: diag().get("rejected") == "1", 5)

            # New weights are swapped in by the watcher; a lone robot's frame is flushed by the timer.
            store.publish(w2, {}, step=2)
            assert spin_until(executor, lambda: diag().get("weight_version") == "2", 10)
            pubs["r2"]["image"].publish(to_image_msg(frames["r2"], sec_to_stamp(101.0)))
            assert spin_until(executor, lambda: len(actions["r2"]) == 2, 5)
            assert actions["r2"][1].header.stamp.sec == 101
            np.testing.assert_allclose(
                actions["r2"][1].position, _reference(w2, frames["r2"], proprio2, 1), rtol=1e-4, atol=1e-5
            )
            assert models[-1].calls == [1] and len(actions["r1"]) == 1
            assert spin_until(executor, lambda: diag().get("requests_served") == "3", 5)
            assert float(diag()["p99_ms"]) >= float(diag()["p50_ms"]) > 0
        finally:
            executor.shutdown()
            for node in (server, fake):
                node.destroy_node()


def test_node_requires_weights_dir() -> None:
    with ros_context() as context, pytest.raises(ValueError, match="parameter 'weights_dir' is required"):
        PolicyServerNode(model_factory=TinyPolicy, context=context)


def test_node_builds_each_version_from_its_own_config(tmp_path) -> None:
    """Without an injected factory, every version's network comes from the config saved with it."""
    from policy_server.networks import build_policy_from_config

    def publish(store: WeightStore, hidden: int, step: int) -> None:
        config = {
            "network": {"image_size": SIZE, "hidden_dim": hidden, "feature_dim": 8, "encoder_channels": 4}
        }
        store.publish(build_policy_from_config(config).state_dict(), config, step=step)

    store = WeightStore(tmp_path / "weights")
    publish(store, hidden=16, step=1)
    with ros_context() as context:
        server = PolicyServerNode(
            context=context,
            parameter_overrides=[
                Parameter("weights_dir", value=str(store.root)),
                Parameter("image_size", value=SIZE),
                Parameter("device", value="cpu"),
                Parameter("watch_interval_s", value=60.0),
            ],
        )
        try:
            assert server.core.weight_version == 1 and server.core.model_factory is None
            publish(store, hidden=24, step=2)  # another architecture
            assert server.core.maybe_reload() and server.core.weight_version == 2
            assert server.core.stats()["config_changes"] == 1 and not server.core.bad_versions
        finally:
            server.destroy_node()
