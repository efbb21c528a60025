"""DrQ random shift: each frame is a crop of its edge-padded self, offsets differ per frame."""

from __future__ import annotations

import pytest
import torch

from policy_server.augment import random_shift


def _reference_shift(frame: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Pixel (r, c) of the output is input pixel (clamp(r + dy), clamp(c + dx))."""
    h, w = frame.shape[:2]
    rows = (torch.arange(h) + dy).clamp(0, h - 1)
    cols = (torch.arange(w) + dx).clamp(0, w - 1)
    return frame[rows][:, cols]


def test_every_output_frame_is_an_edge_padded_shift_of_its_input() -> None:
    frames = torch.randint(0, 256, (32, 12, 10, 3), dtype=torch.uint8)
    out = random_shift(frames, 2, torch.Generator().manual_seed(0))
    assert out.shape == frames.shape and out.dtype == torch.uint8
    offsets = set()
    for i in range(len(frames)):
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out[i], _reference_shift(frames[i], dy, dx))]  # fmt: skip
        assert match, f"frame {i} is not a shift of its input"
        offsets.add(match[0])
    assert len(offsets) > 5  # independent offsets per frame, not one for the batch


def test_zero_pad_is_identity_and_bad_shapes_are_refused() -> None:
    frames = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    assert random_shift(frames, 0) is frames
    with pytest.raises(ValueError, match="B, H, W, C"):
        random_shift(frames[0], 2)
