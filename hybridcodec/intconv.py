"""Integer-exact convolutional predictors: the building block of lifting steps and priors.

The coding path evaluates them here, in numpy int64 only: a fixed-point weight ``w``
stands for ``w / 2**frac_bits``, and every product and sum is an exact integer, so the
result is the same on any CPU whatever the order of the additions. Division by the
fixed-point one is an arithmetic right shift (a floor), with ``2**(frac_bits-1)`` added
first where the result is rounded. The training stack (``train/nets.py``) builds float
nets of the same shape from the same model config, trains them, and exports these
integers; a test checks that its exact mode computes the same integers as this module.

Bounds that keep every sum inside int64 (checked when a model file is loaded): inputs
``|x| < MAX_ABS_INPUT`` (2**27, the codec's signal bound), weights ``|w| <=
MAX_WEIGHT * 2**frac_bits``, at most ``MAX_TAPS`` taps and ``MAX_HIDDEN`` hidden units.
"""

from __future__ import annotations

import numpy as np

MAX_ABS_INPUT = 2**27
MAX_WEIGHT = 16.0
FRAC_BITS = 14
MAX_TAPS = 64
MAX_HIDDEN = 64


class IntConv:
    """``y[n] = round(lin(window_n) + mlp(window_n))`` over one input channel, exactly.

    The window of output ``n`` is ``x[n - left .. n - left + taps - 1]``, the signal
    extended by repeating its edge samples. ``linear`` has ``taps`` fixed-point weights;
    with ``hidden`` > 0 a ReLU branch adds ``sum_j w_out[j] * relu(floor(w_in[j] .
    window / one))``. Weights are int64 arrays; ``one = 2**frac_bits``.
    """

    def __init__(self, taps: int, left: int, hidden: int = 0, frac_bits: int = FRAC_BITS,
                 linear: np.ndarray | None = None, w_in: np.ndarray | None = None,
                 w_out: np.ndarray | None = None) -> None:
        if not 1 <= taps <= MAX_TAPS or not 0 <= left < taps:
            raise ValueError(f"need 1 <= taps <= {MAX_TAPS} and 0 <= left < taps")
        if not 0 <= hidden <= MAX_HIDDEN:
            raise ValueError(f"hidden units must be 0..{MAX_HIDDEN}")
        self.taps, self.left, self.hidden, self.frac_bits = taps, left, hidden, frac_bits
        self.linear = np.zeros(taps, np.int64) if linear is None else \
            np.asarray(linear, np.int64).reshape(taps)
        self.w_in = np.zeros((hidden, taps), np.int64) if w_in is None else \
            np.asarray(w_in, np.int64).reshape(hidden, taps)
        self.w_out = np.zeros(hidden, np.int64) if w_out is None else \
            np.asarray(w_out, np.int64).reshape(hidden)

    # The model file keeps the shapes of the torch nets that first wrote it
    # (conv1d weights): (1, 1, taps), (hidden, 1, taps), (1, hidden, 1).
    def arrays(self) -> dict[str, np.ndarray]:
        """The fixed-point weights under their model-file names and shapes."""
        out = {"linear": self.linear.reshape(1, 1, self.taps)}
        if self.hidden:
            out["w_in"] = self.w_in.reshape(self.hidden, 1, self.taps)
            out["w_out"] = self.w_out.reshape(1, self.hidden, 1)
        return out

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`arrays`; shapes must match exactly, and the weights be
        integers within ``MAX_WEIGHT`` (compared as Python ints: ``np.abs`` of -2**63 is
        -2**63, and a float weight would be cast)."""
        limit = int(MAX_WEIGHT * 2**self.frac_bits)
        for name, want in self.arrays().items():
            a = np.asarray(arrays[name])
            if a.shape != want.shape:
                raise ValueError(f"weight {name} has shape {a.shape}, expected {want.shape}")
            if not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"weight {name} is not an integer array ({a.dtype})")
            if a.size and not -limit <= int(a.min()) <= int(a.max()) <= limit:
                raise ValueError(f"weight {name} is out of range")
            setattr(self, name, a.astype(np.int64).reshape(getattr(self, name).shape))

    def set_float_linear(self, weights: np.ndarray) -> None:
        """Set the linear part from real-valued weights (rounded to fixed point)."""
        w = np.clip(np.asarray(weights, np.float64).reshape(self.taps), -MAX_WEIGHT, MAX_WEIGHT)
        self.linear = np.round(w * 2**self.frac_bits).astype(np.int64)

    def _padded(self, x: np.ndarray, out_len: int) -> np.ndarray:
        """``x`` edge-extended to the ``out_len + taps - 1`` samples the windows cover."""
        right = out_len + self.taps - 1 - self.left - x.size
        if right < 0:
            x = x[: x.size + right]
            right = 0
        return np.pad(x, (self.left, right), mode="edge")

    def windows(self, x: np.ndarray, out_len: int) -> np.ndarray:
        """(out_len, taps): the edge-extended input window of every output (x non-empty)."""
        return np.lib.stride_tricks.sliding_window_view(self._padded(np.asarray(x), out_len),
                                                        self.taps)

    def predict(self, x: np.ndarray, out_len: int) -> np.ndarray:
        """Exact integer prediction of ``out_len`` values from the int64 signal ``x``."""
        x = np.asarray(x, np.int64)
        if out_len == 0 or x.size == 0:
            return np.zeros(out_len, np.int64)
        xp = self._padded(x, out_len)
        acc = _correlate(xp, self.linear, out_len)
        for j in range(self.hidden):
            h = np.maximum(_correlate(xp, self.w_in[j], out_len) >> self.frac_bits, 0)
            acc += self.w_out[j] * h
        return (acc + (1 << (self.frac_bits - 1))) >> self.frac_bits


def _correlate(xp: np.ndarray, w: np.ndarray, out_len: int) -> np.ndarray:
    """``sum_k w[k] * xp[n + k]`` for n < out_len, in int64 (one pass per nonzero tap)."""
    acc = np.zeros(out_len, np.int64)
    for k in np.flatnonzero(w):
        acc += w[k] * xp[k: k + out_len]
    return acc
