"""Policy server core: batching across robots, per-request validation, hot weight swaps under load,
bad versions skipped, no-weights behaviour, latency stats and the bench helper."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from policy_server.policy_core import PolicyRequest, PolicyServerCore, run_policy_bench
from policy_server.weights import WeightStore

IMAGE = 16


class TinyPolicy(nn.Module):
    """Stand-in with the real network's ``act`` contract; records the batch size of every call."""

    def __init__(self, hidden: int = 8, seed: int | None = None) -> None:
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.img = nn.Linear(3, hidden)
        self.prop = nn.Linear(9, hidden)
        self.task = nn.Embedding(2, hidden)
        self.head = nn.Linear(hidden, 5)
        self.calls: list[int] = []

    def act(self, images: torch.Tensor, proprio: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and proprio.dtype == torch.float32 and task.dtype == torch.int64
        self.calls.append(images.shape[0])
        color = images.float().mean(dim=(1, 2)) / 255.0
        return torch.tanh(self.head(torch.relu(self.img(color) + self.prop(proprio) + self.task(task))))


class Factory:
    """Model factory that keeps the models it built; optionally slow, to make loads take a while."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.models: list[TinyPolicy] = []
        self.delay_s = delay_s
        self.building = threading.Event()

    def __call__(self) -> TinyPolicy:
        self.building.set()
        time.sleep(self.delay_s)
        self.models.append(TinyPolicy())
        return self.models[-1]


def request(robot: str, seed: int = 0, task: int = 0, stamp: float = 1.5) -> PolicyRequest:
    rng = np.random.default_rng(seed)
    return PolicyRequest(
        robot=robot,
        image=rng.integers(0, 256, (IMAGE, IMAGE, 3), dtype=np.uint8),
        proprio=rng.standard_normal(9).astype(np.float32),
        task=task,
        frame_stamp=stamp,
    )


def expected(weights: dict[str, torch.Tensor], req: PolicyRequest) -> np.ndarray:
    ref = TinyPolicy()
    ref.load_state_dict(weights)
    with torch.no_grad():
        out = ref.act(
            torch.from_numpy(req.image[None]), torch.from_numpy(req.proprio[None]), torch.tensor([req.task])
        )
    return out[0].numpy()


def test_two_robots_one_forward_and_invalid_request_isolated(tmp_path) -> None:
    store = WeightStore(tmp_path)
    weights = TinyPolicy(seed=1).state_dict()
    assert store.publish(weights, {}, step=10) == 1
    factory = Factory()
    core = PolicyServerCore(factory, store, device="auto", proprio_dim=9)
    assert core.weight_version == 1 and str(core.device) == ("cuda" if torch.cuda.is_available() else "cpu")
    r1, r2 = request("r1", seed=1, task=0, stamp=10.25), request("r2", seed=2, task=1, stamp=11.5)
    responses = core.infer([r1, r2])
    assert factory.models[-1].calls == [2]
    assert [r.robot for r in responses] == ["r1", "r2"]
    for resp, req in zip(responses, (r1, r2), strict=True):
        assert resp.error is None and resp.weight_version == 1 and resp.frame_stamp == req.frame_stamp
        assert resp.action is not None and resp.action.dtype == np.float32 and resp.action.shape == (5,)
        np.testing.assert_allclose(resp.action, expected(weights, req), rtol=1e-5, atol=1e-5)
        assert resp.latency_ms > 0

    nan = request("r2", seed=3)
    nan.proprio[4] = np.nan
    bad_image = PolicyRequest("r3", np.zeros((IMAGE, IMAGE, 3), np.float32), r1.proprio, 0, 1.0)
    responses = core.infer([nan, request("r1", seed=4), bad_image])
    assert factory.models[-1].calls == [2, 1]
    assert responses[1].action is not None and responses[1].error is None
    assert responses[0].action is None and responses[0].error == "robot 'r2': proprio contains NaN or inf"
    assert responses[2].action is None and responses[2].error.startswith("robot 'r3': image must be")
    rgba = PolicyRequest("r4", np.zeros((IMAGE, IMAGE, 4), np.uint8), r1.proprio, 0, 1.0)
    short = PolicyRequest("r5", r1.image, r1.proprio[:5], 0, 1.0)
    responses = core.infer([rgba, short])  # no valid request: no forward pass at all
    assert factory.models[-1].calls == [2, 1] and all(r.action is None for r in responses)
    assert "expected 9" in responses[1].error
    # Without a pinned image shape the batch's first valid frame sets it; other sizes are refused.
    small = PolicyRequest("r6", np.zeros((8, 8, 3), np.uint8), r1.proprio, 0, 1.0)
    responses = core.infer([r1, small])
    assert factory.models[-1].calls == [2, 1, 1] and responses[0].action is not None
    assert responses[1].error == "robot 'r6': image shape (8, 8, 3), expected (16, 16, 3)"
    stats = core.stats()
    assert stats["requests_served"] == 4 and stats["requests_rejected"] == 5 and stats["batches"] == 4
    assert stats["p50_ms"] is not None and stats["p99_ms"] >= stats["p50_ms"]


def test_no_weights_yet(tmp_path) -> None:
    store = WeightStore(tmp_path / "w")
    core = PolicyServerCore(Factory(), store, device="cpu")
    with pytest.raises(RuntimeError, match=f"^no policy weights published yet in {tmp_path / 'w'}$"):
        core.infer([request("r1")])
    untrained = PolicyServerCore(Factory(), store, device="cpu", allow_untrained=True)
    resp = untrained.infer([request("r1")])[0]
    assert resp.action is not None and resp.weight_version is None
    store.publish(TinyPolicy(seed=1).state_dict(), {}, 0)
    assert core.infer([request("r1")])[0].weight_version == 1, "first weights are loaded on demand"
    assert untrained.maybe_reload() and untrained.infer([request("r1")])[0].weight_version == 1


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))],
)
def test_hot_swap_under_load_and_bad_versions_skipped(tmp_path, device: str) -> None:
    store = WeightStore(tmp_path)
    w1, w2 = TinyPolicy(seed=1).state_dict(), TinyPolicy(seed=2).state_dict()
    store.publish(w1, {}, step=1)
    factory = Factory()
    core = PolicyServerCore(factory, store, device=device)
    req = request("r1", seed=7)
    assert core.infer([req])[0].weight_version == 1

    log: list[tuple[float, int | None, float, np.ndarray]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                resp = core.infer([req])[0]
                log.append((t0, resp.weight_version, time.perf_counter() - t0, resp.action))
        except BaseException as exc:
            errors.append(exc)

    server = threading.Thread(target=serve)
    server.start()
    try:
        time.sleep(0.1)
        factory.delay_s, factory.building = 0.4, threading.Event()  # loading v2 takes >= 0.4 s
        store.publish(w2, {}, step=2)
        core.start_watcher(interval_s=0.02)
        assert factory.building.wait(5)
        load_started = time.perf_counter()
        deadline = time.monotonic() + 10
        while not (log and log[-1][1] == 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        stop.set()
        server.join()
        core.stop_watcher()
    assert not errors, errors
    versions = [v for _, v, _, _ in log]
    assert set(versions) == {1, 2} and versions == sorted(versions), "versions never go backwards"
    during = [dt for t0, v, dt, _ in log if v == 1 and t0 >= load_started]
    before = [dt for t0, _, dt, _ in log if t0 < load_started]
    assert len(during) > 10, "infer kept serving v1 while v2 was loading"
    # The load takes >= 400 ms; no infer waited for it.
    assert max(during) < 0.2, f"an infer took {max(during) * 1e3:.0f} ms during the swap"
    print(
        f"\ninfer p50 before swap {np.median(before) * 1e3:.3f} ms, during {np.median(during) * 1e3:.3f} ms "
        f"(max {max(during) * 1e3:.2f} ms over {len(during)} calls), load {core.last_load_ms:.0f} ms"
    )
    reference = {1: expected(w1, req), 2: expected(w2, req)}
    for _, v, _, action in log:
        np.testing.assert_allclose(action, reference[v], rtol=1e-5, atol=1e-5)

    # A corrupt v3 and a wrong-architecture v4 are skipped once each; v2 keeps serving.
    factory.delay_s = 0.0
    store.publish(TinyPolicy(seed=3).state_dict(), {}, step=3)
    with open(store.weights_path(3), "r+b") as f:
        f.truncate(100)
    store.publish(TinyPolicy(hidden=16).state_dict(), {}, step=4)
    attempts = core.load_attempts
    assert core.maybe_reload() is False
    assert sorted(core.bad_versions) == [3, 4] and core.load_attempts == attempts + 2
    assert "sha256 mismatch" in core.bad_versions[3] and "has shape [16, 3]" in core.bad_versions[4]
    assert core.maybe_reload() is False and core.load_attempts == attempts + 2, "bad versions are not retried"
    resp = core.infer([req])[0]
    assert resp.weight_version == 2
    np.testing.assert_allclose(resp.action, expected(w2, req), rtol=1e-5, atol=1e-5)
    assert core.stats()["bad_versions"] == [3, 4]
    # A later good version is still picked up.
    w5 = TinyPolicy(seed=5).state_dict()
    assert store.publish(w5, {}, step=5) == 5
    assert core.maybe_reload() is True
    resp = core.infer([req])[0]
    assert resp.weight_version == 5
    np.testing.assert_allclose(resp.action, expected(w5, req), rtol=1e-5, atol=1e-5)


def test_run_policy_bench_smoke() -> None:
    result = run_policy_bench(lambda: TinyPolicy(), image_size=32, iters=5)
    assert set(result) >= {"device", "batch1_p50_ms", "batch1_p99_ms", "batch4_p50_ms", "batch4_p99_ms"}
    assert 0 < result["batch1_p50_ms"] <= result["batch1_p99_ms"]


def _net_config(hidden: int) -> dict[str, object]:
    """A learner-style saved config of a tiny real network (``policy_server.networks``)."""
    return {"network": {"image_size": 32, "hidden_dim": hidden, "feature_dim": 8, "encoder_channels": 4}}


def _publish_net(store: WeightStore, hidden: int, seed: int, step: int) -> dict[str, torch.Tensor]:
    from policy_server.networks import build_policy_from_config

    torch.manual_seed(seed)
    weights = build_policy_from_config(_net_config(hidden)).state_dict()
    store.publish(weights, _net_config(hidden), step=step)
    return weights


def _net_expected(hidden: int, weights: dict[str, torch.Tensor], req: PolicyRequest) -> np.ndarray:
    from policy_server.networks import build_policy_from_config

    ref = build_policy_from_config(_net_config(hidden))
    ref.load_state_dict(weights)
    with torch.no_grad():
        out = ref.act(
            torch.from_numpy(req.image[None]), torch.from_numpy(req.proprio[None]), torch.tensor([req.task])
        )
    return out[0].numpy()


def test_each_version_is_built_from_its_own_config_and_swapped_under_load(tmp_path) -> None:
    """v2 has another architecture (hidden 24 instead of 16): built fresh from its own config and
    swapped in between two requests while a robot is served; broken versions are still refused."""
    from policy_server.networks import build_policy_from_config

    store = WeightStore(tmp_path)
    w1 = _publish_net(store, hidden=16, seed=1, step=1)
    building = threading.Event()
    delay = {"s": 0.0}

    def slow_build(config: dict) -> nn.Module:  # the default builder, made slow to widen the swap window
        building.set()
        time.sleep(delay["s"])
        return build_policy_from_config(config)

    core = PolicyServerCore(None, store, device="cpu", image_shape=(32, 32, 3), proprio_dim=9,
                            config_factory=slow_build)  # fmt: skip
    req = PolicyRequest(
        "r1", np.full((32, 32, 3), 90, np.uint8), np.linspace(-1, 1, 9, dtype=np.float32), 1, 2.0
    )
    assert core.infer([req])[0].weight_version == 1
    log: list[tuple[int | None, float, np.ndarray | None]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:  # a robot's control loop: one request after the other
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                resp = core.infer([req])[0]
                log.append((resp.weight_version, time.perf_counter() - t0, resp.action))
        except BaseException as exc:
            errors.append(exc)

    server = threading.Thread(target=serve)
    server.start()
    try:
        time.sleep(0.05)
        delay["s"], building = 1.0, threading.Event()
        w2 = _publish_net(store, hidden=24, seed=2, step=2)
        core.start_watcher(interval_s=0.02)
        assert building.wait(5)
        deadline = time.monotonic() + 10
        while not (log and log[-1][0] == 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
    finally:
        stop.set()
        server.join()
        core.stop_watcher()
    assert not errors, errors
    versions = [v for v, _, _ in log]
    assert set(versions) == {1, 2} and versions == sorted(versions)
    assert all(action is not None for _, _, action in log), "every control step got an action"
    assert max(dt for _, dt, _ in log) < 0.5, "no request waited for the 1 s build"
    reference = {1: _net_expected(16, w1, req), 2: _net_expected(24, w2, req)}
    for v, _, action in log:
        np.testing.assert_allclose(action, reference[v], rtol=1e-5, atol=1e-5)
    assert core.stats()["config_changes"] == 1 and core.swaps == 2

    # Genuinely broken versions are refused; v2 keeps serving.
    delay["s"] = 0.0
    torch.manual_seed(3)
    store.publish(
        build_policy_from_config(_net_config(24)).state_dict(), _net_config(16), step=3
    )  # shapes != own config
    store.publish(
        w1, {"network": {"image_size": 32, "hidden_dim": 16, "hiden": 3}}, step=4
    )  # unknown config key
    _publish_net(store, hidden=16, seed=5, step=5)
    with open(store.weights_path(5), "r+b") as f:  # corrupt file
        f.truncate(200)
    assert core.maybe_reload() is False
    assert sorted(core.bad_versions) == [3, 4, 5]
    assert (
        "has shape" in core.bad_versions[3] and "unknown network config key(s): hiden" in core.bad_versions[4]
    )
    assert "sha256 mismatch" in core.bad_versions[5]
    resp = core.infer([req])[0]
    assert resp.weight_version == 2
    np.testing.assert_allclose(resp.action, reference[2], rtol=1e-5, atol=1e-5)
    w6 = _publish_net(store, hidden=16, seed=6, step=6)  # back to the first architecture
    assert core.maybe_reload() is True and core.stats()["config_changes"] == 2
    np.testing.assert_allclose(core.infer([req])[0].action, _net_expected(16, w6, req), rtol=1e-5, atol=1e-5)


def test_untrained_default_network_and_factory_choice(tmp_path) -> None:
    core = PolicyServerCore(None, WeightStore(tmp_path), device="cpu", allow_untrained=True)
    resp = core.infer([request("r1")])[0]  # the default NetworkConfig, untrained
    assert resp.weight_version is None and resp.action is not None and resp.action.shape == (5,)
    with pytest.raises(ValueError, match="either model_factory"):
        PolicyServerCore(Factory(), None, device="cpu", config_factory=lambda _c: TinyPolicy())


def test_older_version_of_another_architecture_loads_when_the_newest_is_broken(tmp_path) -> None:
    """Building from the newest version's config would refuse v1; each version uses its own."""
    store = WeightStore(tmp_path)
    w1 = _publish_net(store, hidden=16, seed=1, step=1)
    _publish_net(store, hidden=24, seed=2, step=2)
    with open(store.weights_path(2), "r+b") as f:
        f.truncate(200)
    core = PolicyServerCore(None, store, device="cpu")
    req = request("r1", seed=3)
    resp = core.infer([req])[0]
    assert resp.weight_version == 1 and sorted(core.bad_versions) == [2]
    np.testing.assert_allclose(resp.action, _net_expected(16, w1, req), rtol=1e-5, atol=1e-5)


def test_exploration_serves_sampled_actions_around_the_mean(tmp_path) -> None:
    """explore_std_scale > 0 draws from the policy (spread times the scale); 0 serves the mean; a
    negative or non-finite scale is refused."""
    store = WeightStore(tmp_path)
    weights = _publish_net(store, hidden=16, seed=0, step=1)
    req = request("r1", seed=3)
    mean = _net_expected(16, weights, req)
    plain = PolicyServerCore(None, store, device="cpu")
    np.testing.assert_allclose(plain.infer([req])[0].action, mean, atol=1e-6)
    torch.manual_seed(0)
    exploring = PolicyServerCore(None, store, device="cpu", explore_std_scale=1.0)
    wide = np.stack([exploring.infer([req])[0].action for _ in range(50)])
    narrowing = PolicyServerCore(None, store, device="cpu", explore_std_scale=0.1)
    narrow = np.stack([narrowing.infer([req])[0].action for _ in range(10)])
    assert np.abs(wide - mean).mean() > 0.05 and np.ptp(wide, axis=0).min() > 0
    assert np.abs(narrow - mean).mean() < 0.5 * np.abs(wide - mean).mean()
    assert np.all(np.abs(wide) <= 1.0)
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="explore_std_scale"):
            PolicyServerCore(None, store, device="cpu", explore_std_scale=bad)
