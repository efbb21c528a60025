"""The policy server's core, free of ROS: batched inference for several robots and hot weight swaps.

Swap design: the served model and its version live in one immutable ``_Served`` record. ``infer``
reads that reference once and uses it for the whole batch; ``maybe_reload`` builds a NEW model
(factory, load from the store, move to the device, ``eval``) off to the side — in the watcher thread
when ``start_watcher`` is used — and only then replaces the reference (a single atomic assignment).
So an ``infer`` never sees a half-loaded model and never waits on loading (no lock is shared between
the two paths).

Each version's model is built from that version's own saved config (``config_factory``, by default
``policy_server.networks.build_policy_from_config``), so a version whose architecture differs from
the served one (other hidden sizes, another encoder...) is simply built fresh and swapped in like
any other. A fixed ``model_factory`` instead builds the same architecture for every version. A
version whose files are corrupt, whose config cannot be built, or whose tensors do not fit the
model its own config describes is logged once, remembered as bad and never retried; the previous
version keeps serving.

Invalid requests (bad image/proprio shape or dtype, non-finite values) do not fail the batch: their
response has ``action=None`` and ``error`` set to a one-line message naming the robot; the others
are served in the same forward pass.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from policy_server.weights import WeightFileError, WeightMeta, WeightStore, load_into
from robofume.devices import resolve_device

log = logging.getLogger("policy_server")

ModelFactory = Callable[[], nn.Module]
"""Builds a fresh (untrained) model; the same architecture for every version."""
ConfigModelFactory = Callable[[dict[str, Any]], nn.Module]
"""Builds a fresh (untrained) model for the config saved with a version (``{}``: untrained weights)."""


class NoWeightsError(RuntimeError):
    """``infer`` before any weights were published (and ``allow_untrained`` is off)."""


@dataclass(frozen=True)
class PolicyRequest:
    """One robot's observation to act on."""

    robot: str
    """The robot's namespace ("" for none); echoed in the response."""
    image: np.ndarray
    """HxWx3 uint8 camera frame."""
    proprio: np.ndarray
    """Proprioception vector (float, finite)."""
    task: int
    """Task id (0 forward, 1 backward)."""
    frame_stamp: float
    """Stamp of the camera frame in s, copied into the response."""


@dataclass(frozen=True)
class PolicyResponse:
    """The action for one request, or why there is none."""

    robot: str
    action: np.ndarray | None
    """float32 actions in [-1, 1]; ``None`` when the request was invalid (see ``error``)."""
    frame_stamp: float
    weight_version: int | None
    """Version of the weights that produced the action (``None``: untrained initial weights)."""
    latency_ms: float
    """Time spent in ``infer`` for the batch this request was part of."""
    error: str | None = None


@dataclass(frozen=True)
class _Served:
    model: nn.Module
    version: int | None
    config: dict[str, Any]


def validate_request(
    req: PolicyRequest, image_shape: tuple[int, ...] | None, proprio_dim: int | None
) -> None:
    """Raise ``ValueError`` (one line naming the robot) if ``req`` cannot be batched with the given shapes."""
    image, proprio = req.image, req.proprio
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"robot {req.robot!r}: image must be an HxWx3 uint8 array, got {got}")
    if image_shape is not None and image.shape != image_shape:
        raise ValueError(f"robot {req.robot!r}: image shape {image.shape}, expected {image_shape}")
    if not isinstance(proprio, np.ndarray) or proprio.ndim != 1 or proprio.dtype.kind not in "fiu":
        got = (
            f"{proprio.dtype} {proprio.shape}" if isinstance(proprio, np.ndarray) else type(proprio).__name__
        )
        raise ValueError(f"robot {req.robot!r}: proprio must be a 1-D numeric array, got {got}")
    if proprio_dim is not None and proprio.shape[0] != proprio_dim:
        raise ValueError(
            f"robot {req.robot!r}: proprio has {proprio.shape[0]} values, expected {proprio_dim}"
        )
    if not np.all(np.isfinite(proprio)):
        raise ValueError(f"robot {req.robot!r}: proprio contains NaN or inf")
    if isinstance(req.task, bool) or not isinstance(req.task, (int, np.integer)) or req.task < 0:
        raise ValueError(f"robot {req.robot!r}: task must be a non-negative int, got {req.task!r}")
    if not isinstance(req.frame_stamp, (int, float)) or not math.isfinite(req.frame_stamp):
        raise ValueError(f"robot {req.robot!r}: frame_stamp must be a finite number, got {req.frame_stamp!r}")


