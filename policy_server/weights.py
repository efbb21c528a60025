"""Versioned, crash-safe policy weight files shared by the learner (writer) and the policy server (reader).

Layout of a store folder, one pair per version::

    weights_v00000007.safetensors   tensors only (safetensors: nothing is ever unpickled)
    weights_v00000007.json          WeightMeta: version, step, config, architecture, signature, sha256

Each file is written to a temp file in the same folder, fsynced and renamed into place; the json is
written last, so a version is visible (``versions``/``latest_version``/``load``) only once both files
are complete. A reader checks the weights against the json's sha256 before parsing them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import safetensors.torch
import torch
from torch import nn

from robofume.atomic_io import atomic_writer, fsync_dir, write_json_atomic

_NAME = re.compile(r"^weights_v(\d{8,})\.(safetensors|json)$")


class WeightFileError(Exception):
    """A weight file or its json is corrupt, truncated or inconsistent; one line naming the file."""


class WeightMismatchError(ValueError):
    """Weights of another architecture (name, parameter names or shapes) than the module they go into."""


@dataclass(frozen=True)
class WeightMeta:
    """What the json beside a weight file says about it."""

    version: int
    step: int
    sha256: str
    arch_signature: dict[str, list[int]]
    """State-dict key -> shape of every tensor in the file."""
    config: dict[str, Any] = field(default_factory=dict)
    """The resolved training/network config the weights were produced with."""
    architecture: str | None = None
    """Name of the architecture (e.g. the module's class name); ``None`` skips the name check."""
    weights_file: str = ""
    created_unix: float = 0.0

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> WeightMeta:
        """Parse the json payload; raises ``KeyError``/``TypeError``/``ValueError`` on a malformed one."""
        return cls(
            version=int(payload["version"]),
            step=int(payload["step"]),
            sha256=str(payload["sha256"]),
            arch_signature={str(k): [int(d) for d in v] for k, v in payload["arch_signature"].items()},
            config=dict(payload.get("config") or {}),
            architecture=payload.get("architecture"),
            weights_file=str(payload.get("weights_file", "")),
            created_unix=float(payload.get("created_unix", 0.0)),
        )


def arch_signature(module: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
    """State-dict key -> shape (parameters and persistent buffers) of a module or a state dict."""
    state = module.state_dict() if isinstance(module, nn.Module) else module
    return {name: [int(d) for d in tensor.shape] for name, tensor in state.items()}


def architecture_name(module: nn.Module) -> str:
    """The name recorded for ``module``'s architecture: its ``architecture`` attribute or its class name."""
    name = getattr(module, "architecture", None)
    return name if isinstance(name, str) and name else type(module).__name__


def check_compatible(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], meta: WeightMeta | None
) -> None:
    """Raise ``WeightMismatchError`` (one line: the differing name or the first mismatching key/shape)."""
    where = f"weights v{meta.version}" if meta is not None else "weights"
    model_name = architecture_name(module)
    if meta is not None and meta.architecture and meta.architecture != model_name:
        raise WeightMismatchError(
            f"{where} are for architecture {meta.architecture!r}, the model is {model_name!r}"
        )
    expected = arch_signature(module)
    got = arch_signature(state_dict)
    for key, shape in expected.items():
        if key not in got:
            raise WeightMismatchError(
                f"{where} do not fit {model_name}: key {key!r} is missing from the file"
            )
        if got[key] != shape:
            raise WeightMismatchError(
                f"{where} do not fit {model_name}: key {key!r} has shape {got[key]} in the file, "
                f"{shape} in the model"
            )
    for key in got:
        if key not in expected:
            raise WeightMismatchError(f"{where} do not fit {model_name}: unexpected key {key!r} in the file")


def load_into(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], meta: WeightMeta | None = None
) -> None:
    """Copy ``state_dict`` into ``module`` once ``check_compatible`` accepts it."""
    check_compatible(module, state_dict, meta)
    module.load_state_dict(dict(state_dict), strict=True)


