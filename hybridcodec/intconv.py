"""Integer-exact convolutional nets: the building block of lifting steps and priors.

One module serves both paths. ``forward(x, exact=False)`` is the float training path
(rounding with a straight-through gradient, as in IDF). ``forward(x, exact=True)`` is the
coding path: weights are rounded to fixed point (``frac_bits``), inputs are integers held
in float64, and every partial sum stays far below 2**53, so the result is the same exact
integer whatever order BLAS, thread count or CPU adds the terms in. Divisions are by
powers of two followed by ``floor``, which float64 also does exactly.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

# Signal magnitudes reaching a net are bounded by the codec (|x| < 2**27); weights by
# MAX_WEIGHT. With at most 64 taps the largest partial sum is < 2**27 * 2**(4+16) * 2**6
# = 2**53, the float64 exactness limit.
MAX_ABS_INPUT = 2**27
MAX_WEIGHT = 16.0


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _floor_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


class IntConvNet(nn.Module):
    """A 1-D predictor ``y[n] = round(lin(window) + mlp(window))`` over one input channel.

    The window covers ``taps`` input samples starting ``left`` samples before output
    position ``n``; the signal is extended by replicating its edge samples. ``hidden`` > 0
    adds a ReLU branch (a small neural net) whose output weights start at zero, so a fresh
    net equals its linear part.
    """

    def __init__(self, taps: int, left: int, hidden: int = 0, frac_bits: int = 14) -> None:
        super().__init__()
        if taps < 1 or not 0 <= left < taps:
            raise ValueError("need taps >= 1 and 0 <= left < taps")
        self.taps, self.left, self.hidden, self.frac_bits = taps, left, hidden, frac_bits
        self.linear = nn.Parameter(torch.zeros(1, 1, taps, dtype=torch.float64))
        if hidden:
            self.w_in = nn.Parameter(torch.randn(hidden, 1, taps, dtype=torch.float64) * 0.1)
            self.w_out = nn.Parameter(torch.zeros(1, hidden, 1, dtype=torch.float64))

    def quantized(self, w: torch.Tensor) -> torch.Tensor:
        """Fixed-point integer version of a weight tensor (as float64 integers)."""
        scale = float(2**self.frac_bits)
        return torch.round(w.detach().clamp(-MAX_WEIGHT, MAX_WEIGHT) * scale)

    def _pad(self, x: torch.Tensor, out_len: int) -> torch.Tensor:
        right = out_len + self.taps - 1 - self.left - x.shape[-1]
        if right < 0:
            x = x[..., : x.shape[-1] + right]
            right = 0
        return F.pad(x, (self.left, right), mode="replicate")

    def forward(self, x: torch.Tensor, out_len: int, exact: bool = False) -> torch.Tensor:
        """Predict ``out_len`` values from ``x`` of shape (batch, 1, n), n >= 1."""
        xp = self._pad(x, out_len)
        one = float(2**self.frac_bits)
        if exact:
            acc = F.conv1d(xp, self.quantized(self.linear))
            if self.hidden:
                h = torch.relu(torch.floor(F.conv1d(xp, self.quantized(self.w_in)) / one))
                acc = acc + F.conv1d(h, self.quantized(self.w_out))
            return torch.floor((acc + one / 2) / one)
        acc = F.conv1d(xp, self.linear)
        if self.hidden:
            h = torch.relu(_floor_ste(F.conv1d(xp, self.w_in)))
            acc = acc + F.conv1d(h, self.w_out)
        return _round_ste(acc)

    def predict_exact(self, x: torch.Tensor, out_len: int) -> torch.Tensor:
        """Exact integer prediction for a 1-D float64 tensor of integers (any length)."""
        if out_len == 0 or x.numel() == 0:
            return torch.zeros(out_len, dtype=torch.float64, device=x.device)
        return self.forward(x.view(1, 1, -1), out_len, exact=True).view(-1)