def default_config_factory(config: dict[str, Any]) -> nn.Module:
    """``policy_server.networks.build_policy_from_config`` (the learner's networks; lazy import)."""
    from policy_server.networks import build_policy_from_config

    return build_policy_from_config(config)


class PolicyServerCore:
    """Serves ``model.act`` to several robots from the newest good weights in a ``WeightStore``.

    Models have the ``act(images uint8 (B,H,W,3), proprio float32 (B,P), task int64 (B,)) -> float32
    (B,A)`` contract. Each version's model is built by ``config_factory`` from the config saved with
    it (default: :func:`default_config_factory`), or, when ``model_factory`` is given, by that
    zero-argument factory for every version. ``image_shape`` / ``proprio_dim`` pin the expected input
    shapes; unset, the first valid request of each batch sets them for that batch.
    """

    def __init__(
        self,
        model_factory: ModelFactory | None,
        store: WeightStore | None,
        device: str = "auto",
        allow_untrained: bool = False,
        image_shape: tuple[int, int, int] | None = None,
        proprio_dim: int | None = None,
        latency_window: int = 1000,
        cpu_threads: int = 1,
        config_factory: ConfigModelFactory | None = None,
        explore_std_scale: float = 0.0,
    ) -> None:
        """Load the latest good version now (if any); see the class docstring.

        ``cpu_threads`` sets torch's intra-op threads for CPU inference (0 keeps torch's default).
        One thread is the default because small-batch inference does not gain from more, and
        OpenMP threads competing with other busy processes (renderer, learner) made batch-1
        latency ~90x worse on a 2-core machine (0.96 ms -> 88 ms, measured).

        ``explore_std_scale`` > 0 serves sampled actions, the policy's spread times this (online
        fine-tuning explores; the model's ``act`` then takes ``deterministic`` and ``std_scale``);
        0 serves the mean action.
        """
        if not (math.isfinite(explore_std_scale) and explore_std_scale >= 0.0):
            raise ValueError(f"explore_std_scale must be a finite number >= 0, got {explore_std_scale!r}")
        self.explore_std_scale = float(explore_std_scale)
        # mean actions keep the plain ``act(images, proprio, task)`` contract
        self._act_kwargs: dict[str, Any] = {}
        if self.explore_std_scale > 0:
            self._act_kwargs = {"deterministic": False, "std_scale": self.explore_std_scale}
        if model_factory is not None and config_factory is not None:
            raise ValueError("give either model_factory (one architecture) or config_factory (per version)")
        self.model_factory = model_factory
        self.config_factory = config_factory or default_config_factory
        self.store = store
        self.device = resolve_device(device)
        if self.device.type == "cpu" and cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        self.allow_untrained = allow_untrained
        self.image_shape = image_shape
        self.proprio_dim = proprio_dim
        self._served: _Served | None = None
        self._reload_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._bad_versions: dict[int, str] = {}
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.requests_served = 0
        self.requests_rejected = 0
        self.batches = 0
        self.swaps = 0
        self.config_changes = 0
        """Swaps to a version whose saved config differs from the served one's (per-version models)."""
        self.load_attempts = 0
        self.last_load_ms: float | None = None
        self.maybe_reload()
        if self._served is None and allow_untrained:
            self._served = _Served(self._prepare(self._build(None)), None, {})

    # --- serving -------------------------------------------------------------------------------

    @property
    def weight_version(self) -> int | None:
        """Version being served (``None``: nothing yet, or untrained initial weights)."""
        served = self._served
        return served.version if served is not None else None

    def _no_weights_message(self) -> str:
        where = self.store.root if self.store is not None else "(no weight store configured)"
        return f"no policy weights published yet in {where}"

    def infer(self, requests: list[PolicyRequest]) -> list[PolicyResponse]:
        """One forward pass for all valid ``requests``; responses in request order.

        Raises ``NoWeightsError`` (a ``RuntimeError``) if no weights were published yet and
        ``allow_untrained`` is off. An exception of the model itself propagates (pin ``image_shape`` and
        ``proprio_dim`` so that a malformed request is rejected before it reaches the model).
        """
        start = time.perf_counter()
        served = self._served
        if served is None:
            # Nothing to serve yet: loading now cannot delay a served model, so try it synchronously.
            self.maybe_reload()
            served = self._served
            if served is None:
                raise NoWeightsError(self._no_weights_message())
        errors: list[str | None] = [None] * len(requests)
        image_shape, proprio_dim = self.image_shape, self.proprio_dim
        valid: list[int] = []
        for i, req in enumerate(requests):
            try:
                validate_request(req, image_shape, proprio_dim)
            except ValueError as exc:
                errors[i] = str(exc)
                continue
            image_shape, proprio_dim = image_shape or req.image.shape, proprio_dim or req.proprio.shape[0]
            valid.append(i)
        actions: dict[int, np.ndarray] = {}
        if valid:
            images = torch.from_numpy(np.stack([requests[i].image for i in valid]))
            proprio = torch.from_numpy(np.stack([requests[i].proprio for i in valid]).astype(np.float32))
            tasks = torch.tensor([int(requests[i].task) for i in valid], dtype=torch.int64)
            dev = self.device
            with torch.inference_mode():
                out = served.model.act(images.to(dev), proprio.to(dev), tasks.to(dev), **self._act_kwargs)
            out_np = out.detach().float().cpu().numpy()
            for row, i in enumerate(valid):
                action = out_np[row]
                if not np.all(np.isfinite(action)):
                    errors[i] = f"robot {requests[i].robot!r}: the policy produced a non-finite action"
                else:
                    actions[i] = np.clip(action, -1.0, 1.0)
        latency_ms = (time.perf_counter() - start) * 1e3
        with self._stats_lock:
            self._latencies.append(latency_ms)
            self.batches += 1
            self.requests_served += len(actions)
            self.requests_rejected += len(requests) - len(actions)
        return [
            PolicyResponse(
                robot=req.robot,
                action=actions.get(i),
                frame_stamp=req.frame_stamp,
                weight_version=served.version,
                latency_ms=latency_ms,
                error=errors[i],
            )
            for i, req in enumerate(requests)
        ]

    # --- hot swap ------------------------------------------------------------------------------

    def _build(self, meta: WeightMeta | None) -> nn.Module:
        """A fresh model for version ``meta`` (``None``: untrained initial weights)."""
        if self.model_factory is not None:
            return self.model_factory()
        return self.config_factory(dict(meta.config) if meta is not None else {})

    def _prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (on a side CUDA stream, so serving kernels are not queued
        behind the copy) and put it in eval mode.

        Using side-stream memory on the default stream is safe here: every ``infer`` ends with a
        device-to-host copy (a sync) before it drops its reference to the model, so a model's blocks
        are never freed while a kernel still reads them.
        """
        if self.device.type == "cuda":
            stream = torch.cuda.Stream(device=self.device)
            with torch.cuda.stream(stream):
                model = model.to(self.device)
            stream.synchronize()
        else:
            model = model.to(self.device)
        model.eval()
        return model

    def maybe_reload(self) -> bool:
        """Load the newest good version newer than the served one, if any, and swap it in.

        Returns whether a swap happened. Bad versions are logged once and skipped forever; a version
        pruned while loading is skipped this time only. Concurrent calls return ``False`` at once.
        """
        if self.store is None or not self._reload_lock.acquire(blocking=False):
            return False
        try:
            current = self.weight_version or 0
            for version in reversed(self.store.versions()):
                if version <= current:
                    break
                if version in self._bad_versions:
                    continue
                start = time.perf_counter()
                self.load_attempts += 1
                try:
                    state, meta = self.store.load(version)
                    model = self._build(meta)  # the architecture this version's own config describes
                    load_into(model, state, meta)
                    model = self._prepare(model)
                except FileNotFoundError:
                    log.info("weights v%d disappeared while loading (pruned?); skipped", version)
                    continue
                except (WeightFileError, ValueError, RuntimeError, TypeError, KeyError) as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    # Copy-on-write: readers (stats, other threads) iterate the old dict safely.
                    self._bad_versions = {**self._bad_versions, version: reason}
                    log.error("skipping bad weights v%d (keeps serving v%s): %s", version, current, reason)
                    continue
                self.last_load_ms = (time.perf_counter() - start) * 1e3
                previous = self._served
                self._served = _Served(model, version, dict(meta.config))  # the swap: one assignment
                self.swaps += 1
                note = ""
                if self.model_factory is None and previous is not None and previous.config != meta.config:
                    self.config_changes += 1
                    note = f"; its saved config differs from v{previous.version}'s"
                log.info(
                    "serving weights v%d (step %d), loaded in %.0f ms%s",
                    version,
                    meta.step,
                    self.last_load_ms,
                    note,
                )
                return True
            return False
        finally:
            self._reload_lock.release()

    def start_watcher(self, interval_s: float = 1.0) -> None:
        """Poll the store every ``interval_s`` in a daemon thread and swap in new versions."""
        if self._watcher is not None:
            return
        self._stop.clear()

        def watch() -> None:
            last_error = ""
            while not self._stop.wait(interval_s):
                try:
                    self.maybe_reload()
                except Exception as exc:  # keep watching; log each distinct failure once
                    if str(exc) != last_error:
                        last_error = str(exc)
                        log.exception("weight watcher: reload failed")

        self._watcher = threading.Thread(target=watch, name="policy-weight-watcher", daemon=True)
        self._watcher.start()

    def stop_watcher(self) -> None:
        """Stop the watcher thread (waits for a load in progress to finish)."""
        if self._watcher is None:
            return
        self._stop.set()
        self._watcher.join()
        self._watcher = None

    def close(self) -> None:
        """Stop the watcher."""
        self.stop_watcher()

    # --- stats ---------------------------------------------------------------------------------

    @property
    def bad_versions(self) -> dict[int, str]:
        """Versions that failed to load, with the reason."""
        return dict(self._bad_versions)

    def stats(self) -> dict[str, object]:
        """Served version, rolling p50/p99 infer latency (ms), counters, device, bad versions."""
        with self._stats_lock:
            lat = np.asarray(self._latencies, dtype=np.float64)
            counters = {
                "requests_served": self.requests_served,
                "requests_rejected": self.requests_rejected,
                "batches": self.batches,
            }
        return {
            "weight_version": self.weight_version,
            "serving": self._served is not None,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
            **counters,
            "swaps": self.swaps,
            "config_changes": self.config_changes,
            "last_load_ms": self.last_load_ms,
            "bad_versions": sorted(self._bad_versions),
            "device": str(self.device),
        }


def run_policy_bench(
    model_factory: ModelFactory,
    image_size: int = 128,
    proprio_dim: int = 9,
    iters: int = 300,
    device: str = "auto",
    batches: tuple[int, ...] = (1, 4),
) -> dict[str, object]:
    """Latency of ``PolicyServerCore.infer`` (untrained weights, on ``device``) at each batch (requests
    of that many robots served together): p50/p99 in ms over ``iters`` calls each, after a warm-up.
    ``infer`` returns host arrays, so each timed call includes the device's work."""
    core = PolicyServerCore(model_factory, store=None, allow_untrained=True, device=device)
    rng = np.random.default_rng(0)

    def requests(n: int) -> list[PolicyRequest]:
        return [
            PolicyRequest(
                robot=f"r{i}",
                image=rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8),
                proprio=rng.standard_normal(proprio_dim).astype(np.float32),
                task=i % 2,
                frame_stamp=0.0,
            )
            for i in range(n)
        ]

    result: dict[str, object] = {"device": str(core.device), "image_size": image_size, "iters": iters}
    for batch in batches:
        reqs = requests(batch)
        for _ in range(min(20, iters)):
            core.infer(reqs)
        times = np.empty(iters)
        for k in range(iters):
            t0 = time.perf_counter()
            core.infer(reqs)
            times[k] = (time.perf_counter() - t0) * 1e3
        result[f"batch{batch}_p50_ms"] = float(np.percentile(times, 50))
        result[f"batch{batch}_p99_ms"] = float(np.percentile(times, 99))
    return result