class WeightStore:
    """A folder of numbered weight versions (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Open (and create if needed) the store folder ``root``."""
        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"WeightStore({self.root!r})"

    def weights_path(self, version: int) -> str:
        """Path of the safetensors file of ``version``."""
        return os.path.join(self.root, f"weights_v{version:08d}.safetensors")

    def meta_path(self, version: int) -> str:
        """Path of the json file of ``version``."""
        return os.path.join(self.root, f"weights_v{version:08d}.json")

    def _scan(self) -> tuple[set[int], set[int]]:
        """(versions with a weight file, versions with a json file)."""
        weights: set[int] = set()
        metas: set[int] = set()
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return weights, metas
        for name in names:
            m = _NAME.match(name)
            if m:
                (weights if m.group(2) == "safetensors" else metas).add(int(m.group(1)))
        return weights, metas

    def versions(self) -> list[int]:
        """Visible versions (both files present), ascending."""
        weights, metas = self._scan()
        return sorted(weights & metas)

    def latest_version(self) -> int | None:
        """The newest visible version, or ``None`` if none was published yet."""
        versions = self.versions()
        return versions[-1] if versions else None

    def publish(
        self,
        state_dict: Mapping[str, torch.Tensor],
        config: Mapping[str, Any],
        step: int,
        architecture: str | None = None,
    ) -> int:
        """Write a new version (weights, then json) and return its number.

        ``architecture`` defaults to ``config["architecture"]`` if present (see ``architecture_name``).
        """
        weights, metas = self._scan()
        version = max(weights | metas, default=0) + 1
        tensors: dict[str, torch.Tensor] = {}
        for name, value in state_dict.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"state_dict entry {name!r} is not a tensor ({type(value).__name__})")
            # Own, contiguous CPU copies: safetensors refuses shared or strided storage.
            tensors[name] = value.detach().to("cpu", copy=True).contiguous()
        data = safetensors.torch.save(tensors, metadata={"version": str(version), "step": str(int(step))})
        if architecture is None:
            arch = config.get("architecture")
            architecture = arch if isinstance(arch, str) else None
        meta = WeightMeta(
            version=version,
            step=int(step),
            sha256=hashlib.sha256(data).hexdigest(),
            arch_signature=arch_signature(tensors),
            config=json.loads(json.dumps(dict(config), default=str)),
            architecture=architecture,
            weights_file=os.path.basename(self.weights_path(version)),
            created_unix=time.time(),
        )
        with atomic_writer(self.weights_path(version)) as f:
            f.write(data)
        write_json_atomic(self.meta_path(version), asdict(meta))
        return version

    def read_meta(self, version: int) -> WeightMeta:
        """The json of ``version``; ``FileNotFoundError`` if absent, ``WeightFileError`` if malformed."""
        path = self.meta_path(version)
        with open(path, "rb") as f:
            raw = f.read()
        try:
            meta = WeightMeta.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WeightFileError(f"{path}: not a valid weight json ({type(exc).__name__}: {exc})") from None
        if meta.version != version:
            raise WeightFileError(f"{path}: says version {meta.version}, expected {version}")
        return meta

    def load(self, version: int | None = None) -> tuple[dict[str, torch.Tensor], WeightMeta]:
        """(CPU state dict, meta) of ``version`` (default: the latest).

        ``FileNotFoundError`` if the version is not visible; ``WeightFileError`` if a file is corrupt.
        """
        if version is None:
            version = self.latest_version()
            if version is None:
                raise FileNotFoundError(f"no policy weights published yet in {self.root}")
        meta = self.read_meta(version)
        path = self.weights_path(version)
        with open(path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.sha256:
            raise WeightFileError(
                f"{path}: sha256 mismatch ({len(data)} bytes; truncated or corrupt): "
                f"{digest[:12]}... != {meta.sha256[:12]}... in the json"
            )
        try:
            state = safetensors.torch.load(data)
        except Exception as exc:  # SafetensorError and friends: any parse failure is a bad file
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WeightFileError(f"{path}: not a valid safetensors file ({detail})") from None
        if arch_signature(state) != meta.arch_signature:
            raise WeightFileError(f"{path}: tensors do not match the signature in its json")
        return state, meta

    def prune(self, keep: int) -> list[int]:
        """Delete all but the newest ``keep`` visible versions (json first, so a version disappears
        atomically), plus incomplete leftovers older than them. Returns the deleted versions."""
        if keep < 1:
            raise ValueError(f"prune keeps at least one version, got keep={keep}")
        weights, metas = self._scan()
        visible = sorted(weights & metas)
        if len(visible) <= keep:
            oldest_kept = visible[0] if visible else 0
            doomed: list[int] = []
        else:
            oldest_kept = visible[-keep]
            doomed = visible[:-keep]
        # Leftovers of a crashed publish; newer ones may be a publish in progress, so they stay.
        orphans = sorted(v for v in (weights ^ metas) if v < oldest_kept)
        for version in doomed + orphans:
            for path in (self.meta_path(version), self.weights_path(version)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        if doomed or orphans:
            fsync_dir(self.root)
        return doomed
