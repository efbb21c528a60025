"""Frozen-encoder features of replay-buffer frames, computed once per stored frame.

Online fine-tuning keeps the pre-trained encoder frozen (as SERL/LeRobot do with a frozen
pre-trained encoder), so a frame's features never change: they are computed the first time a slot
is sampled and reused afterwards, and each update only trains the small actor/critic heads.

A cached entry is keyed by the slot's write stamp (``ReplayBuffer.slot_stamps``: unique per
stored observation, changed whenever the ring overwrites the slot), so an overwritten slot can
never serve stale features, and a hit needs no image bytes at all: only the frames of missed slots
are fetched (``load_frames``) and encoded. The features live on the training device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class FeatureCache:
    """Features of a frozen encoder per buffer slot, filled lazily and checked by write stamp."""

    def __init__(self, encoder: nn.Module, device: torch.device, chunk: int = 256) -> None:
        """``chunk``: frames per encoder forward pass when filling misses."""
        self.encoder = encoder
        self.device = device
        self.chunk = chunk
        self._feats = torch.zeros((0, 0), device=device)
        self._stamps = np.zeros(0, np.int64)
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget every cached feature (call when the encoder's weights changed)."""
        self._stamps[:] = -1

    def _grow(self, n: int) -> None:
        """Room for slots ``0..n-1`` (at least doubling), keeping the cached entries."""
        size, k = max(n, 2 * len(self._stamps)), len(self._stamps)
        feats = torch.zeros((size, self._feats.shape[1]), device=self.device)
        stamps = np.full(size, -1, np.int64)
        feats[:k], stamps[:k] = self._feats, self._stamps
        self._feats, self._stamps = feats, stamps

    @torch.no_grad()
    def _encode(self, frames: np.ndarray) -> torch.Tensor:
        out = [
            self.encoder(torch.from_numpy(frames[i : i + self.chunk]).to(self.device)).float()
            for i in range(0, len(frames), self.chunk)
        ]
        return torch.cat(out)

    def features(
        self, slots: np.ndarray, stamps: np.ndarray, load_frames: Callable[[np.ndarray], np.ndarray]
    ) -> torch.Tensor:
        """Features (N, F) on the device of the observations at buffer ``slots`` (N,) whose write
        stamps are ``stamps`` (N,); ``load_frames(slots)`` returns uint8 (M, H, W, 3) frames and is
        called only for slots not cached under their current stamp."""
        slots = np.asarray(slots, np.int64)
        stamps = np.asarray(stamps, np.int64)
        if slots.shape != stamps.shape or slots.ndim != 1:
            raise ValueError(f"slots {slots.shape} and stamps {stamps.shape} must be equal 1-D shapes")
        if not len(slots):
            return self._feats[:0]
        if len(self._stamps) <= int(slots.max()):
            self._grow(int(slots.max()) + 1)
        miss = np.flatnonzero(self._stamps[slots] != stamps)
        if len(miss):
            unique_slots, first = np.unique(slots[miss], return_index=True)
            encoded = self._encode(load_frames(unique_slots))
            if encoded.shape[1] != self._feats.shape[1]:  # first fill: the width is the encoder's
                self._feats = torch.zeros((len(self._stamps), encoded.shape[1]), device=self.device)
                self._stamps[:] = -1
            self._feats[torch.from_numpy(unique_slots).to(self.device)] = encoded
            self._stamps[unique_slots] = stamps[miss[first]]
        self.hits += len(slots) - len(miss)
        self.misses += len(miss)
        return self._feats[torch.from_numpy(slots).to(self.device)]
