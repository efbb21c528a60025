"""One device rule for every component: auto, cpu, cuda, and one-line errors for the rest."""

from __future__ import annotations

import pytest
import torch

from robofume.devices import resolve_device


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu0", "mps", ""])
def test_unknown_or_unsupported_names_are_one_line_errors(name: str) -> None:
    with pytest.raises(ValueError, match="use auto, cpu or cuda") as info:
        resolve_device(name)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused() -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
