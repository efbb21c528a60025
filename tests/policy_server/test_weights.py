"""Versioned weight files: round trip, monotonic versions, visibility, architecture refusal, corruption."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from policy_server.weights import (
    WeightFileError,
    WeightMismatchError,
    WeightStore,
    arch_signature,
    architecture_name,
    load_into,
)


class Net(nn.Module):
    """Small module with a parameter, a buffer and a nested layer."""

    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(3, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, 2)


class OtherNet(Net):
    """Same tensors as ``Net`` under another architecture name."""


def _publish(store: WeightStore, net: nn.Module, step: int = 0) -> int:
    return store.publish(net.state_dict(), {"lr": 1e-3}, step, architecture=architecture_name(net))


def test_round_trip_and_meta(tmp_path) -> None:
    store = WeightStore(tmp_path)
    assert store.latest_version() is None
    torch.manual_seed(0)
    net = Net()
    version = store.publish(
        net.state_dict(), {"lr": 1e-3, "arch": {"hidden": 4}}, step=1234, architecture="Net"
    )
    assert version == 1 and store.latest_version() == 1
    state, meta = store.load()
    assert meta.version == 1 and meta.step == 1234 and meta.architecture == "Net"
    assert meta.config == {"lr": 1e-3, "arch": {"hidden": 4}}
    assert meta.arch_signature == arch_signature(net) and meta.arch_signature["fc.weight"] == [4, 3]
    assert len(meta.sha256) == 64 and meta.weights_file == "weights_v00000001.safetensors"
    fresh = Net()
    load_into(fresh, state, meta)
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    on_disk = json.loads((tmp_path / "weights_v00000001.json").read_text())
    assert on_disk["step"] == 1234 and on_disk["sha256"] == meta.sha256


def test_versions_continue_after_reopen_and_prune(tmp_path) -> None:
    net = Net()
    store = WeightStore(tmp_path)
    assert [_publish(store, net, s) for s in range(3)] == [1, 2, 3]
    reopened = WeightStore(tmp_path)
    assert reopened.latest_version() == 3
    assert _publish(reopened, net, 3) == 4
    assert reopened.prune(keep=2) == [1, 2]
    assert reopened.versions() == [3, 4]
    assert _publish(WeightStore(tmp_path), net) == 5
    with pytest.raises(FileNotFoundError):
        reopened.load(1)


def test_incomplete_versions_are_invisible(tmp_path) -> None:
    store = WeightStore(tmp_path)
    net = Net()
    assert _publish(store, net) == 1
    assert _publish(store, net) == 2
    # Crash between the two writes: weights without json; and a json whose weights are gone.
    os.unlink(store.meta_path(2))
    assert store.latest_version() == 1
    v3 = _publish(store, net)
    assert v3 == 3, "a half-written version number is never reused"
    os.unlink(store.weights_path(3))
    assert store.versions() == [1]
    assert store.load()[1].version == 1
    # Temp files of an interrupted atomic write are not versions either.
    (tmp_path / ".weights_v00000009.safetensors.tmp-123").write_bytes(b"partial")
    assert store.versions() == [1]
    # Leftovers older than the kept versions are cleaned up by prune.
    _publish(store, net)
    store.prune(keep=1)
    assert sorted(os.listdir(tmp_path)) == [
        ".weights_v00000009.safetensors.tmp-123",
        "weights_v00000004.json",
        "weights_v00000004.safetensors",
    ]


def test_refuses_other_architecture_name(tmp_path) -> None:
    store = WeightStore(tmp_path)
    _publish(store, OtherNet())
    state, meta = store.load()
    with pytest.raises(WeightMismatchError) as err:
        load_into(Net(), state, meta)
    assert str(err.value) == "weights v1 are for architecture 'OtherNet', the model is 'Net'"


def test_refuses_other_shapes_and_keys(tmp_path) -> None:
    store = WeightStore(tmp_path)
    store.publish(Net(hidden=8).state_dict(), {}, 0)  # no architecture name: only shapes are checked
    state, meta = store.load()
    with pytest.raises(WeightMismatchError) as err:
        load_into(Net(hidden=4), state, meta)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        "weights v1 do not fit Net: key 'fc.weight' has shape [8, 3] in the file, [4, 3] in the model"
    )
    del state["out.bias"]
    with pytest.raises(WeightMismatchError, match=r"key 'out\.bias' is missing"):
        load_into(Net(hidden=8), state, None)
    state["out.bias"], state["extra"] = torch.zeros(2), torch.zeros(1)
    with pytest.raises(WeightMismatchError, match="unexpected key 'extra'"):
        load_into(Net(hidden=8), state, None)


@pytest.mark.parametrize("damage", ["flip", "truncate", "not_safetensors", "bad_json"])
def test_corrupt_files_raise_weight_file_error(tmp_path, damage: str) -> None:
    store = WeightStore(tmp_path)
    _publish(store, Net())
    weights, meta_json = Path(store.weights_path(1)), Path(store.meta_path(1))
    data = weights.read_bytes()
    if damage == "flip":
        weights.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
        match = "sha256 mismatch"
    elif damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
        match = "sha256 mismatch"
    elif damage == "not_safetensors":
        # A file whose json matches its hash but that is not safetensors (e.g. a pickle) is refused.
        junk = b"\x80\x04\x95" + os.urandom(200)
        weights.write_bytes(junk)
        meta = json.loads(meta_json.read_text())
        meta["sha256"] = hashlib.sha256(junk).hexdigest()
        meta_json.write_text(json.dumps(meta))
        match = "not a valid safetensors file"
    else:
        meta_json.write_text('{"version": 1, "ste')
        match = "not a valid weight json"
    with pytest.raises(WeightFileError, match=match) as err:
        store.load(1)
    message = str(err.value)
    assert "\n" not in message and "weights_v00000001." in message


def test_publish_rejects_non_tensors(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"'n' is not a tensor \(int\)"):
        WeightStore(tmp_path).publish({"n": 3}, {}, 0)  # type: ignore[dict-item]
    assert WeightStore(tmp_path).latest_version() is None
