"""Load libraries that clash with Mesa's software OpenGL before the first GL context exists.

Mesa's llvmpipe (used by ``MUJOCO_GL=egl`` on a CPU-only machine) and Triton (pulled in by
``import torchvision`` through torch's compiler stack) each bring their own LLVM. If a GL
context is created first, loading Triton afterwards crashes the process with a segfault;
loading Triton first is safe. Measured here: torch 2.14.1 + Mesa llvmpipe, mujoco 3.8.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util

_done = False


def preload_before_gl() -> None:
    """Import Triton's native library if it is installed; call before creating a GL context."""
    global _done
    if _done:
        return
    _done = True
    if importlib.util.find_spec("triton") is not None:
        with contextlib.suppress(ImportError):  # an incomplete Triton install cannot clash either
            importlib.import_module("triton._C.libtriton")
