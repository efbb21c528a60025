"""Temporally correlated ("coloured") exploration noise for acting with a stochastic policy.

A sampled action is ``tanh(mean + std * eps)``. Drawing ``eps`` independently at every step (white
noise) averages out over a few control periods: the arm jitters around the mean path instead of
trying a different one. Coloured noise has a power spectrum ``1 / f**beta``: ``beta = 0`` is white,
``beta = 1`` pink, ``beta = 2`` red (a random walk's spectrum). Pink noise keeps most of its power in
slow drifts, so one episode follows a coherently shifted path, while it still varies within the
episode (Eberhard et al., "Pink Noise Is All You Need", ICLR 2023).

Sequences are drawn one episode (``horizon`` steps) at a time with the Timmer & Koenig method: a
random spectrum with the wanted amplitudes, inverse-FFT'd, scaled to unit variance per dimension, so
the spread of the sampled actions does not depend on ``beta``.
"""

from __future__ import annotations

import math

import numpy as np

MAX_BETA = 2.0


def check_beta(beta: float) -> float:
    """``beta`` as a float, or a one-line ValueError when it is not in [0, MAX_BETA]."""
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and 0.0 <= beta <= MAX_BETA):
        raise ValueError(
            f"exploration noise beta must be in [0, {MAX_BETA:g}] (0 white, 1 pink), got {beta!r}"
        )
    return float(beta)


def colored_noise(beta: float, steps: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(steps, dims)`` float32 array of zero-mean, unit-variance noise with spectrum ``1/f**beta``.

    Each column is independent. The lowest frequency is ``1 / steps``: a sequence holds no trend
    slower than its own length, so episodes stay independent of each other."""
    beta = check_beta(beta)
    if steps < 1 or dims < 1:
        raise ValueError(f"coloured noise needs steps >= 1 and dims >= 1, got {steps} and {dims}")
    if beta == 0.0 or steps < 4:
        return rng.standard_normal((steps, dims)).astype(np.float32)
    freqs = np.fft.rfftfreq(steps)
    freqs[0] = freqs[1]  # the mean's bin gets the lowest frequency's amplitude
    amplitude = freqs ** (-beta / 2.0)
    real = rng.standard_normal((dims, freqs.size)) * amplitude
    imag = rng.standard_normal((dims, freqs.size)) * amplitude
    imag[:, 0] = 0.0  # the mean and (for even lengths) the Nyquist bin are real
    real[:, 0] *= math.sqrt(2.0)
    if steps % 2 == 0:
        imag[:, -1] = 0.0
        real[:, -1] *= math.sqrt(2.0)
    series = np.fft.irfft(real + 1j * imag, n=steps, axis=-1)
    # Theoretical standard deviation of that series (Parseval): each bin's real and imaginary parts
    # have variance amplitude**2, and every bin but the mean (and an even length's Nyquist bin)
    # appears twice in the full spectrum.
    power = amplitude[1:] ** 2
    if steps % 2 == 0:
        power[-1] /= 2.0
    sigma = 2.0 * math.sqrt(power.sum() + amplitude[0] ** 2 / 2.0) / steps
    return (series / sigma).T.astype(np.float32)


class ColoredNoiseProcess:
    """Per-step exploration noise for one robot: a new coloured sequence every ``horizon`` steps
    or at :meth:`reset` (an episode boundary)."""

    def __init__(self, beta: float, dims: int, horizon: int, seed: int | None = None) -> None:
        """``beta``: spectrum exponent (0 white, 1 pink); ``dims``: action dimensions; ``horizon``:
        the length of one drawn sequence (an episode's step limit)."""
        self.beta = check_beta(beta)
        if dims < 1 or horizon < 1:
            raise ValueError(f"noise process needs dims >= 1 and horizon >= 1, got {dims} and {horizon}")
        self.dims = dims
        self.horizon = horizon
        self.rng = np.random.default_rng(seed)
        self._buffer = np.empty((0, dims), np.float32)
        self._pos = 0

    def reset(self) -> None:
        """Start a new sequence at the next :meth:`sample` (call it when an episode starts)."""
        self._pos = self._buffer.shape[0]

    def sample(self) -> np.ndarray:
        """The next step's noise, a ``(dims,)`` float32 array."""
        if self._pos >= self._buffer.shape[0]:
            self._buffer = colored_noise(self.beta, self.horizon, self.dims, self.rng)
            self._pos = 0
        eps = self._buffer[self._pos]
        self._pos += 1
        return eps
